// probe.on_exposure escalate (issue 17, item 4), in the lab (run as root): how long a web page's
// path out of the tunnel stays open. leakguardd in udp policy with a STUN server over TCP on IPv6
// ([2001:db8:3::3]:3478/tcp) and the tunnel carrying both families; then IPv6's default route
// into the tunnel is deleted (IPv6 goes natively via eth0, the tunnel stays up) and, after the
// escalation, put back. Seen from outside the daemon, in the host namespace:
//   - the kernel's notification of the route change (rtnetlink),
//   - the STUN server's TCP answer arriving on eth0 over IPv6 (a packet socket: the probe's
//     routed socket got out - the moment the daemon could know),
//   - the escalated rule going in (nf_tables notification of a new rule in our table).
// Figures: answer -> rule (goal <= 5 ms) and route change -> rule (goal: one probe round).
//
//   bench_escalate [RUNS]   default 10
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/ip6.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.hpp"
#include "tests/e2e/rig/rig.hpp"
#include "tests/lab/lab.hpp"

using namespace std::chrono;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;
namespace lab = leakguard::lab;
namespace bench = leakguard::bench;

namespace {

// The three event sources, opened inside the host namespace.
struct Watch {
  int route = -1, nft = -1, packets = -1;
  explicit Watch(const Rig& rig) {
    lab::NetnsScope in(rig.net.ns("host"));
    route = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    sockaddr_nl r{};
    r.nl_family = AF_NETLINK;
    r.nl_groups = RTMGRP_IPV6_ROUTE;
    nft = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    sockaddr_nl n{};
    n.nl_family = AF_NETLINK;
    n.nl_groups = 1u << (NFNLGRP_NFTABLES - 1);
    packets = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IPV6));
    sockaddr_ll l{};
    l.sll_family = AF_PACKET;
    l.sll_protocol = htons(ETH_P_IPV6);
    l.sll_ifindex = static_cast<int>(if_nametoindex("eth0"));
    // Room for bursts (the daemon's set updates on a network change, the probes' packets): a
    // notification lost to a full buffer would lose a run.
    const int big = 8 << 20;
    for (int fd : {route, nft, packets}) (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    if (route < 0 || nft < 0 || packets < 0 || ::bind(route, reinterpret_cast<sockaddr*>(&r), sizeof r) != 0 ||
        ::bind(nft, reinterpret_cast<sockaddr*>(&n), sizeof n) != 0 ||
        ::bind(packets, reinterpret_cast<sockaddr*>(&l), sizeof l) != 0) {
      std::perror("watch sockets");
      std::exit(1);
    }
  }
  ~Watch() {
    for (int fd : {route, nft, packets}) ::close(fd);
  }
  void drain() {
    std::array<char, 65536> buf;
    for (int fd : {route, nft, packets})
      while (::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
      }
  }
};

// A netlink datagram holds one or more messages: true if one of them is `type`.
bool has_message(const char* buf, ssize_t n, std::uint16_t type) {
  for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n))
    if (h->nlmsg_type == type) return true;
  return false;
}

// An IPv6 packet from [2001:db8:3::3]:3478 over TCP that carries data: the STUN server's answer.
bool is_answer(const unsigned char* p, ssize_t n) {
  if (n < 40 + 20) return false;
  in6_addr server{};
  inet_pton(AF_INET6, "2001:db8:3::3", &server);
  if (std::memcmp(p + 8, &server, 16) != 0 || p[6] != IPPROTO_TCP) return false;
  const unsigned char* tcp = p + 40;
  const unsigned sport = (tcp[0] << 8) | tcp[1];
  const ssize_t header = (tcp[12] >> 4) * 4;
  return sport == 3478 && n > 40 + header;
}

struct Run {
  double answer_to_rule = -1, route_to_rule = -1;
};

