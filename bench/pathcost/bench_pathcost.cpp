// What our table costs on the packet path: iperf3 from the lab's host to the internet namespace via
// eth0 (the STUN server's address routed outside the tunnel), with no table, then with
// `inet leakguard` installed (policy udp, 100 endpoints in the set). Measured: small UDP packets per
// second to an allowed endpoint (the set lookup), and TCP throughput (every rule evaluated, accepted
// at the end). Run as root; everything happens in the lab's namespaces.
#include <chrono>
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

}  // namespace

int main() {
  lab::Lab net({.split_stun = true});
  lab::Process server(net.ns("inet"), {"iperf3", "-s", "-B", "203.0.113.3"});
  // Ready when it listens.
  for (int i = 0; i < 200 && net.run("inet", {"ss", "-Hltn", "sport = :5201"}).out.find("5201") == std::string::npos; ++i)
    net.run("inet", {"sleep", "0.01"});

  const Figures without = measure(net);

  firewall::Policy p;
  p.mode = firewall::Mode::udp;
  p.tunnels = {*IfnamePattern::parse("wg*")};
  p.endpoints.push_back(*Endpoint::parse("203.0.113.3:5201/udp"));  // iperf3's UDP: an allowed endpoint
  for (int i = 1; i <= 99; ++i) p.endpoints.push_back(*Endpoint::parse("198.51.100." + std::to_string(i) + ":51820/udp"));
  std::optional<firewall::Firewall> fw;
  {
    lab::NetnsScope in(net.ns("host"));
    auto f = firewall::Firewall::open();
    if (!f || !f->apply(p)) {
      std::fprintf(stderr, "cannot install the table\n");
      return 1;
    }
    fw.emplace(std::move(*f));
  }
  const Figures with = measure(net);

  std::printf("UDP, 64-byte datagrams to an allowed endpoint via eth0: %.0f pps without our table, %.0f pps with "
              "(%.1f%%); loss %.1f%% / %.1f%%\n",
              without.udp_pps, with.udp_pps, 100.0 * with.udp_pps / without.udp_pps, without.udp_lost, with.udp_lost);
  std::printf("TCP via eth0 (every rule evaluated, accepted): %.2f Gbit/s without, %.2f Gbit/s with (%.1f%%)\n",
              without.tcp_gbps, with.tcp_gbps, 100.0 * with.tcp_gbps / without.tcp_gbps);
  char a[64], b[64];
  std::snprintf(a, sizeof a, "%.0f pps", with.udp_pps);
  std::snprintf(b, sizeof b, "%.0f pps", without.udp_pps);
  bench::result("packet path: UDP pps to an allowed endpoint, with our table (vs none)", a, b,
                bench::times(with.udp_pps / without.udp_pps));
  std::snprintf(a, sizeof a, "%.2f Gbit/s", with.tcp_gbps);
  std::snprintf(b, sizeof b, "%.2f Gbit/s", without.tcp_gbps);
  bench::result("packet path: TCP throughput via eth0, with our table (vs none)", a, b,
                bench::times(with.tcp_gbps / without.tcp_gbps));
  return 0;
}
