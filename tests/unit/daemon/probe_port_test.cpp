// What the daemon makes of a probe report (daemon/probe_port.cpp): the round's verdict, and the
// report everyone reads headed by it. No root, no network: a report made from values.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "daemon/probe_port.hpp"
#include "probes/report.hpp"

using namespace leakguard;

TEST_CASE("a round the tunnel did not answer: unverified, and the report says so first - the prober's ok beside it") {
  // Nothing probed, nothing leaked: the prober's verdict is ok, but no VPN exit was seen.
  const auto o = daemon::to_outcome(probes::make_report({}, {}, probes::milliseconds{5}));
  CHECK(o.verdict == daemon::ProbeVerdict::unverified);
  CHECK(o.verdict_text == "unverified");
  const auto j = nlohmann::json::parse(o.json);
  CHECK(j["verdict"] == "unverified");  // what ProbeNow, LastProbe and GetStatus carry
  CHECK(j["report_verdict"] == "ok");   // the prober's own
}

TEST_CASE("a round whose probes could not be made (out of file descriptors) is unverified, not ok") {
  using probes::ProbeResult;
  const std::vector<probes::Interface> itfs = {
      {"eth0", IfIndex{2}, InterfaceClass::physical, {*IpAddress::parse("192.0.2.10")}},
      {"wg0", IfIndex{3}, InterfaceClass::tunnel, {*IpAddress::parse("100.64.0.2")}},
  };
  auto probe = [](const char* itf, InterfaceClass cls, const char* source, probes::Outcome o) {
    ProbeResult p;
    p.interface = itf;
    p.cls = cls;
    p.source = *IpAddress::parse(source);
    p.family = Family::v4;
    p.server = "203.0.113.3:3478/udp";
    p.outcome = std::move(o);
    return p;
  };
  const probes::Reflexive exit{{*IpAddress::parse("203.0.113.66"), 50000}, false, probes::milliseconds{3}, 1};
  // A round whose tunnel answered, with eth0's probe ending as `eth0`.
  auto round = [&](probes::Outcome eth0) {
    return daemon::to_outcome(probes::make_report(
        itfs, {probe("wg0", InterfaceClass::tunnel, "100.64.0.2", exit), probe("eth0", InterfaceClass::physical, "192.0.2.10", eth0)},
        probes::milliseconds{5}));
  };
  // The control: eth0's probe was refused by the firewall - ok.
  CHECK(round(probes::Blocked{EPERM}).verdict == daemon::ProbeVerdict::ok);
  // eth0's probe never existed: nothing is known of that path.
  const auto starved = round(probes::LocalFailure{"open socket", EMFILE, "Too many open files"});
  CHECK(starved.verdict == daemon::ProbeVerdict::unverified);
  CHECK(starved.summary.rfind("1 probe could not be made (Too many open files)", 0) == 0);
  CHECK(nlohmann::json::parse(starved.json)["verdict"] == "unverified");
  // Another local failure (a device gone) is not a blind spot of this machine's making.
  const auto other = round(probes::LocalFailure{"bind to device", ENODEV, "No such device"});
  CHECK(other.verdict == daemon::ProbeVerdict::ok);
}

