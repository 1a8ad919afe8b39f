// leakguardd end to end: the daemon runs as a process in the lab's host namespace (real
// wireguard-go tunnel, real coturn), talks on a private system bus, and is judged by what an
// independent STUN client (coturn's turnutils_stunclient) and real packets show, not by its own word.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "tests/lab/bus.hpp"
#include "tests/lab/lab.hpp"

using namespace std::chrono;
using namespace std::chrono_literals;
namespace lab = leakguard::lab;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Polls `f` until it returns true or the deadline passes. The things waited for (a log line, a
// state on the bus) have no event a test could block on; the polling is the deadline's resolution.
template <typename F>
bool eventually(F f, milliseconds deadline) {
  const auto end = steady_clock::now() + deadline;
  for (;;) {
    if (f()) return true;
    if (steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(20ms);
  }
}

const char* const kConfig = R"(policy: udp
armed: ARMED
on_stop: keep
tunnel:
  interfaces: [wg*]
  endpoints: ["198.51.100.1:51820/udp"]
  fwmark: 51820
probe:
  interval: INTERVAL
  timeout: 1s
  servers: ["203.0.113.3:3478", "[2001:db8:3::3]:3478"]
)";

// The lab, a private bus, and leakguardd running in the host namespace.
struct Rig {
  lab::Lab net;
  lab::PrivateBus bus{LEAKGUARD_DBUS_POLICY, "users"};
  std::string dir;
  std::string config, log;
  std::unique_ptr<lab::Process> daemon;

  explicit Rig(lab::Options o, bool armed = true, const std::string& interval = "60s") : net(o) {
    dir = "/tmp/" + lab::unique_name("daemon");
    lab::run({"mkdir", "-p", dir});
    config = dir + "/leakguard.yaml";
    log = dir + "/leakguardd.log";
    std::string text = kConfig;
    text.replace(text.find("ARMED"), 5, armed ? "true" : "false");
    text.replace(text.find("INTERVAL"), 8, interval);
    std::ofstream(config) << text;
    setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address().c_str(), 1);
  }
  ~Rig() {
    daemon.reset();
    lab::run({"rm", "-rf", dir});
  }
  void start() {
    daemon = std::make_unique<lab::Process>(net.ns("host"), std::vector<std::string>{LEAKGUARDD, "--config", config},
                                            log + "." + std::to_string(++starts));
    current_log = log + "." + std::to_string(starts);
  }
  std::string output() const { return read_file(current_log); }
  nlohmann::json status() const {
    auto r = lab::run({LEAKGUARDCTL, "status", "--json"}, 5s);
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? nlohmann::json{} : j;
  }
  std::string state() const {
    auto s = status();
    return s.contains("state") && s["state"].is_string() ? s["state"].get<std::string>() : "";
  }
  bool wait_state(const std::string& want, milliseconds deadline = 15s) const {
    return eventually([&] { return state() == want; }, deadline);
  }
  std::string table() const { return net.run("host", {"nft", "list", "table", "inet", "leakguard"}).out; }
  // The independent witness: what coturn's own client gets through the host's routing.
  std::string witness(const std::string& server) const {
    auto r = net.run("host", {"timeout", "3", "turnutils_stunclient", server});
    auto at = r.out.find("reflexive addr: ");
    if (at == std::string::npos) return "";
    std::string a = r.out.substr(at + 16, r.out.find_first_of(" \n", at + 16) - at - 16);
    // Without the port: "203.0.113.2:33587" -> "203.0.113.2", "[2001:db8::1]:5000" -> "2001:db8::1".
    if (!a.empty() && a.front() == '[') return a.substr(1, a.find(']') - 1);
    if (std::count(a.begin(), a.end(), ':') == 1) return a.substr(0, a.find(':'));
    return a;
  }
  int starts = 0;
  std::string current_log;
};

}  // namespace

TEST_CASE("secured with the tunnel up, blocking when it dies, and nothing escapes meanwhile") {
  Rig rig({.split_stun = true});  // the STUN server is routed outside the tunnel: a leak waits
  // Without leakguard the witness gets the ISP address through eth0 (the lab's own check).
  REQUIRE(rig.witness("203.0.113.3") == "203.0.113.2");
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(rig.witness("203.0.113.3") == "");

  // Watch continuously while the tunnel goes away.
  std::atomic<bool> stop{false};
  std::atomic<int> looks{0};
  std::string escaped;
  std::thread watcher([&] {
    while (!stop) {
      auto got = rig.witness("203.0.113.3");
      if (!got.empty()) escaped = got;
      ++looks;
    }
  });
  const auto t0 = steady_clock::now();
  rig.net.set("tunnel", "down");
  const bool blocking = rig.wait_state("blocking", 5s);
  const auto took = duration_cast<milliseconds>(steady_clock::now() - t0);
  eventually([&] { return looks >= 3; }, 15s);
  stop = true;
  watcher.join();
  CHECK_MESSAGE(blocking, rig.output());
  CHECK_MESSAGE(escaped == "", "the witness got " << escaped);
  CHECK(rig.witness("[2001:db8:3::3]:3478").empty());
  MESSAGE("tunnel down -> blocking reported after " << took.count() << " ms (incl. polling); witness looked "
                                                     << looks.load() << " times");
}

