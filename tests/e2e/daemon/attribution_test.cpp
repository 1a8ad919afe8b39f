// Who sent what the block stopped (issue 18): leakguardd in the lab's host namespace, strict
// policy, the STUN server's address routed outside the tunnel. Five senders with known names
// (the process name is the name each was started as), users and cgroups (scopes made for the
// test under the cgroup2 mount) send blocked UDP and TCP at once; the daemon's status must name
// each sender's process, uid and unit for at least 95% of what it logged of them. A refused TCP
// connection's socket is closed by the reset before any lookup: its sender is found through the
// cgroup the firewall remembered for the flow (the sender sets). A sixth sender is gone before
// the daemon can look it up: reported by uid, unit and destination, marked gone.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "attribution/lookup.hpp"
#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
namespace lab = leakguard::lab;
using leakguard::e2e::eventually;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {


// Scopes of our own under the cgroup2 mount, and a directory any user may run the senders from;
// all removed at the end (the senders have exited by then).
struct Scratch {
  std::string cgroups, bin;
  explicit Scratch(const std::string& mount) {
    cgroups = mount + "/lgt-attr-" + std::to_string(getpid());
    std::filesystem::create_directories(cgroups);
    char tmpl[] = "/tmp/lgt-attr-XXXXXX";
    bin = mkdtemp(tmpl);
    ::chmod(bin.c_str(), 0755);
  }
  ~Scratch() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(cgroups, ec))
      if (e.is_directory()) ::rmdir(e.path().c_str());
    ::rmdir(cgroups.c_str());
    std::filesystem::remove_all(bin, ec);
  }
};

struct SenderSpec {
  std::string name;
  unsigned uid;
  std::string proto;
  int port;
};

}  // namespace

