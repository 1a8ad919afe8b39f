// leakguardd end to end: the daemon runs as a process in the lab's host namespace (real
// wireguard-go tunnel, real coturn), talks on a private system bus, and is judged by what an
// independent STUN client (coturn's turnutils_stunclient) and real packets show, not by its own word.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono;
using namespace std::chrono_literals;
namespace lab = leakguard::lab;

using leakguard::e2e::eventually;
using leakguard::e2e::read_file;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

TEST_CASE("secured with the tunnel up, blocking when it dies, and nothing escapes meanwhile") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});  // the STUN server is routed outside the tunnel: a leak waits
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
  rig.net.set("tunnel", "down");
  const bool blocking = rig.wait_state("blocking", 5s);
  const bool looked = eventually([&] { return looks >= 3; }, 15s);
  stop = true;
  watcher.join();
  CHECK_MESSAGE(blocking, rig.output());
  CHECK_MESSAGE(looked, "the witness looked only " << looks.load() << " times");
  CHECK_MESSAGE(escaped == "", "the witness got " << escaped);
  CHECK(rig.witness("2001:db8:3::3").empty());
  // The control: disarmed, the same witness on the same path gets the ISP address again (the STUN
  // server answers, the witness works: only the rules kept it empty).
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  CHECK(eventually([&] { return rig.witness("203.0.113.3") == "203.0.113.2"; }, 10s));
  CHECK(rig.witness("2001:db8:3::3") == "2001:db8:2::10");
}

TEST_CASE("a tunnel that stops answering is unverified, not secured - and secured again once it answers") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());  // the control: this tunnel does answer
  // The VPN provider stops translating the tunnel's addresses: what goes in no longer comes back.
  const auto saved = rig.net.run("vpn", {"nft", "list", "table", "inet", "lab_nat"});
  REQUIRE(saved.status == 0);
  REQUIRE(rig.net.run("vpn", {"nft", "flush", "chain", "inet", "lab_nat", "post"}).status == 0);
  REQUIRE(rig.ctl({"probe"}).status >= 0);
  REQUIRE_MESSAGE(rig.wait_state("unverified"), rig.output());
  auto st = rig.status();
  INFO(st.dump());
  CHECK(st["reason"].get<std::string>().find("the tunnel did not answer") != std::string::npos);
  CHECK(st["last_probe"]["tunnel_exits"]["ipv4"].empty());
  // Nothing leaked meanwhile: the outside paths were refused (the state would be leaking).
  CHECK(st["leak_count"] == 0);
  // Back: the next round proves it again.
  const std::string file = rig.dir + "/lab_nat.nft";
  std::ofstream(file) << "delete table inet lab_nat\n" << saved.out;
  REQUIRE(rig.net.run("vpn", {"nft", "-f", file}).status == 0);
  REQUIRE(rig.ctl({"probe"}).status >= 0);
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
}

// Issue 17, item 2: pages reach TURN servers over TCP. In udp policy TCP stays open on purpose, so
// what only a device-bound socket reaches is an exposure (strict closes it), while a page's own
// (routed) socket getting out over TCP is the leak: here, IPv6 not tunnelled.
bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

constexpr const char* kUdpAndTcpServers =
    R"(["203.0.113.3:3478", "[2001:db8:3::3]:3478", "203.0.113.3:3478/tcp", "[2001:db8:3::3]:3478/tcp"])";

TEST_CASE("udp policy with STUN over TCP: secured when both families are tunnelled, leaking once IPv6 goes native") {
  Rig rig(RigOptions{.lab = {}, .servers = kUdpAndTcpServers, .on_exposure = "alert"});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  auto st = rig.status();
  INFO(st.dump());
  // The control: eth0's device-bound TCP did reach the server (udp policy leaves TCP open) - an
  // exposure in the report, not a leak.
  const auto& probe = st["last_probe"];
  REQUIRE(probe["exposures"].is_array());
  CHECK(probe["exposures"].size() == 2);
  CHECK(probe["leaks"].empty());
  CHECK(st["leak_count"] == 0);
  // IPv6 leaves natively now: a page's TCP socket to the IPv6 server gets out via eth0.
  rig.net.set("ipv6", "native");
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  const auto leaked = rig.status()["last_probe"];
  INFO(leaked.dump());
  REQUIRE(leaked["leaks"].is_array());
  bool tcp6 = false;
  for (const auto& l : leaked["leaks"])
    tcp6 = tcp6 || (l["routed"] == true && l["family"] == "ipv6" && l["server"] == "[2001:db8:3::3]:3478/tcp");
  CHECK(tcp6);
  // strict closes it: the next round finds nothing outside the tunnel (IPv6 through wg0 still
  // answers with the VPN's exit: secured, with the untunnelled family named in the round's summary).
  REQUIRE(rig.ctl({"policy", "strict"}).status == 0);
  REQUIRE(rig.ctl({"probe"}).status >= 0);
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(rig.status()["last_probe"]["leaks"].empty());
}

