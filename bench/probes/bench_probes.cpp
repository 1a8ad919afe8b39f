// Probe round figures, in namespaces of its own (run as root). A client namespace with 4 interfaces
// (veth pairs, IPv4 + IPv6 each), a server namespace with 3 STUN responders per family on their own
// addresses: one round is 4 interfaces x 2 families x 3 servers = 24 bound transactions plus 6
// routed ones, all in parallel on one io_context.
//   answered:   round time with immediate answers, and with answers delayed by 20 ms (a stand-in
//               for a round trip: no netem here), compared with the same 30 transactions one at a time
//   full:       the round as shipped - the same servers over UDP and TCP, from device-bound,
//               address-bound and routed sockets, plus hop probes (TTL 1..3 out of each interface
//               toward each server) - against the UDP-only device-bound and routed round, in the
//               same run; and with the routers silent (ICMP errors dropped), what a hop probe then waits
//   unanswered: round time when the servers stay silent, for two timeouts
//   cancelled:  how soon a round cancelled mid-way has nothing left waiting on its io_context
// Printed, never asserted. Documentation addresses only, all inside the bench's namespaces.
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "probes/interfaces.hpp"
#include "probes/prober.hpp"
#include "tests/integration/probes/responder.hpp"
#include "bench/report.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::probes;
using namespace std::chrono;
namespace asio = boost::asio;

namespace {

void must(const lab::RunResult& r, const char* what) {
  if (r.status != 0) {
    std::fprintf(stderr, "bench_probes: %s failed: %s\n", what, r.out.c_str());
    std::exit(1);
  }
}

struct Stats {
  double min = 0, median = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}

// One round on `io` (responders live there too); returns the report.
Report round(asio::io_context& io, const Plan& plan) {
  Prober prober(io);
  Report out;
  bool done = false;
  prober.start(plan, [&](Report r) {
    out = std::move(r);
    done = true;
  });
  const auto end = steady_clock::now() + plan.timeout + seconds(5);
  while (!done && steady_clock::now() < end) io.run_one_for(end - steady_clock::now());
  if (!done) {
    std::fprintf(stderr, "bench_probes: a round did not end\n");
    std::exit(1);
  }
  return out;
}

double ms_since(steady_clock::time_point t) { return duration<double, std::milli>(steady_clock::now() - t).count(); }

std::size_t count(const Report& r, std::string_view k) {
  return static_cast<std::size_t>(
      std::count_if(r.probes.begin(), r.probes.end(), [&](const ProbeResult& p) { return kind(p.outcome) == k; }));
}

}  // namespace

