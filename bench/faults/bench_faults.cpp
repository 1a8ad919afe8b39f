// Fault injection in the lab, with the daemon running (policy strict, so UDP and TCP out of eth0
// are both leaks) while the host floods UDP datagrams and TCP connection attempts towards the
// internet namespace through eth0 (the split route). A counter on the internet side counts what
// arrives. Each fault is repeated; the figure is how many packets/connections got through.
//   bench_faults [FLAPS=50] [KILLS=20] [FLUSHES=50] [HUPS=100] [SOAK_SECONDS=0]
// With SOAK_SECONDS, the mix (flap, flush, reload, probe) then runs that long against one daemon
// process, and its memory and open file descriptors are reported at the start and the end.
// Run as root. Prints RESULT lines for scripts/bench.sh.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "bench/report.hpp"
#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono;
using namespace std::chrono_literals;
namespace lab = leakguard::lab;
using leakguard::e2e::eventually;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {

sockaddr_in target(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, "203.0.113.3", &a.sin_addr);
  return a;
}

// The flood (host) and the counter (internet side), on threads living in those namespaces.
struct Traffic {
  std::atomic<bool> stop{false}, ready{false};
  std::atomic<long> udp_sent{0}, udp_refused{0}, udp_arrived{0}, tcp_tried{0}, tcp_accepted{0};
  // What came through the tunnel (source: the VPN's exit address) is allowed traffic, not a leak.
  std::atomic<long> via_tunnel{0};
  static bool from_vpn(const sockaddr_in& from) {
    sockaddr_in exit = target(0);
    inet_pton(AF_INET, "203.0.113.66", &exit.sin_addr);
    return from.sin_addr.s_addr == exit.sin_addr.s_addr;
  }
  std::thread sink, tcp_sink, flood;

  explicit Traffic(const Rig& rig) {
    std::atomic<int> listening{0};
    sink = std::thread([&, ns = rig.net.ns("inet")] {
      lab::NetnsScope in(ns);
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      auto a = target(40000);
      bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      timeval tv{0, 50000};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ++listening;
      char b[16];
      while (!stop) {
        sockaddr_in from{};
        socklen_t len = sizeof from;
        if (recvfrom(fd, b, sizeof b, 0, reinterpret_cast<sockaddr*>(&from), &len) > 0) ++(from_vpn(from) ? via_tunnel : udp_arrived);
      }
      close(fd);
    });
    tcp_sink = std::thread([&, ns = rig.net.ns("inet")] {
      lab::NetnsScope in(ns);
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      auto a = target(40001);
      bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      listen(fd, 128);
      timeval tv{0, 50000};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ++listening;
      while (!stop) {
        sockaddr_in from{};
        socklen_t len = sizeof from;
        int c = accept(fd, reinterpret_cast<sockaddr*>(&from), &len);
        if (c >= 0) {
          ++(from_vpn(from) ? via_tunnel : tcp_accepted);
          close(c);
        }
      }
      close(fd);
    });
    while (listening < 2) std::this_thread::yield();
    flood = std::thread([&, ns = rig.net.ns("host")] {
      lab::NetnsScope in(ns);
      int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      auto ua = target(40000), ta = target(40001);
      ready = true;
      for (long i = 0; !stop; ++i) {
        if (sendto(u, "leak", 4, 0, reinterpret_cast<sockaddr*>(&ua), sizeof ua) == 4) ++udp_sent;
        else ++udp_refused;
        if (i % 50 == 0) {  // a TCP attempt now and then: non-blocking, abandoned after 1 ms
          int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
          connect(t, reinterpret_cast<sockaddr*>(&ta), sizeof ta);
          ++tcp_tried;
          std::this_thread::sleep_for(1ms);
          close(t);
        }
      }
      close(u);
    });
    while (!ready) std::this_thread::yield();
  }
  ~Traffic() {
    stop = true;
    flood.join();
    sink.join();
    tcp_sink.join();
  }
  long leaked() const { return udp_arrived + tcp_accepted; }
};

void report(const std::string& what, long before, const Traffic& t, int rounds, double seconds) {
  const long leaked = t.leaked() - before;
  std::printf("%-58s %4d rounds in %5.1f s: %ld leaked (so far: UDP %ld accepted by the kernel / %ld refused, "
              "TCP %ld tried; %ld arrived through the tunnel)\n",
              what.c_str(), rounds, seconds, leaked, t.udp_sent.load(), t.udp_refused.load(), t.tcp_tried.load(),
              t.via_tunnel.load());
  leakguard::bench::result("faults: " + what + " x" + std::to_string(rounds), std::to_string(leaked) + " leaked");
}

}  // namespace

