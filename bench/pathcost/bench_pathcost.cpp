// What our table costs on the packet path, in the lab: the host sends to the internet namespace via
// eth0 (the STUN server's address routed outside the tunnel), with no table and with
// `inet leakguard` installed (policy udp, 100 endpoints in the set), and - the references for what
// any nftables rule costs here - with a one-rule table (`udp dport 5201 accept`), and with the
// same table plus an input rule `ct state established accept`, which turns connection tracking on
// in the namespace as our input chain's endpoint rule does (docs/security.md, "the endpoint in both
// directions"), and a table whose only rule is one lookup in a set of the same 100 endpoints (the
// least any endpoint fast path costs), in rotating order each round:
//   bench_pathcost [ROUNDS]   (default 60)
// - UDP: the CPU time the sending thread spends per 64-byte datagram to an allowed endpoint (the
//   set lookup), over 20,000 sendto() calls per configuration and round; the ratio of the costs
//   (none / with) is the packet rate relative to none, taken per round, median and quartiles
//   reported. CPU time, not packets per second: on a shared 2-core VM throughput swings by tens of
//   percent from one second to the next.
// - Where the cost goes, sampled (only if `perf` is installed): for each configuration, the share
//   of the sending thread's CPU spent in netfilter's hooks (nf_hook_slow and all it calls), and of
//   that in nftables' chains (nft_do_chain_inet); the rest is connection tracking, defragmentation
//   and the hooks' dispatch. A share is taken within one configuration's own samples, so drift
//   between configurations does not enter it. The lab's ISP router NATs the datagram in the same
//   softirq (netfilter too, alike in every configuration: what "no table" samples), so the rate
//   relative to no table is (1 - share) / (1 - share with no table).
// - TCP: iperf3 throughput (every rule evaluated, accepted by the last), 2 s a round - noisy,
//   shown for what it is.
// Run as root; everything happens in the lab's namespaces.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "bench/report.hpp"
#include "firewall/firewall.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
namespace lab = leakguard::lab;