TEST_CASE("a leak the rules do not cover is found by the probe and raised at error level") {
  Rig rig({.split_stun = true}, /*armed=*/false);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  CHECK(eventually([&] { return rig.output().find("LEAK: eth0 ipv4 reflexive address 203.0.113.2") != std::string::npos; }, 5s));
  CHECK(rig.output().find("error: LEAK: eth0 ipv4 reflexive address 203.0.113.2") != std::string::npos);  // error level
  // Arming closes it: the next round finds nothing.
  auto r = lab::run({LEAKGUARDCTL, "arm"});
  CHECK(r.status == 0);
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
}

TEST_CASE("kill -9 under a UDP flood lets nothing out, and a restart takes over without a window") {
  Rig rig({.split_stun = true});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // A receiver in the internet namespace counts what arrives; the host floods it via eth0 (the
  // split route) from before the kill until after the restart.
  std::atomic<bool> stop{false};
  std::atomic<long> sent{0}, refused{0}, received{0};
  std::atomic<bool> listening{false};
  std::thread sink([&] {
    lab::NetnsScope in(rig.net.ns("inet"));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    inet_pton(AF_INET, "203.0.113.3", &a.sin_addr);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    timeval tv{0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    listening = true;
    char buf[64];
    while (!stop)
      if (recv(fd, buf, sizeof buf, 0) > 0) ++received;
    close(fd);
  });
  eventually([&] { return listening.load(); }, 5s);
  std::thread flood([&] {
    lab::NetnsScope in(rig.net.ns("host"));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    inet_pton(AF_INET, "203.0.113.3", &a.sin_addr);
    while (!stop) {
      if (sendto(fd, "leak", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) == 4) ++sent;
      else ++refused;
    }
    close(fd);
  });
  eventually([&] { return refused > 1000; }, 5s);
  rig.daemon->stop(SIGKILL);
  CHECK(rig.table().find("table inet leakguard") != std::string::npos);  // orphaned, still there
  const long refused_at_kill = refused;
  eventually([&] { return refused > refused_at_kill + 10000; }, 5s);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const long refused_at_restart = refused;
  eventually([&] { return refused > refused_at_restart + 10000; }, 5s);
  stop = true;
  flood.join();
  sink.join();
  CHECK(received == 0);
  CHECK(refused > refused_at_kill);
  MESSAGE("flood: " << refused.load() << " sends refused, " << sent.load() << " accepted by the kernel, " << received.load()
                    << " arrived in the internet namespace");
}

TEST_CASE("SIGHUP with a broken configuration keeps the rules, the state and the old configuration") {
  Rig rig({.split_stun = true});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string before = rig.table();
  std::ofstream(rig.config) << "policy: udp\ntunnel:\n  interfaces: [wg*]\n  endpoints: [\"198.51.100.1:99999\"]\n";
  kill(rig.daemon->pid(), SIGHUP);
  REQUIRE(eventually([&] { return rig.output().find("reload failed") != std::string::npos; }, 5s));
  CHECK(rig.output().find(rig.config + ":4:") != std::string::npos);  // file:line:col of the bad port
  CHECK(rig.state() == "secured");
  CHECK(rig.table() == before);
}

TEST_CASE("a broken configuration never starts a half-configured daemon") {
  lab::Netns ns("cfg");
  const std::string path = "/tmp/" + lab::unique_name("badcfg") + ".yaml";
  const char* bad[] = {
      "policy: loose\n", "armed: maybe\n", "tunnel:\n  interfaces: ['']\n", "probe:\n  interval: -5s\n",
      "tunnel:\n  endpoints: ['198.51.100.1']\n", "colour: blue\n", "policy: [udp\n",
  };
  for (const char* text : bad) {
    CAPTURE(text);
    std::ofstream(path) << text;
    auto r = ns.run({LEAKGUARDD, "--config", path});
    CHECK(r.status == 2);
    CHECK(r.out.find(path + ":") != std::string::npos);
    CHECK(ns.run({"nft", "list", "tables"}).out.find("leakguard") == std::string::npos);
    auto c = lab::run({LEAKGUARDD, "--check-config", path});
    CHECK(c.status == 2);
  }
  std::remove(path.c_str());
}
