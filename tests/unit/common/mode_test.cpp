#include <doctest/doctest.h>

#include "common/mode.hpp"

using namespace leakguard;

TEST_CASE("the policy mode: one definition, one parser for the file, D-Bus and the command line") {
  CHECK(to_string(Mode::udp) == "udp");
  CHECK(to_string(Mode::strict) == "strict");
  for (auto name : kModeNames) {
    auto m = parse_mode(name);
    REQUIRE(m);
    CHECK(to_string(*m) == name);
  }
  auto bad = parse_mode("loose");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().str() == "policy: 'loose' is not a policy (expected udp or strict)");
  CHECK_FALSE(parse_mode("UDP"));  // exact words only
  CHECK_FALSE(parse_mode(""));
}