// Issue 17, item 4: with on_exposure escalate (the default) the TCP path over native IPv6 is closed
// by holding IPv6 as strict does, and let go once IPv6 goes into the tunnel again. The routing table
// shows that path (IPv6's default route via eth0 while the tunnel is up): closed when the route
// changes, not after a round has found a server that answers.
TEST_CASE("on_exposure escalate: TCP over native IPv6 is closed when the route goes native, and opened again once IPv6 is tunnelled") {
  Rig rig(RigOptions{.lab = {}, .servers = kUdpAndTcpServers});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // What a page's TCP socket gets: a connection to the STUN server's TCP port, both families.
  auto tcp_connects = [&](const std::string& host) {
    return rig.net.run("host", {"timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/" + host + "/3478"}).status == 0;
  };
  REQUIRE(tcp_connects("2001:db8:3::3"));  // through the tunnel
  rig.net.set("ipv6", "native");
  CHECK_MESSAGE(eventually([&] { return rig.status()["escalated"] == nlohmann::json::array({"ipv6"}); }, 15s), rig.output());
  CHECK(rig.status()["escalated_by_routing"] == nlohmann::json::array({"ipv6"}));
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());  // the round on the network change: nothing got out
  const auto st = rig.status();
  INFO(st.dump());
  CHECK(st["policy"] == "udp");
  CHECK(st["last_probe"]["leaks"].empty());
  CHECK(has(rig.table(), "meta nfproto ipv6 meta l4proto tcp"));
  CHECK_MESSAGE(has(rig.output(), "escalated IPv6 to strict: the routing sends some of this host's traffic around the tunnel "
                                  "(the default route via eth0)"),
                rig.output());
  // Nothing over TCP/IPv6 leaves via eth0 now; the control: TCP over IPv4 still goes (udp policy,
  // through the tunnel).
  CHECK_FALSE(tcp_connects("2001:db8:3::3"));
  CHECK(tcp_connects("203.0.113.3"));
  // IPv6 goes into the tunnel again: let go, and TCP over IPv6 works again.
  rig.net.set("ipv6", "tunnel");
  CHECK_MESSAGE(eventually([&] { return rig.status()["escalated"].empty(); }, 15s), rig.output());
  CHECK(eventually([&] { return tcp_connects("2001:db8:3::3"); }, 10s));
  CHECK(rig.wait_state("secured"));
}

TEST_CASE("on_exposure escalate acts on the first answer: a silent server in the list does not hold the escalation to the round's end") {
  // The lab's STUN server over TCP on IPv6, routed around the tunnel by a host route (split-stun:
  // a path the routing table does not flag, only a probe finds), beside a server nobody answers: the
  // round lasts its timeout (3 s), the escalation must not.
  Rig rig(RigOptions{.lab = {.split_stun = true},
                     .servers = R"(["203.0.113.3:3478", "[2001:db8:3::3]:3478/tcp", "203.0.113.99:3478"])"});
  rig.start();
  REQUIRE_MESSAGE(eventually([&] { return has(rig.output(), "the round goes on"); }, 15s), rig.output());
  const std::string log = rig.output();
  const auto escalated = log.find("escalated IPv6 to strict: a web page's path out of the tunnel answered (routed via eth0");
  const auto round_end = log.find("probe: leak");
  INFO(log);
  REQUIRE(escalated != std::string::npos);
  // The control: the round itself did end, later, with the leak and the escalation in its summary.
  REQUIRE(eventually([&] { return has(rig.output(), "probe: leak"); }, 15s));
  CHECK((round_end == std::string::npos || escalated < round_end));
  // The silent server's probes ran to the round's end (timeouts): what the escalation did not wait for.
  const auto st = rig.status();
  bool silent_waited = false;
  for (const auto& p : st["last_probe"]["probes"])
    silent_waited = silent_waited || (p["server"] == "203.0.113.99:3478/udp" && p["outcome"] == "timeout");
  CHECK(silent_waited);
  CHECK(rig.status()["escalated"] == nlohmann::json::array({"ipv6"}));
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());  // the round after: IPv6 closed
}

TEST_CASE("a leak the rules do not cover is found by the probe and raised at error level") {
  Rig rig(RigOptions{.lab = {.split_stun = true}, .armed = false});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  CHECK(eventually([&] { return rig.output().find("LEAK: eth0 ipv4 reflexive address 203.0.113.2") != std::string::npos; }, 5s));
  CHECK(rig.output().find("error: LEAK: eth0 ipv4 reflexive address 203.0.113.2") != std::string::npos);  // error level
  // Arming closes it: the next round finds nothing.
  auto r = rig.ctl({"arm"});
  CHECK(r.status == 0);
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
}