TEST_CASE("a request the kernel sent out of eth0 although the block refuses it is a leak - no server need answer") {
  // Armed, every send out of a non-tunnel device meets EPERM from the rules. A probe bound to eth0
  // whose datagram the kernel took (then silence, an error response, anything but an address)
  // shows a hole in the block: before, the round said ok and the daemon `secured` (a server
  // unreachable from the ISP, routers silent) while any page's UDP left eth0.
  using probes::ProbeResult;
  const std::vector<probes::Interface> itfs = {
      {"eth0", IfIndex{2}, InterfaceClass::physical, {*IpAddress::parse("192.0.2.10")}},
      {"wg0", IfIndex{3}, InterfaceClass::tunnel, {*IpAddress::parse("100.64.0.2")}},
  };
  auto probe = [](const char* itf, InterfaceClass cls, const char* server, Transport t, probes::Outcome o, bool sent) {
    const auto ep = *Endpoint::parse(std::string(server) + (t == Transport::udp ? "/udp" : "/tcp"));
    ProbeResult p;
    p.interface = itf;
    p.cls = cls;
    p.family = Family::v4;
    p.transport = t;
    p.server = ep.str();
    p.server_address = probes::stun::TransportAddress{ep.address, ep.port};
    p.outcome = std::move(o);
    p.sent = sent;
    return p;
  };
  const probes::Reflexive exit{{*IpAddress::parse("203.0.113.66"), 50000}, false, probes::milliseconds{3}, 1};
  firewall::Policy udp;  // armed, udp policy
  auto round = [&](std::vector<ProbeResult> eth0, const firewall::Policy* rules) {
    eth0.push_back(probe("wg0", InterfaceClass::tunnel, "203.0.113.3:3478", Transport::udp, exit, true));
    return daemon::to_outcome(probes::make_report(itfs, std::move(eth0), probes::milliseconds{5}), rules);
  };
  const auto silent = probe("eth0", InterfaceClass::physical, "203.0.113.3:3478", Transport::udp, probes::TimedOut{2}, true);
  // The control: refused at the send, as the rules do - ok.
  CHECK(round({probe("eth0", InterfaceClass::physical, "203.0.113.3:3478", Transport::udp, probes::Blocked{EPERM}, false)}, &udp)
            .verdict == daemon::ProbeVerdict::ok);
  const auto hole = round({silent}, &udp);
  CHECK(hole.verdict == daemon::ProbeVerdict::leak);
  CHECK(hole.verdict_text == "leak");
  REQUIRE(hole.leaks.size() == 1);
  CHECK(hole.leaks[0].unrefused);
  CHECK(hole.leaks[0].interface == "eth0");
  CHECK(hole.leaks[0].server == "203.0.113.3:3478/udp");
  CHECK(hole.leaks[0].reflexive.empty());
  CHECK(hole.summary.rfind("1 request left outside the tunnel although the block refuses them (first: eth0 ipv4 toward "
                           "203.0.113.3:3478/udp): the block does not hold",
                           0) == 0);
  const auto j = nlohmann::json::parse(hole.json);
  CHECK(j["verdict"] == "leak");
  bool marked = false;
  for (const auto& g : j["interfaces"])
    for (const auto& res : g["results"])
      if (g["name"] == "eth0" && res.value("unrefused", false)) marked = g["verdict"] == "leak";
  CHECK(marked);
  // An error response is the server answering our transaction through eth0: the same.
  CHECK(round({probe("eth0", InterfaceClass::physical, "203.0.113.3:3478", Transport::udp, probes::ServerError{{400, "Bad"}, {}}, true)},
              &udp)
            .verdict == daemon::ProbeVerdict::leak);
  // Rules unknown (none in force, or changed during the round): no judgement.
  CHECK(round({silent}, nullptr).verdict == daemon::ProbeVerdict::ok);
  // What the rules let through is no hole: the endpoint, and with allow_lan the LAN.
  firewall::Policy to_endpoint = udp;
  to_endpoint.endpoints = {*Endpoint::parse("203.0.113.3:3478/udp")};
  CHECK(round({silent}, &to_endpoint).verdict == daemon::ProbeVerdict::ok);
  firewall::Policy lan = udp;
  lan.allow_lan = true;
  lan.lan_subnets = {*Prefix::parse("203.0.113.0/24")};
  CHECK(round({silent}, &lan).verdict == daemon::ProbeVerdict::ok);
  // TCP that connected out of eth0: open in udp policy (an exposure at most), a hole where TCP is
  // refused - strict, or a family escalated.
  const auto tcp = probe("eth0", InterfaceClass::physical, "203.0.113.3:443", Transport::tcp, probes::TimedOut{1}, true);
  CHECK(round({tcp}, &udp).verdict == daemon::ProbeVerdict::ok);
  firewall::Policy escalated = udp;
  escalated.escalated = {Family::v4};
  CHECK(round({tcp}, &escalated).verdict == daemon::ProbeVerdict::leak);
  firewall::Policy strict = udp;
  strict.mode = Mode::strict;
  CHECK(round({tcp}, &strict).verdict == daemon::ProbeVerdict::leak);
  firewall::Policy v6_only = udp;
  v6_only.escalated = {Family::v6};
  CHECK(round({tcp}, &v6_only).verdict == daemon::ProbeVerdict::ok);
  // A server at 0.0.0.0 (a DNS blocklist's answer for a STUN name), loopback or this host's own
  // address: the kernel sends it through lo even from a socket bound to eth0, and lo passes.
  for (const char* at : {"0.0.0.0:3478", "127.0.0.1:3478", "192.0.2.10:3478"})
    CHECK_MESSAGE(round({probe("eth0", InterfaceClass::physical, at, Transport::udp, probes::TimedOut{2}, true)}, &udp).verdict ==
                      daemon::ProbeVerdict::ok,
                  at);
  // An interface the rules in force trust as a tunnel (a declaration's change the kernel refused
  // left them so): no hole there.
  firewall::Policy old_tunnel = udp;
  old_tunnel.tunnels = {*IfnamePattern::parse("eth0")};
  CHECK(round({silent}, &old_tunnel).verdict == daemon::ProbeVerdict::ok);
}