namespace {

// iperf3 TCP client in the host namespace against the server in "inet": Gbit/s.
double iperf_tcp_gbps(const lab::Lab& net) {
  auto r = net.run("host", {"iperf3", "-c", "203.0.113.3", "-t", "2", "-J"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (r.status != 0 || j.is_discarded()) {
    std::fprintf(stderr, "iperf3 failed: %s\n", r.out.c_str());
    std::exit(1);
  }
  return j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e9;
}

double thread_cpu_ns() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

/// CPU nanoseconds per sendto() of a 64-byte datagram to 203.0.113.3:5201, over `n` sends.
double udp_send_ns(int fd, int n) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(5201);
  to.sin_addr.s_addr = htonl(0xcb007103);  // 203.0.113.3
  char payload[64] = {};
  const double t0 = thread_cpu_ns();
  for (int i = 0; i < n; ++i)
    if (sendto(fd, payload, sizeof payload, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0) {
      std::perror("sendto (the endpoint must be allowed)");
      std::exit(1);
    }
  return (thread_cpu_ns() - t0) / n;
}

/// Netfilter's share of a thread's CPU while it sends, from perf's samples.
struct Share {
  double hooks = 0;   ///< nf_hook_slow and everything it calls, percent
  double chains = 0;  ///< nft_do_chain_inet (our table's or the reference's chains), percent
  bool ok = false;
};

bool have_perf() { return lab::run({"perf", "--version"}).status == 0; }

/// Samples this thread (perf record -t, cpu-clock at 20 kHz, call graphs) while it sends `n`
/// datagrams through `fd`, then reads the inclusive shares of the two functions from perf report.
Share perf_share(int fd, int n, const std::string& file) {
  Share s;
  const std::string tid = std::to_string(gettid());
  std::remove(file.c_str());
  const pid_t pid = fork();
  if (pid == 0) {
    execlp("perf", "perf", "record", "-q", "-e", "cpu-clock", "-F", "20000", "-g", "-t", tid.c_str(), "-o", file.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid < 0) return s;
  // perf creates its file before it attaches: wait for it (5 s at most), then a moment more.
  // (Samples are counted as shares of the thread's own, so a late start only takes fewer.)
  struct stat st{};
  for (int i = 0; i < 500 && stat(file.c_str(), &st) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  udp_send_ns(fd, n);
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  auto r = lab::run({"perf", "report", "-i", file, "--children", "--sort", "sym", "--stdio", "-g", "none"});
  std::remove(file.c_str());
  std::remove((file + ".old").c_str());
  if (r.status != 0) return s;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    double children = 0, self = 0;
    char sym[128] = {};
    if (std::sscanf(line.c_str(), " %lf%% %lf%% [k] %127s", &children, &self, sym) != 3) continue;
    if (std::string_view(sym) == "nf_hook_slow") s.hooks = children, s.ok = true;
    if (std::string_view(sym) == "nft_do_chain_inet") s.chains = children;
  }
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 60;
  constexpr int kSends = 20000;
  lab::Lab net({.split_stun = true});
  lab::Process server(net.ns("inet"), {"iperf3", "-s", "-B", "203.0.113.3"});
  // Ready when it listens.
  for (int i = 0; i < 200 && net.run("inet", {"ss", "-Hltn", "sport = :5201"}).out.find("5201") == std::string::npos; ++i)
    net.run("inet", {"sleep", "0.01"});
  // A UDP socket that takes the datagrams (never read: once its buffer is full the receiving
  // side drops them, the same way with and without our table).
  int sink = -1, tx = -1;
  {
    lab::NetnsScope in(net.ns("inet"));
    sink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(5201);
    a.sin_addr.s_addr = htonl(0xcb007103);
    if (sink < 0 || bind(sink, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      std::perror("sink");
      return 1;
    }
  }
  {
    lab::NetnsScope in(net.ns("host"));
    tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (tx < 0) return 1;
  }

  firewall::Policy p;
  p.mode = firewall::Mode::udp;
  p.tunnels = {*IfnamePattern::parse("wg*")};
  p.endpoints.push_back(*Endpoint::parse("203.0.113.3:5201/udp"));  // an allowed endpoint
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

  // The references: one table with one rule that accepts the same datagrams; the same with
  // connection tracking on.
  const std::string ref_file = "/tmp/" + lab::unique_name("pathref") + ".nft";
  const std::string ref_ct_file = ref_file + ".ct";
  const std::string ref_lookup_file = ref_file + ".lookup";
  {
    // The fast path at its least: one rule, one lookup in a set of the same 100 endpoints.
    std::string elements;
    for (const auto& e : p.endpoints)
      elements += (elements.empty() ? "" : ", ") + e.address.str() + " . udp . " + std::to_string(e.port);
    std::ofstream(ref_lookup_file) << "table inet lgt_ref {\n\tset endpoints4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n"
                                   << "\t\telements = { " << elements << " }\n\t}\n"
                                   << "\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n"
                                      "\t\tip daddr . meta l4proto . th dport @endpoints4 accept\n\t\taccept\n\t}\n}\n";
  }
  {
    const std::string output = "\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n"
                               "\t\tudp dport 5201 accept\n\t\taccept\n\t}\n";
    std::ofstream(ref_file) << "table inet lgt_ref {\n" << output << "}\n";
    std::ofstream(ref_ct_file) << "table inet lgt_ref {\n" << output
                               << "\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n"
                                  "\t\tct state established accept\n\t}\n}\n";
  }
  enum Config { none, one_rule, one_rule_ct, one_lookup, ours, kConfigs };
  auto set_up = [&](int c) {
    if (!fw->remove()) std::exit(1);
    net.run("host", {"nft", "delete", "table", "inet", "lgt_ref"});
    if (c == one_rule && net.run("host", {"nft", "-f", ref_file}).status != 0) std::exit(1);
    if (c == one_rule_ct && net.run("host", {"nft", "-f", ref_ct_file}).status != 0) std::exit(1);
    if (c == one_lookup && net.run("host", {"nft", "-f", ref_lookup_file}).status != 0) std::exit(1);
    if (c == ours) {
      if (auto ok = fw->apply(p); !ok) {
        std::fprintf(stderr, "cannot install the table: %s\n", ok.error().str().c_str());
        std::exit(1);
      }
    }
  };
  udp_send_ns(tx, kSends);  // warm up: neighbour entries, caches
  std::vector<double> cost[kConfigs], ratio[kConfigs], ours_vs_ct;
  for (int r = 0; r < rounds; ++r) {
    double now[kConfigs];
    for (int k = 0; k < kConfigs; ++k) {
      const int c = (k + r) % kConfigs;  // rotating order: drift falls on every configuration alike
      set_up(c);
      now[c] = udp_send_ns(tx, kSends);
      cost[c].push_back(now[c]);
    }
    for (int c = 0; c < kConfigs; ++c) ratio[c].push_back(now[none] / now[c]);
    ours_vs_ct.push_back(now[one_rule_ct] / now[ours]);
  }
  // Where the cost goes (perf's samples), one configuration at a time.
  constexpr int kSampledSends = 200000;
  Share share[kConfigs];
  const bool sampled = have_perf();
  if (sampled) {
    const std::string file = "/tmp/" + lab::unique_name("pathperf") + ".data";
    for (int c = 0; c < kConfigs; ++c) {
      set_up(c);
      share[c] = perf_share(tx, kSampledSends, file);
    }
  }
  std::remove(ref_file.c_str());
  std::remove(ref_ct_file.c_str());
  std::remove(ref_lookup_file.c_str());
  auto quartiles = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return std::array<double, 3>{v[v.size() / 4], v[v.size() / 2], v[3 * v.size() / 4]};
  };
  const auto qo = quartiles(ratio[ours]), qr = quartiles(ratio[one_rule]), qc = quartiles(ratio[one_rule_ct]),
             ql = quartiles(ratio[one_lookup]), qoc = quartiles(ours_vs_ct);
  std::printf("UDP, 64-byte datagrams to an allowed endpoint via eth0, %d rounds of %d sends per configuration:\n", rounds, kSends);
  std::printf("  CPU per send, median: %.0f ns without a table, %.0f ns with a one-rule table, %.0f ns with it and conntrack on, "
              "%.0f ns with a one-lookup table, %.0f ns with ours\n",
              median(cost[none]), median(cost[one_rule]), median(cost[one_rule_ct]), median(cost[one_lookup]), median(cost[ours]));
  std::printf("  rate relative to no table (median [quartiles]): one-rule table %.3f [%.3f-%.3f], with conntrack on %.3f [%.3f-%.3f],\n"
              "  one-lookup table (one rule: the endpoint set, 100 elements) %.3f [%.3f-%.3f], ours %.3f [%.3f-%.3f]  goal >= 0.98\n",
              qr[1], qr[0], qr[2], qc[1], qc[0], qc[2], ql[1], ql[0], ql[2], qo[1], qo[0], qo[2]);
  std::printf("  ours relative to the one-rule table with conntrack on (what our rules cost beyond tracking): %.3f [%.3f-%.3f]\n",
              qoc[1], qoc[0], qoc[2]);

  auto rate = [&](const Share& x) { return (1 - x.hooks / 100) / (1 - share[none].hooks / 100); };
  if (!sampled) {
    std::printf("  where the cost goes: not sampled (perf is not installed: apt-get install --no-install-recommends linux-perf)\n");
  } else {
    // The packet is also NATed by the lab's ISP router, in this thread's softirq: that is
    // netfilter too, the same in every configuration (it is what "no table" samples). With
    // R the rest of the path, alike in all, T = R / (1 - share), so the rate relative to no
    // table is (1 - share) / (1 - share with no table).
    std::printf("  where the cost goes (perf, cpu-clock samples of the sending thread over %d sends each; shares of its CPU;\n"
                "  with no table, netfilter is the ISP router's NAT on the way):\n",
                kSampledSends);
    const char* names[kConfigs] = {"no table", "one-rule table", "one-rule table, conntrack on", "one-lookup table", "ours"};
    for (int c = 0; c < kConfigs; ++c) {
      if (!share[c].ok) {
        std::printf("    %-30s no samples in netfilter's hooks found (perf report failed?)\n", names[c]);
        continue;
      }
      std::printf("    %-30s netfilter %5.2f%%, of it nftables' inet chains %5.2f%%  -> rate %.3f of no table\n", names[c],
                  share[c].hooks, share[c].chains, rate(share[c]));
    }
  }

  // TCP: a few iperf3 rounds without and with our table, for scale.
  std::vector<double> tcp_without, tcp_with, tcp_ratio;
  for (int r = 0; r < 3; ++r) {
    set_up(none);
    const double a = iperf_tcp_gbps(net);
    set_up(ours);
    const double b = iperf_tcp_gbps(net);
    tcp_without.push_back(a);
    tcp_with.push_back(b);
    tcp_ratio.push_back(b / a);
  }
  close(tx);
  close(sink);
  std::printf("TCP via eth0 (udp policy: every rule evaluated, accepted by the last): median %.2f Gbit/s without, %.2f with "
              "(%.2fx; iperf3 throughput swings widely here)\n",
              median(tcp_without), median(tcp_with), median(tcp_ratio));
  char a[64], b[64];
  std::snprintf(a, sizeof a, "%.0f ns/send", median(cost[ours]));
  std::snprintf(b, sizeof b, "%.0f ns/send", median(cost[none]));
  bench::result("packet path: UDP to an allowed endpoint, CPU per send with our table (vs none; ratio = relative rate, goal >= 0.98x)",
                a, b, bench::times3(qo[1]));
  std::snprintf(a, sizeof a, "%.0f ns/send", median(cost[one_rule]));
  bench::result("packet path: the same with a one-rule table (the cost of any nftables rule here)", a, b, bench::times3(qr[1]));
  std::snprintf(a, sizeof a, "%.0f ns/send", median(cost[one_rule_ct]));
  bench::result("packet path: the same with a one-rule table and conntrack on (what the endpoint's ct state costs)", a, b,
                bench::times3(qc[1]));
  std::snprintf(a, sizeof a, "%.0f ns/send", median(cost[one_lookup]));
  bench::result("packet path: the same with a table whose only rule is one lookup in the endpoint set (the least a fast path costs)", a,
                b, bench::times3(ql[1]));
  std::snprintf(a, sizeof a, "%.0f ns/send", median(cost[ours]));
  std::snprintf(b, sizeof b, "%.0f ns/send", median(cost[one_rule_ct]));
  bench::result("packet path: ours vs the one-rule table with conntrack on (our rules beyond tracking)", a, b,
                bench::times3(median(ours_vs_ct)));
  if (sampled && share[ours].ok && share[none].ok) {
    std::snprintf(a, sizeof a, "%.2f%% of its CPU", share[ours].hooks);
    std::snprintf(b, sizeof b, "%.2f%% with no table", share[none].hooks);
    bench::result("packet path: netfilter's share of the sender's CPU with our table, sampled by perf (vs none; ratio = relative rate)",
                  a, b, bench::times3(rate(share[ours])));
  }
  std::snprintf(a, sizeof a, "%.2f Gbit/s", median(tcp_with));
  std::snprintf(b, sizeof b, "%.2f Gbit/s", median(tcp_without));
  bench::result("packet path: TCP throughput via eth0, with our table (vs none)", a, b, bench::times(median(tcp_ratio)));
  return 0;
}
