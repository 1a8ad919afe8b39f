#pragma once
// The rtnetlink watcher on the daemon's io_context: it subscribes to link, address, route and
// rule changes first, then dumps everything, and keeps a NetModel. Bursts of events are coalesced:
// one notification per burst, after it has been quiet for `debounce` (or after `max_delay` in a
// storm that never pauses), carrying what changed — except that a tunnel's own link going down or
// away ends its burst at once (see coalescer.hpp), before the dump that verifies it. If the kernel
// drops events (ENOBUFS) the watcher dumps everything again and reports the difference. No timers
// run while nothing changes.
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "netwatch/coalescer.hpp"
#include "netwatch/model.hpp"

namespace leakguard::netwatch {

/// Dumps links, addresses, routes (all tables) and rules of the current network namespace.
Result<NetModel> dump_model();

class Watcher {
 public:
  struct Options {
    std::chrono::milliseconds debounce{50};   ///< quiet time that ends a burst
    std::chrono::milliseconds max_delay{500}; ///< a burst that never pauses still notifies this often
    int receive_buffer = 4 << 20;             ///< bytes; events beyond it are lost (ENOBUFS) and resynced
    /// Check each burst's result against a fresh dump before publishing it. The kernel removes
    /// some things without an event (IPv4 routes whose gateway became unreachable when an
    /// address went away); with this on, consumers see a model the kernel disagrees with at most
    /// a debounce long, after a burst published at once (see is_tunnel), never otherwise.
    bool verify = true;
    /// Which interface names are tunnels: one of them going down or away, an address new on one,
    /// or a new policy rule is published at once (netwatch::urgent), not a debounce later (at
    /// most once per debounce, so a flapping tunnel still coalesces), and verified a debounce
    /// later.
    /// Unset: every burst waits for its debounce.
    std::function<bool(const std::string& ifname)> is_tunnel{};
  };
  struct Notification {
    const NetModel& model;              ///< the model after the burst
    std::vector<Change> changes;        ///< what changed since the last notification
    bool resynced = false;              ///< the kernel dropped events; the model was dumped afresh
    bool corrected = false;             ///< the events alone missed something a dump showed (see verify)
    std::size_t events = 0;             ///< events coalesced into this notification
    std::vector<std::string> rejected;  ///< malformed messages seen (should never happen)
    bool verified = false;              ///< checked against a dump (false: published at once, or verify off)
  };
  struct Stats {
    std::uint64_t events = 0, notifications = 0, overflows = 0, corrections = 0, wakeups = 0, rejected = 0;
    std::uint64_t immediate = 0;  ///< bursts published at once (a tunnel's link lost), verified after
    std::uint64_t verifications = 0;  ///< dumps taken to verify a burst's model (see Options::verify)
  };
  using Callback = std::function<void(const Notification&)>;

  Watcher(boost::asio::io_context& io, Options options, Callback callback);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  /// Subscribes, then dumps; the model is complete when this returns.
  Result<void> start();
  /// The model as last notified (never half-applied).
  const NetModel& model() const { return published_; }
  /// The model with the events read so far applied, including a burst not yet notified.
  const NetModel& pending() const { return pending_; }
  const Stats& stats() const { return stats_; }

 private:
  void wait();
  void on_readable();
  void schedule(bool urgent);
  void arm(Coalescer::TimePoint at);
  /// Notifies the burst's changes; with `verify`, after checking the model against a dump.
  void publish(bool verify);

  Options options_;
  Callback callback_;
  boost::asio::posix::stream_descriptor socket_;
  boost::asio::steady_timer timer_;
  NetModel published_;
  NetModel pending_;
  Coalescer coalescer_;
  bool resynced_ = false;
  bool verify_due_ = false;  ///< a burst was published at once, unverified: a dump follows
  std::size_t burst_events_ = 0;
  std::vector<std::string> burst_rejected_;
  Stats stats_;
  std::vector<std::uint8_t> buffer_;
};

}  // namespace leakguard::netwatch