TEST_CASE("interfaces named with bytes that are not UTF-8 are probed and reported - the daemon runs on") {
  // The kernel takes any byte but '/', ':', NUL and white space in a name. JSON and D-Bus take
  // only UTF-8: such a name used to crash the daemon on every probe round.
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string odd = "\xff\xfe" "0", peer = "lg\x80peer";
  REQUIRE(rig.net.run("host", {"ip", "link", "add", "name", odd, "type", "veth", "peer", "name", peer}).status == 0);
  REQUIRE(rig.net.run("host", {"ip", "addr", "add", "203.0.113.200/32", "dev", odd}).status == 0);
  REQUIRE(rig.net.run("host", {"ip", "link", "set", odd, "up"}).status == 0);
  REQUIRE(rig.net.run("host", {"ip", "link", "set", peer, "up"}).status == 0);

  // A probe round covers it (the daemon sees the new interface first: poll the report).
  std::string report;
  const bool probed = eventually([&] {
    auto r = rig.ctl({"probe", "--json"});
    report = r.out;
    return r.status == 0 && report.find("\\\\xff\\\\xfe0") != std::string::npos;
  }, 15s);
  INFO(report);
  INFO(rig.output());
  CHECK(probed);
  REQUIRE(rig.daemon().running());
  CHECK_FALSE(nlohmann::json::parse(report, nullptr, false).is_discarded());
  // The status (network, counters, last probe) and the properties say it too.
  auto st = rig.ctl({"status", "--json"});
  REQUIRE(st.status == 0);
  const auto j = nlohmann::json::parse(st.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(st.out.find("\\\\xff\\\\xfe0") != std::string::npos);
  CHECK(rig.busctl({"get-property", "org.leakguard.Daemon1", "/org/leakguard/Daemon1", "org.leakguard.Daemon1",
                    "LastProbe"}).status == 0);
  CHECK(rig.ctl({"status"}).status == 0);
  CHECK(rig.daemon().running());
  CHECK(rig.state() == "secured");
}

TEST_CASE("allow_lan trusts only the private part of what a network hands out (TunnelCrack LocalNet)") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  REQUIRE(rig.ctl({"allow-lan", "on"}).status == 0);
  // A UDP datagram from the host out of eth0: 0 if the rules let it go, else errno (EPERM).
  auto send_via_eth0 = [&](const char* ip) {
    lab::NetnsScope in(rig.net.ns("host"));
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "eth0", 4) == 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(40000);
    inet_pton(AF_INET, ip, &to.sin_addr);
    const int rc = ::sendto(fd, "lan?", 4, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0 ? errno : 0;
    ::close(fd);
    return rc;
  };
  // The hostile network's DHCP hands out an address whose prefix covers the STUN and web servers
  // (a public /24 of the lab's internet), and a private one, the control that the change was seen.
  REQUIRE(rig.net.run("host", {"ip", "addr", "add", "203.0.113.77/24", "dev", "eth0"}).status == 0);
  REQUIRE(rig.net.run("host", {"ip", "addr", "add", "10.77.0.10/24", "dev", "eth0"}).status == 0);
  nlohmann::json lan;
  const bool seen = eventually([&] {
    lan = rig.status()["firewall"]["lan_subnets"];
    return std::find(lan.begin(), lan.end(), "10.77.0.0/24") != lan.end();
  }, 10s);
  INFO(lan.dump());
  INFO(rig.output());
  REQUIRE_MESSAGE(seen, "the private on-link subnet never reached the LAN set");
  CHECK(std::find(lan.begin(), lan.end(), "203.0.113.0/24") == lan.end());
  // Not in the LAN set (the DHCP set holds every on-link subnet: a server there may be renewed).
  const std::string table = rig.table();
  const auto lan4 = table.find("set lan4 {");
  REQUIRE(lan4 != std::string::npos);
  CHECK(table.substr(lan4, table.find('}', lan4) - lan4).find("203.0.113.0/24") == std::string::npos);
  CHECK(send_via_eth0("203.0.113.80") == EPERM);  // the "LAN" server outside the tunnel: blocked
  CHECK(send_via_eth0("10.77.0.20") == 0);        // the real LAN: open
  // The user can still say that a public range is their LAN.
  std::ofstream(rig.config, std::ios::app) << "allow_lan: true\nallow_lan_ranges: [203.0.113.0/24]\n";
  REQUIRE(rig.ctl({"reload"}).status == 0);
  CHECK(eventually([&] { return send_via_eth0("203.0.113.80") == 0; }, 5s));
}

namespace {
// A TCP connection from `ns` to ip:port within the deadline (non-blocking connect, then poll).
bool tcp_connects(const std::string& ns, const char* ip, std::uint16_t port, milliseconds deadline) {
  lab::NetnsScope in(ns);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  REQUIRE(fd >= 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, ip, &to.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, static_cast<int>(deadline.count())) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  ::close(fd);
  return ok;
}

// A UDP datagram from `ns` that claims to come from src:sport (IP_TRANSPARENT: any source).
void udp_from(const std::string& ns, const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport,
              const std::string& payload) {
  lab::NetnsScope in(ns);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const int one = 1;
  REQUIRE(setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) == 0);
  sockaddr_in a{}, to{};
  a.sin_family = to.sin_family = AF_INET;
  a.sin_port = htons(sport);
  to.sin_port = htons(dport);
  inet_pton(AF_INET, src, &a.sin_addr);
  inet_pton(AF_INET, dst, &to.sin_addr);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
          static_cast<ssize_t>(payload.size()));
  ::close(fd);
}

// Waits for a datagram carrying `payload` on `fd` (every one read goes to `seen`).
bool udp_arrives(int fd, const std::string& payload, std::vector<std::string>& seen, milliseconds deadline) {
  const auto end = steady_clock::now() + deadline;
  for (;;) {
    char buf[512];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0) seen.emplace_back(buf, static_cast<std::size_t>(n));
    if (std::find(seen.begin(), seen.end(), payload) != seen.end()) return true;
    const auto left = duration_cast<milliseconds>(end - steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left));
  }
}
}  // namespace

