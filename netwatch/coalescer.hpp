#pragma once
// When the watcher publishes a burst of network events. Pure (no Asio, no clock of its own): the
// caller says what time it is, so the rules are tested on virtual time.
//
// A burst ends when it has been quiet for `debounce`, or `max_delay` after it began in a storm that
// never pauses. An urgent event (a tunnel's own link going down or away) ends it at once: the
// kill switch must say `blocking` now, not a debounce later. Urgency is rate-limited to once per
// `debounce`, so a flapping tunnel still coalesces like any other storm.
#include <chrono>
#include <optional>

namespace leakguard::netwatch {

class Coalescer {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  struct Options {
    std::chrono::milliseconds debounce{50};    ///< quiet time that ends a burst
    std::chrono::milliseconds max_delay{500};  ///< a burst that never pauses is published this often
    bool operator==(const Options&) const = default;
  };

  explicit Coalescer(Options options) : options_(options) {}

  /// Events arrived at `now` (`urgent`: one of them took a tunnel's link down or away). Returns
  /// when to publish the burst they belong to; `now` means at once.
  TimePoint arrived(TimePoint now, bool urgent);
  /// The burst was published.
  void published() { burst_start_.reset(); }
  /// Whether events are waiting to be published.
  bool in_burst() const { return burst_start_.has_value(); }

 private:
  Options options_;
  std::optional<TimePoint> burst_start_;
  std::optional<TimePoint> last_urgent_;
};

}  // namespace leakguard::netwatch