TEST_CASE("a family's way out goes into the tunnel when its routed probes answer there - no route at all is no refusal") {
  // An escalated family is let go by a round whose routed probes answered through the tunnel and
  // none of a page's sockets was refused by the firewall. An address-bound probe from a bridge's
  // address with no route at all (ENETUNREACH) is no way out: it held IPv6 escalated for good.
  using probes::ProbeResult;
  const std::vector<probes::Interface> itfs = {
      {"wg0", IfIndex{3}, InterfaceClass::tunnel, {*IpAddress::parse("2001:db8:100::2")}},
      {"vc0", IfIndex{5}, InterfaceClass::other, {*IpAddress::parse("fd00:c::1")}},
  };
  auto page = [](bool routed, const char* itf, probes::Outcome o) {
    ProbeResult p;
    p.routed = routed;
    p.address_bound = !routed;
    p.interface = routed ? "" : itf;
    p.family = Family::v6;
    p.server = "[2001:db8:3::3]:3478/udp";
    p.outcome = std::move(o);
    if (routed) {
      p.arrival_interface = "wg0";
      p.arrival_class = InterfaceClass::tunnel;
    }
    return p;
  };
  const probes::Reflexive exit{{*IpAddress::parse("2001:db8:3::66"), 50000}, false, probes::milliseconds{3}, 1};
  auto into_tunnel = [&](probes::Outcome bridge) {
    const auto o = daemon::to_outcome(
        probes::make_report(itfs, {page(true, "", exit), page(false, "vc0", std::move(bridge))}, probes::milliseconds{5}));
    return std::find(o.routed_into_tunnel.begin(), o.routed_into_tunnel.end(), Family::v6) != o.routed_into_tunnel.end();
  };
  CHECK(into_tunnel(probes::TimedOut{2}));
  CHECK(into_tunnel(probes::Blocked{ENETUNREACH}));       // no route: no way out
  CHECK_FALSE(into_tunnel(probes::Blocked{EPERM}));       // the firewall refused a page's socket: kept
  CHECK_FALSE(into_tunnel(probes::Blocked{ECONNREFUSED}));  // (TCP reset by the rules)
}

TEST_CASE("an unverified round says why in words that fit: no probe reached a server, no tunnel to probe, or the tunnel did not answer") {
  using probes::ProbeResult;
  auto probe = [](const char* itf, InterfaceClass cls, probes::Outcome o) {
    ProbeResult p;
    p.interface = itf;
    p.cls = cls;
    p.family = Family::v4;
    p.server = "stun.l.google.com:19302/udp";
    p.outcome = std::move(o);
    return p;
  };
  const probes::LocalFailure dns{"resolve", 0, "Host not found"};
  auto why = [](const daemon::ProbeOutcome& o) { return nlohmann::json::parse(o.json).value("unverified_because", ""); };
  // A fresh install without a VPN: every probe failed on DNS (the block refuses it).
  const auto none = daemon::to_outcome(probes::make_report(
      {{"eth0", IfIndex{2}, InterfaceClass::physical, {*IpAddress::parse("192.0.2.10")}}},
      {probe("eth0", InterfaceClass::physical, dns), probe("", InterfaceClass::other, dns)}, probes::milliseconds{5}));
  CHECK(none.verdict == daemon::ProbeVerdict::unverified);
  CHECK(why(none) == "no probe reached a server: failed: resolve: Host not found");
  CHECK(none.summary.rfind("no probe reached a server", 0) == 0);
  // No tunnel interface at all: eth0's probe refused, nothing else.
  const auto no_tunnel = daemon::to_outcome(probes::make_report(
      {{"eth0", IfIndex{2}, InterfaceClass::physical, {*IpAddress::parse("192.0.2.10")}}},
      {probe("eth0", InterfaceClass::physical, probes::Blocked{EPERM})}, probes::milliseconds{5}));
  CHECK(why(no_tunnel) == "no tunnel to probe: no VPN exit seen");
  // A tunnel, probed, silent.
  const auto silent = daemon::to_outcome(probes::make_report(
      {{"wg0", IfIndex{3}, InterfaceClass::tunnel, {*IpAddress::parse("100.64.0.2")}}},
      {probe("wg0", InterfaceClass::tunnel, probes::TimedOut{3})}, probes::milliseconds{5}));
  CHECK(why(silent) == "the tunnel did not answer: no VPN exit seen");
  CHECK(silent.summary.rfind("the tunnel did not answer: no VPN exit seen; ", 0) == 0);
}

