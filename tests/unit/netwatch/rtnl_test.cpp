// The rtnetlink parser on bytes written out by hand (host byte order, x86-64 little-endian),
// one comment per 4-byte row, and on malformed variants of them.
#include <doctest/doctest.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "netwatch/rtnl.hpp"

using namespace leakguard;
using namespace leakguard::netwatch;

namespace {

using Bytes = std::vector<std::uint8_t>;

// RTM_NEWLINK: eth0, index 2, Ethernet, up and running, mtu 1500, kind veth.
const Bytes kNewLink = {
    0x4c, 0x00, 0x00, 0x00,  // nlmsg_len 76
    0x10, 0x00, 0x00, 0x00,  // nlmsg_type RTM_NEWLINK (16), nlmsg_flags 0
    0x00, 0x00, 0x00, 0x00,  // nlmsg_seq
    0x00, 0x00, 0x00, 0x00,  // nlmsg_pid
    0x00, 0x00, 0x01, 0x00,  // ifi_family AF_UNSPEC, pad, ifi_type ARPHRD_ETHER (1)
    0x02, 0x00, 0x00, 0x00,  // ifi_index 2
    0x41, 0x00, 0x01, 0x00,  // ifi_flags IFF_UP | IFF_RUNNING | IFF_LOWER_UP
    0x00, 0x00, 0x00, 0x00,  // ifi_change
    0x09, 0x00, 0x03, 0x00,  // nla_len 9, IFLA_IFNAME (3)
    'e',  't',  'h',  '0',   // "eth0"
    0x00, 0x00, 0x00, 0x00,  // NUL, padding
    0x08, 0x00, 0x04, 0x00,  // nla_len 8, IFLA_MTU (4)
    0xdc, 0x05, 0x00, 0x00,  // 1500
    0x05, 0x00, 0x10, 0x00,  // nla_len 5, IFLA_OPERSTATE (16)
    0x06, 0x00, 0x00, 0x00,  // IF_OPER_UP, padding
    0x10, 0x00, 0x12, 0x00,  // nla_len 16, IFLA_LINKINFO (18), nested:
    0x09, 0x00, 0x01, 0x00,  //   nla_len 9, IFLA_INFO_KIND (1)
    'v',  'e',  't',  'h',   //   "veth"
    0x00, 0x00, 0x00, 0x00,  //   NUL, padding
};

// RTM_NEWADDR: 192.0.2.10/24 on index 2, permanent, scope global.
const Bytes kNewAddr4 = {
    0x28, 0x00, 0x00, 0x00,  // nlmsg_len 40
    0x14, 0x00, 0x00, 0x00,  // RTM_NEWADDR (20), flags 0
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x02, 0x18, 0x80, 0x00,  // ifa_family AF_INET, ifa_prefixlen 24, ifa_flags IFA_F_PERMANENT, ifa_scope 0
    0x02, 0x00, 0x00, 0x00,  // ifa_index 2
    0x08, 0x00, 0x02, 0x00,  // nla_len 8, IFA_LOCAL (2)
    0xc0, 0x00, 0x02, 0x0a,  // 192.0.2.10
    0x08, 0x00, 0x01, 0x00,  // nla_len 8, IFA_ADDRESS (1)
    0xc0, 0x00, 0x02, 0x0a,  // 192.0.2.10
};

// RTM_NEWADDR: 2001:db8:2::10/64 on index 2 (only IFA_ADDRESS, as IPv6 sends it).
const Bytes kNewAddr6 = {
    0x2c, 0x00, 0x00, 0x00,  // nlmsg_len 44
    0x14, 0x00, 0x00, 0x00,  // RTM_NEWADDR, flags 0
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x0a, 0x40, 0x80, 0x00,  // AF_INET6, /64, IFA_F_PERMANENT, scope global
    0x02, 0x00, 0x00, 0x00,  // ifa_index 2
    0x14, 0x00, 0x01, 0x00,  // nla_len 20, IFA_ADDRESS (1)
    0x20, 0x01, 0x0d, 0xb8,  // 2001:db8:
    0x00, 0x02, 0x00, 0x00,  // 2::
    0x00, 0x00, 0x00, 0x00,  //
    0x00, 0x00, 0x00, 0x10,  // ::10
};

// RTM_NEWROUTE: default via 192.0.2.1 dev #2 metric 100, table main.
const Bytes kNewRoute4 = {
    0x3c, 0x00, 0x00, 0x00,  // nlmsg_len 60
    0x18, 0x00, 0x00, 0x04,  // RTM_NEWROUTE (24), flags NLM_F_CREATE (0x400)
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x02, 0x00, 0x00, 0x00,  // rtm_family AF_INET, dst_len 0, src_len 0, tos 0
    0xfe, 0x04, 0x00, 0x01,  // rtm_table main (254), protocol static (4), scope universe, type unicast (1)
    0x00, 0x00, 0x00, 0x00,  // rtm_flags
    0x08, 0x00, 0x0f, 0x00,  // nla_len 8, RTA_TABLE (15)
    0xfe, 0x00, 0x00, 0x00,  // 254
    0x08, 0x00, 0x05, 0x00,  // nla_len 8, RTA_GATEWAY (5)
    0xc0, 0x00, 0x02, 0x01,  // 192.0.2.1
    0x08, 0x00, 0x04, 0x00,  // nla_len 8, RTA_OIF (4)
    0x02, 0x00, 0x00, 0x00,  // 2
    0x08, 0x00, 0x06, 0x00,  // nla_len 8, RTA_PRIORITY (6)
    0x64, 0x00, 0x00, 0x00,  // 100
};

// RTM_NEWRULE: wg-quick's "not fwmark 0xca6c lookup 51820", priority 32764, IPv4.
const Bytes kNewRule = {
    0x34, 0x00, 0x00, 0x00,  // nlmsg_len 52
    0x20, 0x00, 0x00, 0x00,  // RTM_NEWRULE (32), flags 0
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x02, 0x00, 0x00, 0x00,  // family AF_INET, dst_len, src_len, tos
    0xfc, 0x00, 0x00, 0x01,  // table 252 (RT_TABLE_COMPAT: real table in FRA_TABLE), res1, res2, action FR_ACT_TO_TBL
    0x02, 0x00, 0x00, 0x00,  // flags FIB_RULE_INVERT
    0x08, 0x00, 0x06, 0x00,  // nla_len 8, FRA_PRIORITY (6)
    0xfc, 0x7f, 0x00, 0x00,  // 32764
    0x08, 0x00, 0x0f, 0x00,  // nla_len 8, FRA_TABLE (15)
    0x6c, 0xca, 0x00, 0x00,  // 51820
    0x08, 0x00, 0x0a, 0x00,  // nla_len 8, FRA_FWMARK (10)
    0x6c, 0xca, 0x00, 0x00,  // 51820
};

// NLMSG_DONE then NLMSG_ERROR with -EBUSY (as a second dump request would get).
const Bytes kDoneAndError = {
    0x14, 0x00, 0x00, 0x00,  // nlmsg_len 20
    0x03, 0x00, 0x02, 0x00,  // NLMSG_DONE (3), NLM_F_MULTI
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x00, 0x00, 0x00, 0x00,  // the dump's error code: 0
    0x14, 0x00, 0x00, 0x00,  // nlmsg_len 20 (only the error code, no echoed header: enough for us)
    0x02, 0x00, 0x00, 0x00,  // NLMSG_ERROR (2)
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0xf0, 0xff, 0xff, 0xff,  // -16 (EBUSY)
};

Bytes cat(std::initializer_list<const Bytes*> parts) {
  Bytes out;
  for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

Bytes with(Bytes b, std::size_t offset, std::initializer_list<std::uint8_t> patch) {
  std::size_t i = offset;
  for (auto v : patch) b.at(i++) = v;
  return b;
}

}  // namespace

TEST_CASE("a link message becomes a Link with name, kind, flags, operstate and mtu") {
  auto p = parse(kNewLink);
  REQUIRE(p.rejected.empty());
  REQUIRE(p.events.size() == 1);
  auto* a = std::get_if<Added<Link>>(&p.events[0]);
  REQUIRE(a);
  CHECK(a->value.index == IfIndex{2});
  CHECK(a->value.name == "eth0");
  CHECK(a->value.kind == "veth");
  CHECK(a->value.type == 1);
  CHECK(a->value.mtu == 1500);
  CHECK(a->value.up());
  CHECK(a->value.running());
  CHECK(str(a->value) == "eth0 (#2, veth, up, mtu 1500)");
}

TEST_CASE("RTM_DELLINK is a removal") {
  auto p = parse(with(kNewLink, 4, {RTM_DELLINK}));
  REQUIRE(p.events.size() == 1);
  CHECK(std::holds_alternative<Removed<Link>>(p.events[0]));
}

TEST_CASE("addresses of both families, from IFA_LOCAL or IFA_ADDRESS") {
  auto p = parse(cat({&kNewAddr4, &kNewAddr6}));
  REQUIRE(p.rejected.empty());
  REQUIRE(p.events.size() == 2);
  auto v4 = std::get<Added<Address>>(p.events[0]).value;
  auto v6 = std::get<Added<Address>>(p.events[1]).value;
  CHECK(v4.prefix.str() == "192.0.2.10/24");
  CHECK(v4.index == IfIndex{2});
  CHECK(v6.prefix.str() == "2001:db8:2::10/64");
  CHECK(str(v6) == "2001:db8:2::10/64 on #2");
}

TEST_CASE("a default route with gateway, interface, table and metric") {
  auto p = parse(kNewRoute4);
  REQUIRE(p.rejected.empty());
  auto r = std::get<Added<Route>>(p.events.at(0)).value;
  CHECK(r.is_default());
  CHECK(r.table == 254);
  CHECK(r.gateway->str() == "192.0.2.1");
  CHECK(r.oif == IfIndex{2});
  CHECK(r.priority == 100);
  CHECK(str(r) == "ipv4 default via 192.0.2.1 dev #2 metric 100");
}

TEST_CASE("a wg-quick style inverted fwmark rule") {
  auto p = parse(kNewRule);
  REQUIRE(p.rejected.empty());
  auto r = std::get<Added<Rule>>(p.events.at(0)).value;
  CHECK(r.invert);
  CHECK(r.fwmark == 51820u);
  CHECK(r.table == 51820);
  CHECK(r.priority == 32764);
  CHECK(str(r) == "ipv4 32764: not fwmark 51820 lookup 51820");
}

// RTM_NEWRULE: "not to 192.168.0.0/16 uidrange 1000-1000 ipproto tcp dport 443 iif lo lookup 100",
// priority 100, IPv4: the selectors the kernel sends, as it sends them (ports and uids in host
// order: fib_rule_port_inrange compares ntohs(port) with them).
const Bytes kSelectorRule = {
    0x58, 0x00, 0x00, 0x00,  // nlmsg_len 88
    0x20, 0x00, 0x00, 0x00,  // RTM_NEWRULE (32), flags 0
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x02, 0x10, 0x00, 0x00,  // family AF_INET, dst_len 16, src_len 0, tos 0
    0x64, 0x00, 0x00, 0x01,  // table 100, res1, res2, action FR_ACT_TO_TBL
    0x02, 0x00, 0x00, 0x00,  // flags FIB_RULE_INVERT
    0x08, 0x00, 0x06, 0x00,  // nla_len 8, FRA_PRIORITY (6)
    0x64, 0x00, 0x00, 0x00,  // 100
    0x08, 0x00, 0x01, 0x00,  // nla_len 8, FRA_DST (1)
    0xc0, 0xa8, 0x00, 0x00,  // 192.168.0.0
    0x0c, 0x00, 0x14, 0x00,  // nla_len 12, FRA_UID_RANGE (20)
    0xe8, 0x03, 0x00, 0x00,  // start 1000
    0xe8, 0x03, 0x00, 0x00,  // end 1000
    0x05, 0x00, 0x16, 0x00,  // nla_len 5, FRA_IP_PROTO (22)
    0x06, 0x00, 0x00, 0x00,  // IPPROTO_TCP, padding
    0x08, 0x00, 0x18, 0x00,  // nla_len 8, FRA_DPORT_RANGE (24)
    0xbb, 0x01, 0xbb, 0x01,  // 443-443
    0x07, 0x00, 0x03, 0x00,  // nla_len 7, FRA_IIFNAME (3)
    'l',  'o',  0x00, 0x00,  // "lo", NUL, padding
    0x08, 0x00, 0x0f, 0x00,  // nla_len 8, FRA_TABLE (15)
    0x64, 0x00, 0x00, 0x00,  // 100
};

// RTM_NEWROUTE: "default nexthop via 192.0.2.1 dev 2 nexthop via 192.0.2.2 dev 5", IPv4, main.
const Bytes kMultipathRoute = {
    0x48, 0x00, 0x00, 0x00,  // nlmsg_len 72
    0x18, 0x00, 0x00, 0x00,  // RTM_NEWROUTE (24), flags 0
    0x00, 0x00, 0x00, 0x00,  // seq
    0x00, 0x00, 0x00, 0x00,  // pid
    0x02, 0x00, 0x00, 0x00,  // rtm_family AF_INET, dst_len 0, src_len 0, tos 0
    0xfe, 0x03, 0x00, 0x01,  // table main (254), protocol boot (3), scope universe, type unicast
    0x00, 0x00, 0x00, 0x00,  // rtm_flags
    0x08, 0x00, 0x0f, 0x00,  // nla_len 8, RTA_TABLE (15)
    0xfe, 0x00, 0x00, 0x00,  // 254
    0x24, 0x00, 0x09, 0x00,  // nla_len 36, RTA_MULTIPATH (9)
    0x10, 0x00, 0x00, 0x00,  // rtnh_len 16, rtnh_flags 0, rtnh_hops 0
    0x02, 0x00, 0x00, 0x00,  // rtnh_ifindex 2
    0x08, 0x00, 0x05, 0x00,  // nla_len 8, RTA_GATEWAY (5)
    0xc0, 0x00, 0x02, 0x01,  // 192.0.2.1
    0x10, 0x00, 0x00, 0x00,  // rtnh_len 16
    0x05, 0x00, 0x00, 0x00,  // rtnh_ifindex 5
    0x08, 0x00, 0x05, 0x00,  // nla_len 8, RTA_GATEWAY (5)
    0xc0, 0x00, 0x02, 0x02,  // 192.0.2.2
};

TEST_CASE("a rule's selectors, as the kernel sends them") {
  auto p = parse(kSelectorRule);
  REQUIRE(p.rejected.empty());
  auto r = std::get<Added<Rule>>(p.events.at(0)).value;
  CHECK(r.invert);
  REQUIRE(r.dst);
  CHECK(r.dst->str() == "192.168.0.0/16");
  CHECK(r.uid_range == std::pair<std::uint32_t, std::uint32_t>{1000, 1000});
  CHECK(r.ip_proto == 6);
  CHECK(r.dport == std::pair<std::uint16_t, std::uint16_t>{443, 443});
  CHECK(r.iif == "lo");
  CHECK(r.table == 100);
  CHECK(str(r) == "ipv4 100: not to 192.168.0.0/16 iif lo uidrange 1000-1000 ipproto 6 dport 443 lookup 100");
  // Wrong lengths are refused, not read past: a 2-byte uid range, a 4-byte protocol.
  CHECK_FALSE(parse(with(kSelectorRule, 44, {0x0a})).rejected.empty());
  CHECK_FALSE(parse(with(kSelectorRule, 56, {0x08})).rejected.empty());
}

TEST_CASE("a multipath route leaves by its first hop's device, and a hop that claims more than there is is refused") {
  auto p = parse(kMultipathRoute);
  REQUIRE(p.rejected.empty());
  auto r = std::get<Added<Route>>(p.events.at(0)).value;
  CHECK(r.is_default());
  CHECK(r.oif == IfIndex{2});
  CHECK_FALSE(parse(with(kMultipathRoute, 40, {0x30})).rejected.empty());  // rtnh_len 48 > 36
  CHECK_FALSE(parse(with(kMultipathRoute, 40, {0x04})).rejected.empty());  // rtnh_len 4 < 8
}

TEST_CASE("several messages in one datagram, DONE and ERROR included") {
  auto p = parse(cat({&kNewLink, &kNewAddr4, &kNewRoute4, &kDoneAndError}));
  REQUIRE(p.rejected.empty());
  REQUIRE(p.events.size() == 5);
  CHECK(std::holds_alternative<Done>(p.events[3]));
  CHECK(std::get<Ack>(p.events[4]).error == -16);
}

TEST_CASE("malformed messages are rejected with a reason, the rest still parsed") {
  struct Case {
    const char* what;
    Bytes bytes;
    const char* reason;  // a substring of the rejection
  };
  const Case cases[] = {
      {"nlmsg_len past the buffer", with(kNewLink, 0, {0xff}), "claims 255 bytes"},
      {"nlmsg_len below the header", with(kNewLink, 0, {0x08}), "claims 8 bytes"},
      {"attribute runs past the message", with(kNewLink, 32, {0x40}), "runs past the message"},
      {"attribute shorter than its header", with(kNewLink, 44, {0x02}), "has length 2"},
      {"ifname without NUL", with(kNewLink, 40, {'x'}), "not NUL-terminated"},
      {"link index 0", with(kNewLink, 20, {0x00}), "link index 0"},
      {"mtu of 3 bytes", with(kNewLink, 44, {0x07}), "IFLA_MTU has 3 bytes"},
      {"operstate of 2 bytes", with(kNewLink, 52, {0x06}), "IFLA_OPERSTATE has 2 bytes"},
      {"nested kind runs past its parent", with(kNewLink, 64, {0x20}), "runs past the message"},
      {"IPv4 address of 3 bytes", with(kNewAddr4, 24, {0x07}), "IFA_LOCAL has 3 bytes"},
      {"IPv4 prefix length 33", with(kNewAddr4, 17, {33}), "prefix length 33"},
      {"IPv6 address of 4 bytes", with(kNewAddr6, 24, {0x08}), "IFA_ADDRESS has 4 bytes"},
      {"address on index 0", with(kNewAddr4, 20, {0x00}), "index 0"},
      {"route gateway of 16 bytes in IPv4", with(kNewRoute4, 36, {0x0c}), "RTA_GATEWAY has 8 bytes"},
      {"route prefix length 40", with(kNewRoute4, 17, {40}), "route prefix length 40"},
      {"rule shorter than its header", with(Bytes(kNewRule.begin(), kNewRule.begin() + 24), 0, {0x18}),
       "shorter than fib_rule_hdr"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    // Each broken message is followed by a good one; it must still come through unless the
    // framing itself was broken (nothing after a bad nlmsg_len can be trusted).
    auto p = parse(cat({&c.bytes, &kNewAddr4}));
    REQUIRE(p.rejected.size() == 1);
    CHECK(p.rejected[0].find(c.reason) != std::string::npos);
    const bool framing = std::string(c.what).starts_with("nlmsg_len");
    CHECK(p.events.size() == (framing ? 0u : 1u));
  }
}

TEST_CASE("truncated buffers never read past the end") {
  const Bytes all = cat({&kNewLink, &kNewAddr4, &kNewAddr6, &kNewRoute4, &kNewRule});
  for (std::size_t n = 0; n <= all.size(); ++n) {
    // Copy into an exact-size heap buffer so a sanitizer would see any overread.
    std::vector<std::uint8_t> cut(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
    auto p = parse(cut);
    CHECK(p.events.size() <= 5);
  }
  CHECK(parse(all).events.size() == 5);  // whole, every message is read
}

TEST_CASE("unknown message types and families are skipped, not rejected") {
  // The controls: unchanged, each message is read.
  CHECK(parse(kNewLink).events.size() == 1);
  CHECK(parse(kNewAddr4).events.size() == 1);
  auto p = parse(with(kNewLink, 4, {0x99}));  // not an rtnetlink type we read
  CHECK(p.events.empty());
  CHECK(p.rejected.empty());
  auto q = parse(with(kNewAddr4, 16, {17}));  // AF_PACKET: neither IPv4 nor IPv6
  CHECK(q.events.empty());
  CHECK(q.rejected.empty());
}
