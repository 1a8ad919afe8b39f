// Hop probes, pure parts: what an error-queue message means, which port carries which TTL, a port
// base clear of the endpoints, and how an answered hop probe enters the report (a leak naming the
// router, in text, JSON and the summary). No root, no network.
#include <doctest/doctest.h>

#include <cerrno>

#include "probes/hops.hpp"
#include "probes/report.hpp"

using namespace leakguard;
using namespace leakguard::probes;
using namespace std::chrono_literals;

namespace {

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

const std::vector<IpAddress> kLocal = {ip("192.0.2.10"), ip("2001:db8:2::10"), ip("100.64.0.2")};

QueuedError icmp(const char* from, std::uint16_t port, std::uint8_t type = 11, std::uint8_t code = 0) {
  QueuedError e;
  e.icmp = true;
  e.offender = ip(from);
  e.family = e.offender->family;
  e.type = type;
  e.code = code;
  e.port = port;
  return e;
}

HopResult hop(const char* itf, InterfaceClass cls, const char* source, const char* target, HopOutcome o) {
  HopResult h;
  h.interface = itf;
  h.cls = cls;
  h.source = ip(source);
  h.family = h.source->family;
  h.target = ip(target);
  h.target_of = std::string(target) + ":3478/udp";
  h.sent = 3;
  h.outcome = std::move(o);
  return h;
}

const std::vector<Interface> kInterfaces = {
    {"lo", IfIndex{1}, InterfaceClass::loopback, {ip("127.0.0.1")}},
    {"eth0", IfIndex{2}, InterfaceClass::physical, {ip("192.0.2.10"), ip("2001:db8:2::10")}},
    {"wg0", IfIndex{3}, InterfaceClass::tunnel, {ip("100.64.0.2")}},
};

}  // namespace

TEST_CASE("an ICMP error from beyond this machine is an answer, one from its own addresses is our reject") {
  CHECK(classify(icmp("192.0.2.1", 33434), kLocal, 3) == HopSignal::answered);           // time exceeded, TTL 1
  CHECK(classify(icmp("203.0.113.3", 33436, 3, 3), kLocal, 3) == HopSignal::answered);   // the target: port unreachable
  CHECK(classify(icmp("2001:db8:2::1", 33435, 3, 0), kLocal, 3) == HopSignal::answered);  // ICMPv6 time exceeded
  CHECK(classify(icmp("192.0.2.10", 33434, 3, 13), kLocal, 3) == HopSignal::refused_here);  // nft reject, from us
  CHECK(classify(icmp("2001:db8:2::10", 33434, 1, 1), kLocal, 3) == HopSignal::refused_here);
  CHECK(classify(icmp("127.0.0.1", 33434, 3, 13), kLocal, 3) == HopSignal::refused_here);
  CHECK(classify(icmp("0.0.0.0", 33434, 3, 1), kLocal, 3) == HopSignal::refused_here);
}

TEST_CASE("what is not an ICMP error about one of our datagrams is ignored") {
  QueuedError local = icmp("192.0.2.1", 33434);
  local.icmp = false;  // SO_EE_ORIGIN_LOCAL, e.g. EMSGSIZE
  CHECK(classify(local, kLocal, 3) == HopSignal::ignored);
  QueuedError nobody = icmp("192.0.2.1", 33434);
  nobody.offender.reset();
  CHECK(classify(nobody, kLocal, 3) == HopSignal::ignored);
  CHECK(classify(icmp("192.0.2.1", 33437), kLocal, 3) == HopSignal::ignored);  // TTL 4 was never sent
  CHECK(classify(icmp("192.0.2.1", 33433), kLocal, 3) == HopSignal::ignored);
  CHECK(classify(icmp("192.0.2.1", 51820), kLocal, 3) == HopSignal::ignored);
  // Another base moves the window.
  CHECK(classify(icmp("192.0.2.1", 33534), kLocal, 3, 33534) == HopSignal::answered);
  CHECK(classify(icmp("192.0.2.1", 33434), kLocal, 3, 33534) == HopSignal::ignored);
}

TEST_CASE("the destination port says the TTL") {
  CHECK(ttl_of_port(33434, 3) == 1);
  CHECK(ttl_of_port(33436, 3) == 3);
  CHECK(ttl_of_port(33437, 3) == 0);
  CHECK(ttl_of_port(33441, 8) == 8);
  CHECK(ttl_of_port(33433, 3) == 0);
  CHECK(ttl_of_port(0, 3) == 0);
}

TEST_CASE("the hop ports keep clear of the endpoints' UDP ports") {
  CHECK(pick_hop_port_base({}, 3) == kHopPortBase);
  const std::vector<std::uint16_t> wg{51820, 1194};
  CHECK(pick_hop_port_base(wg, 3) == kHopPortBase);
  const std::vector<std::uint16_t> clash{33435};
  CHECK(pick_hop_port_base(clash, 3) == kHopPortBase + 100);
  const std::vector<std::uint16_t> two{33436, 33534};
  CHECK(pick_hop_port_base(two, 3) == kHopPortBase + 200);
  const std::vector<std::uint16_t> edge{33437};  // just past TTL 3's port
  CHECK(pick_hop_port_base(edge, 3) == kHopPortBase);
  CHECK(pick_hop_port_base(edge, 4) == kHopPortBase + 100);
}

