// The pieces that keep a bus flood from stalling the daemon, on virtual time: the per-uid rate
// limit and its bounded memory, the credentials cache, the GetStatus cache.
#include <doctest/doctest.h>

#include "daemon/bus_guard.hpp"

using namespace leakguard::daemon;
using namespace std::chrono_literals;

namespace {
const GuardTime t0{std::chrono::hours(1)};

// How many of `n` calls by `uid` at `now` are allowed.
int allowed(RateLimiter& l, uid_t uid, int n, GuardTime now) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += l.take(uid, now).allowed ? 1 : 0;
  return ok;
}
}  // namespace

TEST_CASE("a burst, then the sustained rate, and each uid has its own bucket") {
  RateLimiter l({.per_second = 10, .burst = 20});
  CHECK(allowed(l, 1000, 100, t0) == 20);  // the burst, nothing more at the same instant
  CHECK(allowed(l, 1001, 25, t0) == 20);   // another uid is not charged for 1000's calls
  CHECK(allowed(l, 1000, 100, t0 + 500ms) == 5);  // half a second at 10/s
  CHECK(allowed(l, 1000, 100, t0 + 500ms + 10s) == 20);  // refills up to the burst, not beyond
  // A clock that goes backwards adds nothing.
  CHECK(allowed(l, 1000, 1, t0) == 0);
}

TEST_CASE("refusals are reported once per episode, then at most every report_every, with a count") {
  RateLimiter l({.per_second = 1, .burst = 2, .max_callers = 8, .report_every = 10s});
  CHECK(l.take(7, t0) == RateLimiter::Decision{true, {}});
  CHECK(l.take(7, t0) == RateLimiter::Decision{true, {}});
  CHECK(l.take(7, t0) == RateLimiter::Decision{false, 1});  // the first refusal is reported
  for (int i = 0; i < 99; ++i) CHECK(l.take(7, t0 + 100ms) == RateLimiter::Decision{false, {}});
  CHECK(l.take(7, t0 + 10s) == RateLimiter::Decision{true, {}});  // refilled meanwhile
  CHECK(l.take(7, t0 + 10s) == RateLimiter::Decision{true, {}});
  // 10 s after the first report: the next refusal reports the 99 silent ones too.
  CHECK(l.take(7, t0 + 10s) == RateLimiter::Decision{false, 100});
}

TEST_CASE("bounded memory: refilled buckets make room, beyond that new uids share one bucket") {
  RateLimiter l({.per_second = 1, .burst = 2, .max_callers = 4, .report_every = 0s});
  for (uid_t u = 1; u <= 4; ++u) CHECK(allowed(l, u, 3, t0) == 2);  // four uids, all limited now
  CHECK(l.tracked() == 4);
  // A thousand more distinct uids while the four are still limited: the table does not grow, and
  // together they get one burst, not a thousand.
  int ok = 0;
  for (uid_t u = 100; u < 1100; ++u) ok += allowed(l, u, 1, t0);
  CHECK(ok == 2);
  CHECK(l.tracked() == 4);
  // The four are still limited (the overflow did not reset them).
  for (uid_t u = 1; u <= 4; ++u) CHECK(allowed(l, u, 1, t0) == 0);
  // Once buckets have refilled they are dropped to make room: a new uid gets its own burst.
  CHECK(allowed(l, 5000, 3, t0 + 3s) == 2);
  CHECK(l.tracked() == 1);
}

TEST_CASE("a bucket with unreported refusals is kept, so its count survives") {
  RateLimiter l({.per_second = 1, .burst = 1, .max_callers = 1, .report_every = 10s});
  CHECK(l.take(1, t0).allowed);
  CHECK(l.take(1, t0) == RateLimiter::Decision{false, 1});
  CHECK(l.take(1, t0 + 1ms) == RateLimiter::Decision{false, {}});  // unreported: 1
  // Much later uid 2 arrives; uid 1 has refilled but has an unreported refusal: no room, overflow.
  CHECK(l.take(2, t0 + 5s).allowed);  // the overflow bucket's own burst
  CHECK(l.tracked() == 1);
  CHECK(l.take(1, t0 + 10s).allowed);
  CHECK(l.take(1, t0 + 10s) == RateLimiter::Decision{false, 2});
}

TEST_CASE("the sender cache finds what was inserted and forgets the oldest beyond its capacity") {
  SenderCache c(2);
  Caller a;
  a.uid = 65534;
  Caller b;
  b.uid = 0;
  CHECK(c.find(":1.1") == nullptr);
  CHECK(c.insert(":1.1", a).uid == 65534);
  c.insert(":1.2", b);
  REQUIRE(c.find(":1.1") != nullptr);
  CHECK(c.find(":1.1")->uid == 65534);
  CHECK(c.find(":1.2")->uid == 0);
  c.insert(":1.3", a);
  CHECK(c.size() == 2);
  CHECK(c.find(":1.1") == nullptr);  // the oldest went
  CHECK(c.find(":1.2") != nullptr);
  for (int i = 0; i < 10'000; ++i) c.insert(":2." + std::to_string(i), a);
  CHECK(c.size() == 2);
  c.clear();
  CHECK(c.size() == 0);
  CHECK(c.find(":2.9999") == nullptr);
}

TEST_CASE("the status document is rebuilt at most once per freshness period, and at once when invalidated") {
  StatusCache s(1s);
  int n = 0;
  auto build = [&] { return "doc " + std::to_string(++n); };
  CHECK(s.get(t0, build) == "doc 1");
  for (int i = 0; i < 1000; ++i) CHECK(s.get(t0 + 999ms, build) == "doc 1");
  CHECK(s.get(t0 + 1s, build) == "doc 2");  // stale after a second
  s.invalidate();
  CHECK(s.get(t0 + 1s, build) == "doc 3");  // a change shows at once
  CHECK(s.get(t0 + 1500ms, build) == "doc 3");
  CHECK(s.get(t0, build) == "doc 4");  // a time before the build: not trusted
  CHECK(s.builds() == 4);
}
