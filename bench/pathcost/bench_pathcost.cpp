// What our table costs on the packet path: iperf3 from the lab's host to the internet namespace via
// eth0 (the STUN server's address routed outside the tunnel), with no table and with
// `inet leakguard` installed (policy udp, 100 endpoints in the set), alternating for ROUNDS
// rounds (default 5): bench_pathcost [ROUNDS]. Measured: small UDP packets per second to an
// allowed endpoint (the set lookup), and TCP throughput (every rule evaluated, accepted at the
// end). Run as root; everything happens in the lab's namespaces.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "bench/report.hpp"
#include "firewall/firewall.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
namespace lab = leakguard::lab;

namespace {

// iperf3 client in the host namespace against the server in "inet"; returns the JSON summary.
nlohmann::json iperf(const lab::Lab& net, bool udp) {
  std::vector<std::string> argv{"iperf3", "-c", "203.0.113.3", "-t", "3", "-J"};
  if (udp) argv.insert(argv.end(), {"-u", "-b", "0", "-l", "64"});
  auto r = net.run("host", argv);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (r.status != 0 || j.is_discarded()) {
    std::fprintf(stderr, "iperf3 failed: %s\n", r.out.c_str());
    std::exit(1);
  }
  return j;
}

struct Figures {
  double udp_pps = 0, udp_lost = 0, tcp_gbps = 0;
};

Figures measure(const lab::Lab& net) {
  Figures f;
  auto u = iperf(net, true);
  const auto& sum = u["end"]["sum"];
  f.udp_pps = sum["packets"].get<double>() / sum["seconds"].get<double>();
  f.udp_lost = sum.value("lost_percent", 0.0);
  auto t = iperf(net, false);
  f.tcp_gbps = t["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9;
  return f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  lab::Lab net({.split_stun = true});
  lab::Process server(net.ns("inet"), {"iperf3", "-s", "-B", "203.0.113.3"});
  // Ready when it listens.
  for (int i = 0; i < 200 && net.run("inet", {"ss", "-Hltn", "sport = :5201"}).out.find("5201") == std::string::npos; ++i)
    net.run("inet", {"sleep", "0.01"});

  firewall::Policy p;
  p.mode = firewall::Mode::udp;
  p.tunnels = {*IfnamePattern::parse("wg*")};
  p.endpoints.push_back(*Endpoint::parse("203.0.113.3:5201/udp"));  // iperf3's UDP: an allowed endpoint
  for (int i = 1; i <= 99; ++i) p.endpoints.push_back(*Endpoint::parse("198.51.100." + std::to_string(i) + ":51820/udp"));
  std::optional<firewall::Firewall> fw;
  {
    lab::NetnsScope in(net.ns("host"));
    auto f = firewall::Firewall::open();
    if (!f) {
      std::fprintf(stderr, "cannot open the firewall: %s\n", f.error().str().c_str());
      return 1;
    }
    fw.emplace(std::move(*f));
  }

  // Rounds alternate without and with the table, so that drift on a shared machine falls on both
  // alike; the ratio is taken per round and its median reported.
  std::vector<double> udp_ratio, tcp_ratio, udp_without, udp_with, tcp_without, tcp_with;
  for (int r = 0; r < rounds; ++r) {
    if (!fw->remove()) return 1;
    const Figures without = measure(net);
    if (auto ok = fw->apply(p); !ok) {
      std::fprintf(stderr, "cannot install the table: %s\n", ok.error().str().c_str());
      return 1;
    }
    const Figures with = measure(net);
    std::printf("round %d: UDP %.0f pps without, %.0f with (%.1f%%; loss %.1f%% / %.1f%%); TCP %.2f Gbit/s without, %.2f with (%.1f%%)\n",
                r + 1, without.udp_pps, with.udp_pps, 100 * with.udp_pps / without.udp_pps, without.udp_lost, with.udp_lost,
                without.tcp_gbps, with.tcp_gbps, 100 * with.tcp_gbps / without.tcp_gbps);
    udp_ratio.push_back(with.udp_pps / without.udp_pps);
    tcp_ratio.push_back(with.tcp_gbps / without.tcp_gbps);
    udp_without.push_back(without.udp_pps);
    udp_with.push_back(with.udp_pps);
    tcp_without.push_back(without.tcp_gbps);
    tcp_with.push_back(with.tcp_gbps);
  }
  std::printf("UDP, 64-byte datagrams to an allowed endpoint via eth0: median %.0f pps without our table, %.0f with; "
              "median ratio %.3f over %d rounds\n",
              median(udp_without), median(udp_with), median(udp_ratio), rounds);
  std::printf("TCP via eth0 (udp policy: every rule evaluated, accepted by the last): median %.2f Gbit/s without, %.2f with; "
              "median ratio %.3f\n",
              median(tcp_without), median(tcp_with), median(tcp_ratio));
  char a[64], b[64];
  std::snprintf(a, sizeof a, "%.0f pps", median(udp_with));
  std::snprintf(b, sizeof b, "%.0f pps", median(udp_without));
  bench::result("packet path: UDP pps to an allowed endpoint, with our table (vs none), median of " + std::to_string(rounds) +
                    " rounds (goal >= 0.98x)",
                a, b, bench::times(median(udp_ratio)));
  std::snprintf(a, sizeof a, "%.2f Gbit/s", median(tcp_with));
  std::snprintf(b, sizeof b, "%.2f Gbit/s", median(tcp_without));
  bench::result("packet path: TCP throughput via eth0, with our table (vs none)", a, b, bench::times(median(tcp_ratio)));
  return 0;
}