TEST_CASE("packets for the tunnel's own address never come in through eth0 (CVE-2019-14899) - the endpoint's own only as replies") {
  // The ISP router is the LAN peer on eth0's link: it routes the host's tunnel address via eth0,
  // and it can put the VPN endpoint's address and port in any source field.
  for (const std::string policy : {"udp", "strict"}) {
    CAPTURE(policy);
    RigOptions o;
    o.policy = policy;
    Rig rig(o);
    rig.start();
    REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
    REQUIRE(rig.net.run("isp", {"ip", "route", "add", "100.64.0.2/32", "via", "192.0.2.10", "dev", "down0"}).status == 0);
    // What listens on the host, on every address: `talks` has sent a datagram to the endpoint
    // (with the VPN client's mark, as the client's own socket does), `silent` never sent anything.
    int talks = -1, silent = -1, tcp = -1;
    {
      lab::NetnsScope in(rig.net.ns("host"));
      talks = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      silent = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in any{};
      any.sin_family = AF_INET;
      any.sin_port = htons(40123);
      REQUIRE(::bind(talks, reinterpret_cast<const sockaddr*>(&any), sizeof any) == 0);
      REQUIRE(::bind(tcp, reinterpret_cast<const sockaddr*>(&any), sizeof any) == 0);
      REQUIRE(::listen(tcp, 8) == 0);
      any.sin_port = htons(40124);
      REQUIRE(::bind(silent, reinterpret_cast<const sockaddr*>(&any), sizeof any) == 0);
      const int mark = 51820;
      REQUIRE(setsockopt(talks, SOL_SOCKET, SO_MARK, &mark, sizeof mark) == 0);
      // TTL 1: the host's conntrack records the flow, the ISP router drops it before its own
      // conntrack confirms it (else the router's forged answer below would clash with that entry
      // and the router itself would drop it: a lab artefact, not the host's doing).
      const int ttl = 1;
      REQUIRE(setsockopt(talks, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) == 0);
      sockaddr_in endpoint{};
      endpoint.sin_family = AF_INET;
      endpoint.sin_port = htons(51820);
      inet_pton(AF_INET, "198.51.100.1", &endpoint.sin_addr);
      REQUIRE(::sendto(talks, "hello", 5, 0, reinterpret_cast<const sockaddr*>(&endpoint), sizeof endpoint) == 5);
    }
    std::vector<std::string> seen_talks, seen_silent;
    // The control: the endpoint's answer to what `talks` sent arrives (a reply: conntrack knows
    // the flow), and in udp policy a TCP connection to eth0's address is made.
    udp_from(rig.net.ns("isp"), "198.51.100.1", 51820, "192.0.2.10", 40123, policy + " reply");
    REQUIRE_MESSAGE(udp_arrives(talks, policy + " reply", seen_talks, 5000ms), "the endpoint's reply did not arrive");
    if (policy == "udp") CHECK(tcp_connects(rig.net.ns("isp"), "192.0.2.10", 40123, 5000ms));
    // The attacks: the same source to a port that never talked to the endpoint (a forged
    // "endpoint" datagram to any local service), and to the tunnel's address through eth0.
    udp_from(rig.net.ns("isp"), "198.51.100.1", 51820, "192.0.2.10", 40124, policy + " unasked");
    udp_from(rig.net.ns("isp"), "198.51.100.1", 51820, "100.64.0.2", 40123, policy + " to the tunnel's address");
    CHECK_FALSE(tcp_connects(rig.net.ns("isp"), "100.64.0.2", 40123, 1000ms));
    // Sent after the attacks, over the same path: once it is in, the attacks had their chance.
    udp_from(rig.net.ns("isp"), "198.51.100.1", 51820, "192.0.2.10", 40123, policy + " reply after");
    REQUIRE(udp_arrives(talks, policy + " reply after", seen_talks, 5000ms));
    CHECK(std::find(seen_talks.begin(), seen_talks.end(), policy + " to the tunnel's address") == seen_talks.end());
    CHECK_FALSE(udp_arrives(silent, policy + " unasked", seen_silent, 200ms));
    CHECK(seen_silent.empty());
    // Counted (the status's counters may be up to a second old), and the set follows the
    // tunnel's addresses.
    nlohmann::json st;
    CHECK(eventually([&] {
      st = rig.status();
      const auto blocked = st["firewall"]["blocked"].get<std::string>();
      return blocked.find("for the tunnel's address") != std::string::npos && blocked.find("incoming UDP") != std::string::npos;
    }, 5s));
    INFO(st.dump());
    CHECK(st["firewall"]["tunnel_addresses"].dump().find("100.64.0.2") != std::string::npos);
    ::close(talks);
    ::close(silent);
    ::close(tcp);
  }
}

namespace {
// A UDP datagram from the host out of eth0 (SO_BINDTODEVICE: past the tunnel's routing, as any
// local process may) to ip:port, sent by `uid`: 0 if it left, else errno (EPERM: refused).
int send_as(const Rig& rig, uid_t uid, const char* ip, std::uint16_t port, const std::string& payload) {
  lab::NetnsScope in(rig.net.ns("host"));
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (uid != 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)) ::_exit(200);
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "eth0", 4) != 0) ::_exit(201);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    inet_pton(AF_INET, ip, &to.sin_addr);
    ::_exit(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0 ? errno : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE_MESSAGE(WEXITSTATUS(status) < 200, "the sender could not be set up: " << WEXITSTATUS(status));
  return WEXITSTATUS(status);
}
}  // namespace