int main(int argc, char** argv) {
  const int flaps = argc > 1 ? std::atoi(argv[1]) : 50;
  const int kills = argc > 2 ? std::atoi(argv[2]) : 20;
  const int flushes = argc > 3 ? std::atoi(argv[3]) : 50;
  const int hups = argc > 4 ? std::atoi(argv[4]) : 100;
  const int soak = argc > 5 ? std::atoi(argv[5]) : 0;

  Rig rig(RigOptions{.lab = {.split_stun = true}, .armed = true, .policy = "strict"});
  rig.start();
  if (!rig.wait_state("secured", 20s)) {
    std::fprintf(stderr, "the daemon did not reach secured:\n%s\n", rig.output().c_str());
    return 1;
  }
  Traffic t(rig);
  eventually([&] { return t.udp_refused > 1000; }, 5s);
  std::printf("flooding UDP and TCP out of eth0 (policy strict); counting arrivals in the internet namespace\n");

  long before = t.leaked();
  auto t0 = steady_clock::now();
  for (int i = 0; i < flaps; ++i) {  // wireguard-go killed and started again, as wg-quick down/up
    rig.net.set("tunnel", "down");
    rig.net.set("tunnel", "up");
  }
  report("tunnel flaps (wireguard-go killed and restarted)", before, t, flaps, duration<double>(steady_clock::now() - t0).count());

  before = t.leaked();
  t0 = steady_clock::now();
  for (int i = 0; i < kills; ++i) {  // kill -9 and restart the daemon, while the tunnel flaps
    rig.daemon().stop(SIGKILL);
    rig.net.set("tunnel", i % 2 ? "up" : "down");
    rig.start();
    if (!rig.wait_state(i % 2 ? "secured" : "blocking", 20s)) {
      std::fprintf(stderr, "restart %d: no state:\n%s\n", i, rig.output().c_str());
      return 1;
    }
  }
  if (rig.state() != "secured") rig.net.set("tunnel", "up");
  report("daemon kill -9 + restart during tunnel flaps", before, t, kills, duration<double>(steady_clock::now() - t0).count());

  const std::string flush_file = rig.dir + "/flush.nft";
  std::ofstream(flush_file) << "flush ruleset\ntable inet other {\n  chain c { type filter hook output priority 0; accept; }\n}\n";
  before = t.leaked();
  t0 = steady_clock::now();
  int still_there = 0;
  for (int i = 0; i < flushes; ++i) {
    if (i % 2) rig.net.run("host", {"nft", "flush", "ruleset"});
    else rig.net.run("host", {"nft", "-f", flush_file});
    still_there += !rig.table().empty();
  }
  report("nft flush ruleset / nft -f starting with flush ruleset", before, t, flushes,
         duration<double>(steady_clock::now() - t0).count());
  std::printf("    our table present right after %d of %d flushes\n", still_there, flushes);

  const std::string good = leakguard::e2e::read_file(rig.config);
  // The rules without their counters (which the flood keeps changing).
  auto rules = [&] {
    std::string x = rig.table(), out;
    std::size_t at = 0;
    while (at < x.size()) {
      auto c = x.find("counter packets ", at);
      if (c == std::string::npos) c = x.size();
      out += x.substr(at, c - at);
      at = c == x.size() ? c : x.find(" bytes ", c);
      if (at != x.size() && at != std::string::npos) at = x.find_first_of(" \n", at + 7);
      if (at == std::string::npos) at = x.size();
    }
    return out;
  };
  const std::string table = rules();
  before = t.leaked();
  t0 = steady_clock::now();
  int unchanged = 0;
  for (int i = 0; i < hups; ++i) {
    std::ofstream(rig.config) << (i % 2 ? good : good + "probe:\n  interval: -1s\n");  // odd: good, even: a duplicate key
    kill(rig.daemon().pid(), SIGHUP);
    unchanged += rules() == table;
  }
  std::ofstream(rig.config) << good;
  report("SIGHUP, alternating broken and good configuration", before, t, hups, duration<double>(steady_clock::now() - t0).count());
  std::printf("    table identical after %d of %d reloads; state now %s\n", unchanged, hups, rig.state().c_str());

  before = t.leaked();
  t0 = steady_clock::now();
  rig.bus.restart();
  const bool back = eventually([&] { return rig.state() == "secured"; }, 15s);
  report("bus restarted under load", before, t, 1, duration<double>(steady_clock::now() - t0).count());
  std::printf("    control back: %s\n", back ? "yes" : "NO");

  if (soak > 0) {
    auto rss = [&] {
      std::ifstream f("/proc/" + std::to_string(rig.daemon().pid()) + "/status");
      std::string line;
      while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
      return -1L;
    };
    auto fds = [&] {
      long n = 0;
      for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(rig.daemon().pid()) + "/fd")) {
        (void)e;
        ++n;
      }
      return n;
    };
    before = t.leaked();
    const long rss0 = rss(), fd0 = fds();
    t0 = steady_clock::now();
    int rounds = 0;
    while (steady_clock::now() - t0 < seconds(soak)) {
      rig.net.set("tunnel", "down");
      rig.net.set("tunnel", "up");
      rig.net.run("host", {"nft", "flush", "ruleset"});
      kill(rig.daemon().pid(), SIGHUP);
      rig.ctl({"probe"});
      ++rounds;
    }
    report("soak: flap + flush + reload + probe", before, t, rounds, duration<double>(steady_clock::now() - t0).count());
    std::printf("    daemon RSS %ld kB -> %ld kB, open fds %ld -> %ld\n", rss0, rss(), fd0, fds());
    leakguard::bench::result("soak " + std::to_string(soak) + " s: daemon RSS start -> end",
                             std::to_string(rss0) + " kB -> " + std::to_string(rss()) + " kB");
    leakguard::bench::result("soak " + std::to_string(soak) + " s: daemon open fds start -> end",
                             std::to_string(fd0) + " -> " + std::to_string(fds()));
  }

  std::printf("total: %ld UDP datagrams and %ld TCP attempts sent towards the internet; %ld arrived outside the "
              "tunnel (leaked), %ld through it\n",
              t.udp_sent + t.udp_refused, t.tcp_tried.load(), t.leaked(), t.via_tunnel.load());
  return t.leaked() == 0 ? 0 : 1;
}