TEST_CASE("blocked UDP and TCP from five senders are named by process, uid and unit - and a sender gone before its lookup by uid") {
  const std::string mount = leakguard::attribution::cgroup2_mount();
  REQUIRE_MESSAGE(!mount.empty(), "no cgroup2 mount in /proc/self/mountinfo");
  Rig rig(RigOptions{.lab = {.split_stun = true}, .policy = "strict"});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  Scratch scratch(mount);

  const std::vector<SenderSpec> senders = {
      {"lgt-snd-udp1", 0, "udp", 40001},     {"lgt-snd-udp2", 65534, "udp", 40002}, {"lgt-snd-udp3", 4003, "udp", 40003},
      {"lgt-snd-tcp4", 4004, "tcp", 40004},  {"lgt-snd-tcp5", 0, "tcp", 40005},
      // IPv4 from a dual-stack IPv6 socket: before, not found among the IPv4 sockets, "gone".
      {"lgt-snd-udp46", 4007, "udp46", 40007},
  };
  // The Blocked signal, as root's monitor and an unprivileged one receive it (the bus policy keeps
  // it to root and group leakguard; ProbeCompleted, which everyone receives, is the control).
  const std::string root_log = rig.dir + "/monitor-root.log", nobody_log = rig.dir + "/monitor-nobody.log";
  lab::Process monitor_root("", {LEAKGUARDCTL, "monitor", "--json"}, root_log);
  lab::Process monitor_nobody("", {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", LEAKGUARDCTL, "monitor", "--json"},
                              nobody_log);
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  REQUIRE(eventually([&] {
    return rig.ctl({"probe"}).status == 0 && read(root_log).find("ProbeCompleted") != std::string::npos &&
           read(nobody_log).find("ProbeCompleted") != std::string::npos;
  }, 15s));

  std::vector<lab::Process> running;
  for (const auto& s : senders) {
    const std::string link = scratch.bin + "/" + s.name, scope = scratch.cgroups + "/" + s.name + ".scope";
    std::filesystem::create_symlink(BLOCKED_SENDER, link);
    std::filesystem::create_directories(scope);
    const std::string u = std::to_string(s.uid);
    // Into its scope first, then its user: the socket is made in that cgroup, owned by that uid.
    running.emplace_back(rig.net.ns("host"),
                         std::vector<std::string>{"sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", scope, "setpriv",
                                                  "--reuid=" + u, "--regid=" + u, "--clear-groups", link, s.proto, "203.0.113.3",
                                                  std::to_string(s.port), s.proto == "tcp" ? "8" : "60",
                                                  s.proto == "tcp" ? "100" : "30"},
                         rig.dir + "/" + s.name + ".log");
  }
  // Until every sender is done (UDP: 60 datagrams 30 ms apart; TCP: 8 attempts, 400 ms each).
  for (auto& p : running) REQUIRE(eventually([&] { return !p.running(); }, 30s));
  for (const auto& s : senders) {
    std::ifstream in(rig.dir + "/" + s.name + ".log");
    std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CAPTURE(s.name);
    CAPTURE(out);
    CHECK(out.find("sent 0 refused") != std::string::npos);  // every one refused: the block held
  }

  nlohmann::json st;
  auto flows_for = [&](int port) {
    std::vector<nlohmann::json> v;
    for (const auto& f : st["blocked"]["flows"])
      if (f["destination"].get<std::string>().starts_with("203.0.113.3:" + std::to_string(port) + "/")) v.push_back(f);
    return v;
  };
  // Everything logged has been read once the status counts it (the log is delivered at once).
  REQUIRE(eventually([&] {
    st = rig.status();
    for (const auto& s : senders)
      if (flows_for(s.port).empty()) return false;
    return true;
  }, 10s));
  INFO(st["blocked"].dump(2));
  std::map<std::string, std::uint64_t> right, all;
  for (const auto& s : senders) {
    CAPTURE(s.name);
    const std::string proto = s.proto == "udp46" ? "udp" : s.proto;  // IPv4 on the wire either way
    for (const auto& f : flows_for(s.port)) {
      const auto n = f["packets"].get<std::uint64_t>();
      all[proto] += n;
      bool ok = f["app"] == s.name && f["process"] == s.name && f["uid"] == s.uid && f["unit"] == s.name + ".scope" &&
                f["gone"] == false && f["pid"].is_number() && f["protocol"] == proto && f["interface"] == "eth0";
      // A connection attempt refused with a reset: the reset closes the socket before any lookup
      // (an unhashed socket is invisible to sock_diag); the remembered cgroup names the sender.
      if (s.proto == "tcp")
        ok = ok && f["rule"] == "tcp-out" && f["note"].get<std::string>().find("the only process of uid") != std::string::npos;
      // A datagram's socket is open while it sends: found exactly, no note of how it was guessed
      // (a dual-stack sender was named only through its cgroup before).
      else ok = ok && !f.contains("note");
      CHECK_MESSAGE(ok, f.dump());
      if (ok) right[proto] += n;
    }
  }
  for (const std::string proto : {"udp", "tcp"}) {
    CAPTURE(proto);
    REQUIRE(all[proto] > 0);
    MESSAGE(proto << ": attributed right (process, uid, unit): " << right[proto] << " of " << all[proto] << " logged packets");
    CHECK(static_cast<double>(right[proto]) >= 0.95 * static_cast<double>(all[proto]));
  }
  // Where people look: leakguardctl status (the most recent few) and leakguardctl blocked (all).
  const auto text = rig.ctl({"status", "--no-color"});
  CHECK(text.out.find("blocked recently") != std::string::npos);
  const auto listed = rig.ctl({"blocked", "--no-color"});
  CHECK(listed.status == 0);
  for (const auto& s : senders) CHECK_MESSAGE(listed.out.find("  " + s.name + " (") != std::string::npos, listed.out);
  auto as_json = nlohmann::json::parse(rig.ctl({"blocked", "--json"}).out, nullptr, false);
  REQUIRE(as_json.is_object());
  CHECK(as_json["packets"].get<std::uint64_t>() >= all["udp"] + all["tcp"]);
  // As they happened: a Blocked signal per sender (within a second), for root's monitor only.
  for (const auto& s : senders) {
    CAPTURE(s.name);
    CHECK_MESSAGE(eventually([&] { return read(root_log).find("\"" + s.name + "\"") != std::string::npos; }, 5s), read(root_log));
  }
  CHECK(read(root_log).find("Blocked") != std::string::npos);
  CHECK_MESSAGE(read(nobody_log).find("Blocked") == std::string::npos, read(nobody_log));
  // The user's name where there is one.
  for (const auto& f : flows_for(40002)) CHECK(f["user"] == "nobody");
  // The daemon's own probes (STUN to 203.0.113.3:3478 out of eth0, refused) are named as such.
  bool probe_seen = false;
  for (const auto& f : flows_for(3478)) {
    CHECK(f["app"] == "leakguardd (probe)");
    probe_seen = true;
  }
  CHECK(probe_seen);

  // Gone before the lookup: the daemon is stopped (SIGSTOP) while a sender sends and exits, so the
  // log waits in its socket and the socket is closed by the time it is read; its scope is empty.
  const pid_t daemon_pid = rig.daemon().pid();
  REQUIRE(::kill(daemon_pid, SIGSTOP) == 0);
  {
    const std::string link = scratch.bin + "/lgt-snd-gone", scope = scratch.cgroups + "/lgt-snd-gone.scope";
    std::filesystem::create_symlink(BLOCKED_SENDER, link);
    std::filesystem::create_directories(scope);
    lab::Process gone(rig.net.ns("host"),
                      {"sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", scope, "setpriv", "--reuid=4006", "--regid=4006",
                       "--clear-groups", link, "udp", "203.0.113.3", "40006", "3", "1"},
                      rig.dir + "/gone.log");
    CHECK(eventually([&] { return !gone.running(); }, 10s));
  }
  REQUIRE(::kill(daemon_pid, SIGCONT) == 0);
  REQUIRE(eventually([&] {
    st = rig.status();
    return !flows_for(40006).empty();
  }, 10s));
  const auto g = flows_for(40006).front();
  INFO(g.dump());
  CHECK(g["gone"] == true);
  CHECK(g["uid"] == 4006);
  CHECK(g["app"] == "lgt-snd-gone.scope");  // its unit: the cgroup the firewall remembered
  CHECK(g["unit"] == "lgt-snd-gone.scope");
  CHECK(g["process"].is_null());
  CHECK(g["note"].get<std::string>().find("no process of uid 4006 is left in its cgroup") != std::string::npos);
  CHECK(g["destination"] == "203.0.113.3:40006/udp");

  // An unprivileged user sees how much was blocked, not whose.
  auto pub = nlohmann::json::parse(rig.ctl({"status", "--json"}, Rig::As::nobody).out, nullptr, false);
  REQUIRE_FALSE(pub.is_discarded());
  CHECK(pub["blocked"]["packets"].get<std::uint64_t>() > 0);
  CHECK_FALSE(pub["blocked"].contains("flows"));
  CHECK_FALSE(pub["blocked"].contains("apps"));
}

TEST_CASE("the daemon's own lookup of a probe server's name is named as its probe - another root process's DNS by its own name") {
  // Under the unit the daemon lives alone in its cgroup (leakguard.service): here it gets a scope
  // of its own too, and a resolv.conf (in a mount namespace of its own) whose server is the lab's
  // STUN host, routed outside the tunnel, where strict refuses DNS. Before, its lookups were
  // listed as "leakguardd -> 203.0.113.3:53/udp" and told to every desktop as an application
  // blocked outside the VPN, once a minute while the VPN was down.
  const std::string mount = leakguard::attribution::cgroup2_mount();
  REQUIRE_MESSAGE(!mount.empty(), "no cgroup2 mount in /proc/self/mountinfo");
  Scratch scratch(mount);
  const std::string daemon_scope = scratch.cgroups + "/lgt-daemon.scope", resolv = scratch.bin + "/resolv.conf";
  std::filesystem::create_directories(daemon_scope);
  std::ofstream(resolv) << "nameserver 203.0.113.3\noptions attempts:1 timeout:1\n";
  RigOptions o{.lab = {.split_stun = true}, .policy = "strict"};
  o.servers = R"(["stun.lgt.test:3478", "203.0.113.3:3478"])";
  o.wrapper = {"unshare", "--mount", "sh", "-c",
               "mount --bind \"$1\" /etc/resolv.conf && echo $$ > \"$2/cgroup.procs\" && shift 2 && exec \"$@\"", "sh", resolv,
               daemon_scope};
  Rig rig(o);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  REQUIRE(rig.ctl({"probe"}).status == 0);  // a round: its lookup of the name, refused

  // The control: another root process's DNS to the same server, from a scope of its own.
  const std::string link = scratch.bin + "/lgt-snd-dns", scope = scratch.cgroups + "/lgt-snd-dns.scope";
  std::filesystem::create_symlink(BLOCKED_SENDER, link);
  std::filesystem::create_directories(scope);
  {
    lab::Process dns(rig.net.ns("host"),
                     {"sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", scope, link, "udp", "203.0.113.3", "53", "20", "30"},
                     rig.dir + "/dns.log");
    REQUIRE(eventually([&] { return !dns.running(); }, 15s));
  }
  nlohmann::json st;
  auto to_dns = [&](const std::string& app) {
    for (const auto& f : st["blocked"]["flows"])
      if (f["destination"] == "203.0.113.3:53/udp" && f["app"] == app) return f;
    return nlohmann::json();
  };
  const bool both = eventually([&] {
    st = rig.status();
    return !to_dns("leakguardd (probe)").is_null() && !to_dns("lgt-snd-dns").is_null();
  }, 10s);
  INFO(st["blocked"].dump(2));
  REQUIRE(both);
  CHECK(to_dns("leakguardd (probe)")["note"].get<std::string>().find("lookup of a probe server's name") != std::string::npos);
  CHECK(to_dns("leakguardd").is_null());
  CHECK(to_dns("lgt-snd-dns")["uid"] == 0);
}