TEST_CASE("without a mark the endpoint is for the VPN client's user only: another user's socket is refused (MUL-02-002)") {
  // No fwmark declared (as NetworkManager's OpenVPN plugin runs it): the tunnel is declared over
  // the bus with endpoints only. wireguard-go's socket is root's, the default endpoint_uid.
  RigOptions o;
  o.endpoint = false;
  Rig rig(o);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_answering(), rig.output());
  const auto set = rig.ctl({"tunnel", "set", "wg0", "--endpoint", "198.51.100.1:51820/udp", "--endpoint", "198.51.100.1:40999/udp"});
  REQUIRE_MESSAGE(set.status == 0, set.out);
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // A receiver at the second endpoint, in the VPN server's namespace.
  int rx = -1;
  {
    lab::NetnsScope in(rig.net.ns("vpn"));
    rx = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(40999);
    inet_pton(AF_INET, "198.51.100.1", &a.sin_addr);
    REQUIRE(::bind(rx, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  }
  std::vector<std::string> seen;
  const uid_t nobody = 65534;
  // The control: root's datagram reaches the endpoint through eth0.
  REQUIRE(send_as(rig, 0, "198.51.100.1", 40999, "root") == 0);
  REQUIRE_MESSAGE(udp_arrives(rx, "root", seen, 5000ms), "root's datagram did not reach the endpoint");
  // The attack: nobody's is refused at once, and never arrives.
  CHECK(send_as(rig, nobody, "198.51.100.1", 40999, "nobody") == EPERM);
  REQUIRE(send_as(rig, 0, "198.51.100.1", 40999, "root after") == 0);
  REQUIRE(udp_arrives(rx, "root after", seen, 5000ms));
  CHECK(std::find(seen.begin(), seen.end(), "nobody") == seen.end());
  // Counted (the status's counters may be up to a second old).
  nlohmann::json st;
  CHECK(eventually([&] {
    st = rig.status();
    return st["firewall"]["blocked"].get<std::string>().find("refused 1 packet to the VPN endpoint from another user's socket") !=
           std::string::npos;
  }, 5s));
  INFO(st.dump());
  CHECK(st["endpoint_uid"] == 0);
  // With endpoint_uid: any (the old behaviour) the same datagram passes: the rule is what stopped it.
  std::string text;
  {
    std::ifstream f(rig.config);
    text.assign(std::istreambuf_iterator<char>(f), {});
  }
  const auto at = text.find("tunnel:\n");
  REQUIRE(at != std::string::npos);
  text.insert(at + 8, "  endpoint_uid: any\n");
  std::ofstream(rig.config) << text;
  REQUIRE(rig.ctl({"reload"}).status == 0);
  REQUIRE(eventually([&] { return rig.status()["endpoint_uid"].is_null(); }, 5s));
  CHECK(send_as(rig, nobody, "198.51.100.1", 40999, "nobody, any") == 0);
  CHECK(udp_arrives(rx, "nobody, any", seen, 5000ms));
  ::close(rx);
}

TEST_CASE("with exactly the unit's capabilities the daemon installs its rules and probes through eth0") {
  // The unit's set, read from the unit file itself: "CapabilityBoundingSet=CAP_A CAP_B".
  std::string caps;
  unsigned long long mask = 0;  // as /proc/PID/status shows it
  {
    const std::map<std::string, int> bit{{"net_bind_service", 10}, {"net_admin", 12}, {"net_raw", 13}};
    std::istringstream unit(read_file(LEAKGUARD_UNIT));
    for (std::string line; std::getline(unit, line);)
      if (line.rfind("CapabilityBoundingSet=", 0) == 0) {
        std::istringstream names(line.substr(line.find('=') + 1));
        for (std::string c; names >> c;) {
          std::string lower = c.substr(4);  // setpriv's names: "net_admin"
          for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          caps += ",+" + lower;
          REQUIRE_MESSAGE(bit.count(lower), "a capability this test does not know: " << c);
          mask |= 1ULL << bit.at(lower);
        }
      }
  }
  REQUIRE_FALSE(caps.empty());
  MESSAGE("the unit's capabilities: " << caps.substr(1));
  const std::string set = "-all" + caps;
  // Disarmed with the STUN server routed outside the tunnel: only a probe bound to eth0
  // (SO_BINDTODEVICE) can find the leak; then arming needs NET_ADMIN for the table.
  RigOptions o;
  o.lab = {.split_stun = true};
  o.armed = false;
  o.wrapper = {"setpriv", "--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--"};
  Rig rig(o);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  CHECK(eventually([&] { return rig.output().find("LEAK: eth0 ipv4 reflexive address 203.0.113.2") != std::string::npos; }, 5s));
  // The daemon really runs without the rest (CapBnd of its /proc status is the unit's set only).
  char want[64];
  std::snprintf(want, sizeof want, "CapBnd:\t%016llx", mask);
  const std::string status = read_file("/proc/" + std::to_string(rig.daemon().pid()) + "/status");
  CHECK_MESSAGE(status.find(want) != std::string::npos, status);
  REQUIRE(rig.ctl({"arm"}).status == 0);
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(rig.table().find("table inet leakguard") != std::string::npos);
  CHECK(rig.witness("203.0.113.3").empty());
}

TEST_CASE("what a VPN client declared survives kill -9 and a restart - a garbled or stale record is ignored") {
  // The endpoint comes only from the VPN client's declaration: a daemon that forgot it would
  // block the VPN's own packets.
  RigOptions o;
  o.endpoint = false;
  Rig rig(o);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_answering(), rig.output());
  const std::string record = rig.state_dir + "/tunnel.json";
  auto endpoint_allowed = [&] {
    const std::string t = rig.table();
    const auto set = t.find("set endpoints4 {");
    return set != std::string::npos && t.substr(set, t.find('}', set) - set).find("198.51.100.1 . udp . 51820") != std::string::npos;
  };
  auto declare = [&](const std::string& ifname) {
    const auto r = rig.ctl({"tunnel", "set", ifname, "--endpoint", "198.51.100.1:51820/udp", "--fwmark", "51820"});
    REQUIRE_MESSAGE(r.status == 0, r.out);
  };
  declare("wg0");
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  REQUIRE(std::filesystem::exists(record));

  // Restored: the restarted daemon's first rules allow the endpoint, with no new declaration.
  rig.daemon().stop(SIGKILL);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(endpoint_allowed());
  auto st = rig.status();
  CHECK(st["tunnel"]["declared"] == "wg0");
  CHECK(st["fwmark"] == 51820);
  CHECK(rig.output().find("tunnel wg0 as declared before the restart") != std::string::npos);

  // Garbled: ignored with a log line and removed; the restart then knows nothing of the VPN.
  std::ofstream(record) << "{\"version\": 1, \"interface\": \"wg0\", garbage";
  rig.daemon().stop(SIGKILL);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_answering(), rig.output());
  CHECK(rig.output().find("ignored the tunnel declaration kept from before the restart") != std::string::npos);
  CHECK(rig.status()["tunnel"]["declared"].is_null());
  CHECK_FALSE(endpoint_allowed());
  CHECK_FALSE(std::filesystem::exists(record));

  // Cleared by the client: the record goes with it.
  declare("wg0");
  REQUIRE(std::filesystem::exists(record));
  REQUIRE(rig.ctl({"tunnel", "clear"}).status == 0);
  CHECK_FALSE(std::filesystem::exists(record));

  // Stale: the declared interface went away while no daemon ran (its hook's clear was lost).
  REQUIRE(rig.net.run("host", {"ip", "link", "add", "wg9", "type", "veth", "peer", "name", "wg9p"}).status == 0);
  REQUIRE(eventually([&] { return rig.status()["network"].dump().find("\"wg9\"") != std::string::npos; }, 5s));
  declare("wg9");
  REQUIRE(std::filesystem::exists(record));
  rig.daemon().stop(SIGKILL);
  REQUIRE(rig.net.run("host", {"ip", "link", "del", "wg9"}).status == 0);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_answering(), rig.output());
  CHECK(rig.output().find("interface wg9 is gone") != std::string::npos);
  CHECK(rig.status()["tunnel"]["declared"].is_null());
  CHECK_FALSE(endpoint_allowed());
  CHECK_FALSE(std::filesystem::exists(record));

  // Declared ahead of its interface (wg-quick's PreUp, OpenVPN's --pre-start, NetworkManager's
  // uplink declare the servers before the client makes its device): kept across the restart, so
  // the client's first handshake after it still gets through.
  declare("tun");
  REQUIRE(std::filesystem::exists(record));
  CHECK(read_file(record).find("\"ahead\": true") != std::string::npos);
  rig.daemon().stop(SIGKILL);
  rig.start();
  REQUIRE_MESSAGE(rig.wait_answering(), rig.output());
  CHECK(rig.output().find("tunnel tun as declared before the restart") != std::string::npos);
  CHECK(rig.output().find("ahead of its interface") != std::string::npos);
  CHECK(rig.status()["tunnel"]["declared"] == "tun");
  CHECK(endpoint_allowed());
}

