// Policy validation: every bad field is refused with a message naming it.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "firewall/policy.hpp"

using namespace leakguard;
using namespace leakguard::firewall;

namespace {

Policy good() {
  Policy p;
  p.mode = Mode::udp;
  p.tunnels = {*IfnamePattern::parse("wg0"), *IfnamePattern::parse("tun*")};
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820"), *Endpoint::parse("[2001:db8:3::66]:51820/udp")};
  p.fwmark = FwMark{51820};
  p.allow_lan = true;
  p.lan_subnets = {*Prefix::parse("192.0.2.0/24"), *Prefix::parse("2001:db8:2::/64")};
  return p;
}

/// Validates and expects an error whose message starts with `field`.
void expect_refused(const Policy& p, const std::string& field, const Limits& limits = {}) {
  auto r = validate(p, limits);
  REQUIRE_FALSE(r);
  CHECK(r.error().step == "validate policy");
  CAPTURE(r.error().message);
  CHECK(r.error().message.rfind(field, 0) == 0);
}

}  // namespace

TEST_CASE("a sound policy passes and prints on one line") {
  const Policy p = good();
  CHECK(validate(p));
  CHECK(p.str() ==
        "mode=udp allow_lan=yes tunnels=[wg0,tun*] endpoints=[198.51.100.1:51820/udp,[2001:db8:3::66]:51820/udp] "
        "fwmark=0xca6c lan=[192.0.2.0/24,2001:db8:2::/64]");
  Policy q = p;
  CHECK(q == p);
  q.endpoints.pop_back();
  CHECK_FALSE(q == p);
  Policy empty;
  CHECK(validate(empty));  // no tunnel, no endpoint: everything blocked, still valid
  CHECK(empty.str() == "mode=udp allow_lan=no tunnels=[] endpoints=[] fwmark=none lan=[]");
}

TEST_CASE("bad tunnel interface names name the field and index") {
  for (const char* bad : {"", "a-name-longer-than-15", "wg/0", "wg 0", "wg\t0", "w*g", "*", "wg\"0", "wg\\0"}) {
    CAPTURE(bad);
    Policy p = good();
    p.tunnels.push_back(IfnamePattern{bad});
    expect_refused(p, "tunnels[2]: ");
  }
  Policy ok = good();
  ok.tunnels.push_back(IfnamePattern{"exactly15chars_"});
  CHECK(validate(ok));
}

TEST_CASE("bad endpoints name the field and index") {
  auto with = [](Endpoint e) {
    Policy p = good();
    p.endpoints.push_back(e);
    return p;
  };
  Endpoint e = *Endpoint::parse("198.51.100.9:443/tcp");
  e.port = 0;
  expect_refused(with(e), "endpoints[2]: '198.51.100.9:0/tcp': port 0");
  expect_refused(with(*Endpoint::parse("0.0.0.0:51820")), "endpoints[2]: ");
  expect_refused(with(*Endpoint::parse("[::]:51820")), "endpoints[2]: ");
  expect_refused(with(*Endpoint::parse("224.0.0.1:51820")), "endpoints[2]: ");
  expect_refused(with(*Endpoint::parse("127.0.0.1:51820")), "endpoints[2]: ");
  Endpoint odd = *Endpoint::parse("198.51.100.9:443");
  odd.transport = static_cast<Transport>(1);  // ICMP: not a transport an endpoint can use
  expect_refused(with(odd), "endpoints[2]: ");
}

TEST_CASE("more endpoints than the limit are refused - the limit itself is fine") {
  Limits limits;
  limits.max_endpoints = 8;
  Policy p = good();
  p.endpoints.clear();
  for (int i = 1; i <= 8; ++i) p.endpoints.push_back(*Endpoint::parse("198.51.100." + std::to_string(i) + ":51820"));
  CHECK(validate(p, limits));
  p.endpoints.push_back(*Endpoint::parse("198.51.100.200:51820"));
  expect_refused(p, "endpoints: 9 endpoints, at most 8", limits);
  // the default limit is 1024
  Policy big = good();
  big.endpoints.assign(1025, *Endpoint::parse("198.51.100.1:51820"));
  expect_refused(big, "endpoints: 1025 endpoints, at most 1024");
}

TEST_CASE("an fwmark of 0 is refused") {
  Policy p = good();
  p.fwmark = FwMark{0};
  expect_refused(p, "fwmark: ");
  p.fwmark.reset();
  CHECK(validate(p));
}

