// Local users flooding the bus (issue 14, finding 1), in the lab (run as root): leakguardd on a
// private system bus with the project's policy, and 0, 3 and 8 processes running as nobody that
// send calls everyone may make (GetStatus, and property reads; every third process asks for
// replies, the others for none) as fast as the bus takes them. Under each load: root's SetTunnel
// latency (sequential calls, each waited for) through the bus, beside the bus's own GetId just
// before each (the floor any call through the bus pays), and through the daemon's private socket
// (what leakguardctl as root uses: no dbus-daemon between); the time from the kernel announcing the tunnel's link gone
// to StateChanged(blocking) on the bus, and to STATUS=blocking at the notify socket (the daemon's
// own transition, no bus between); each as median and p99, with the ratio to the idle figures
// (goal: within 2x).
//
//   bench_dbusflood [SETTUNNEL_CALLS [TUNNEL_LOSSES [FLOODERS...]]]   defaults: 100 20 3 8
// NOREPLY=1: every flooder asks for no reply (by default every third one asks for replies).
// BUS_DRIVER=1: the control - every flooder calls the bus's own GetId instead (with replies), so
// the bus and the CPUs are as busy while none of the flood reaches leakguardd: what root's calls
// lose then is the machine's toll, not the daemon's handling of the flood.
// SLICES=1: the flooders in one cgroup and the bus, the daemon and root's client in another, of
// equal CPU weight - how systemd places user sessions (user.slice) and services (system.slice)
// once the cpu controller is on (the unit's CPUWeight= turns it on). Without it every process
// competes alone: 8 flooders leave the bus daemon a tenth of the CPU.
// LEAKGUARDD=path runs another leakguardd binary.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sdbus-c++/sdbus-c++.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/daemon_watch.hpp"
#include "bench/report.hpp"
#include "cli/daemon_link.hpp"
#include "tests/lab/bus.hpp"
#include "tests/lab/flooder.hpp"
#include "tests/lab/lab.hpp"

using namespace std::chrono;
namespace lab = leakguard::lab;
namespace bench = leakguard::bench;

namespace {

constexpr const char* kName = "org.leakguard.Daemon1";
constexpr const char* kPath = "/org/leakguard/Daemon1";

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The daemon's service notifications (sd_notify), as systemd would receive them: when STATUS=
// said `blocking`. This is the daemon's own transition, with no bus between.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    unlink(path_.c_str());
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("notify socket: " + std::string(std::strerror(errno)));
    reader_ = std::thread([this] { run(); });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  void clear() {
    std::lock_guard l(m_);
    at_.reset();
  }
  std::optional<steady_clock::time_point> blocking_at() {
    std::lock_guard l(m_);
    return at_;
  }

 private:
  void run() {
    char buf[4096];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      const auto now = steady_clock::now();
      if (n <= 0) continue;
      if (std::string(buf, static_cast<std::size_t>(n)).find("STATUS=blocking") != std::string::npos) {
        std::lock_guard l(m_);
        if (!at_) at_ = now;
      }
    }
  }
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread reader_;
  std::mutex m_;
  std::optional<steady_clock::time_point> at_;
};