TEST_CASE("kill -9 under a UDP flood lets nothing out, and a restart takes over without a window") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // A receiver in the internet namespace counts what arrives; the host floods it via eth0 (the
  // split route) from before the kill until after the restart.
  std::atomic<bool> stop_flood{false}, stop_sink{false};
  std::atomic<long> sent{0}, refused{0}, received{0}, controls{0};
  std::atomic<int> sink_state{0};  // 0 starting, 1 listening, -errno: could not
  const sockaddr_in a = [] {  // the sink, on the STUN server's address in the internet namespace
    sockaddr_in x{};
    x.sin_family = AF_INET;
    x.sin_port = htons(40000);
    inet_pton(AF_INET, "203.0.113.3", &x.sin_addr);
    return x;
  }();
  std::thread sink([&] {
    lab::NetnsScope in(rig.net.ns("inet"));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    timeval tv{0, 100000};  // a deadline for recv, so that the loop sees stop_sink
    if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
      sink_state = -errno;
      if (fd >= 0) close(fd);
      return;
    }
    sink_state = 1;
    char buf[64];
    while (!stop_sink) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n == 4 && std::memcmp(buf, "leak", 4) == 0) ++received;
      else if (n > 0) ++controls;
    }
    close(fd);
  });
  struct Join {  // the threads end even when a REQUIRE below fails
    std::atomic<bool>& stop_flood;
    std::atomic<bool>& stop_sink;
    std::thread& sink;
    std::optional<std::thread> flood;
    ~Join() {
      stop_flood = stop_sink = true;
      if (flood) flood->join();
      sink.join();
    }
  } join{stop_flood, stop_sink, sink, std::nullopt};
  REQUIRE(eventually([&] { return sink_state != 0; }, 5s));
  REQUIRE_MESSAGE(sink_state == 1, "the sink could not listen: " << std::strerror(-sink_state));
  join.flood.emplace([&] {
    lab::NetnsScope in(rig.net.ns("host"));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    while (!stop_flood) {
      if (sendto(fd, "leak", 4, 0, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 4) ++sent;
      else ++refused;
    }
    close(fd);
  });
  REQUIRE(eventually([&] { return refused > 1000; }, 5s));
  rig.daemon().stop(SIGKILL);
  CHECK(rig.table().find("table inet leakguard") != std::string::npos);  // orphaned, still there
  const long refused_at_kill = refused;
  CHECK(eventually([&] { return refused > refused_at_kill + 10000; }, 5s));
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const long refused_at_restart = refused;
  CHECK(eventually([&] { return refused > refused_at_restart + 10000; }, 5s));
  stop_flood = true;
  join.flood->join();
  join.flood.reset();
  // The control: disarmed, the same sends reach the same sink (it was listening all along).
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  const bool arrived = eventually(
      [&] {
        lab::NetnsScope in(rig.net.ns("host"));
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sendto(fd, "control", 7, 0, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        close(fd);
        return controls > 0;
      },
      5s);
  CHECK_MESSAGE(arrived, "the control datagram did not reach the sink");
  CHECK_MESSAGE(received == 0, received.load() << " flood datagrams arrived in the internet namespace");
  CHECK(refused > refused_at_kill);
  MESSAGE("flood: " << refused.load() << " sends refused, " << sent.load() << " accepted by the kernel, "
                    << received.load() << " arrived in the internet namespace");
}

TEST_CASE("SIGHUP with a broken configuration keeps the rules, the state and the old configuration") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string before = rig.table();
  std::ofstream(rig.config) << "policy: udp\ntunnel:\n  interfaces: [wg*]\n  endpoints: [\"198.51.100.1:99999\"]\n";
  REQUIRE(kill(rig.daemon().pid(), SIGHUP) == 0);
  REQUIRE(eventually([&] { return rig.output().find("reload refused") != std::string::npos; }, 5s));
  CHECK(rig.output().find(rig.config + ":4:") != std::string::npos);  // file:line:col of the bad port
  CHECK(rig.state() == "secured");
  CHECK(rig.table() == before);
}

