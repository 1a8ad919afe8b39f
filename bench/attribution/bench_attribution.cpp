// What attribution costs (issue 18), in the lab (run as root): leakguardd in the host namespace,
// policy udp, the STUN server's address routed outside the tunnel; a flood of blocked UDP
// datagrams at a fixed rate (default 100,000 a second) to 203.0.113.3 via eth0, for D seconds,
// with attribution on and, as the alternative in the same run, off (no log rules, no listener):
//   bench_attribution [RATE] [SECONDS]   (defaults 100000 10)
// - the daemon's CPU time over the flood (/proc/PID/stat utime+stime), as % of one core;
// - its resident memory before and after (VmRSS), and the flows it keeps (bounded at 256);
// - the packet path: the flooding thread's CPU time per blocked sendto() (CLOCK_THREAD_CPUTIME_ID),
//   with the log rules (their limit checked on every blocked packet, the log taken 100 times a
//   second) against without.
// Every datagram is refused by the block (EPERM); the flood uses many source ports (a new socket
// every 1,000 datagrams) so that the lookup budget is exercised too. The benchmark runs in a cgroup
// five levels deep, as a desktop application's scope is (user.slice/user-N.slice/user@N.service/
// app.slice/app-X.scope), so the rules remember five cgroups for every packet they log and the
// daemon reads them for every sender whose socket is gone.
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "attribution/lookup.hpp"
#include "bench/report.hpp"
#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono;
namespace lab = leakguard::lab;
using leakguard::e2e::eventually;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {

double cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string x;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 13; ++i) in >> x;  // fields 3..13
  in >> utime >> stime;                    // 14, 15
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

double thread_cpu_ns() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

struct Figures {
  double daemon_cpu_pct = 0, ns_per_send = 0;
  long rss_before = 0, rss_after = 0;
  long sent = 0, refused = 0;
  std::uint64_t logged = 0;
  std::size_t flows = 0;
};

Figures run(bool attribution, long rate, int seconds) {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  std::ofstream(rig.config, std::ios::app) << "attribution:\n  enabled: " << (attribution ? "true" : "false") << "\n";
  rig.start();
  if (!rig.wait_state("secured", 20s)) {
    std::fprintf(stderr, "the daemon did not reach secured:\n%s\n", rig.output().c_str());
    std::exit(1);
  }
  const pid_t pid = rig.daemon().pid();
  Figures f;
  f.rss_before = rss_kib(pid);
  double send_ns = 0;
  {
    lab::NetnsScope in(rig.net.ns("host"));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(40000);
    to.sin_addr.s_addr = htonl(0xcb007103);  // 203.0.113.3
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    const double cpu0 = cpu_seconds(pid);
    const auto t0 = steady_clock::now();
    const auto end = t0 + std::chrono::seconds(seconds);
    long due = 0;
    while (steady_clock::now() < end) {
      // Paced by the clock: every millisecond, what is due by now.
      const long want = static_cast<long>(duration<double>(steady_clock::now() - t0).count() * static_cast<double>(rate));
      const double c0 = thread_cpu_ns();
      for (; due < want; ++due) {
        if (due % 1000 == 0) {
          close(fd);
          fd = socket(AF_INET, SOCK_DGRAM, 0);
        }
        if (sendto(fd, "leakguard", 9, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) ++f.refused;
        else ++f.sent;
      }
      send_ns += thread_cpu_ns() - c0;
      std::this_thread::sleep_for(1ms);
    }
    close(fd);
    // The daemon's share, measured over the flood plus a moment for what it still reads.
    std::this_thread::sleep_for(200ms);
    f.daemon_cpu_pct = 100.0 * (cpu_seconds(pid) - cpu0) / duration<double>(steady_clock::now() - t0).count();
  }
  f.ns_per_send = send_ns / static_cast<double>(f.sent + f.refused);
  f.rss_after = rss_kib(pid);
  const auto st = rig.status();
  if (st.contains("blocked") && st["blocked"].is_object()) {
    f.logged = st["blocked"].value("packets", std::uint64_t{0});
    f.flows = st["blocked"]["flows"].size();
  }
  return f;
}

}  // namespace

// Moves this process into a cgroup `depth` levels below the cgroup2 root, and back at the end.
struct DeepScope {
  std::string root, top, old;
  explicit DeepScope(int depth) {
    root = leakguard::attribution::cgroup2_mount();
    if (root.empty()) return;
    std::ifstream self("/proc/self/cgroup");
    for (std::string line; std::getline(self, line);)
      if (line.starts_with("0::")) old = root + line.substr(3);
    top = root + "/lgt-bench-attr-" + std::to_string(getpid());
    std::string dir = top;
    for (int i = 1; i < depth; ++i) dir += "/level" + std::to_string(i + 1);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/cgroup.procs") << getpid() << "\n";
  }
  ~DeepScope() {
    if (top.empty()) return;
    {
      std::ofstream back(old + "/cgroup.procs");
      back << getpid() << std::endl;  // flushed now: the move must be done before the rmdirs
    }
    std::vector<std::string> dirs{top};
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(top, ec))
      if (e.is_directory(ec)) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });  // deepest first
    for (const auto& d : dirs) {
      // A cgroup whose child was just removed may be busy for a moment (the child is still dying).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (::rmdir(d.c_str()) != 0 && errno == EBUSY && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (std::filesystem::exists(d)) std::fprintf(stderr, "bench_attribution: cannot remove %s: %s\n", d.c_str(), std::strerror(errno));
    }
  }
};

int main(int argc, char** argv) {
  DeepScope scope(5);
  const long rate = argc > 1 ? std::atol(argv[1]) : 100000;
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 10;
  std::printf("a blocked UDP flood of %ld datagrams a second for %d s, attribution on and off (leakguardd, policy udp)\n", rate,
              seconds);
  const Figures on = run(true, rate, seconds);
  const Figures off = run(false, rate, seconds);
  for (const auto& [name, f] : {std::pair{"on ", on}, std::pair{"off", off}}) {
    std::printf("attribution %s: sent %ld, refused %ld; daemon CPU %.2f%% of one core; RSS %ld -> %ld KiB; "
                "logged %llu packets in %zu flows shown; %.0f ns CPU per blocked sendto\n",
                name, f.sent, f.refused, f.daemon_cpu_pct, f.rss_before, f.rss_after,
                static_cast<unsigned long long>(f.logged), f.flows, f.ns_per_send);
  }
  char a[64], b[64];
  std::snprintf(a, sizeof a, "%.2f%% of a core", on.daemon_cpu_pct);
  std::snprintf(b, sizeof b, "%.2f%%", off.daemon_cpu_pct);
  leakguard::bench::result("daemon CPU under a 100k/s blocked flood, attribution on (vs off)", a, b, "");
  std::snprintf(a, sizeof a, "%ld -> %ld KiB", on.rss_before, on.rss_after);
  std::snprintf(b, sizeof b, "%ld -> %ld KiB", off.rss_before, off.rss_after);
  leakguard::bench::result("daemon memory across that flood (RSS)", a, b, "");
  std::snprintf(a, sizeof a, "%.0f ns", on.ns_per_send);
  std::snprintf(b, sizeof b, "%.0f ns", off.ns_per_send);
  leakguard::bench::result("CPU per blocked sendto(), with the log rules (vs none)", a, b,
                           leakguard::bench::times3(on.ns_per_send / off.ns_per_send));
  return 0;
}