TEST_CASE("an answered hop probe out of eth0 is a leak naming the router, with silent servers") {
  std::vector<ProbeResult> probes(1);
  probes[0].interface = "eth0";
  probes[0].cls = InterfaceClass::physical;
  probes[0].server = "203.0.113.99:3478/udp";
  probes[0].outcome = TimedOut{3};
  std::vector<HopResult> hops{
      hop("eth0", InterfaceClass::physical, "192.0.2.10", "203.0.113.99", HopAnswer{ip("192.0.2.1"), 1, 11, 0, 1ms}),
      hop("eth0", InterfaceClass::physical, "2001:db8:2::10", "2001:db8:3::99", Blocked{EPERM})};
  const Report r = make_report(kInterfaces, probes, 1500ms, {}, hops);
  CHECK(r.verdict == Verdict::leak);
  REQUIRE(r.leaks.size() == 1);
  const Leak& l = r.leaks[0];
  CHECK(l.interface == "eth0");
  CHECK_FALSE(l.routed);
  CHECK(l.family == Family::v4);
  CHECK(l.hop == std::optional<IpAddress>(ip("192.0.2.1")));
  CHECK(l.server == "203.0.113.99:3478/udp");
  CHECK(l.why.find("TTL 1 was answered by 192.0.2.1 (time exceeded)") != std::string::npos);
  CHECK(r.summary().starts_with("leak: 192.0.2.1 answered a datagram sent out of eth0 toward 203.0.113.99:3478/udp"));
  CHECK(r.summary().find("2 hop probes (1 answered, 1 blocked)") != std::string::npos);

  const std::string text = to_text(r);
  CHECK(text.find("a datagram left this machine outside the tunnel (a router answered)") != std::string::npos);
  CHECK(text.find("hop 192.0.2.1") != std::string::npos);
  CHECK(text.find("TTL 1-3: answered by 192.0.2.1 at TTL 1 (time exceeded) after 1 ms   <- LEAK") != std::string::npos);
  CHECK(text.find("TTL 1-3: blocked (EPERM: refused by the packet filter)\n") != std::string::npos);

  const auto j = to_json(r);
  REQUIRE(j["hops"].size() == 2);
  CHECK(j["hops"][0]["outcome"] == "answered");
  CHECK(j["hops"][0]["hop"] == "192.0.2.1");
  CHECK(j["hops"][0]["ttl"] == 1);
  CHECK(j["hops"][0]["icmp"] == "time exceeded");
  CHECK(j["hops"][1]["outcome"] == "blocked");
  CHECK(j["hops"][1]["firewall"] == true);
  CHECK(j["leaks"][0]["hop"] == "192.0.2.1");
  CHECK(j["leaks"][0]["reflexive"].is_null());
  // The per-interface view the CLI prints: the hop line under eth0, marked.
  bool marked = false;
  for (const auto& g : j["interfaces"])
    if (g["name"] == "eth0") {
      CHECK(g["verdict"] == "leak");
      for (const auto& res : g["results"]) marked = marked || res.value("leak", false);
    }
  CHECK(marked);
}

TEST_CASE("hop probes that were refused, silent or failed, or that ran in the tunnel, make no leak") {
  std::vector<HopResult> hops{
      hop("eth0", InterfaceClass::physical, "192.0.2.10", "203.0.113.3", Blocked{EPERM}),
      hop("eth0", InterfaceClass::physical, "192.0.2.10", "198.51.100.1", Blocked{EACCES}),  // our reject answered
      hop("eth0", InterfaceClass::physical, "2001:db8:2::10", "2001:db8:3::3", TimedOut{3}),
      hop("eth0", InterfaceClass::physical, "2001:db8:2::10", "2001:db8:3::4", LocalFailure{"bind to device", EPERM, "x"}),
      // Not made by the prober (it never hop-probes a tunnel); a tunnel's answer would be no leak.
      hop("wg0", InterfaceClass::tunnel, "100.64.0.2", "203.0.113.3", HopAnswer{ip("100.64.0.1"), 1, 11, 0, 1ms})};
  const Report r = make_report(kInterfaces, {}, 1s, {}, hops);
  CHECK(r.verdict == Verdict::ok);
  CHECK(r.leaks.empty());
  CHECK(r.hops.size() == 5);
  CHECK(kind(r.hops[2].outcome) == "silent");
  CHECK(str(r.hops[2].outcome) == "silent (no hop answered)");
}

TEST_CASE("ICMP names") {
  CHECK(icmp_text(Family::v4, 11, 0) == "time exceeded");
  CHECK(icmp_text(Family::v4, 3, 13) == "admin prohibited");
  CHECK(icmp_text(Family::v4, 3, 3) == "port unreachable");
  CHECK(icmp_text(Family::v6, 3, 0) == "time exceeded");
  CHECK(icmp_text(Family::v6, 1, 1) == "admin prohibited");
  CHECK(icmp_text(Family::v6, 1, 4) == "port unreachable");
  CHECK(icmp_text(Family::v4, 5, 1) == "type 5 code 1");
}
