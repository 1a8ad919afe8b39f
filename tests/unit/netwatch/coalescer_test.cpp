// When the watcher publishes: the debounce, the storm bound, and the tunnel's own link going down
// published at once, on virtual time.
#include <doctest/doctest.h>

#include "netwatch/coalescer.hpp"

using namespace leakguard::netwatch;
using namespace std::chrono_literals;

namespace {
const Coalescer::TimePoint t0{};
}  // namespace

TEST_CASE("a burst is published once it has been quiet for the debounce") {
  Coalescer c({.debounce = 50ms, .max_delay = 500ms});
  CHECK_FALSE(c.in_burst());
  CHECK(c.arrived(t0, false) == t0 + 50ms);
  CHECK(c.in_burst());
  CHECK(c.arrived(t0 + 30ms, false) == t0 + 80ms);  // more events: the quiet time starts again
  c.published();
  CHECK_FALSE(c.in_burst());
  CHECK(c.arrived(t0 + 200ms, false) == t0 + 250ms);  // a new burst
}

TEST_CASE("a storm that never pauses is still published every max_delay") {
  Coalescer c({.debounce = 50ms, .max_delay = 500ms});
  auto at = c.arrived(t0, false);
  for (auto t = t0 + 10ms; t < t0 + 1s; t += 10ms) at = c.arrived(t, false);
  CHECK(at == t0 + 500ms);
}

TEST_CASE("a tunnel's link going down is published at once, with whatever else is pending") {
  Coalescer c({.debounce = 50ms, .max_delay = 500ms});
  CHECK(c.arrived(t0, false) == t0 + 50ms);
  CHECK(c.arrived(t0 + 5ms, true) == t0 + 5ms);
  c.published();
  // Much later the tunnel goes down again: at once again.
  CHECK(c.arrived(t0 + 2s, true) == t0 + 2s);
}

TEST_CASE("a flapping tunnel coalesces: at once at most once per debounce") {
  Coalescer c({.debounce = 50ms, .max_delay = 500ms});
  CHECK(c.arrived(t0, true) == t0);
  c.published();
  CHECK(c.arrived(t0 + 10ms, false) == t0 + 60ms);  // back up: debounced as usual
  CHECK(c.arrived(t0 + 20ms, true) == t0 + 70ms);   // down again within the debounce: coalesced
  c.published();
  CHECK(c.arrived(t0 + 60ms, true) == t0 + 60ms);   // a debounce after the last one: at once
  // A storm of flaps: never more than one immediate publication per debounce.
  int immediate = 0;
  for (auto t = t0 + 61ms; t < t0 + 561ms; t += 1ms) {
    if (c.arrived(t, true) == t) ++immediate;
    c.published();
  }
  CHECK(immediate == 10);
}