TEST_CASE("a broken configuration is refused by --check-config with its place, and --check-config of a good one passes") {
  // What the daemon does with such a file at start (fail closed: the emergency block, `error`)
  // is daemon_failclosed_test's; here the checker alone, which installs nothing.
  const std::string path = "/tmp/" + lab::unique_name("badcfg") + ".yaml";
  const char* bad[] = {
      "policy: loose\n", "armed: maybe\n", "tunnel:\n  interfaces: ['']\n", "probe:\n  interval: -5s\n",
      "tunnel:\n  endpoints: ['198.51.100.1']\n", "colour: blue\n", "policy: [udp\n",
  };
  for (const char* text : bad) {
    CAPTURE(text);
    std::ofstream(path) << text;
    auto c = lab::run({LEAKGUARDD, "--check-config", path});
    CHECK(c.status == 2);
    CHECK(c.out.find(path + ":") != std::string::npos);
  }
  // The control: the same checker passes a good file.
  std::ofstream(path) << "policy: strict\n";
  auto ok = lab::run({LEAKGUARDD, "--check-config", path});
  CHECK_MESSAGE(ok.status == 0, ok.out);
  std::remove(path.c_str());
}

TEST_CASE("the dry run (print-ruleset) shows the rules a file would install, loadable by nft, installing nothing") {
  lab::Netns ns("dry");
  const std::string path = "/tmp/" + lab::unique_name("drycfg") + ".yaml";
  std::ofstream(path) << "policy: strict\nallow_lan: true\ntunnel:\n  interfaces: [wg*]\n"
                         "  endpoints: [\"198.51.100.1:51820/udp\", \"[2001:db8::1]:1194/tcp\"]\n  fwmark: 51820\n";
  auto r = ns.run({LEAKGUARDD, "--print-ruleset", path});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("table inet leakguard") != std::string::npos);
  CHECK(r.out.find("oifname \"wg*\" accept") != std::string::npos);
  CHECK(r.out.find("198.51.100.1 . udp . 51820") != std::string::npos);
  auto tables = ns.run({"nft", "list", "tables"});
  REQUIRE(tables.status == 0);
  CHECK(tables.out.find("leakguard") == std::string::npos);  // nothing installed
  const std::string rules = "/tmp/" + lab::unique_name("dry") + ".nft";
  std::ofstream(rules) << r.out.substr(r.out.find("table inet leakguard"));
  auto check = ns.run({"nft", "-c", "-f", rules});
  CHECK_MESSAGE(check.status == 0, check.out);
  // The control: loaded for real (in this test's namespace), the same look finds the table.
  auto load = ns.run({"nft", "-f", rules});
  CHECK_MESSAGE(load.status == 0, load.out);
  CHECK(ns.run({"nft", "list", "tables"}).out.find("table inet leakguard") != std::string::npos);
  std::remove(rules.c_str());
  std::remove(path.c_str());
}

