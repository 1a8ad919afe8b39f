#include <doctest/doctest.h>

#include "common/ip.hpp"

using namespace leakguard;

TEST_CASE("IPv4 and IPv6 addresses parse and print back") {
  auto a = IpAddress::parse("192.0.2.10");
  REQUIRE(a);
  CHECK(a->family == Family::v4);
  CHECK(a->str() == "192.0.2.10");
  CHECK(*a == IpAddress::v4(192, 0, 2, 10));

  auto b = IpAddress::parse("2001:DB8:0:0::10");
  REQUIRE(b);
  CHECK(b->family == Family::v6);
  CHECK(b->str() == "2001:db8::10");
}

TEST_CASE("malformed addresses are rejected with the text quoted") {
  for (const char* bad : {"", "192.0.2", "192.0.2.256", "1.2.3.4.5", "2001:db8:::1", "[2001:db8::1]", "fe80::1%eth0",
                          "example.org", "0x7f.1", " 192.0.2.1"}) {
    CAPTURE(bad);
    auto r = IpAddress::parse(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().step == "parse address");
  }
}

TEST_CASE("address classes") {
  CHECK(IpAddress::parse("127.0.0.1")->is_loopback());
  CHECK(IpAddress::parse("::1")->is_loopback());
  CHECK_FALSE(IpAddress::parse("::2")->is_loopback());
  CHECK(IpAddress::parse("169.254.1.1")->is_link_local());
  CHECK(IpAddress::parse("fe80::1")->is_link_local());
  CHECK(IpAddress::parse("febf::1")->is_link_local());
  CHECK_FALSE(IpAddress::parse("fec0::1")->is_link_local());
  CHECK(IpAddress::parse("239.1.2.3")->is_multicast());
  CHECK(IpAddress::parse("ff02::1")->is_multicast());
  CHECK(IpAddress::parse("0.0.0.0")->is_unspecified());
  CHECK(IpAddress::parse("::")->is_unspecified());
}

TEST_CASE("prefixes: parse, network, contains") {
  auto p = Prefix::parse("192.0.2.10/24");
  REQUIRE(p);
  CHECK(p->str() == "192.0.2.10/24");
  CHECK(p->network().str() == "192.0.2.0/24");
  CHECK(p->contains(*IpAddress::parse("192.0.2.200")));
  CHECK_FALSE(p->contains(*IpAddress::parse("192.0.3.1")));
  CHECK_FALSE(p->contains(*IpAddress::parse("2001:db8::1")));

  auto q = Prefix::parse("2001:db8:2::10/46");
  REQUIRE(q);
  CHECK(q->network().str() == "2001:db8::/46");  // bits 46-47 of the third group cleared
  CHECK(Prefix::parse("2001:db8::1")->length == 128);
  CHECK(Prefix::parse("0.0.0.0/0")->contains(*IpAddress::parse("203.0.113.1")));

  for (const char* bad : {"192.0.2.0/33", "192.0.2.0/", "192.0.2.0/-1", "2001:db8::/129", "x/8", "192.0.2.0/8x"}) {
    CAPTURE(bad);
    CHECK_FALSE(Prefix::parse(bad));
  }
}

TEST_CASE("endpoints: ADDR:PORT[/proto], IPv6 in brackets") {
  auto e = Endpoint::parse("198.51.100.1:51820/udp");
  REQUIRE(e);
  CHECK(e->port == 51820);
  CHECK(e->transport == Transport::udp);
  CHECK(e->str() == "198.51.100.1:51820/udp");

  auto t = Endpoint::parse("[2001:db8::1]:443/tcp");
  REQUIRE(t);
  CHECK(t->address.family == Family::v6);
  CHECK(t->transport == Transport::tcp);
  CHECK(t->str() == "[2001:db8::1]:443/tcp");

  CHECK(Endpoint::parse("198.51.100.1:1194")->transport == Transport::udp);

  for (const char* bad : {"198.51.100.1", "198.51.100.1:0", "198.51.100.1:65536", "198.51.100.1:51820/sctp",
                          "2001:db8::1:51820", "[198.51.100.1]:1", "[2001:db8::1]51820", "[2001:db8::1]:",
                          ":51820", "198.51.100.1:5x", "198.51.100.1:-1"}) {
    CAPTURE(bad);
    auto r = Endpoint::parse(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(bad) != std::string::npos);
  }
}
