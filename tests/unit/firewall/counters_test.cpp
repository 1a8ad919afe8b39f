// Raw kernel counters -> Counters -> the one-line summary status shows.
#include <doctest/doctest.h>
#include <cstring>

#include "firewall/counters.hpp"

using namespace leakguard::firewall;

TEST_CASE("rule counters add up per tag - interface counters per set and protocol") {
  const std::vector<RuleCounter> rules{
      {"output", "dns-out", 2, 120}, {"output", "dns-out", 1, 60},  // TCP and UDP DNS rules share a tag
      {"output", "udp-out", 42, 3360}, {"input", "udp-in", 5, 500}, {"output", "", 9, 9},  // untagged: ignored
  };
  const std::vector<InterfaceCounter> ifs{
      {"ifstat_out", "eth0", 17, 40, 3200, 2}, {"ifstat_out", "wlan0", 17, 2, 160, 2}, {"ifstat_in", "eth0", 17, 5, 500, 2},
      {"ifstat_out", "eth0", 1, 3, 252, 2},  // ICMP in strict mode: kind "ip"
      {"ifstat_out", "eth0", 17, 4, 480, 10},  // the same interface over IPv6: counted apart
  };
  const auto c = make_counters(rules, ifs);
  REQUIRE(c.size() == 8);
  CHECK(c[0] == Counter{"udp", "out", "all", 42, 3360});
  CHECK(c[1] == Counter{"udp", "out", "eth0", 40, 3200, "ipv4"});
  CHECK(c[2] == Counter{"udp", "out", "eth0", 4, 480, "ipv6"});
  CHECK(c[3] == Counter{"udp", "out", "wlan0", 2, 160, "ipv4"});
  CHECK(c[4] == Counter{"ip", "out", "eth0", 3, 252, "ipv4"});
  CHECK(c[5] == Counter{"dns", "out", "all", 3, 180});
  CHECK(c[6] == Counter{"udp", "in", "all", 5, 500});
  CHECK(c[7] == Counter{"udp", "in", "eth0", 5, 500, "ipv4"});
  CHECK(c[1].str() == "udp out via eth0 (ipv4): 40 packets, 3200 bytes");
  CHECK(c[0].str() == "udp out total: 42 packets, 3360 bytes");
  // The summary counts an interface once, both families together.
  CHECK(summarize(c) ==
        "blocked 42 UDP packets towards the internet via eth0, wlan0; dropped 5 incoming UDP packets on eth0; "
        "blocked 3 packets of DNS outside the tunnel");
}

TEST_CASE("the summary names the interface - busiest first - and DNS separately") {
  CHECK(summarize({}) == "nothing blocked");
  CHECK(summarize({{"udp", "out", "all", 0, 0}}) == "nothing blocked");
  CHECK(summarize({{"udp", "out", "all", 42, 3360}, {"udp", "out", "eth0", 42, 3360}}) ==
        "blocked 42 UDP packets towards the internet via eth0");
  CHECK(summarize({{"udp", "out", "all", 1, 80}}) == "blocked 1 UDP packet towards the internet");
  // Forged ICMP errors said for what they are, apart from the per-interface kinds.
  CHECK(summarize({{"icmperr", "in", "all", 3, 0}, {"tunaddr", "in", "all", 1, 0}}) ==
        "dropped 1 packet for the tunnel's address from outside the tunnel; dropped 3 packets of ICMP errors about no flow of this host's");
  CHECK(summarize({{"udp", "out", "all", 42, 0},
                   {"udp", "out", "wlan0", 2, 0},
                   {"udp", "out", "eth0", 40, 0},
                   {"dns", "out", "all", 3, 0},
                   {"tcp", "fwd", "all", 7, 0},
                   {"tcp", "fwd", "eth0", 7, 0},
                   {"udp", "in", "all", 5, 0},
                   {"udp", "in", "eth0", 5, 0}}) ==
        "blocked 42 UDP packets towards the internet via eth0, wlan0; blocked 7 forwarded TCP packets via eth0; "
        "dropped 5 incoming UDP packets on eth0; blocked 3 packets of DNS outside the tunnel");
}

TEST_CASE("a sender set's key: the cgroup id in host order, then address, protocol and ports in 4-byte slots") {
  // As the kernel keeps `socket cgroupv2 level L . ip daddr . meta l4proto . th sport . th dport`.
  std::uint8_t k4[24] = {};
  const std::uint64_t id = 0x1234'5678'9abcULL;
  std::memcpy(k4, &id, 8);
  const std::uint8_t a4[] = {203, 0, 113, 3};
  std::memcpy(k4 + 8, a4, 4);
  k4[12] = 6;                       // tcp
  k4[16] = 0x9c, k4[17] = 0x44;     // 40004
  k4[20] = 0x01, k4[21] = 0xbb;     // 443
  auto r = parse_sender_key(k4, sizeof k4);
  REQUIRE(r);
  CHECK(r->cgroup_id == id);
  CHECK(r->destination == *leakguard::IpAddress::parse("203.0.113.3"));
  CHECK(r->protocol == 6);
  CHECK(r->source_port == 40004);
  CHECK(r->destination_port == 443);
  std::uint8_t k6[36] = {};
  std::memcpy(k6, &id, 8);
  const auto a6 = *leakguard::IpAddress::parse("2001:db8::3");
  std::memcpy(k6 + 8, a6.bytes.data(), 16);
  k6[24] = 17;
  k6[28] = 0xc3, k6[29] = 0x50;  // 50000
  k6[32] = 0x0d, k6[33] = 0x96;  // 3478
  r = parse_sender_key(k6, sizeof k6);
  REQUIRE(r);
  CHECK(r->destination == a6);
  CHECK(r->protocol == 17);
  CHECK(r->source_port == 50000);
  CHECK(r->destination_port == 3478);
  // Any other length is not a sender key.
  CHECK_FALSE(parse_sender_key(k4, 20));
  CHECK_FALSE(parse_sender_key(k6, 35));
  CHECK_FALSE(parse_sender_key(k6, 0));
}
