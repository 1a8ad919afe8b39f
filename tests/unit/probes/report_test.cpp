// The report's rules: which reflexive addresses are leaks, which host addresses are exposed, the
// tunnel exits, and the text/JSON/ICE forms. Pure: hand-made interfaces and probe results.
#include <doctest/doctest.h>

#include <cerrno>
#include <optional>
#include <sstream>

#include "probes/report.hpp"

using namespace leakguard;
using namespace leakguard::probes;
using namespace std::chrono_literals;
using Class = InterfaceClass;

namespace {

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

const std::vector<Interface> kInterfaces = {
    {"lo", IfIndex{1}, Class::loopback, {ip("127.0.0.1"), ip("::1")}},
    {"eth0", IfIndex{2}, Class::physical, {ip("192.0.2.10"), ip("2001:db8:2::10"), ip("fe80::1")}},
    {"wg0", IfIndex{3}, Class::tunnel, {ip("100.64.0.2"), ip("2001:db8:100::2")}},
};

ProbeResult bound(const char* itf, Class cls, const char* source, Outcome o, const char* server = "203.0.113.3:3478/udp") {
  ProbeResult p;
  p.interface = itf;
  p.cls = cls;
  p.source = ip(source);
  p.family = p.source->family;
  p.local_port = 40000;
  p.server = server;
  p.outcome = std::move(o);
  return p;
}

ProbeResult routed(Family f, Outcome o, const char* arrival = "", std::optional<Class> arrival_class = std::nullopt) {
  ProbeResult p;
  p.routed = true;
  p.family = f;
  p.server = f == Family::v4 ? "203.0.113.3:3478/udp" : "[2001:db8:3::3]:3478/udp";
  p.outcome = std::move(o);
  p.arrival_interface = arrival;
  p.arrival_class = arrival_class;
  p.local_port = 40001;
  return p;
}

Outcome seen(const char* address, std::uint16_t port = 50000) { return Reflexive{{ip(address), port}, false, 3ms, 1}; }

// The fields of `candidate:FOUNDATION 1 udp PRIORITY ADDRESS PORT typ TYPE [raddr ADDRESS rport
// PORT]`, single spaces, numbers where numbers belong; nothing for a line of another shape.
// (Split by hand: std::regex trips GCC 12's -Wmaybe-uninitialized in the sanitized build.)
struct IceLine {
  std::string foundation, priority, address, port, type, raddr, rport;
};
std::optional<IceLine> parse_ice(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> w;
  std::string joined;
  for (std::string x; in >> x;) {
    joined += (joined.empty() ? "" : " ") + x;
    w.push_back(x);
  }
  auto number = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; };
  if (joined != line || (w.size() != 8 && w.size() != 12)) return std::nullopt;
  if (!w[0].starts_with("candidate:") || !number(w[0].substr(10)) || w[1] != "1" || w[2] != "udp" || !number(w[3]) ||
      !number(w[5]) || w[6] != "typ")
    return std::nullopt;
  IceLine l{w[0].substr(10), w[3], w[4], w[5], w[7], "", ""};
  if (w.size() == 12) {
    if (w[8] != "raddr" || w[10] != "rport" || !number(w[11])) return std::nullopt;
    l.raddr = w[9];
    l.rport = w[11];
  }
  return l;
}

}  // namespace

