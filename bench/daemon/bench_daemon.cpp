// leakguardd figures, in the lab (run as root): the time from the tunnel interface disappearing to
// the daemon reporting `blocking` (its StateChanged signal, received on a private bus), the
// daemon's memory after many probe rounds run fast, and its CPU and wake-ups at idle between probes.
//
// The tunnel's disappearance is timed twice: from the kernel's own link notification, which this
// program receives on an rtnetlink socket of its own in the lab's host namespace, just as the
// daemon does (the daemon's latency); and, as before, from just before `ip link del wg0` is
// started (that adds starting `ip netns exec ... ip` on a busy machine).
// LEAKGUARDD=path runs another leakguardd binary (e.g. an older build, for before/after figures).
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sdbus-c++/sdbus-c++.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "leakguard_proxy.h"
#include "bench/daemon_watch.hpp"
#include "bench/report.hpp"
#include "tests/lab/bus.hpp"
#include "tests/lab/lab.hpp"

using namespace std::chrono;
namespace lab = leakguard::lab;

namespace {

using leakguard::bench::LinkDown;
using leakguard::bench::Watch;

std::string status_field(pid_t pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) {
      auto v = line.substr(key.size() + 1);
      return v.substr(v.find_first_not_of(" \t"));
    }
  return "?";
}

double cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string x;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15; ++i) {
    in >> x;
    if (i == 14) utime = std::stoul(x);
    if (i == 15) stime = std::stoul(x);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string config(const std::string& interval) {
  return "policy: udp\ntunnel:\n  interfaces: [wg*]\n  endpoints: [\"198.51.100.1:51820/udp\"]\n  fwmark: 51820\n"
         "probe:\n  interval: " + interval + "\n  timeout: 1s\n  servers: [\"203.0.113.3:3478\", \"[2001:db8:3::3]:3478\"]\n";
}

}  // namespace

int main() {
  const std::string daemon = std::getenv("LEAKGUARDD") ? std::getenv("LEAKGUARDD") : LEAKGUARDD;
  lab::Lab net;
  lab::PrivateBus bus(LEAKGUARD_DBUS_POLICY, "users");
  const std::string dir = "/tmp/" + lab::unique_name("bench-daemon");
  lab::run({"mkdir", "-p", dir});
  auto conn = sdbus::createSystemBusConnection();
  conn->enterEventLoopAsync();

  // 1. Tunnel interface gone -> `blocking` signalled.
  {
    std::ofstream(dir + "/a.yaml") << config("60s");
    lab::Process d(net.ns("host"), {daemon, "--config", dir + "/a.yaml"}, dir + "/a.log");
    Watch w(*conn);
    if (!w.wait_state("secured", 20s)) {
      std::fprintf(stderr, "the daemon did not reach secured\n");
      return 1;
    }
    LinkDown kernel(net.ns("host"), "wg0");
    std::vector<double> from_event, from_spawn;
    for (int i = 0; i < 30; ++i) {
      w.clear();
      kernel.clear();
      const auto t0 = steady_clock::now();
      net.run("host", {"ip", "link", "del", "wg0"});
      steady_clock::time_point at;
      if (!w.wait_state("blocking", 5s, &at)) return 1;
      const auto event = kernel.at();
      if (!event) {
        std::fprintf(stderr, "no link notification for wg0 seen\n");
        return 1;
      }
      from_event.push_back(duration<double, std::milli>(at - *event).count());
      from_spawn.push_back(duration<double, std::milli>(at - t0).count());
      w.clear();
      net.set("tunnel", "down");  // the rest of wg-quick down (rules), then up again
      net.set("tunnel", "up");
      if (!w.wait_state("secured", 10s)) return 1;
    }
    std::sort(from_event.begin(), from_event.end());
    std::sort(from_spawn.begin(), from_spawn.end());
    const auto median = [](const std::vector<double>& v) { return v[v.size() / 2]; };
    const auto p99 = [](const std::vector<double>& v) { return v[v.size() * 99 / 100]; };
    std::printf("tunnel link gone (kernel notification) -> StateChanged(blocking): median %.1f ms, p99 %.1f ms over "
                "%zu runs\n",
                median(from_event), p99(from_event), from_event.size());
    std::printf("  the same from just before spawning `ip link del wg0`: median %.1f ms, p99 %.1f ms\n",
                median(from_spawn), p99(from_spawn));
    leakguard::bench::result("tunnel link gone -> blocking signalled, median", leakguard::bench::ms(median(from_event)));
    leakguard::bench::result("tunnel link gone -> blocking signalled, p99", leakguard::bench::ms(p99(from_event)));
    leakguard::bench::result("tunnel link gone -> blocking signalled, from spawning ip link del, median",
                             leakguard::bench::ms(median(from_spawn)));
    leakguard::bench::result("tunnel link gone -> blocking signalled, from spawning ip link del, p99",
                             leakguard::bench::ms(p99(from_spawn)));

    // 3. Idle between probes (60 s interval): CPU and wake-ups over 10 s.
    const double cpu0 = cpu_seconds(d.pid());
    const long sw0 = std::stol(status_field(d.pid(), "voluntary_ctxt_switches"));
    std::this_thread::sleep_for(10s);
    const double cpu = cpu_seconds(d.pid()) - cpu0;
    const long sw = std::stol(status_field(d.pid(), "voluntary_ctxt_switches")) - sw0;
    std::printf("idle between probes, 10 s: %.2f s CPU, %ld wake-ups (voluntary context switches)\n", cpu, sw);
    leakguard::bench::result("daemon idle between probes, 10 s: CPU / wake-ups",
                             std::to_string(cpu).substr(0, 4) + " s / " + std::to_string(sw));
  }

  // 2. Memory after 600 probe rounds (10 hours at the default 60 s interval), asked for back to
  //    back with ProbeNow (the configuration does not allow intervals under 1 s).
  {
    std::ofstream(dir + "/b.yaml") << config("60s");
    lab::Process d(net.ns("host"), {daemon, "--config", dir + "/b.yaml"}, dir + "/b.log");
    Watch w(*conn);
    if (!w.wait_state("secured", 20s)) return 1;
    for (int i = 0; i < 10; ++i) w.ProbeNow();
    const std::string rss10 = status_field(d.pid(), "VmRSS");
    const auto t0 = steady_clock::now();
    for (int i = 0; i < 600; ++i) w.ProbeNow();
    std::printf("RSS after 10 rounds: %s; after 610 rounds: %s (peak %s); 600 rounds took %.1f s\n", rss10.c_str(),
                status_field(d.pid(), "VmRSS").c_str(), status_field(d.pid(), "VmHWM").c_str(),
                duration<double>(steady_clock::now() - t0).count());
    leakguard::bench::result("daemon RSS after 610 probe rounds (goal < 10 MiB)", status_field(d.pid(), "VmRSS"));
  }
  conn->leaveEventLoop();
  lab::run({"rm", "-rf", dir});
  return 0;
}