// Deletes IPv6's default route into the tunnel and times the escalation; false if it never came.
std::optional<Run> one_run(const Rig& rig, Watch& w) {
  w.drain();
  std::optional<steady_clock::time_point> route_at, answer_at, rule_at;
  // The change runs beside the watch: running it takes longer than the daemon needs to react,
  // and every event must be stamped when it arrives, not when the command has returned.
  lab::RunResult del;
  std::thread change([&] { del = rig.net.run("host", {"ip", "-6", "route", "del", "default", "dev", "wg0", "table", "51820"}); });
  const auto end = steady_clock::now() + 10s;
  std::array<char, 65536> buf;
  while (!rule_at && steady_clock::now() < end) {
    pollfd p[3] = {{w.route, POLLIN, 0}, {w.nft, POLLIN, 0}, {w.packets, POLLIN, 0}};
    if (::poll(p, 3, 100) <= 0) continue;
    // Everything each socket has, in the order route, packets, rules (a reply's packet is
    // queued before the rule it causes).
    const auto now = steady_clock::now();
    for (ssize_t n; (n = ::recv(w.route, buf.data(), buf.size(), MSG_DONTWAIT)) > 0 || (n < 0 && errno == ENOBUFS);)
      if (n > 0 && !route_at && has_message(buf.data(), n, RTM_DELROUTE)) route_at = now;
    for (ssize_t n; (n = ::recv(w.packets, buf.data(), buf.size(), MSG_DONTWAIT)) > 0;)
      if (route_at && !rule_at && is_answer(reinterpret_cast<const unsigned char*>(buf.data()), n)) answer_at = now;  // the last before the rule
    for (ssize_t n; (n = ::recv(w.nft, buf.data(), buf.size(), MSG_DONTWAIT)) > 0 || (n < 0 && errno == ENOBUFS);) {
      if (n < 0) std::fprintf(stderr, "nf_tables notifications lost (ENOBUFS)\n");
      if (n > 0 && route_at && !rule_at && has_message(buf.data(), n, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)) rule_at = now;
    }
    (void)p;
  }
  change.join();
  if (del.status != 0) {
    std::fprintf(stderr, "ip -6 route del: %s\n", del.out.c_str());
    return std::nullopt;
  }
  Run r;
  if (!rule_at || !route_at || !answer_at) {
    const std::string log = rig.output();
    std::fprintf(stderr, "no escalation seen (route %d, answer %d, rule %d)\n%s\n", bool(route_at), bool(answer_at), bool(rule_at),
                 log.substr(log.size() > 4000 ? log.size() - 4000 : 0).c_str());
    return std::nullopt;
  }
  r.answer_to_rule = duration<double, std::milli>(*rule_at - *answer_at).count();
  r.route_to_rule = duration<double, std::milli>(*rule_at - *route_at).count();
  // Back into the tunnel: the daemon lets IPv6 go at the next round.
  (void)rig.net.run("host", {"ip", "-6", "route", "add", "default", "dev", "wg0", "table", "51820"});
  if (!leakguard::e2e::eventually([&] { return rig.status()["escalated"].empty(); }, 15s) || !rig.wait_state("secured")) {
    std::fprintf(stderr, "not released:\n%s\n", rig.output().c_str());
    return std::nullopt;
  }
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double maximum(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 10;
  if (runs < 1) {
    std::fprintf(stderr, "usage: bench_escalate [RUNS]\n");
    return 2;
  }
  Rig rig(RigOptions{.lab = {}, .servers = R"(["203.0.113.3:3478", "[2001:db8:3::3]:3478/tcp"])"});
  rig.start();
  if (!rig.wait_state("secured", 30s)) {
    std::fprintf(stderr, "leakguardd is not secured:\n%s\n", rig.output().c_str());
    return 1;
  }
  Watch w(rig);
  std::vector<double> answer_to_rule, route_to_rule;
  for (int i = 0; i < runs; ++i) {
    auto r = one_run(rig, w);
    if (!r) return 1;
    answer_to_rule.push_back(r->answer_to_rule);
    route_to_rule.push_back(r->route_to_rule);
  }
  std::printf("IPv6's default route leaves the tunnel (udp policy, STUN over TCP on IPv6), %d runs:\n", runs);
  std::printf("  the STUN server's answer on eth0 -> the escalated rule: median %.2f ms, max %.2f ms\n", median(answer_to_rule),
              maximum(answer_to_rule));
  std::printf("  the route change -> the escalated rule:               median %.2f ms, max %.2f ms\n", median(route_to_rule),
              maximum(route_to_rule));
  bench::result("escalation: a page's path out answered -> the escalated rule in place, median (goal <= 5 ms)",
                bench::ms(median(answer_to_rule)));
  bench::result("escalation: IPv6's route leaves the tunnel -> the escalated rule in place, median (one probe round)",
                bench::ms(median(route_to_rule)));
  return 0;
}
