// Raw kernel counters -> Counters -> the one-line summary status shows.
#include <doctest/doctest.h>

#include "firewall/counters.hpp"

using namespace leakguard::firewall;

TEST_CASE("rule counters add up per tag - interface counters per set and protocol") {
  const std::vector<RuleCounter> rules{
      {"output", "dns-out", 2, 120}, {"output", "dns-out", 1, 60},  // TCP and UDP DNS rules share a tag
      {"output", "udp-out", 42, 3360}, {"input", "udp-in", 5, 500}, {"output", "", 9, 9},  // untagged: ignored
  };
  const std::vector<InterfaceCounter> ifs{
      {"ifstat_out", "eth0", 17, 40, 3200}, {"ifstat_out", "wlan0", 17, 2, 160}, {"ifstat_in", "eth0", 17, 5, 500},
      {"ifstat_out", "eth0", 1, 3, 252},  // ICMP in strict mode: kind "ip"
  };
  const auto c = make_counters(rules, ifs);
  REQUIRE(c.size() == 7);
  CHECK(c[0] == Counter{"udp", "out", "all", 42, 3360});
  CHECK(c[1] == Counter{"udp", "out", "eth0", 40, 3200});
  CHECK(c[2] == Counter{"udp", "out", "wlan0", 2, 160});
  CHECK(c[3] == Counter{"ip", "out", "eth0", 3, 252});
  CHECK(c[4] == Counter{"dns", "out", "all", 3, 180});
  CHECK(c[5] == Counter{"udp", "in", "all", 5, 500});
  CHECK(c[6] == Counter{"udp", "in", "eth0", 5, 500});
  CHECK(c[1].str() == "udp out via eth0: 40 packets, 3200 bytes");
  CHECK(c[0].str() == "udp out total: 42 packets, 3360 bytes");
}

TEST_CASE("the summary names the interface - busiest first - and DNS separately") {
  CHECK(summarize({}) == "nothing blocked");
  CHECK(summarize({{"udp", "out", "all", 0, 0}}) == "nothing blocked");
  CHECK(summarize({{"udp", "out", "all", 42, 3360}, {"udp", "out", "eth0", 42, 3360}}) ==
        "blocked 42 UDP packets towards the internet via eth0");
  CHECK(summarize({{"udp", "out", "all", 1, 80}}) == "blocked 1 UDP packet towards the internet");
  CHECK(summarize({{"udp", "out", "all", 42, 0},
                   {"udp", "out", "wlan0", 2, 0},
                   {"udp", "out", "eth0", 40, 0},
                   {"dns", "out", "all", 3, 0},
                   {"tcp", "fwd", "all", 7, 0},
                   {"tcp", "fwd", "eth0", 7, 0},
                   {"udp", "in", "all", 5, 0},
                   {"udp", "in", "eth0", 5, 0}}) ==
        "blocked 42 UDP packets towards the internet via eth0 (40), wlan0 (2); blocked 7 forwarded TCP packets via eth0; "
        "dropped 5 incoming UDP packets on eth0; blocked 3 packets of DNS outside the tunnel");
}