int main() {
  lab::Netns client("pbcli");
  lab::Netns server("pbsrv");
  // No duplicate address detection: a link-local address still in DAD holds up the first IPv6
  // packets for a second, which would measure the namespace's birth, not the prober.
  for (const auto* ns : {&client, &server})
    must(ns->run({"sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"}), "sysctl");
  for (int i = 0; i < 4; ++i) {
    const std::string c = "c" + std::to_string(i), s = "s" + std::to_string(i);
    const std::string v4 = "198.51.100." + std::to_string(16 * i), v6 = "2001:db8:10:" + std::to_string(i) + "::";
    must(client.run({"ip", "link", "add", c, "type", "veth", "peer", "name", s, "netns", server.name()}), "veth");
    must(client.run({"ip", "addr", "add", "198.51.100." + std::to_string(16 * i + 2) + "/28", "dev", c}), "addr");
    must(client.run({"ip", "-6", "addr", "add", v6 + "2/64", "dev", c, "nodad"}), "addr6");
    must(client.run({"ip", "link", "set", c, "up"}), "up");
    must(server.run({"ip", "addr", "add", "198.51.100." + std::to_string(16 * i + 1) + "/28", "dev", s}), "addr");
    must(server.run({"ip", "-6", "addr", "add", v6 + "1/64", "dev", s, "nodad"}), "addr6");
    must(server.run({"ip", "link", "set", s, "up"}), "up");
    // A default route through every interface (IPv6 needs one for a device-bound socket to send).
    const std::string metric = std::to_string(100 + i);
    must(client.run({"ip", "route", "add", "default", "via", "198.51.100." + std::to_string(16 * i + 1), "dev", c,
                     "metric", metric}),
         "route");
    must(client.run({"ip", "-6", "route", "add", "default", "via", v6 + "1", "dev", c, "metric", metric}), "route6");
  }
  asio::io_context io;  // before the responders: their sockets must go first
  std::vector<std::unique_ptr<testing::Responder>> responders;
  std::vector<std::unique_ptr<testing::TcpResponder>> tcp_responders;
  std::vector<config::StunServer> servers;
  for (int k = 1; k <= 3; ++k) {
    const std::string a4 = "203.0.113.1" + std::to_string(k), a6 = "2001:db8:ff::1" + std::to_string(k);
    must(server.run({"ip", "addr", "add", a4 + "/32", "dev", "lo"}), "server addr");
    must(server.run({"ip", "-6", "addr", "add", a6 + "/128", "dev", "lo", "nodad"}), "server addr6");
    servers.push_back({a4, 3478, Transport::udp});
    servers.push_back({a6, 3478, Transport::udp});
  }
  {
    lab::NetnsScope in(server.name());
    for (const auto& s : servers) {
      responders.push_back(std::make_unique<testing::Responder>(
          io, asio::ip::udp::endpoint(asio::ip::make_address(s.host), s.port), testing::Behaviour::honest));
      tcp_responders.push_back(std::make_unique<testing::TcpResponder>(
          io, asio::ip::tcp::endpoint(asio::ip::make_address(s.host), s.port), testing::TcpBehaviour::honest));
    }
  }
  // The servers' side answers a hop datagram (it arrives with TTL 1 to spare: the server is the
  // first hop) with port unreachable. Linux rate-limits ICMP errors per peer (a burst of 6, then
  // one a second), which would leave most of them unanswered after the first round; off here.
  must(server.run({"sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                   "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000"}),
       "sysctl icmp");

  lab::NetnsScope in(client.name());
  auto interfaces = current_interfaces(netwatch::Classifier{});
  if (!interfaces) {
    std::fprintf(stderr, "bench_probes: %s\n", interfaces.error().str().c_str());
    return 1;
  }
  Plan plan;
  plan.interfaces = *interfaces;
  plan.servers = servers;
  plan.timeout = milliseconds(3000);
  plan.hops = 0;  // the UDP STUN round alone (device-bound and routed); the full round adds the rest
  plan.address_bound = false;
  Plan full = plan;
  full.hops = kDefaultHops;
  full.address_bound = true;
  for (const auto& s : servers) full.servers.push_back({s.host, s.port, Transport::tcp});

  auto answered = [&](milliseconds delay, int rounds, const Plan& p = {}) {
    const Plan& use = p.interfaces.empty() ? plan : p;
    for (auto& r : responders) r->set_delay(delay);
    std::vector<double> t;
    std::size_t probes = 0, reflexive = 0, hops = 0, hops_answered = 0;
    for (int i = 0; i < rounds; ++i) {
      const auto start = steady_clock::now();
      auto rep = round(io, use);
      t.push_back(ms_since(start));
      if (std::getenv("BENCH_PROBES_VERBOSE") && t.back() > 100) std::printf("%s", to_text(rep).c_str());
      probes = rep.probes.size();
      reflexive = count(rep, "reflexive");
      hops = rep.hops.size();
      hops_answered = static_cast<std::size_t>(std::count_if(rep.hops.begin(), rep.hops.end(), [](const HopResult& h) {
        return std::holds_alternative<HopAnswer>(h.outcome);
      }));
    }
    auto s = stats(t);
    std::printf("answered, server delay %3lld ms: %zu probes (%zu reflexive)", static_cast<long long>(delay.count()), probes,
                reflexive);
    if (hops > 0) std::printf(" + %zu hop probes (%zu answered)", hops, hops_answered);
    std::printf(" per round; round %.2f ms median (min %.2f, max %.2f, %d rounds)\n", s.median, s.min, s.max, rounds);
    return s.median;
  };

  std::printf("bench_probes: 4 interfaces x 2 families x 3 servers (+ the routed probe per family and server)\n");
  {
    // The namespaces are brand new: neighbour discovery is still cold. Shown, then kept out of the figures.
    const auto start = steady_clock::now();
    auto rep = round(io, plan);
    std::printf("first round (cold neighbour caches): %.1f ms, %zu reflexive of %zu\n", ms_since(start),
                count(rep, "reflexive"), rep.probes.size());
  }
  const double immediate = answered(milliseconds(0), 20);
  leakguard::bench::result("probe round, 30 probes, servers answer at once", leakguard::bench::ms(immediate));
  const double parallel = answered(milliseconds(20), 10);

  // The round as shipped: UDP and TCP to every server, and hop probes, against UDP alone.
  {
    std::printf("full round: the same servers over UDP and TCP, address-bound probes too, plus hop probes (TTL 1..%d):\n",
                kDefaultHops);
    const double udp_only = answered(milliseconds(0), 20);
    const double whole = answered(milliseconds(0), 20, full);
    leakguard::bench::result("probe round, servers answer at once: UDP, TCP, address-bound and hop probes (vs UDP alone)",
                             leakguard::bench::ms(whole), leakguard::bench::ms(udp_only),
                             leakguard::bench::times(whole / udp_only));
    // The UDP servers answering after 20 ms (the TCP ones still at once: no netem here, the
    // responders' delay is all there is): the round is the slowest answer, not their sum.
    const double udp_only_20 = answered(milliseconds(20), 10);
    const double whole_20 = answered(milliseconds(20), 10, full);
    leakguard::bench::result("probe round, UDP servers answer after 20 ms: UDP, TCP, address-bound and hop probes (vs UDP alone)",
                             leakguard::bench::ms(whole_20), leakguard::bench::ms(udp_only_20),
                             leakguard::bench::times(whole_20 / udp_only_20));
    // Routers that never answer (most ICMP dropped on the way): a hop probe waits as long again as
    // the STUN probes took (at least kSecondaryGrace), then counts as silent; the round waits with it.
    must(server.run({"nft", "add table inet lgt_bench_silent; add chain inet lgt_bench_silent out "
                            "{ type filter hook output priority 0; policy accept; }; "
                            "add rule inet lgt_bench_silent out meta l4proto { icmp, ipv6-icmp } drop"}),
         "silent routers");
    const double silent = answered(milliseconds(0), 5, full);
    must(server.run({"nft", "delete table inet lgt_bench_silent"}), "routers back");
    std::printf("  (the last line: ICMP errors dropped on the servers' side, every hop probe silent)\n");
    leakguard::bench::result("probe round, servers answer at once, routers silent: what hop probes then add",
                             leakguard::bench::ms(silent));
  }

  // The same 30 transactions one after another: one round per (interface or route, server).
  {
    for (auto& r : responders) r->set_delay(milliseconds(20));
    const auto start = steady_clock::now();
    std::size_t n = 0;
    for (const auto& s : servers) {
      for (const auto& itf : plan.interfaces) {
        if (itf.cls == InterfaceClass::loopback || itf.addresses.empty()) continue;
        Plan one = plan;
        one.servers = {s};
        one.only = {itf.name};
        one.routed = false;
        n += round(io, one).probes.size();
      }
      Plan routed = plan;
      routed.servers = {s};
      routed.bound = false;
      n += round(io, routed).probes.size();
    }
    const double serial = ms_since(start);
    std::printf("serial,   server delay  20 ms: %zu probes one at a time took %.1f ms (%.1fx the parallel round)\n", n,
                serial, serial / parallel);
    leakguard::bench::result("probe round, 30 probes, servers answer after 20 ms (vs one at a time)",
                             leakguard::bench::ms(parallel), leakguard::bench::ms(serial),
                             leakguard::bench::times(serial / parallel));
  }

  for (auto& r : responders) r->set_behaviour(testing::Behaviour::silent);
  for (milliseconds timeout : {milliseconds(1000), milliseconds(3000)}) {
    plan.timeout = timeout;
    const auto start = steady_clock::now();
    auto rep = round(io, plan);
    const double took = ms_since(start);
    std::printf("silent servers, timeout %5lld ms: round %.1f ms, %zu probes timed out\n",
                static_cast<long long>(timeout.count()), took, count(rep, "timeout"));
    leakguard::bench::result("probe round, silent servers, timeout " + std::to_string(timeout.count()) + " ms",
                             leakguard::bench::ms(took));
  }

  // Cancelling a round mid-way: how soon nothing of it is left waiting (on an io_context of its
  // own, so that the responders' sockets do not count). The servers stay silent.
  {
    plan.timeout = milliseconds(30000);
    asio::io_context own;
    Prober prober(own);
    prober.start(plan, [](Report) {});
    own.run_for(milliseconds(100));  // the first requests go out
    const auto start = steady_clock::now();
    prober.cancel();
    own.run_for(seconds(10));  // returns early once no socket or timer of the round is left
    const double took = ms_since(start);
    if (!own.stopped()) {
      std::fprintf(stderr, "bench_probes: a cancelled round left work behind\n");
      return 1;
    }
    std::printf("cancelled 100 ms into a round (timeout 30 s): nothing left waiting %.2f ms after cancel()\n", took);
    leakguard::bench::result("probe round cancelled: nothing left waiting after", leakguard::bench::ms(took));
  }
  return 0;
}