bool wait_until(const std::function<bool()>& f, milliseconds deadline) {
  const auto end = steady_clock::now() + deadline;
  while (!f()) {
    if (steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

struct Figures {
  std::vector<double> set_tunnel;   // ms, through the bus
  std::vector<double> set_private;  // ms, through the private socket
  std::vector<double> bus_driver;   // ms: GetId answered by the bus itself, the floor for any call
  std::vector<double> cpu_floor;    // ms: a fixed piece of CPU work in root's client (the load's toll on any process)
  std::vector<double> tunnel_loss;  // ms: the kernel's notification -> StateChanged(blocking) on the bus
  std::vector<double> status_loss;  // ms: the same -> STATUS=blocking at the notify socket (no bus)
  double flood_rate = 0;            // calls per second the flooders got onto the bus
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double p99(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * 99 / 100)];
}

double maximum(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

std::string config() {
  return "policy: udp\ntunnel:\n  interfaces: [wg*]\n  endpoints: [\"198.51.100.1:51820/udp\"]\n  fwmark: 51820\n"
         "probe:\n  interval: 60s\n  timeout: 1s\n  servers: [\"203.0.113.3:3478\", \"[2001:db8:3::3]:3478\"]\n";
}

/// SLICES=1: two sibling cgroups of equal CPU weight (cgroup v1's cpu controller, or v2's where
/// the root has it on already: the machine's own setting is never changed), removed at the end
/// with every process moved back.
class Slices {
 public:
  Slices() {
    if (std::ifstream("/sys/fs/cgroup/cpu/cgroup.procs").good()) {
      root_ = "/sys/fs/cgroup/cpu";
      weight_file_ = "cpu.shares";
      weight_ = "1024";
    } else {
      root_ = "/sys/fs/cgroup";
      weight_file_ = "cpu.weight";
      weight_ = "100";
      std::string on;
      std::getline(std::ifstream(root_ + "/cgroup.subtree_control"), on);
      if ((" " + on + " ").find(" cpu ") == std::string::npos)
        throw std::runtime_error("SLICES: the cpu controller is not on at the cgroup root (this benchmark does not turn it on)");
    }
    base_ = root_ + "/" + lab::unique_name("bench-slices");
    for (const auto& d : {base_, base_ + "/system", base_ + "/user"}) {
      if (::mkdir(d.c_str(), 0755) != 0) throw std::runtime_error("cannot make the cgroup " + d + ": " + std::strerror(errno));
    }
    if (root_ == "/sys/fs/cgroup") std::ofstream(base_ + "/cgroup.subtree_control") << "+cpu";
    for (const char* s : {"/system/", "/user/"})
      if (!(std::ofstream(base_ + s + weight_file_) << weight_)) throw std::runtime_error("cannot set " + base_ + s + weight_file_);
  }
  ~Slices() {
    for (const char* s : {"/user", "/system"}) {
      std::ifstream procs(base_ + s + "/cgroup.procs");
      for (std::string pid; std::getline(procs, pid);) std::ofstream(root_ + "/cgroup.procs") << pid;
      ::rmdir((base_ + s).c_str());
    }
    ::rmdir(base_.c_str());
  }
  Slices(const Slices&) = delete;
  Slices& operator=(const Slices&) = delete;
  void to_system(pid_t pid) { move(pid, "/system"); }
  void to_user(pid_t pid) { move(pid, "/user"); }

 private:
  void move(pid_t pid, const char* slice) {
    if (!(std::ofstream(base_ + slice + "/cgroup.procs") << pid))
      throw std::runtime_error("cannot move " + std::to_string(pid) + " into " + base_ + slice);
  }
  std::string root_, base_, weight_file_, weight_;
};

std::unique_ptr<Slices> slices;  // SLICES=1

// About half a millisecond of CPU on an idle machine (about what the daemon spends on one
// SetTunnel): how much longer it takes under a load is what the load costs any process.
void cpu_work() {
  volatile std::uint64_t x = 1;
  for (int i = 0; i < 400'000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
}

// One load: `flooders` processes flooding while root measures. False if a wait ran out.
bool measure(lab::Lab& net, bench::Watch& watch, NotifySocket& notify, leakguard::cli::Daemon& private_link,
             const std::string& dir, int flooders, int calls, int losses, Figures& out) {
  if (!watch.wait_state("secured", 20s)) {
    std::fprintf(stderr, "the daemon is not secured before the load of %d\n", flooders);
    return false;
  }
  std::vector<std::unique_ptr<lab::Flooder>> fs;
  for (int i = 0; i < flooders; ++i) {
    // Every third one reads properties too (Get, GetAll) and asks for replies; the rest call
    // GetStatus only, asking for no reply.
    std::vector<std::string> kinds{"GetStatus"};
    if (i % 3 == 2 && !std::getenv("NOREPLY")) kinds = {"--reply", "GetStatus", "Get", "GetAll"};
    if (std::getenv("BUS_DRIVER")) kinds = {"--reply", "GetId"};
    fs.push_back(std::make_unique<lab::Flooder>(net.ns("host"), BUS_FLOODER, dir + "/flood" + std::to_string(i) + ".log", kinds));
    if (slices) slices->to_user(fs.back()->process.pid());
  }
  if (flooders > 0 && !wait_until([&] { return lab::total(fs) >= 50'000ULL * static_cast<unsigned>(flooders); }, 120s)) {
    std::fprintf(stderr, "the flooders got only %llu calls out\n", lab::total(fs));
    return false;
  }
  const auto flood_start = steady_clock::now();
  const auto sent_start = lab::total(fs);

  // Root declares its tunnel, alternating between one and two endpoints so every call changes
  // the rules (one nftables transaction each), and waits for each answer.
  auto conn = sdbus::createSystemBusConnection();
  auto proxy = sdbus::createProxy(*conn, kName, kPath);
  auto driver = sdbus::createProxy(*conn, "org.freedesktop.DBus", "/org/freedesktop/DBus");
  for (int i = 0; i < calls; ++i) {
    {
      const auto t0 = steady_clock::now();
      cpu_work();
      out.cpu_floor.push_back(duration<double, std::milli>(steady_clock::now() - t0).count());
    }
    {
      const auto t0 = steady_clock::now();
      try {
        driver->callMethod("GetId").onInterface("org.freedesktop.DBus").withTimeout(30s);
      } catch (const sdbus::Error& e) {
        std::fprintf(stderr, "GetId with %d flooders: %s\n", flooders, e.what());
        return false;
      }
      out.bus_driver.push_back(duration<double, std::milli>(steady_clock::now() - t0).count());
    }
    std::vector<std::string> eps{"198.51.100.1:51820/udp"};
    if (i % 2 == 1) eps.push_back("192.0.2.77:51820/udp");
    const auto t0 = steady_clock::now();
    try {
      proxy->callMethod("SetTunnel").onInterface(kName).withTimeout(30s).withArguments(std::string("wg0"), eps,
                                                                                       uint32_t{51820});
    } catch (const sdbus::Error& e) {
      std::fprintf(stderr, "SetTunnel with %d flooders: %s\n", flooders, e.what());
      return false;
    }
    out.set_tunnel.push_back(duration<double, std::milli>(steady_clock::now() - t0).count());
    // The same through the private socket, with the other endpoint list (again a change).
    eps.resize(1);
    if (i % 2 == 0) eps.push_back("192.0.2.77:51820/udp");
    const auto t1 = steady_clock::now();
    try {
      private_link.SetTunnel("wg0", eps, 51820);
    } catch (const sdbus::Error& e) {
      std::fprintf(stderr, "SetTunnel through the private socket with %d flooders: %s\n", flooders, e.what());
      return false;
    }
    out.set_private.push_back(duration<double, std::milli>(steady_clock::now() - t1).count());
  }

  // The tunnel's link goes away: from the kernel's notification to StateChanged(blocking).
  bench::LinkDown kernel(net.ns("host"), "wg0");
  for (int i = 0; i < losses; ++i) {
    watch.clear();
    kernel.clear();
    notify.clear();
    net.run("host", {"ip", "link", "del", "wg0"});
    steady_clock::time_point at;
    if (!watch.wait_state("blocking", 30s, &at)) {
      std::fprintf(stderr, "no blocking with %d flooders\n", flooders);
      return false;
    }
    const auto event = kernel.at();
    if (!event) {
      std::fprintf(stderr, "no link notification for wg0 seen\n");
      return false;
    }
    out.tunnel_loss.push_back(duration<double, std::milli>(at - *event).count());
    // STATUS= is sent just before the signal: it has arrived by now, or it never will.
    if (!wait_until([&] { return notify.blocking_at().has_value(); }, 5s)) {
      std::fprintf(stderr, "no STATUS=blocking at the notify socket\n");
      return false;
    }
    out.status_loss.push_back(duration<double, std::milli>(*notify.blocking_at() - *event).count());
    watch.clear();
    net.set("tunnel", "down");  // the rest of wg-quick down, then up again
    net.set("tunnel", "up");
    if (!watch.wait_state("secured", 30s)) {
      std::fprintf(stderr, "not secured again with %d flooders\n", flooders);
      return false;
    }
  }
  const double seconds = duration<double>(steady_clock::now() - flood_start).count();
  out.flood_rate = static_cast<double>(lab::total(fs) - sent_start) / seconds;
  for (auto& f : fs) {
    if (!f->process.running()) {
      std::fprintf(stderr, "a flooder ended early:\n%s\n", read_file(f->log).c_str());
      return false;
    }
  }
  return true;
}


}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::atoi(argv[1]) : 100;
  const int losses = argc > 2 ? std::atoi(argv[2]) : 20;
  std::vector<int> loads{0};
  for (int i = 3; i < argc; ++i) loads.push_back(std::atoi(argv[i]));
  if (argc <= 3) loads = {0, 3, 8};
  if (calls < 1 || losses < 1) {
    std::fprintf(stderr, "usage: bench_dbusflood [SETTUNNEL_CALLS [TUNNEL_LOSSES [FLOODERS...]]]\n");
    return 2;
  }
  const std::string daemon = std::getenv("LEAKGUARDD") ? std::getenv("LEAKGUARDD") : LEAKGUARDD;
  lab::Lab net;
  lab::PrivateBus bus(LEAKGUARD_DBUS_POLICY, "users");
  const std::string dir = "/tmp/" + lab::unique_name("bench-dbusflood");
  lab::run({"mkdir", "-p", "-m", "0755", dir});
  // The runtime directory (the private socket, the declaration kept for a restart) on a tmpfs, as
  // /run/leakguard is under systemd: on this disk (ext4, mounted with discard) each SetTunnel's
  // rename of the declaration file waited for the device to discard the old file's blocks.
  lab::RuntimeDir run_dir("bench-dbusflood-run");
  if (!run_dir.on_tmpfs()) std::printf("note: no tmpfs for the runtime directory; %s is on a disk\n", run_dir.path().c_str());
  std::ofstream(dir + "/leakguard.yaml") << config();

  std::vector<Figures> figures;
  int status = 0;
  // Listening before the daemon starts, so its first `secured` is seen; each load ends secured.
  auto signals = sdbus::createSystemBusConnection();
  bench::Watch watch(*signals);
  signals->enterEventLoopAsync();
  NotifySocket notify(dir + "/notify");
  setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);  // the daemon inherits it
  if (std::getenv("SLICES")) {
    slices = std::make_unique<Slices>();
    slices->to_system(::getpid());  // root's client, and what it starts from now on
    slices->to_system(bus.pid());
    std::printf("SLICES: flooders in one cgroup, the bus, the daemon and root's client in another, equal CPU weight\n");
  }
  {
    lab::Process d(net.ns("host"),
                   {daemon, "--config", dir + "/leakguard.yaml", "--control-group", "users", "--state-dir", run_dir.path()},
                   dir + "/leakguardd.log");
    if (slices) slices->to_system(d.pid());
    std::unique_ptr<leakguard::cli::Daemon> private_link;
    wait_until([&] { return (private_link = leakguard::cli::connect_private(run_dir.path() + "/private")) != nullptr; }, 20s);
    if (!private_link) {
      std::fprintf(stderr, "no private socket at %s/private\n%s\n", run_dir.path().c_str(), read_file(dir + "/leakguardd.log").c_str());
      return 1;
    }
    for (int n : loads) {
      Figures f;
      if (!measure(net, watch, notify, *private_link, dir, n, calls, losses, f)) {
        std::fprintf(stderr, "daemon log (tail):\n%s\n", read_file(dir + "/leakguardd.log").substr(0, 4000).c_str());
        status = 1;
        break;
      }
      figures.push_back(f);
      std::printf("%d flooders%s:\n"
                  "  root's SetTunnel through the bus: median %.2f ms, p99 %.2f ms, max %.2f ms (%d calls)\n"
                  "  root's SetTunnel through the private socket: median %.2f ms, p99 %.2f ms, max %.2f ms\n"
                  "  the bus's own GetId, just before each: median %.2f ms, p99 %.2f ms, max %.2f ms\n"
                  "  a fixed piece of CPU work in root's client, just before each: median %.2f ms, p99 %.2f ms\n"
                  "  tunnel link gone -> StateChanged(blocking) on the bus: median %.2f ms, p99 %.2f ms (%d runs)\n"
                  "  tunnel link gone -> STATUS=blocking at the notify socket: median %.2f ms, p99 %.2f ms\n",
                  n, n ? (" (" + std::to_string(static_cast<long>(f.flood_rate)) + " calls/s got onto the bus)").c_str() : "",
                  median(f.set_tunnel), p99(f.set_tunnel), maximum(f.set_tunnel), calls, median(f.set_private),
                  p99(f.set_private), maximum(f.set_private), median(f.bus_driver),
                  p99(f.bus_driver), maximum(f.bus_driver), median(f.cpu_floor), p99(f.cpu_floor), median(f.tunnel_loss), p99(f.tunnel_loss), losses,
                  median(f.status_loss), p99(f.status_loss));
      std::fflush(stdout);
    }
    // What the daemon did with the flood: its refusals, as it logged them (one line per episode).
    const std::string log = read_file(dir + "/leakguardd.log");
    std::size_t refusals = 0;
    for (auto at = log.find("GetStatus call(s) from uid 65534"); at != std::string::npos;
         at = log.find("GetStatus call(s) from uid 65534", at + 1))
      ++refusals;
    std::printf("daemon log: %zu lines about refused GetStatus calls from uid 65534\n", refusals);
  }
  if (figures.size() == loads.size()) {
    const Figures& idle = figures[0];
    for (std::size_t i = 1; i < figures.size(); ++i) {
      const Figures& f = figures[i];
      const std::string n = std::to_string(loads[i]) + " flooders";
      bench::result("root's SetTunnel, private socket, under " + n + " (vs idle), median", bench::ms(median(f.set_private)),
                    bench::ms(median(idle.set_private)), bench::times(median(f.set_private) / median(idle.set_private)));
      bench::result("root's SetTunnel, private socket, under " + n + " (vs idle), p99 (goal within 2x)",
                    bench::ms(p99(f.set_private)), bench::ms(p99(idle.set_private)),
                    bench::times(p99(f.set_private) / p99(idle.set_private)));
      bench::result("root's SetTunnel through the bus under " + n + " (vs idle), median", bench::ms(median(f.set_tunnel)),
                    bench::ms(median(idle.set_tunnel)), bench::times(median(f.set_tunnel) / median(idle.set_tunnel)));
      bench::result("root's SetTunnel through the bus under " + n + " (vs idle), p99", bench::ms(p99(f.set_tunnel)),
                    bench::ms(p99(idle.set_tunnel)), bench::times(p99(f.set_tunnel) / p99(idle.set_tunnel)));
      bench::result("tunnel link gone -> blocking signalled under " + n + " (vs idle), median",
                    bench::ms(median(f.tunnel_loss)), bench::ms(median(idle.tunnel_loss)),
                    bench::times(median(f.tunnel_loss) / median(idle.tunnel_loss)));
      bench::result("tunnel link gone -> blocking signalled under " + n + " (vs idle), p99 (goal within 2x)",
                    bench::ms(p99(f.tunnel_loss)), bench::ms(p99(idle.tunnel_loss)),
                    bench::times(p99(f.tunnel_loss) / p99(idle.tunnel_loss)));
      bench::result("tunnel link gone -> STATUS=blocking (no bus) under " + n + " (vs idle), p99",
                    bench::ms(p99(f.status_loss)), bench::ms(p99(idle.status_loss)),
                    bench::times(p99(f.status_loss) / p99(idle.status_loss)));
      bench::result("a fixed piece of CPU work in root's client under " + n + " (vs idle), p99 (the load's toll on any process)",
                    bench::ms(p99(f.cpu_floor)), bench::ms(p99(idle.cpu_floor)),
                    bench::times(p99(f.cpu_floor) / p99(idle.cpu_floor)));
      bench::result("the bus's own GetId under " + n + " (vs idle), p99", bench::ms(p99(f.bus_driver)),
                    bench::ms(p99(idle.bus_driver)), bench::times(p99(f.bus_driver) / p99(idle.bus_driver)));
    }
  }
  signals->leaveEventLoop();
  lab::run({"rm", "-rf", dir});
  slices.reset();
  return status;
}