TEST_CASE("a web page's TCP connection made outside the tunnel is a leak even when the server does not speak STUN") {
  // The routed TCP probe (a page's own socket) connected from eth0's address - udp policy lets TCP
  // out - but the server on 443 speaks TLS only: no STUN answer, and before, no finding either.
  using probes::ProbeResult;
  const std::vector<probes::Interface> itfs = {
      {"eth0", IfIndex{2}, InterfaceClass::physical, {*IpAddress::parse("2001:db8:2::10")}},
      {"wg0", IfIndex{3}, InterfaceClass::tunnel, {*IpAddress::parse("2001:db8:100::2")}},
  };
  auto routed_tcp = [](const char* via, InterfaceClass cls, bool connected, probes::Outcome o) {
    ProbeResult p;
    p.routed = true;
    p.family = Family::v6;
    p.transport = Transport::tcp;
    p.server = "[2001:db8:3::3]:443/tcp";
    p.server_address = probes::stun::TransportAddress{*IpAddress::parse("2001:db8:3::3"), 443};
    p.sent = connected;
    p.arrival_interface = via;
    p.arrival_class = cls;
    p.outcome = std::move(o);
    return p;
  };
  const probes::Reflexive exit{{*IpAddress::parse("2001:db8:3::66"), 50000}, false, probes::milliseconds{3}, 1};
  auto bound_wg0 = [&] {
    ProbeResult p;
    p.interface = "wg0";
    p.cls = InterfaceClass::tunnel;
    p.family = Family::v6;
    p.server = "[2001:db8:3::3]:3478/udp";
    p.outcome = exit;
    p.sent = true;
    return p;
  };
  auto round = [&](ProbeResult routed) {
    return daemon::to_outcome(probes::make_report(itfs, {bound_wg0(), std::move(routed)}, probes::milliseconds{5}));
  };
  const auto out = round(routed_tcp("eth0", InterfaceClass::physical, true, probes::TimedOut{1}));
  CHECK(out.verdict == daemon::ProbeVerdict::leak);
  REQUIRE(out.leaks.size() == 1);
  CHECK(out.leaks[0].connected_only);
  CHECK(out.leaks[0].routed);  // a page's path: escalated under on_exposure: escalate
  CHECK(out.leaks[0].interface == "routed via eth0");
  CHECK(out.leaks[0].reflexive.empty());
  CHECK(out.summary.rfind("a web page's TCP connection to [2001:db8:3::3]:443/tcp was made outside the tunnel (routed via eth0", 0) == 0);
  CHECK(std::find(out.routed_into_tunnel.begin(), out.routed_into_tunnel.end(), Family::v6) == out.routed_into_tunnel.end());
  const auto j = nlohmann::json::parse(out.json);
  bool marked = false;
  for (const auto& g : j["interfaces"])
    if (g["name"] == "route")
      for (const auto& res : g["results"]) marked = marked || res.value("connected_outside", "") == "routed via eth0";
  CHECK(marked);
  // page_path_out says the same as soon as the probe ends (escalation at once, not at round's end).
  const auto now = daemon::page_path_out(routed_tcp("eth0", InterfaceClass::physical, true, probes::TimedOut{1}));
  REQUIRE(now);
  CHECK(now->connected_only);
  // Not a way out (a reviewer's three false alarms): the server is this host itself (a local
  // service on eth0's address; the kernel picks eth0's address as the source and sends it through
  // lo), behind a bridge of its own (a container: class other), or on the LAN the rules let through.
  auto to = [&](const char* server, const char* via, InterfaceClass cls) {
    auto p = routed_tcp(via, cls, true, probes::TimedOut{1});
    const auto ep = *Endpoint::parse(server);
    p.server = ep.str();
    p.server_address = probes::stun::TransportAddress{ep.address, ep.port};
    return p;
  };
  const std::vector<IpAddress> locals = {*IpAddress::parse("2001:db8:2::10")};
  CHECK_FALSE(daemon::page_path_out(to("[2001:db8:2::10]:3478/tcp", "eth0", InterfaceClass::physical), locals));
  CHECK(round(to("[2001:db8:2::10]:3478/tcp", "eth0", InterfaceClass::physical)).verdict == daemon::ProbeVerdict::ok);
  CHECK_FALSE(daemon::page_path_out(to("[fd00:30::2]:3478/tcp", "br-doc", InterfaceClass::other), locals));
  firewall::Policy lan;
  lan.allow_lan = true;
  lan.lan_subnets = {*Prefix::parse("2001:db8:2::/64")};
  CHECK_FALSE(daemon::page_path_out(to("[2001:db8:2::1]:3478/tcp", "eth0", InterfaceClass::physical), locals, &lan));
  CHECK(daemon::page_path_out(to("[2001:db8:2::1]:3478/tcp", "eth0", InterfaceClass::physical), locals));  // no allow_lan: a way out
  // The controls: through the tunnel, refused (a reset: the escalated block), or never connected.
  CHECK(round(routed_tcp("wg0", InterfaceClass::tunnel, true, probes::TimedOut{1})).verdict == daemon::ProbeVerdict::ok);
  CHECK(round(routed_tcp("", InterfaceClass::physical, false, probes::Blocked{ECONNREFUSED})).verdict == daemon::ProbeVerdict::ok);
  CHECK_FALSE(daemon::page_path_out(routed_tcp("wg0", InterfaceClass::tunnel, true, probes::TimedOut{1})));
}