TEST_CASE("LAN subnets that are not a local network are refused") {
  for (const char* bad : {"0.0.0.0/0", "10.0.0.0/7", "::/0", "2001::/15", "127.0.0.0/8", "::1/128"}) {
    CAPTURE(bad);
    Policy p = good();
    p.lan_subnets.push_back(*Prefix::parse(bad));
    expect_refused(p, "lan_subnets[2]: ");
  }
  Policy p = good();
  p.lan_subnets.push_back(*Prefix::parse("10.0.0.0/8"));
  p.lan_subnets.push_back(*Prefix::parse("fd00::/16"));
  CHECK(validate(p));
}

TEST_CASE("too many tunnels or LAN subnets are refused") {
  Limits limits;
  limits.max_tunnels = 2;
  limits.max_lan_subnets = 2;
  Policy p = good();
  CHECK(validate(p, limits));
  p.tunnels.push_back(*IfnamePattern::parse("wg1"));
  expect_refused(p, "tunnels: 3 patterns", limits);
  p = good();
  p.lan_subnets.push_back(*Prefix::parse("10.1.0.0/16"));
  expect_refused(p, "lan_subnets: 3 subnets", limits);
}

TEST_CASE("the policy mode is common/'s one definition, under its firewall names too") {
  static_assert(std::is_same_v<firewall::Mode, leakguard::Mode>);
  CHECK(firewall::to_string(firewall::Mode::strict) == "strict");
  CHECK(firewall::to_string(firewall::Mode::udp) == "udp");
}

TEST_CASE("what the rules refuse out of a non-tunnel interface: every datagram, TCP in strict or an escalated family - not the exceptions") {
  auto ip = [](const char* a) { return *IpAddress::parse(a); };
  Policy p;  // udp policy
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("203.0.113.3"), 3478));
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("2001:db8:3::3"), 443));
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::tcp, ip("203.0.113.3"), 443));
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::udp, ip("255.255.255.255"), 67));  // DHCP
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::udp, ip("ff02::1:2"), 547));       // DHCPv6
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("192.168.1.1"), 53));            // no allow_lan: the LAN too
  p.escalated = {Family::v6};
  CHECK(refuses_outside_tunnel(p, Transport::tcp, ip("2001:db8:3::3"), 443));
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::tcp, ip("203.0.113.3"), 443));
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820/udp")};
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::udp, ip("198.51.100.1"), 51820));
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("198.51.100.1"), 51821));  // only its port
  CHECK(refuses_outside_tunnel(p, Transport::tcp, ip("2001:db8:3::3"), 51820));
  p.allow_lan = true;
  p.lan_subnets = {*Prefix::parse("192.168.1.0/24")};
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::udp, ip("192.168.1.1"), 5353));
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("192.168.1.1"), 53));  // DNS outside the tunnel: the LAN's too
  CHECK(refuses_outside_tunnel(p, Transport::tcp, ip("203.0.113.3"), 853));  // and over TCP in udp mode
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::udp, ip("169.254.7.7"), 5000));   // link-local
  CHECK_FALSE(refuses_outside_tunnel(p, Transport::udp, ip("ff02::fb"), 5353));      // mDNS, on the link
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("239.1.2.3"), 5000));           // multicast a router may carry
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("192.168.2.1"), 5000));         // not the LAN's subnet
  p.mode = Mode::strict;
  CHECK(refuses_outside_tunnel(p, Transport::tcp, ip("203.0.113.3"), 443));
  p.emergency = true;  // everything, the exceptions too
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("198.51.100.1"), 51820));
  CHECK(refuses_outside_tunnel(p, Transport::udp, ip("192.168.1.1"), 53));
}

TEST_CASE("the link's own ranges that allow_lan opens") {
  auto has = [](Family f, const char* a) {
    const auto r = link_scope_ranges(f);
    return std::any_of(r.begin(), r.end(), [&](const Prefix& n) { return n.contains(*IpAddress::parse(a)); });
  };
  CHECK(has(Family::v4, "169.254.1.1"));
  CHECK(has(Family::v4, "224.0.0.251"));
  CHECK(has(Family::v4, "239.255.255.250"));
  CHECK(has(Family::v4, "255.255.255.255"));
  CHECK_FALSE(has(Family::v4, "10.0.0.1"));  // the LAN's subnets come from the network
  CHECK(has(Family::v6, "fe80::1"));
  CHECK(has(Family::v6, "ff02::fb"));
  CHECK_FALSE(has(Family::v6, "ff05::2"));
}