TEST_CASE("under a service manager: READY, STATUS, watchdog pings, STOPPING, and the block kept on SIGTERM") {
  // A notification socket of our own stands in for systemd's (NOTIFY_SOCKET, WATCHDOG_USEC).
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  const std::string path = rig.dir + "/notify.sock";
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{0, 100000};  // a deadline for each recv, not a sleep
  REQUIRE(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "400000", 1);  // pings every 200 ms
  rig.start();
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  std::string seen;
  auto receive = [&] {  // one message, or none within the socket's 100 ms
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) seen.append(buf, static_cast<std::size_t>(n)).append("\n");
  };
  auto read_until = [&](const std::string& what, std::chrono::milliseconds deadline) {
    return eventually(
        [&] {
          receive();
          return seen.find(what) != std::string::npos;
        },
        deadline);
  };
  CHECK_MESSAGE(read_until("READY=1", 10s), seen);
  CHECK_MESSAGE(read_until("STATUS=secured", 10s), seen);
  // `systemctl status` shows STATUS= to every local user: no probe findings (the VPN's exit
  // address) there; root's status has them.
  CHECK_MESSAGE(seen.find("203.0.113.66") == std::string::npos, seen);
  CHECK(rig.status().dump().find("203.0.113.66") != std::string::npos);
  auto pings = [&] {
    std::size_t n = 0;
    for (auto at = seen.find("WATCHDOG=1"); at != std::string::npos; at = seen.find("WATCHDOG=1", at + 1)) ++n;
    return n;
  };
  seen.clear();
  // Between scheduled probes the daemon only wakes to ping: two pings within a second.
  CHECK_MESSAGE(eventually(
                    [&] {
                      receive();
                      return pings() >= 2;
                    },
                    2s),
                seen);
  const std::string table = rig.table();
  REQUIRE(!table.empty());
  REQUIRE(kill(rig.daemon().pid(), SIGTERM) == 0);
  CHECK_MESSAGE(read_until("STOPPING=1", 5s), seen);
  CHECK(eventually([&] { return !rig.daemon().running(); }, 5s));
  close(fd);
  CHECK(!rig.table().empty());  // on_stop: keep (the default) leaves the block in place
  CHECK(rig.witness("203.0.113.3").empty());
  // The control: without the table left behind, the same witness gets the ISP address.
  auto del = rig.net.run("host", {"nft", "delete", "table", "inet", "leakguard"});
  REQUIRE_MESSAGE(del.status == 0, del.out);
  CHECK(rig.witness("203.0.113.3") == "203.0.113.2");
}

TEST_CASE("hop probes: a path out found with every STUN server silent (disarmed: leaking), refused once armed") {
  // Nobody answers STUN at .99 / ::99, so no server can show anything; the lab has no block while
  // leakguard is disarmed, and the ISP's router answers a datagram with TTL 1 out of eth0.
  Rig rig(RigOptions{.lab = {}, .armed = false, .servers = R"(["203.0.113.99:3478", "[2001:db8:3::99]:3478"])"});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  const auto open = rig.status()["last_probe"];
  INFO(open.dump(2));
  bool router_named = false, endpoint_probed = false;
  for (const auto& l : open["leaks"]) {
    CHECK(l["reflexive"].is_null());  // no server saw anything
    if (l["interface"] == "eth0" && l["hop"] == "192.0.2.1") router_named = true;
    if (l["server"] == "endpoint 198.51.100.1:51820/udp") endpoint_probed = true;
  }
  CHECK(router_named);
  CHECK(endpoint_probed);  // the declared VPN endpoint is a hop target too
  for (const auto& p : open["probes"]) CHECK(p["outcome"] != "reflexive");
  // The journal line and leakguardctl's probe view say what answered.
  CHECK(eventually([&] { return rig.output().find("192.0.2.1 answered a datagram toward") != std::string::npos; }, 5s));
  auto shown = rig.ctl({"probe", "--no-color"});
  CHECK(shown.out.find("hops toward 203.0.113.99:3478/udp: answered by 192.0.2.1 at TTL 1") != std::string::npos);
  CHECK(shown.out.find("<- LEAK") != std::string::npos);

  // Armed: the same datagrams are refused at the send; with no server answering, the state is
  // unverified - never secured on silence.
  REQUIRE(rig.ctl({"arm"}).status == 0);
  REQUIRE_MESSAGE(rig.wait_state("unverified"), rig.output());
  REQUIRE(rig.ctl({"probe"}).status >= 0);
  const auto closed = rig.status()["last_probe"];
  INFO(closed.dump(2));
  CHECK(closed["leaks"].empty());
  REQUIRE_FALSE(closed["hops"].empty());
  for (const auto& h : closed["hops"]) {
    CHECK(h["outcome"] == "blocked");
    CHECK(h["firewall"] == true);
  }
}