TEST_CASE("a reflexive address through a physical interface is a leak, through the tunnel it is the exit") {
  auto r = make_report(kInterfaces,
                       {bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2")),
                        bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66"))},
                       10ms);
  CHECK(r.verdict == Verdict::leak);
  REQUIRE(r.leaks.size() == 1);
  CHECK(r.leaks[0].interface == "eth0");
  CHECK(r.leaks[0].reflexive.address == ip("203.0.113.2"));
  CHECK(r.leaks[0].server == "203.0.113.3:3478/udp");
  CHECK_FALSE(r.leaks[0].routed);
  CHECK(r.exits4 == std::vector<IpAddress>{ip("203.0.113.66")});
  CHECK(r.exits6.empty());
  CHECK(r.summary().rfind("leak: 203.0.113.2 seen by 203.0.113.3:3478/udp through eth0", 0) == 0);
}

TEST_CASE("TCP from a device-bound socket is an exposure in udp policy and a leak in strict, UDP and routed TCP are leaks") {
  auto tcp = [](ProbeResult p) {
    p.transport = Transport::tcp;
    p.server = p.family == Family::v4 ? "203.0.113.3:3478/tcp" : "[2001:db8:3::3]:3478/tcp";
    return p;
  };
  const std::vector<ProbeResult> both_tunnelled{tcp(bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2"))),
                                                tcp(bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66"))),
                                                tcp(routed(Family::v4, seen("203.0.113.66"), "wg0", Class::tunnel))};
  // udp policy (or no block known): what only a device-bound socket reaches is not a page's leak.
  auto r = make_report(kInterfaces, both_tunnelled, 5ms);
  CHECK(r.verdict == Verdict::ok);
  CHECK(r.leaks.empty());
  REQUIRE(r.exposures.size() == 1);
  CHECK(r.exposures[0].interface == "eth0");
  CHECK(r.exposures[0].reflexive.address == ip("203.0.113.2"));
  CHECK(r.exposures[0].server == "203.0.113.3:3478/tcp");
  CHECK(r.summary().rfind("ok: TCP via eth0 reaches 203.0.113.3:3478/tcp outside the tunnel", 0) == 0);
  CHECK(to_text(r).find("<- exposure") != std::string::npos);
  const auto j = to_json(r);
  CHECK(j["exposures"].size() == 1);
  CHECK(j["leaks"].empty());
  CHECK(j["interfaces"][0]["verdict"] == "exposure");
  // strict: every packet outside the tunnel should be refused, so the same answer is a leak.
  ReportOptions strict;
  strict.strict = true;
  auto s = make_report(kInterfaces, both_tunnelled, 5ms, strict);
  CHECK(s.verdict == Verdict::leak);
  CHECK(s.exposures.empty());
  REQUIRE(s.leaks.size() == 1);
  CHECK(s.leaks[0].interface == "eth0");
  // UDP from the same socket is a leak in either policy (the block covers UDP in both).
  auto u = make_report(kInterfaces, {bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2"))}, 5ms);
  CHECK(u.verdict == Verdict::leak);
  CHECK(u.exposures.empty());
  // TCP that a page's own socket gets out (IPv6 not tunnelled: the route goes via eth0) is a leak
  // in udp policy too: the TURN-over-TCP leak.
  auto v6 = make_report(kInterfaces,
                        {tcp(bound("eth0", Class::physical, "2001:db8:2::10", seen("2001:db8:2::10"))),
                         tcp(routed(Family::v6, seen("2001:db8:2::10"), "eth0", Class::physical))},
                        5ms);
  CHECK(v6.verdict == Verdict::leak);
  REQUIRE(v6.leaks.size() == 1);
  CHECK(v6.leaks[0].routed);
  CHECK(v6.leaks[0].family == Family::v6);
  CHECK(v6.exposures.size() == 1);  // and the device-bound one beside it
}

TEST_CASE("an 'other' interface (bridge, container veth) counts as outside the tunnel") {
  auto r = make_report({{"docker0", IfIndex{4}, Class::other, {ip("172.17.0.1")}}},
                       {bound("docker0", Class::other, "172.17.0.1", seen("203.0.113.2"))}, 1ms);
  CHECK(r.verdict == Verdict::leak);
}

TEST_CASE("blocked, timed-out, failed and error probes never make a leak") {
  auto r = make_report(kInterfaces,
                       {bound("eth0", Class::physical, "192.0.2.10", Blocked{EPERM}),
                        bound("eth0", Class::physical, "2001:db8:2::10", TimedOut{3}),
                        bound("eth0", Class::physical, "192.0.2.10", ServerError{{500, "Server Error"}, {}}),
                        bound("eth0", Class::physical, "192.0.2.10", LocalFailure{"bind to device", ENODEV, "gone"}),
                        routed(Family::v4, Blocked{EPERM}), routed(Family::v6, TimedOut{2}),
                        bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66"))},
                       5ms);
  CHECK(r.verdict == Verdict::ok);
  CHECK(r.leaks.empty());
  CHECK(r.summary().find("7 probes (2 blocked, 1 error, 1 failed, 1 reflexive, 2 timeout)") != std::string::npos);
}

TEST_CASE("the routed probe: through the tunnel with the exit address is fine") {
  auto r = make_report(kInterfaces,
                       {bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66")),
                        routed(Family::v4, seen("203.0.113.66"), "wg0", Class::tunnel)},
                       1ms);
  CHECK(r.verdict == Verdict::ok);
}

TEST_CASE("the routed probe: an answer that came in through eth0 is a leak, whatever the address") {
  auto r = make_report(kInterfaces,
                       {bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66")),
                        routed(Family::v4, seen("203.0.113.66"), "eth0", Class::physical)},
                       1ms);
  CHECK(r.verdict == Verdict::leak);
  REQUIRE(r.leaks.size() == 1);
  CHECK(r.leaks[0].routed);
  CHECK(r.leaks[0].interface == "eth0");
  CHECK(r.leaks[0].why.find("came in through eth0") != std::string::npos);
}

TEST_CASE("the routed probe: a server on this machine (answer through loopback) is no leak") {
  auto r = make_report(kInterfaces, {routed(Family::v4, seen("127.0.0.1"), "lo", Class::loopback)}, 1ms);
  CHECK(r.verdict == Verdict::ok);
}

TEST_CASE("the routed probe: an address that is not the tunnel exit is a leak") {
  auto r = make_report(kInterfaces,
                       {bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66")),
                        routed(Family::v4, seen("203.0.113.2"), "wg0", Class::tunnel)},
                       1ms);
  CHECK(r.verdict == Verdict::leak);
  CHECK(r.leaks.at(0).why.find("not as the tunnel exit 203.0.113.66") != std::string::npos);
}

TEST_CASE("the routed probe: exits are compared per family") {
  // An IPv6 exit says nothing about IPv4: with no IPv4 exit known and the path unknown, it is a leak.
  auto r = make_report(kInterfaces,
                       {bound("wg0", Class::tunnel, "2001:db8:100::2", seen("2001:db8:3::66")),
                        routed(Family::v4, seen("203.0.113.66"))},
                       1ms);
  CHECK(r.verdict == Verdict::leak);
  // The path known to be the tunnel, no exit known (the tunnel-bound probe timed out): not a leak.
  auto t = make_report(kInterfaces,
                       {bound("wg0", Class::tunnel, "100.64.0.2", TimedOut{2}),
                        routed(Family::v4, seen("203.0.113.66"), "wg0", Class::tunnel)},
                       1ms);
  CHECK(t.verdict == Verdict::ok);
  // Path unknown but the address is the exit: not a leak.
  auto u = make_report(kInterfaces,
                       {bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66")),
                        routed(Family::v4, seen("203.0.113.66"))},
                       1ms);
  CHECK(u.verdict == Verdict::ok);
}

TEST_CASE("public ranges per RFC 6890, documentation ranges only when asked") {
  CHECK_FALSE(is_public(ip("10.1.2.3")));
  CHECK_FALSE(is_public(ip("172.16.0.1")));
  CHECK_FALSE(is_public(ip("172.31.255.255")));
  CHECK_FALSE(is_public(ip("192.168.1.1")));
  CHECK_FALSE(is_public(ip("100.64.0.2")));   // shared address space (CGN, many VPNs)
  CHECK_FALSE(is_public(ip("169.254.1.1")));
  CHECK_FALSE(is_public(ip("127.0.0.1")));
  CHECK_FALSE(is_public(ip("198.18.0.1")));   // benchmarking
  CHECK_FALSE(is_public(ip("fd00::1")));      // ULA
  CHECK_FALSE(is_public(ip("fe80::1")));
  CHECK_FALSE(is_public(ip("::1")));
  CHECK_FALSE(is_public(ip("2001:2::1")));    // benchmarking
  CHECK_FALSE(is_public(ip("192.0.2.10")));
  CHECK_FALSE(is_public(ip("2001:db8:2::10")));
  const ReportOptions lab{.documentation_is_public = true};
  CHECK(is_public(ip("192.0.2.10"), lab));
  CHECK(is_public(ip("203.0.113.2"), lab));
  CHECK(is_public(ip("2001:db8:2::10"), lab));
  CHECK_FALSE(is_public(ip("10.0.0.1"), lab));
  CHECK_FALSE(is_public(ip("fd00::1"), lab));
  CHECK(is_public(ip("172.32.0.1")));  // just outside 172.16/12
}

TEST_CASE("exposed-host: a public address on a physical interface that no probe showed translated") {
  const ReportOptions lab{.documentation_is_public = true};
  // Everything blocked (a working kill switch), IPv6 on eth0 is global: pages can still read it.
  auto r = make_report(kInterfaces,
                       {bound("eth0", Class::physical, "192.0.2.10", Blocked{EPERM}),
                        bound("eth0", Class::physical, "2001:db8:2::10", Blocked{EPERM}),
                        bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66")),
                        bound("wg0", Class::tunnel, "2001:db8:100::2", seen("2001:db8:3::66"))},
                       1ms, lab);
  CHECK(r.verdict == Verdict::exposed_host);
  auto exposed = r.exposed();
  REQUIRE(exposed.size() == 2);
  CHECK(exposed[0].address == ip("192.0.2.10"));
  CHECK(exposed[1].address == ip("2001:db8:2::10"));
  CHECK(r.summary().rfind("exposed-host: 192.0.2.10 on eth0 is readable by pages", 0) == 0);
  // The tunnel's own addresses never count, even when public.
  for (const auto& h : r.hosts)
    if (h.interface == "wg0") CHECK_FALSE(h.exposed);

  // A server that saw eth0's IPv4 as another address (NAT) shows it is not the public one.
  auto nat = make_report(kInterfaces,
                         {bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2")),
                          bound("eth0", Class::physical, "2001:db8:2::10", Blocked{EPERM})},
                         1ms, lab);
  CHECK(nat.verdict == Verdict::leak);  // leak outranks exposed-host
  for (const auto& h : nat.hosts) {
    if (h.address == ip("192.0.2.10")) CHECK_FALSE(h.exposed);
    if (h.address == ip("2001:db8:2::10")) CHECK(h.exposed);
  }
  // By default (RFC 6890) documentation addresses are not public: the same round is ok.
  CHECK(make_report(kInterfaces, {bound("eth0", Class::physical, "2001:db8:2::10", Blocked{EPERM})}, 1ms).verdict ==
        Verdict::ok);
}

TEST_CASE("host candidates: no loopback, no IPv6 link-local, the probe socket's port") {
  auto r = make_report(kInterfaces, {bound("eth0", Class::physical, "192.0.2.10", Blocked{EPERM})}, 1ms);
  std::vector<std::string> seen_hosts;
  for (const auto& h : r.hosts) seen_hosts.push_back(h.interface + " " + h.address.str() + " " + std::to_string(h.port));
  CHECK(seen_hosts == std::vector<std::string>{"eth0 192.0.2.10 40000", "eth0 2001:db8:2::10 9", "wg0 100.64.0.2 9",
                                               "wg0 2001:db8:100::2 9"});
}

TEST_CASE("ICE candidate lines look like a browser's") {
  auto r = make_report(kInterfaces,
                       {bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2", 61000)),
                        bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66", 62000))},
                       1ms);
  auto lines = ice_candidates(r);
  REQUIRE(lines.size() == 4 + 2);
  const auto host = parse_ice(lines[0]);
  REQUIRE_MESSAGE(host, lines[0]);
  CHECK(host->type == "host");
  CHECK(host->address == "192.0.2.10");
  CHECK(host->port == "40000");
  // RFC 8445 §5.1.2.1: host type preference 126, first local preference 65535, component 1.
  CHECK(host->priority == std::to_string((126u << 24) + (65535u << 8) + 255u));
  const auto srflx = parse_ice(lines[4]);
  REQUIRE_MESSAGE(srflx, lines[4]);
  CHECK(srflx->type == "srflx");
  CHECK(srflx->address == "203.0.113.2");
  CHECK(srflx->port == "61000");
  CHECK(srflx->raddr == "192.0.2.10");
  CHECK(srflx->rport == "40000");
  CHECK(srflx->priority == std::to_string((100u << 24) + (65535u << 8) + 255u));
  const auto tunnel = parse_ice(lines[5]);
  REQUIRE_MESSAGE(tunnel, lines[5]);
  CHECK(tunnel->type == "srflx");
  CHECK(tunnel->address == "203.0.113.66");
  CHECK(tunnel->raddr == "100.64.0.2");
  // Foundations: equal for equal (type, base, server, transport), different otherwise.
  CHECK(srflx->foundation != tunnel->foundation);
  CHECK(host->foundation != srflx->foundation);
  CHECK(parse_ice(ice_candidates(r)[4]).value().foundation == srflx->foundation);
}

TEST_CASE("ICE lines for a TCP server carry tcptype, duplicates are printed once") {
  auto p = bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2", 61000), "203.0.113.3:3478/tcp");
  p.transport = Transport::tcp;
  auto r = make_report(kInterfaces, {p, p}, 1ms);
  auto lines = ice_candidates(r);
  REQUIRE(lines.size() == 4 + 1);
  CHECK(lines.back().find(" 1 tcp ") != std::string::npos);
  CHECK(lines.back().ends_with("typ srflx raddr 192.0.2.10 rport 40000 tcptype active"));
}

TEST_CASE("text and JSON carry the verdict, leaks, exits and every probe") {
  auto r = make_report(kInterfaces,
                       {bound("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2")),
                        bound("eth0", Class::physical, "2001:db8:2::10", Blocked{EPERM}, "[2001:db8:3::3]:3478/udp"),
                        bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66")),
                        routed(Family::v4, seen("203.0.113.66"), "wg0", Class::tunnel)},
                       12ms);
  const std::string text = to_text(r);
  CHECK(text.rfind("verdict: LEAK", 0) == 0);
  CHECK(text.find("tunnel exit: ipv4 203.0.113.66, ipv6 -") != std::string::npos);
  CHECK(text.find("eth0 ipv4 192.0.2.10 -> 203.0.113.3:3478/udp: reflexive 203.0.113.2:50000") != std::string::npos);
  CHECK(text.find("<- LEAK") != std::string::npos);
  CHECK(text.find("blocked (EPERM: refused by the packet filter)") != std::string::npos);
  CHECK(text.find("route ipv4 -> 203.0.113.3:3478/udp: reflexive 203.0.113.66:50000 after 3 ms (1 attempt) via wg0") !=
        std::string::npos);

  const auto j = to_json(r);
  CHECK(j["verdict"] == "leak");
  CHECK(j["duration_ms"] == 12);
  CHECK(j["tunnel_exits"]["ipv4"] == nlohmann::json::array({"203.0.113.66"}));
  REQUIRE(j["leaks"].size() == 1);
  CHECK(j["leaks"][0]["interface"] == "eth0");
  CHECK(j["leaks"][0]["reflexive"] == "203.0.113.2");
  REQUIRE(j["probes"].size() == 4);
  CHECK(j["probes"][0]["outcome"] == "reflexive");
  CHECK(j["probes"][0]["reflexive"] == "203.0.113.2");
  CHECK(j["probes"][1]["outcome"] == "blocked");
  CHECK(j["probes"][1]["error"] == "EPERM");
  CHECK(j["probes"][1]["firewall"] == true);
  CHECK(j["probes"][3]["interface"].is_null());
  CHECK(j["probes"][3]["arrival_interface"] == "wg0");
  // The grouped views.
  REQUIRE(j["interfaces"].size() == 3);
  CHECK(j["interfaces"][0]["name"] == "eth0");
  CHECK(j["interfaces"][0]["verdict"] == "leak");
  CHECK(j["interfaces"][1]["name"] == "wg0");
  CHECK(j["interfaces"][1]["verdict"] == "ok");
  CHECK(j["interfaces"][2]["name"] == "route");
  REQUIRE(j["reflexive"].size() == 3);
  CHECK(j["reflexive"][0]["leak"] == true);
  CHECK(j["reflexive"][2]["interface"] == "route via wg0");
}

TEST_CASE("an interface prints on one line") {
  CHECK(kInterfaces[1].str() == "eth0 #2 (physical) 192.0.2.10 2001:db8:2::10 fe80::1");
}

TEST_CASE("verdict names") {
  CHECK(to_string(Verdict::ok) == "ok");
  CHECK(to_string(Verdict::leak) == "leak");
  CHECK(to_string(Verdict::exposed_host) == "exposed-host");
}

namespace {
ProbeResult by_address(const char* itf, Class cls, const char* source, Outcome o, const char* arrival = "",
                       std::optional<Class> arrival_class = std::nullopt, const char* server = "203.0.113.3:3478/udp") {
  ProbeResult p = bound(itf, cls, source, std::move(o), server);
  p.address_bound = true;
  p.arrival_interface = arrival;
  p.arrival_class = arrival_class;
  return p;
}
}  // namespace

TEST_CASE("an address-bound probe is a page's socket: judged by its way out like the routed one, never an exit or a host's proof") {
  const auto exit = bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66"));
  SUBCASE("its answer came in through eth0: a leak, whatever the address") {
    auto r = make_report(kInterfaces, {exit, by_address("eth0", Class::physical, "192.0.2.10", seen("203.0.113.66"), "eth0",
                                                        Class::physical)},
                         1ms);
    CHECK(r.verdict == Verdict::leak);
    REQUIRE(r.leaks.size() == 1);
    CHECK(r.leaks[0].address_bound);
    CHECK_FALSE(r.leaks[0].routed);
    CHECK(r.leaks[0].interface == "eth0");
    CHECK(r.leaks[0].why.find("left outside the tunnel: its answer came in through eth0") != std::string::npos);
    CHECK(to_json(r)["leaks"][0]["address_bound"] == true);
  }
  SUBCASE("through the tunnel with the exit (the VPN translates it): fine") {
    auto r = make_report(kInterfaces, {exit, by_address("eth0", Class::physical, "192.0.2.10", seen("203.0.113.66"), "wg0",
                                                        Class::tunnel)},
                         1ms);
    CHECK(r.verdict == Verdict::ok);
  }
  SUBCASE("over TCP (no arrival known): not the exit is a leak, the exit is fine") {
    auto leak = make_report(kInterfaces, {exit, by_address("eth0", Class::physical, "192.0.2.10", seen("203.0.113.2"), "", {},
                                                           "203.0.113.3:3478/tcp")},
                            1ms);
    CHECK(leak.verdict == Verdict::leak);
    CHECK(leak.exposures.empty());  // a page's socket: never an exposure
    auto fine = make_report(kInterfaces, {exit, by_address("eth0", Class::physical, "192.0.2.10", seen("203.0.113.66"), "", {},
                                                           "203.0.113.3:3478/tcp")},
                            1ms);
    CHECK(fine.verdict == Verdict::ok);
  }
  SUBCASE("a timeout (a full tunnel drops the foreign source) is no leak") {
    auto r = make_report(kInterfaces, {exit, by_address("eth0", Class::physical, "192.0.2.10", TimedOut{0})}, 1ms);
    CHECK(r.verdict == Verdict::ok);
  }
  SUBCASE("it names no tunnel exit, and proves no host address translated") {
    ReportOptions o;
    o.documentation_is_public = true;
    auto r = make_report(kInterfaces,
                         {by_address("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66"), "wg0", Class::tunnel),
                          by_address("eth0", Class::physical, "192.0.2.10", TimedOut{0})},
                         1ms, o);
    CHECK(r.exits4.empty());
    bool eth0_exposed = false;
    for (const auto& h : r.exposed()) eth0_exposed = eth0_exposed || h.address.str() == "192.0.2.10";
    CHECK(eth0_exposed);  // only a device-bound probe's translation proves it is not the public address
  }
}

TEST_CASE("per interface, ok only for what was tested: not tested where every probe failed here, no answer for the route or a tunnel nobody answered") {
  const LocalFailure dns{"resolve", 0, "Host not found"};
  auto verdict_of = [](const nlohmann::json& j, const std::string& name) {
    for (const auto& g : j["interfaces"])
      if (g["name"] == name) return g["verdict"].get<std::string>();
    return std::string("(none)");
  };
  // A reviewer read "as routed (no interface bound): ok" above three "failed: resolve" lines.
  auto j = to_json(make_report(kInterfaces,
                               {bound("eth0", Class::physical, "192.0.2.10", dns), routed(Family::v4, dns),
                                bound("wg0", Class::tunnel, "100.64.0.2", TimedOut{3})},
                               5ms));
  CHECK(verdict_of(j, "eth0") == "not tested");
  CHECK(verdict_of(j, "route") == "not tested");
  CHECK(verdict_of(j, "wg0") == "no answer");
  // The controls: refused out of eth0 is ok (that is the block holding); answered through the
  // tunnel and as routed, ok.
  j = to_json(make_report(kInterfaces,
                          {bound("eth0", Class::physical, "192.0.2.10", Blocked{EPERM}),
                           routed(Family::v4, seen("203.0.113.66"), "wg0", Class::tunnel),
                           bound("wg0", Class::tunnel, "100.64.0.2", seen("203.0.113.66"))},
                          5ms));
  CHECK(verdict_of(j, "eth0") == "ok");
  CHECK(verdict_of(j, "route") == "ok");
  CHECK(verdict_of(j, "wg0") == "ok");
  // The routed probe refused (a split route out of eth0): the block holding, ok; timed out: no answer.
  j = to_json(make_report(kInterfaces, {routed(Family::v4, Blocked{EPERM})}, 5ms));
  CHECK(verdict_of(j, "route") == "ok");
  j = to_json(make_report(kInterfaces, {routed(Family::v4, TimedOut{3})}, 5ms));
  CHECK(verdict_of(j, "route") == "no answer");
}
