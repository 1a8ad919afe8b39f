#pragma once
// What keeps the bus from being used to stall the daemon (issue 14, finding 1): everyone may call
// GetStatus and read the properties, as fast as they like. Three small pure pieces the D-Bus
// adapter uses, each with bounded memory and time injected by the caller:
//   - RateLimiter: a token bucket per unprivileged uid (root and the control group are exempt);
//   - SenderCache: the credentials of a bus connection, looked up once per unique name (the
//     lookup is a round trip through the bus, which a flood makes slow);
//   - StatusCache: the GetStatus document, rebuilt at most once per freshness period (building it
//     dumps the nftables counters over netlink) unless something changed.
// Pure: no Asio, sdbus or libmnl.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include "daemon/control.hpp"

namespace leakguard::daemon {

using GuardClock = std::chrono::steady_clock;
using GuardTime = GuardClock::time_point;

/// How fast one unprivileged uid may call what everyone may call.
struct RateLimit {
  double per_second = 20;        ///< sustained calls per second, per uid
  double burst = 40;             ///< calls in a row after an idle spell
  std::size_t max_callers = 256;  ///< uids tracked at once; beyond that, new ones share one bucket
  std::chrono::seconds report_every{10};  ///< at most one log line per uid in this time
  bool operator==(const RateLimit&) const = default;
};

/// A token bucket per uid. Memory is bounded: a bucket that has refilled is the same as a new one
/// and is dropped when room is needed; when every tracked uid is still limited, further uids share
/// one overflow bucket (so many distinct uids cannot grow the table or escape the limit).
class RateLimiter {
 public:
  explicit RateLimiter(RateLimit limit = {});

  struct Decision {
    bool allowed = true;
    /// Set when this refusal should be logged: the first of an episode, then once per
    /// report_every; `refused` counts the refusals since the last report (this one included).
    std::optional<std::uint64_t> report;
    bool operator==(const Decision&) const = default;
  };
  /// One call by `uid` at `now`.
  Decision take(uid_t uid, GuardTime now);

  /// How many uids have a bucket now (the overflow bucket not counted).
  std::size_t tracked() const { return buckets_.size(); }
  const RateLimit& limit() const { return limit_; }

 private:
  struct Bucket {
    double tokens = 0;
    GuardTime at{};
    std::uint64_t unreported = 0;
    std::optional<GuardTime> reported_at;
  };
  void refill(Bucket& b, GuardTime now) const;
  Decision take(Bucket& b, GuardTime now);
  bool make_room(GuardTime now);

  RateLimit limit_;
  std::unordered_map<uid_t, Bucket> buckets_;
  Bucket overflow_;
};

/// The credentials behind a bus connection's unique name (":1.42"). A bus never reuses a unique
/// name and the bus fixes a connection's credentials when it connects, so an entry never goes
/// stale; the oldest entries are dropped beyond `capacity`. Clear it when the bus is replaced.
class SenderCache {
 public:
  explicit SenderCache(std::size_t capacity = 1024) : capacity_(capacity > 0 ? capacity : 1) {}
  const Caller* find(const std::string& sender) const;
  const Caller& insert(const std::string& sender, Caller caller);
  void clear();
  std::size_t size() const { return entries_.size(); }

 private:
  std::size_t capacity_;
  std::unordered_map<std::string, Caller> entries_;
  std::deque<std::string> order_;  // insertion order, for dropping the oldest
};

/// The GetStatus document, rebuilt when older than `max_age` or invalidated (any change of state
/// or property invalidates it, so a change is visible at once; only what changes without telling
/// anyone — packet counters, the network's details — can be up to `max_age` old).
class StatusCache {
 public:
  explicit StatusCache(std::chrono::milliseconds max_age = std::chrono::seconds(1)) : max_age_(max_age) {}
  /// The cached document if fresh at `now`, else `build()`'s, which is then cached.
  const std::string& get(GuardTime now, const std::function<std::string()>& build);
  void invalidate() { built_at_.reset(); }
  /// How many times the document was built (for tests and figures).
  std::uint64_t builds() const { return builds_; }

 private:
  std::chrono::milliseconds max_age_;
  std::string document_;
  std::optional<GuardTime> built_at_;
  std::uint64_t builds_ = 0;
};

}  // namespace leakguard::daemon
