// leakguardd fails closed (issue 14, finding 2): whatever goes wrong at start, a block is in place
// before READY. A configuration with a typo or a missing file gives the emergency block (or keeps
// our table from the previous run, as it was), state `error` with the file's reason over D-Bus,
// and a fixed file ends it. Without CAP_NET_ADMIN the daemon exits non-zero, saying so, never READY.
// The daemon runs in the lab's host namespace (real tunnel, real STUN server); what is blocked is
// judged by packets in the internet namespace, each "nothing arrived" paired with a control.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
namespace lab = leakguard::lab;

using leakguard::e2e::eventually;
using leakguard::e2e::read_file;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {

// The STUN server's address in the internet namespace; with split_stun the host reaches it via
// eth0, outside the tunnel.
constexpr const char* kSinkAddress = "203.0.113.3";
constexpr std::uint16_t kUdpPort = 40001, kTcpPort = 40002;

sockaddr_in address(const char* ip, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

/// A UDP receiver and a TCP listener on the STUN server's address, in the internet namespace.
struct Sink {
  Fd udp{-1}, tcp{-1};
  explicit Sink(const Rig& rig) {
    lab::NetnsScope in(rig.net.ns("inet"));
    udp.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    tcp.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(udp.fd >= 0);
    REQUIRE(tcp.fd >= 0);
    const int one = 1;
    REQUIRE(setsockopt(tcp.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    const auto u = address(kSinkAddress, kUdpPort), t = address(kSinkAddress, kTcpPort);
    REQUIRE_MESSAGE(bind(udp.fd, reinterpret_cast<const sockaddr*>(&u), sizeof u) == 0, std::strerror(errno));
    REQUIRE_MESSAGE(bind(tcp.fd, reinterpret_cast<const sockaddr*>(&t), sizeof t) == 0, std::strerror(errno));
    REQUIRE(listen(tcp.fd, 16) == 0);
  }
  /// Waits up to `deadline` for a datagram carrying `tag`.
  bool got(const std::string& tag, std::chrono::milliseconds deadline) const {
    return eventually(
        [&] {
          char buf[256];
          for (;;) {
            const ssize_t n = recv(udp.fd, buf, sizeof buf, 0);
            if (n <= 0) return false;
            if (std::string(buf, static_cast<std::size_t>(n)) == tag) return true;
          }
        },
        deadline);
  }
};

/// Sends one datagram `tag` from the host namespace to `to`; returns the errno of a refused send
/// (EPERM when our output chain rejects it), 0 if the kernel took it.
int send_from_host(const Rig& rig, const sockaddr_in& to, const std::string& tag) {
  lab::NetnsScope host(rig.net.ns("host"));
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.fd >= 0);
  if (sendto(fd.fd, tag.data(), tag.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
      static_cast<ssize_t>(tag.size()))
    return 0;
  return errno;
}

/// A datagram from the host via eth0 reaches the sink (the refused send's errno goes into `err`).
bool udp_out(const Rig& rig, const Sink& sink, const std::string& tag, int& err) {
  err = send_from_host(rig, address(kSinkAddress, kUdpPort), tag);
  return sink.got(tag, err == 0 ? 3s : 1s);
}

/// A TCP connection from the host via eth0 to the sink is established within 3 s.
bool tcp_out(const Rig& rig) {
  lab::NetnsScope host(rig.net.ns("host"));
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  REQUIRE(fd.fd >= 0);
  const auto a = address(kSinkAddress, kTcpPort);
  if (connect(fd.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{fd.fd, POLLOUT, 0};
  if (poll(&p, 1, 3000) != 1) return false;
  int err = 0;
  socklen_t len = sizeof err;
  REQUIRE(getsockopt(fd.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0);
  return err == 0;
}

/// A datagram over loopback in the host namespace arrives (the emergency block lets loopback be).
bool loopback_works(const Rig& rig) {
  lab::NetnsScope host(rig.net.ns("host"));
  Fd rx(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  REQUIRE(rx.fd >= 0);
  auto a = address("127.0.0.1", 0);
  REQUIRE(bind(rx.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(getsockname(rx.fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  Fd tx(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sendto(tx.fd, "lo", 2, 0, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 2) return false;
  return eventually([&] { char b[8]; return recv(rx.fd, b, sizeof b, 0) == 2; }, 3s);
}

/// The line number the typo lands on: the good file's lines plus one.
int lines_of(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

/// `nft -s list table inet leakguard` in the host namespace (no counter values), without the
/// per-interface counting sets (the datapath adds their elements) and the table's flags and
/// owner note (the kernel clears `owner` when the owning process dies).
std::string rules_of(const Rig& rig) {
  auto r = rig.net.run("host", {"nft", "-s", "list", "table", "inet", "leakguard"});
  if (r.status != 0) return "";
  std::istringstream in(r.out);
  std::string line, out;
  bool skipping = false;
  while (std::getline(in, line)) {
    if (line.find("set ifstat_") != std::string::npos) skipping = true;
    if (line.starts_with("table inet leakguard {")) line = "table inet leakguard {";  // "# progname leakguardd" while owned
    if (!skipping && !line.starts_with("\tflags ")) out += line + "\n";
    if (skipping && line == "\t}") skipping = false;
  }
  return out;
}

/// Checks what a broken start must show: up, `error` with the reason over D-Bus, `protection`.
void check_error_status(Rig& rig, const std::string& reason_part, const std::string& protection) {
  REQUIRE_MESSAGE(rig.wait_state("error"), rig.output());
  CHECK(rig.daemon().running());
  const auto s = rig.status();
  REQUIRE(s.contains("config_error"));
  REQUIRE_MESSAGE(s["config_error"].is_string(), s.dump());
  CHECK_MESSAGE(s["config_error"].get<std::string>().find(reason_part) != std::string::npos, s.dump());
  CHECK_MESSAGE(s.value("reason", "").find(reason_part) != std::string::npos, s.dump());
  CHECK(s.value("protection", "") == protection);
  const auto human = rig.ctl({"status", "--no-color"});
  CHECK(human.out.find("leakguard: error") != std::string::npos);
  CHECK_MESSAGE(human.out.find(reason_part) != std::string::npos, human.out);
  CHECK(rig.output().find("configuration not usable: " + rig.config) != std::string::npos);
}

}  // namespace

TEST_CASE("a typo in the configuration: the emergency block, error with file:line:col, and SIGHUP after the fix") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  Sink sink(rig);
  // The controls, before any daemon: the same sends on the same path arrive.
  int err = -1;
  REQUIRE_MESSAGE(udp_out(rig, sink, "before", err), "errno " << err);
  REQUIRE(tcp_out(rig));
  REQUIRE(rig.witness("203.0.113.3") == "203.0.113.2");

  const std::string good = read_file(rig.config);
  std::ofstream(rig.config) << good << "alow_lan: true\n";  // the typo, on the line after the good ones
  const std::string where = rig.config + ":" + std::to_string(lines_of(good) + 1) + ":";
  rig.start();
  check_error_status(rig, where, "emergency");
  const std::string table = rig.table();
  CHECK(table.find("table inet leakguard") != std::string::npos);
  CHECK(table.find("wg") == std::string::npos);  // no tunnel trusted: nothing but loopback passes

  // Blocked: UDP (refused at sendto, nothing arrives), TCP, and the STUN witness; loopback works.
  CHECK_FALSE(udp_out(rig, sink, "during", err));
  CHECK(err == EPERM);
  CHECK_FALSE(tcp_out(rig));
  CHECK(rig.witness("203.0.113.3").empty());
  CHECK(loopback_works(rig));
  CHECK(rig.daemon().running());

  // Fixed and SIGHUP: the file's rules replace the block, the state leaves error.
  std::ofstream(rig.config) << good;
  REQUIRE(kill(rig.daemon().pid(), SIGHUP) == 0);
  REQUIRE_MESSAGE(rig.wait_state("secured", 30s), rig.output());
  const auto s = rig.status();
  CHECK(s["config_error"].is_null());
  CHECK(s.value("protection", "") == "configured");
  CHECK(rig.table().find("oifname \"wg*\" accept") != std::string::npos);
  // The control after: disarmed, the same datagram on the same path arrives again.
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  CHECK_MESSAGE(udp_out(rig, sink, "after", err), "errno " << err);
}

TEST_CASE("a missing configuration file: the emergency block, error naming the file, and Reload after it is back") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  Sink sink(rig);
  int err = -1;
  REQUIRE_MESSAGE(udp_out(rig, sink, "before", err), "errno " << err);
  const std::string good = read_file(rig.config);
  REQUIRE(std::remove(rig.config.c_str()) == 0);
  rig.start();
  check_error_status(rig, rig.config + ": cannot read the file", "emergency");
  CHECK(rig.table().find("table inet leakguard") != std::string::npos);
  CHECK_FALSE(udp_out(rig, sink, "during", err));
  CHECK(err == EPERM);
  CHECK_FALSE(tcp_out(rig));
  CHECK(loopback_works(rig));
  // A reload while the file is still missing is refused with the reason; the block stays.
  auto refused = rig.ctl({"reload"});
  CHECK(refused.status != 0);
  CHECK_MESSAGE(refused.out.find("cannot read the file") != std::string::npos, refused.out);
  CHECK(rig.state() == "error");

  std::ofstream(rig.config) << good;
  auto r = rig.ctl({"reload"});
  CHECK_MESSAGE(r.status == 0, r.out);
  REQUIRE_MESSAGE(rig.wait_state("secured", 30s), rig.output());
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  CHECK_MESSAGE(udp_out(rig, sink, "after", err), "errno " << err);
}

TEST_CASE("our table left by the previous run is kept exactly as it was when the configuration breaks") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string before = rules_of(rig);
  REQUIRE(before.find("oifname \"wg*\" accept") != std::string::npos);
  rig.daemon().stop(SIGKILL);  // the table stays (persist flag): the last good one
  const std::string good = read_file(rig.config);
  std::ofstream(rig.config) << good << "policy: stict\n";  // a typo, and a second `policy`
  rig.start();
  check_error_status(rig, rig.config + ":" + std::to_string(lines_of(good) + 1) + ":", "kept");
  CHECK(rules_of(rig) == before);  // not weakened, not replaced by the emergency block
  CHECK(rig.witness("203.0.113.3").empty());  // and it still blocks the page's STUN via eth0
  // Kept and taken over: the kernel refuses another program's delete (owner flag).
  auto refused = rig.net.run("host", {"nft", "delete", "table", "inet", "leakguard"});
  CHECK_MESSAGE(refused.status != 0, refused.out);
  CHECK(rules_of(rig) == before);
  std::ofstream(rig.config) << good;
  REQUIRE(kill(rig.daemon().pid(), SIGHUP) == 0);
  REQUIRE_MESSAGE(rig.wait_state("secured", 30s), rig.output());
  CHECK(rig.status().value("protection", "") == "configured");
  // The controls: once no process owns the table (the daemon killed), the same delete goes
  // through, and the same witness then gets the ISP address.
  rig.daemon().stop(SIGKILL);
  auto deleted = rig.net.run("host", {"nft", "delete", "table", "inet", "leakguard"});
  CHECK_MESSAGE(deleted.status == 0, deleted.out);
  CHECK(eventually([&] { return rig.witness("203.0.113.3") == "203.0.113.2"; }, 10s));
}

TEST_CASE("without CAP_NET_ADMIN not even the emergency block goes in: exit non-zero, a clear line, never READY") {
  lab::Netns ns("nocap");
  const std::string dir = "/tmp/" + lab::unique_name("nocap");
  REQUIRE(lab::run({"mkdir", "-p", dir}).status == 0);
  struct Cleanup {
    std::string dir;
    ~Cleanup() { lab::run({"rm", "-rf", dir}); }
  } cleanup{dir};
  const std::string config = dir + "/leakguard.yaml";
  std::ofstream(config) << "policy: strict\nprobe:\n  interval: 60s\n  servers: [\"203.0.113.3:3478\"]\n";
  const std::string sock = dir + "/notify.sock";
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  REQUIRE(fd.fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", sock.c_str());
  REQUIRE(bind(fd.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  std::string seen;
  auto drain = [&] {
    char buf[4096];
    for (ssize_t n; (n = recv(fd.fd, buf, sizeof buf, 0)) > 0;) seen.append(buf, static_cast<std::size_t>(n)).append("\n");
  };
  auto tables = [&] {
    auto t = ns.run({"nft", "list", "tables"});
    REQUIRE_MESSAGE(t.status == 0, t.out);
    return t.out;
  };

  for (const char* what : {"a good configuration", "a broken one"}) {
    CAPTURE(what);
    if (std::string(what) == "a broken one") std::ofstream(config) << "policy: stict\n";
    seen.clear();
    // Root's uid, without the capability: nothing can put it back (bounding set, inheritable).
    auto r = ns.run({"env", "NOTIFY_SOCKET=" + sock, "setpriv", "--inh-caps=-all", "--bounding-set=-net_admin", LEAKGUARDD,
                     "--config", config});
    drain();
    CHECK(r.status == 1);
    CHECK_MESSAGE(r.out.find("cannot install even the emergency block: ") != std::string::npos, r.out);
    CHECK_MESSAGE(r.out.find("CAP_NET_ADMIN") != std::string::npos, r.out);
    CHECK_MESSAGE(seen.find("READY=1") == std::string::npos, seen);
    CHECK(tables().find("leakguard") == std::string::npos);
  }

  // With the capability, the daemon (configured as `text`) started in the same namespace with the
  // same notify socket; true once it said READY.
  auto started_ready = [&](const std::string& text, const std::string& log, std::optional<lab::Process>& daemon) {
    std::ofstream(config) << text;
    seen.clear();
    setenv("NOTIFY_SOCKET", sock.c_str(), 1);
    daemon.emplace(ns.name(), std::vector<std::string>{LEAKGUARDD, "--config", config}, log);
    unsetenv("NOTIFY_SOCKET");
    return eventually(
        [&] {
          drain();
          return seen.find("READY=1") != std::string::npos;
        },
        15s);
  };

  // The control: with the capability, the same daemon in the same namespace says READY on the
  // same socket, and the same look finds its table.
  std::optional<lab::Process> daemon;
  CHECK_MESSAGE(started_ready("policy: strict\nprobe:\n  interval: 60s\n  servers: [\"203.0.113.3:3478\"]\n", dir + "/leakguardd.log", daemon),
                seen << read_file(dir + "/leakguardd.log"));
  CHECK(tables().find("table inet leakguard") != std::string::npos);
  daemon->stop(SIGTERM);

  // With the capability and a broken file: READY once the block is in (here: the table kept),
  // and its STATUS= says why it is `error` - the line systemctl status shows while it lasts.
  std::optional<lab::Process> broken;
  CHECK_MESSAGE(started_ready("policy: stict\n", dir + "/leakguardd-broken.log", broken),
                seen << read_file(dir + "/leakguardd-broken.log"));
  CHECK_MESSAGE(seen.find("READY=1\nSTATUS=error: configuration not usable: " + config + ":1:") != std::string::npos, seen);
  broken->stop(SIGTERM);
}
