// The network model: events applied, interfaces classified, egress followed through policy rules
// (wg-quick's), and what changed between two models.
#include <doctest/doctest.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/rtnetlink.h>

#include "netwatch/model.hpp"

using namespace leakguard;
using namespace leakguard::netwatch;

namespace {

constexpr std::uint32_t kUpRunning = IFF_UP | IFF_RUNNING;

Link link(std::uint32_t index, std::string name, std::string kind, std::uint16_t type, std::uint32_t flags = kUpRunning) {
  Link l;
  l.index = IfIndex{index};
  l.name = std::move(name);
  l.kind = std::move(kind);
  l.type = type;
  l.flags = flags;
  l.mtu = 1500;
  return l;
}

Address addr(std::uint32_t index, const char* prefix) {
  Address a;
  a.index = IfIndex{index};
  a.prefix = *Prefix::parse(prefix);
  return a;
}

Route default_route(Family f, std::uint32_t oif, std::uint32_t table, std::uint32_t metric, const char* gw = nullptr) {
  Route r;
  r.family = f;
  r.table = table;
  r.dst = *Prefix::parse(f == Family::v4 ? "0.0.0.0/0" : "::/0");
  if (gw) r.gateway = *IpAddress::parse(gw);
  r.oif = IfIndex{oif};
  r.priority = metric;
  return r;
}

Route route(const char* dst, std::uint32_t oif) {
  Route r;
  r.dst = *Prefix::parse(dst);
  r.family = r.dst.address.family;
  r.oif = IfIndex{oif};
  return r;
}

Rule rule(Family f, std::uint32_t prio, std::uint32_t table) {
  Rule r;
  r.family = f;
  r.priority = prio;
  r.table = table;
  return r;
}

// The lab's host: lo, eth0 (veth standing in for hardware, carries the default route), wg0
// (wireguard-go: a plain tun) with wg-quick's fwmark routing, and a docker-style bridge.
NetModel host(bool tunnel = true) {
  NetModel m;
  m.apply(Added<Link>{link(1, "lo", "", ARPHRD_LOOPBACK, kUpRunning | IFF_LOOPBACK)});
  m.apply(Added<Link>{link(2, "eth0", "veth", ARPHRD_ETHER)});
  m.apply(Added<Link>{link(4, "docker0", "bridge", ARPHRD_ETHER)});
  m.apply(Added<Address>{addr(1, "127.0.0.1/8")});
  m.apply(Added<Address>{addr(2, "192.0.2.10/24")});
  m.apply(Added<Address>{addr(2, "2001:db8:2::10/64")});
  m.apply(Added<Address>{addr(4, "172.17.0.1/16")});
  m.apply(Added<Route>{default_route(Family::v4, 2, 254, 100, "192.0.2.1")});
  m.apply(Added<Route>{default_route(Family::v6, 2, 254, 1024, "2001:db8:2::1")});
  m.apply(Added<Route>{route("192.0.2.0/24", 2)});
  for (Family f : {Family::v4, Family::v6}) {
    m.apply(Added<Rule>{rule(f, 0, 255)});
    m.apply(Added<Rule>{rule(f, 32766, 254)});
  }
  if (tunnel) {
    m.apply(Added<Link>{link(3, "wg0", "tun", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
    m.apply(Added<Address>{addr(3, "100.64.0.2/24")});
    for (Family f : {Family::v4, Family::v6}) {
      m.apply(Added<Route>{default_route(f, 3, 51820, 0)});
      Rule wg = rule(f, 32764, 51820);
      wg.fwmark = 51820;
      wg.invert = true;
      m.apply(Added<Rule>{wg});
      Rule main = rule(f, 32765, 254);
      main.suppress_prefixlen = 0;
      m.apply(Added<Rule>{main});
    }
  }
  return m;
}

const Classifier kWg{{*IfnamePattern::parse("wg*")}};

}  // namespace

TEST_CASE("classification: loopback, tunnel by name only, physical uplink, other") {
  auto m = host();
  CHECK(m.classify(*m.link("lo"), kWg) == InterfaceClass::loopback);
  CHECK(m.classify(*m.link("wg0"), kWg) == InterfaceClass::tunnel);
  CHECK(m.classify(*m.link("eth0"), kWg) == InterfaceClass::physical);  // a veth, but it carries the default route
  CHECK(m.classify(*m.link("docker0"), kWg) == InterfaceClass::other);
  // Without a pattern, a wireguard-go tun is never guessed to be a tunnel: it carries a default
  // route, so it counts as an uplink that is firewalled (the safe side).
  CHECK(m.classify(*m.link("wg0"), Classifier{}) == InterfaceClass::physical);
  // Real hardware (Ethernet, no kind) is physical even without a route.
  m.apply(Added<Link>{link(9, "enp3s0", "", ARPHRD_ETHER, 0)});
  CHECK(m.classify(*m.link("enp3s0"), kWg) == InterfaceClass::physical);
}

TEST_CASE("egress follows wg-quick's rules: unmarked traffic into the tunnel, marked traffic out of eth0") {
  auto m = host();
  CHECK(m.egress(Family::v4) == IfIndex{3});
  CHECK(m.egress(Family::v6) == IfIndex{3});
  CHECK(m.egress(Family::v4, 51820) == IfIndex{2});
  auto down = host(false);
  CHECK(down.egress(Family::v4) == IfIndex{2});
  CHECK(down.egress(Family::v6) == IfIndex{2});
  NetModel empty;
  CHECK(empty.egress(Family::v4) == IfIndex{});
}

TEST_CASE("an uplink is known by its default routes as they come and go, among a full routing table") {
  NetModel m;
  m.apply(Added<Link>{link(2, "eth0", "", ARPHRD_ETHER)});
  m.apply(Added<Link>{link(7, "veth7", "veth", ARPHRD_ETHER)});
  // A router's table: 60,000 routes via eth0, with prefixes that sort beside the ways out (0.0.0.0/8,
  // 128.0.0.0/2) - none of them a way to everything.
  for (std::uint32_t i = 0; i < 60000; ++i) {
    Route r = route("10.0.0.0/24", 2);
    r.dst.address.bytes[0] = static_cast<std::uint8_t>(11 + (i >> 16));
    r.dst.address.bytes[1] = static_cast<std::uint8_t>(i >> 8);
    r.dst.address.bytes[2] = static_cast<std::uint8_t>(i);
    m.apply(Added<Route>{r});
  }
  m.apply(Added<Route>{route("0.0.0.0/8", 7)});
  m.apply(Added<Route>{route("128.0.0.0/2", 7)});
  CHECK(m.routes().size() == 60002);
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::other);
  CHECK(m.egress(Family::v4) == IfIndex{});  // no way out: no default, no pair of /1
  // The veth carries a default route (a container host's uplink): physical; two, then one, then none.
  m.apply(Added<Route>{default_route(Family::v4, 7, 254, 100)});
  m.apply(Added<Route>{default_route(Family::v4, 7, 100, 100)});
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::physical);
  CHECK(m.egress(Family::v4) == IfIndex{7});
  m.apply(Removed<Route>{default_route(Family::v4, 7, 254, 100)});
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::physical);
  m.apply(Removed<Route>{default_route(Family::v4, 7, 100, 100)});
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::other);
  // The same route announced twice, then gone with its link going down (IPv4), or removed.
  m.apply(Added<Route>{default_route(Family::v4, 7, 254, 100)});
  m.apply(Added<Route>{default_route(Family::v4, 7, 254, 100)});
  auto down = *m.link("veth7");
  down.flags = 0;
  m.apply(Added<Link>{down});
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::other);
  m.apply(Added<Link>{link(7, "veth7", "veth", ARPHRD_ETHER)});
  m.apply(Added<Route>{default_route(Family::v6, 7, 254, 100)});
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::physical);
  m.apply(Removed<Link>{*m.link("veth7")});
  m.apply(Added<Link>{link(7, "veth7", "veth", ARPHRD_ETHER)});
  CHECK(m.classify(*m.link("veth7"), kWg) == InterfaceClass::other);
  // A pair of /1 routes among them is the way out, as before.
  m.apply(Added<Route>{route("0.0.0.0/1", 7)});
  m.apply(Added<Route>{route("128.0.0.0/1", 7)});
  CHECK(m.egress(Family::v4) == IfIndex{7});

  // Defaults of other types beside the unicast one (a blackhole with a better metric, an
  // unreachable): not a way out, whatever their place in the order; IPv6 the same, /1 pair too.
  NetModel v6;
  v6.apply(Added<Link>{link(2, "eth0", "", ARPHRD_ETHER)});
  v6.apply(Added<Link>{link(6, "tun0", "tun", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  for (Family f : {Family::v4, Family::v6}) {
    Route hole = default_route(f, 0, 254, 1);
    hole.type = RTN_BLACKHOLE;
    Route unreachable = default_route(f, 0, 254, 2);
    unreachable.type = RTN_UNREACHABLE;
    v6.apply(Added<Route>{hole});
    v6.apply(Added<Route>{unreachable});
    CHECK(v6.egress(f) == IfIndex{});
    v6.apply(Added<Route>{default_route(f, 2, 254, 100)});
    CHECK(v6.egress(f) == IfIndex{2});
  }
  v6.apply(Added<Route>{route("::/1", 6)});
  CHECK(v6.egress(Family::v6) == IfIndex{2});  // one half only: the default route's is reported
  v6.apply(Added<Route>{route("8000::/2", 6)});  // not a half
  CHECK(v6.egress(Family::v6) == IfIndex{2});
  v6.apply(Added<Route>{route("8000::/1", 6)});
  CHECK(v6.egress(Family::v6) == IfIndex{6});
  CHECK(v6.egress(Family::v4) == IfIndex{2});
}

TEST_CASE("an IPv6 route replaced with another next hop takes the old one's place (the kernel sends no delete)") {
  NetModel m;
  m.apply(Added<Link>{link(2, "eth0", "", ARPHRD_ETHER)});
  m.apply(Added<Link>{link(3, "wg0", "wireguard", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  m.apply(Added<Route>{default_route(Family::v6, 2, 254, 100, "2001:db8:2::1")});
  // `ip -6 route replace default dev wg0 metric 100`: one RTM_NEWROUTE with NLM_F_REPLACE.
  m.apply(Added<Route>{default_route(Family::v6, 3, 254, 100), true});
  CHECK(m.default_routes(Family::v6).size() == 1);
  CHECK(m.egress(Family::v6) == IfIndex{3});
  CHECK(m.classify(*m.link("eth0"), Classifier{}) == InterfaceClass::physical);  // hardware, whatever its routes
  // The control: without the flag (`ip -6 route append`, an equal-cost sibling) both stand.
  m.apply(Added<Route>{default_route(Family::v6, 2, 254, 100, "2001:db8:2::1")});
  CHECK(m.default_routes(Family::v6).size() == 2);
  // Another metric is another route, replace or not.
  m.apply(Added<Route>{default_route(Family::v6, 2, 254, 200, "2001:db8:2::1"), true});
  CHECK(m.default_routes(Family::v6).size() == 3);
}

TEST_CASE("egress without rule information uses the main table's best metric") {
  NetModel m;
  m.apply(Added<Link>{link(2, "eth0", "", ARPHRD_ETHER)});
  m.apply(Added<Link>{link(5, "wlan0", "", ARPHRD_ETHER)});
  m.apply(Added<Route>{default_route(Family::v4, 5, 254, 600)});
  m.apply(Added<Route>{default_route(Family::v4, 2, 254, 100)});
  CHECK(m.egress(Family::v4) == IfIndex{2});
  CHECK(m.default_routes(Family::v4).front().oif == IfIndex{2});
}

TEST_CASE("a link going down loses its IPv4 routes, a removed link everything") {
  auto m = host();
  auto eth0 = *m.link("eth0");
  eth0.flags = 0;
  m.apply(Added<Link>{eth0});
  CHECK(m.default_routes(Family::v4).size() == 1);  // only the tunnel's, in table 51820
  CHECK(m.default_routes(Family::v6).size() == 2);  // IPv6 keeps its routes (the kernel sends deletes)
  m.apply(Removed<Link>{eth0});
  CHECK(m.link("eth0") == nullptr);
  CHECK(m.addresses_of(IfIndex{2}).empty());
  CHECK(m.default_routes(Family::v6).size() == 1);
}

TEST_CASE("events are idempotent: an add seen twice, a delete of something unknown") {
  auto m = host();
  auto before = m;
  m.apply(Added<Address>{addr(2, "192.0.2.10/24")});
  m.apply(Added<Route>{default_route(Family::v4, 2, 254, 100, "192.0.2.1")});
  CHECK(m == before);
  m.apply(Removed<Address>{addr(2, "198.51.100.7/24")});
  CHECK(m == before);
  // A route replaced (same key, new gateway) is one route, not two.
  m.apply(Added<Route>{default_route(Family::v4, 2, 254, 100, "192.0.2.254"), true});
  CHECK(m.default_routes(Family::v4).size() == 2);
}

TEST_CASE("link_lost names a link that goes down or away, and nothing else") {
  const NetModel m = host();
  const Link wg = *m.link("wg0");
  Link down = wg;
  down.flags &= ~static_cast<std::uint32_t>(IFF_UP);
  Link no_carrier = wg;
  no_carrier.flags &= ~static_cast<std::uint32_t>(IFF_RUNNING);
  no_carrier.operstate = 2;  // IF_OPER_DOWN
  CHECK(link_lost(m, Added<Link>{down}) == "wg0");
  CHECK(link_lost(m, Added<Link>{no_carrier}) == "wg0");
  CHECK(link_lost(m, Removed<Link>{wg}) == "wg0");
  CHECK(link_lost(m, Added<Link>{wg}).empty());  // unchanged: still up
  Link mtu = wg;
  mtu.mtu = 1420;
  CHECK(link_lost(m, Added<Link>{mtu}).empty());
  CHECK(link_lost(host(false), Removed<Link>{wg}).empty());         // not there before
  NetModel was_down = m;
  was_down.apply(Added<Link>{down});
  CHECK(link_lost(was_down, Removed<Link>{wg}).empty());            // already down: nothing lost now
  CHECK(link_lost(m, Removed<Address>{addr(3, "100.64.0.2/24")}).empty());
  CHECK(link_lost(m, Removed<Route>{default_route(Family::v4, 3, 51820, 0)}).empty());
}

TEST_CASE("urgent: a tunnel's link lost, an address new on a tunnel, a new policy rule - nothing else") {
  const NetModel m = host();
  auto tunnel = [](const std::string& n) { return n == "wg0"; };
  Link down = *m.link("wg0");
  down.flags &= ~static_cast<std::uint32_t>(IFF_UP);
  CHECK(urgent(m, Added<Link>{down}, tunnel));
  CHECK_FALSE(urgent(m, Added<Link>{down}, [](const std::string&) { return false; }));  // not a tunnel
  // The tunnel's address, new: until the block knows it, it answers on eth0 (CVE-2019-14899).
  CHECK(urgent(m, Added<Address>{addr(3, "100.64.0.9/24")}, tunnel));
  Address known = addr(3, "100.64.0.2/24");
  REQUIRE(m.addresses().contains(known));
  CHECK_FALSE(urgent(m, Added<Address>{known}, tunnel));  // already there
  known.flags |= 0x80;                                     // only its flags changed (IFA_F_PERMANENT)
  CHECK_FALSE(urgent(m, Added<Address>{known}, tunnel));
  CHECK_FALSE(urgent(m, Added<Address>{addr(2, "192.0.2.11/24")}, tunnel));  // eth0's: no hurry
  CHECK_FALSE(urgent(m, Removed<Address>{addr(3, "100.64.0.2/24")}, tunnel));
  // A new policy rule may send a family around the tunnel: escalation should not wait.
  Rule r;
  r.family = Family::v4;
  r.priority = 100;
  r.table = 254;
  CHECK(urgent(m, Added<Rule>{r}, tunnel));
  NetModel with = m;
  with.apply(Added<Rule>{r});
  CHECK_FALSE(urgent(with, Added<Rule>{r}, tunnel));  // the same rule again
  CHECK_FALSE(urgent(m, Removed<Rule>{r}, tunnel));
  CHECK_FALSE(urgent(m, Added<Route>{default_route(Family::v4, 2, 254, 100, "192.0.2.254")}, tunnel));
}

TEST_CASE("diff names what changed, once") {
  auto a = host(false);
  auto b = host(true);
  auto changes = diff(a, b);
  std::vector<std::string> texts;
  for (const auto& c : changes) texts.push_back(std::string(to_string(c.kind)) + ": " + c.text);
  CHECK(texts == std::vector<std::string>{
                     "link-added: wg0 added (tun)",
                     "address-added: 100.64.0.2/24 added on wg0",
                     "default-route-changed: ipv4 default route: via 192.0.2.1 dev eth0 metric 100 -> "
                     "via 192.0.2.1 dev eth0 metric 100, dev wg0 table 51820",
                     "default-route-changed: ipv6 default route: via 2001:db8:2::1 dev eth0 metric 1024 -> "
                     "via 2001:db8:2::1 dev eth0 metric 1024, dev wg0 table 51820",
                     "rule-changed: ipv4 rules: +2 -0",
                     "rule-changed: ipv6 rules: +2 -0",
                 });
  CHECK(diff(b, b).empty());
  auto c = b;
  auto wg = *c.link("wg0");
  wg.flags = 0;
  c.apply(Added<Link>{wg});
  auto d = diff(b, c);
  REQUIRE(!d.empty());
  CHECK(d.front().kind == Change::Kind::link_down);
  CHECK(d.front().text == "wg0 down");
}

TEST_CASE("the model in text and JSON") {
  auto m = host();
  auto j = to_json(m, kWg);
  CHECK(j["egress"]["ipv4"] == "wg0");
  CHECK(j["links"].size() == 4);
  CHECK(j["links"][1]["name"] == "eth0");
  CHECK(j["links"][1]["class"] == "physical");
  CHECK(j["links"][1]["addresses"].size() == 2);
  auto t = to_text(m, kWg);
  CHECK(t.find("wg0 (tunnel, tun) up") != std::string::npos);
  CHECK(t.find("ipv6 traffic leaves via wg0") != std::string::npos);
  CHECK(t.find("    2001:db8:2::10/64 scope global") != std::string::npos);
}

TEST_CASE("egress: OpenVPN's redirect-gateway def1 (two /1 routes beside the default) takes the internet into the tunnel") {
  auto m = host(false);
  m.apply(Added<Link>{link(6, "tun0", "tun", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  CHECK(m.egress(Family::v4) == IfIndex{2});
  m.apply(Added<Route>{route("0.0.0.0/1", 6)});
  // One half only: the internet leaves two ways; the default route's is reported.
  CHECK(m.egress(Family::v4) == IfIndex{2});
  m.apply(Added<Route>{route("128.0.0.0/1", 6)});
  CHECK(m.egress(Family::v4) == IfIndex{6});
  CHECK(m.egress(Family::v6) == IfIndex{2});  // IPv4's routes say nothing of IPv6
  m.apply(Added<Route>{route("::/1", 6)});
  m.apply(Added<Route>{route("8000::/1", 6)});
  CHECK(m.egress(Family::v6) == IfIndex{6});
  // wg-quick's suppress_prefixlength 0 (its rule comes before "not fwmark" in the real order)
  // hides only /0: /1 routes in main still win before its table.
  auto wg = host(true);
  CHECK(wg.egress(Family::v4) == IfIndex{3});
  for (Family f : {Family::v4, Family::v6}) {
    Rule main = rule(f, 100, 254);
    main.suppress_prefixlen = 0;
    wg.apply(Added<Rule>{main});
  }
  CHECK(wg.egress(Family::v4) == IfIndex{3});
  wg.apply(Added<Link>{link(6, "tun0", "tun", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  wg.apply(Added<Route>{route("0.0.0.0/1", 6)});
  wg.apply(Added<Route>{route("128.0.0.0/1", 6)});
  CHECK(wg.egress(Family::v4) == IfIndex{6});
}

TEST_CASE("egress: rules for a source, a destination or a device do not decide where the internet goes") {
  // A LAN excluded from the tunnel (`ip rule add to 192.0.2.0/24 lookup main`): the internet
  // still goes into the tunnel.
  auto m = host(true);
  Rule lan = rule(Family::v4, 100, 254);
  lan.dst = *Prefix::parse("192.0.2.0/24");
  m.apply(Added<Rule>{lan});
  CHECK(m.egress(Family::v4) == IfIndex{3});
  // The other way round: only traffic from the tunnel's address goes to its table, and
  // wg-quick's catch-all rule is gone: the internet leaves via eth0, whatever the `from` rule says.
  auto src = host(true);
  Rule catch_all = rule(Family::v4, 32764, 51820);
  catch_all.fwmark = 51820;
  catch_all.invert = true;
  src.apply(Removed<Rule>{catch_all});
  Rule from = rule(Family::v4, 100, 51820);
  from.src = *Prefix::parse("100.64.0.2/32");
  src.apply(Added<Rule>{from});
  CHECK(src.egress(Family::v4) == IfIndex{2});
  // Device rules: an oif rule is for sockets bound to it, an iif rule for what comes in there
  // (lo's is locally sent traffic's).
  auto dev = host(false);
  Rule oif = rule(Family::v4, 100, 51820);
  oif.oif = "wg0";
  Rule fwd = rule(Family::v4, 101, 51820);
  fwd.iif = "docker0";
  dev.apply(Added<Link>{link(3, "wg0", "tun", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  dev.apply(Added<Route>{default_route(Family::v4, 3, 51820, 0)});
  dev.apply(Added<Rule>{oif});
  dev.apply(Added<Rule>{fwd});
  CHECK(dev.egress(Family::v4) == IfIndex{2});
  Rule local = rule(Family::v4, 102, 51820);
  local.iif = "lo";
  dev.apply(Added<Rule>{local});
  CHECK(dev.egress(Family::v4) == IfIndex{3});
  // Two rules that differ only by their selector are two rules (one removed leaves the other).
  dev.apply(Removed<Rule>{fwd});
  CHECK(dev.rules().size() == host(false).rules().size() + 2);
}

TEST_CASE("side egresses: a rule for some users, protocols or ports that sends them around the tunnel") {
  auto m = host(true);
  CHECK(m.side_egresses(Family::v4).empty());
  Rule user = rule(Family::v4, 100, 254);
  user.uid_range = std::pair<std::uint32_t, std::uint32_t>{1000, 1000};
  m.apply(Added<Rule>{user});
  CHECK(m.egress(Family::v4) == IfIndex{3});  // everyone else: the tunnel
  auto side = m.side_egresses(Family::v4);
  REQUIRE(side.size() == 1);
  CHECK(side[0].selector == "uidrange 1000-1000");
  CHECK(side[0].oif == IfIndex{2});
  CHECK(m.side_egresses(Family::v6).empty());
  // A selective rule after the one that decides is never reached; one into the same table is no side way.
  auto late = host(true);
  Rule after = rule(Family::v6, 40000, 254);
  after.ip_proto = 6;
  after.dport = std::pair<std::uint16_t, std::uint16_t>{443, 443};
  late.apply(Added<Rule>{after});
  CHECK(late.side_egresses(Family::v6).empty());
  Rule same = rule(Family::v6, 100, 51820);
  same.ip_proto = 17;
  late.apply(Added<Rule>{same});
  CHECK(late.side_egresses(Family::v6).empty());
  Rule early = after;
  early.priority = 50;
  late.apply(Added<Rule>{early});
  side = late.side_egresses(Family::v6);
  REQUIRE(side.size() == 1);
  CHECK(side[0].selector == "ipproto 6 dport 443");
  // In JSON, beside the egress.
  const auto j = to_json(m, kWg);
  CHECK(j["side_egress"]["ipv4"] == nlohmann::json::parse(R"([{"selector":"uidrange 1000-1000","interface":"eth0"}])"));
  CHECK(j["side_egress"]["ipv6"].empty());
}

TEST_CASE("egress: an inverted rule with a selector matches everything its selectors do not all select") {
  // "Tunnel all but the LAN", by hand: `ip rule add not to 192.168.0.0/16 lookup 51820`.
  auto m = host(false);
  m.apply(Added<Link>{link(3, "wg0", "tun", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  m.apply(Added<Route>{default_route(Family::v4, 3, 51820, 0)});
  CHECK(m.egress(Family::v4) == IfIndex{2});  // the control: no rule to table 51820 yet
  Rule not_lan = rule(Family::v4, 100, 51820);
  not_lan.dst = *Prefix::parse("192.168.0.0/16");
  not_lan.invert = true;
  m.apply(Added<Rule>{not_lan});
  CHECK(m.egress(Family::v4) == IfIndex{3});
  // Everyone but uid 1000 out of eth0 (`not uidrange 1000-1000 lookup main` before the tunnel's
  // rule): the internet leaves via eth0 for them.
  auto u = host(true);
  Rule not_user = rule(Family::v4, 100, 254);
  not_user.uid_range = std::pair<std::uint32_t, std::uint32_t>{1000, 1000};
  not_user.invert = true;
  u.apply(Added<Rule>{not_user});
  CHECK(u.egress(Family::v4) == IfIndex{2});
  CHECK(u.side_egresses(Family::v4).empty());  // uid 1000's way (later rules) is not followed
  // A rule for a TOS, a realm, a tunnel id or a selector this model does not know decides nothing.
  for (auto tweak : {+[](Rule& r) { r.tos = 0x10; }, +[](Rule& r) { r.flow = 7; }, +[](Rule& r) { r.tun_id = 5; },
                     +[](Rule& r) { r.other = {26}; }}) {
    auto t = host(true);
    Rule main_first = rule(Family::v4, 100, 254);
    tweak(main_first);
    t.apply(Added<Rule>{main_first});
    CHECK(t.egress(Family::v4) == IfIndex{3});
  }
}
