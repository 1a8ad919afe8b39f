// Fail-closed: the process holding the table is killed with SIGKILL; the rules stay and keep
// blocking (persist), and a new process takes the table over in one transaction, while a flood
// of blocked and allowed UDP shows that nothing blocked got through at any moment.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>

#include "firewall/firewall.hpp"
#include "tests/integration/firewall/flood.hpp"

using namespace leakguard;
using namespace leakguard::firewall;
using namespace fwtest;
namespace lab = leakguard::lab;

namespace {

/// fw_holder, started with pipes for stdin and stdout; killed by PID.
struct Holder {
  pid_t pid = -1;
  int to_child = -1, from_child = -1;

  explicit Holder(const std::string& ns) {
    int in[2], out[2];
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    const pid_t parent = getpid();
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      if (getppid() != parent) _exit(1);
      dup2(in[0], 0);
      dup2(out[1], 1);
      execl(LEAKGUARD_FW_HOLDER, "fw_holder", ns.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_child = in[1];
    from_child = out[0];
  }
  ~Holder() {
    if (pid > 0) kill9();
    if (to_child >= 0) close(to_child);
    if (from_child >= 0) close(from_child);
  }
  /// The first line it prints, waiting at most 10 s.
  std::string first_line() {
    std::string line;
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{from_child, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[256];
      const ssize_t n = read(from_child, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    return line;
  }
  void kill9() {
    ::kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
  }
};

}  // namespace

TEST_CASE("kill -9 of the process holding the table - rules stay and block - a new process takes over with no window") {
  TwoHosts net;
  Holder holder(net.snd.name());
  const std::string ready = holder.first_line();
  INFO(ready);
  REQUIRE(ready.rfind("ready ", 0) == 0);
  CHECK(ready.find(" owner") != std::string::npos);

  Flood flood(net,
              {{"blocked udp via eth0", false, "eth0", "192.0.2.2", 5002},
               {"blocked udp6 via eth0", false, "eth0", "2001:db8:1::2", 5004},
               {"endpoint via eth0", true, "eth0", "192.0.2.2", 5001},
               {"via tunnel", true, "tun0", "100.64.1.2", 5003}},
              5000);
  flood.start();
  REQUIRE(flood.wait_received(3, 500));

  holder.kill9();
  // The table outlives its owner: orphaned (no owner flag any more), still there.
  const auto orphan = net.snd.run({"nft", "list", "table", "inet", "leakguard"});
  CHECK(orphan.status == 0);
  CHECK(orphan.out.find("flags owner") == std::string::npos);
  CHECK(orphan.out.find("reject") != std::string::npos);
  const auto after_kill = flood.counts(3).received;
  REQUIRE(flood.wait_received(3, after_kill + 1000));  // traffic kept flowing, rules kept judging

  // A new daemon adopts the orphan in place: NEWTABLE with the flags, then the repair batch.
  Firewall fw = [&] {
    lab::NetnsScope in(net.snd.name());
    auto f = Firewall::open();
    REQUIRE_MESSAGE(f, (f ? "" : f.error().str()));
    return std::move(*f);
  }();
  Policy p;
  p.tunnels = {*IfnamePattern::parse("tun0")};
  p.endpoints = {*Endpoint::parse("192.0.2.2:5001/udp")};
  auto r = fw.apply(p);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().str()));
  CHECK(fw.last_apply().how == ApplyReport::How::installed);
  CHECK(fw.owns_table());
  CHECK(net.snd.run({"nft", "list", "table", "inet", "leakguard"}).out.find("flags owner") != std::string::npos);
  auto v = fw.verify();
  REQUIRE(v);
  CHECK(v->empty());
  const auto after_takeover = flood.counts(3).received;
  REQUIRE(flood.wait_received(3, after_takeover + 1000));
  flood.stop();

  std::cout << flood.report();
  for (std::size_t i = 0; i < flood.flows(); ++i) {
    const auto c = flood.counts(i);
    INFO(flood.spec(i).name);
    CHECK(c.overflow == 0);
    CHECK(c.errors == 0);
    if (flood.spec(i).must_pass) {
      CHECK(c.refused == 0);
      CHECK(c.received == c.sent);
      CHECK(c.sent > 0);
    } else {
      CHECK(c.sent == 0);
      CHECK(c.received == 0);
      CHECK(c.refused > 0);
    }
  }
}

// Without the owner flag anyone with CAP_NET_ADMIN can empty our chains. An emptied chain must
// block (policy drop), not open: in udp mode the chains used to end without a catch-all rule and
// with policy accept, so a flushed output chain let every datagram out until the guard repaired it.
TEST_CASE("a foreign flush of our chains (owner flag off) blocks everything until the table is repaired - never opens") {
  TwoHosts net;
  Firewall fw = [&] {
    lab::NetnsScope in(net.snd.name());
    Options o;
    o.ownership = Ownership::off;
    auto f = Firewall::open(o);
    REQUIRE_MESSAGE(f, (f ? "" : f.error().str()));
    return std::move(*f);
  }();
  Policy p;
  p.tunnels = {*IfnamePattern::parse("tun0")};
  p.endpoints = {*Endpoint::parse("192.0.2.2:5001/udp")};
  REQUIRE(fw.apply(p));

  SocketSpec eth0;
  eth0.ns = net.snd.name();
  eth0.device = "eth0";
  Fd tx = udp_socket(eth0);
  Fd endpoint = udp_listener(net.rcv.name(), "192.0.2.2", 5001);
  Fd blocked = udp_listener(net.rcv.name(), "192.0.2.2", 5002);
  const SockAddr to_endpoint = SockAddr::of("192.0.2.2", 5001), to_blocked = SockAddr::of("192.0.2.2", 5002);
  std::vector<Datagram> seen;
  // Control: the rules let the endpoint through and stop the rest.
  CHECK(send_udp(tx, to_endpoint, "endpoint before") == 0);
  REQUIRE(wait_for(endpoint, "endpoint before", seen));
  CHECK(send_udp(tx, to_blocked, "blocked before") == EPERM);

  const auto flushed = net.snd.run({"nft", "flush", "chain", "inet", "leakguard", "output"});
  REQUIRE_MESSAGE(flushed.status == 0, flushed.out);
  const std::string emptied = net.snd.run({"nft", "list", "chain", "inet", "leakguard", "output"}).out;
  CHECK(emptied.find("reject") == std::string::npos);  // no rule left
  CHECK(emptied.find("policy drop") != std::string::npos);
  CHECK(send_udp(tx, to_blocked, "blocked while flushed") == EPERM);  // the policy drops it
  CHECK(send_udp(tx, to_endpoint, "endpoint while flushed") == EPERM);  // fail-closed: everything

  REQUIRE(fw.reassert());
  CHECK(fw.last_apply().how == ApplyReport::How::repaired);
  CHECK(send_udp(tx, to_endpoint, "endpoint after") == 0);
  REQUIRE(wait_for(endpoint, "endpoint after", seen));
  CHECK(send_udp(tx, to_blocked, "blocked after") == EPERM);
  // Nothing that was refused arrived anyway (the endpoint's datagram after the repair did).
  CHECK_FALSE(contains(seen, "endpoint while flushed"));
  const auto at_blocked = drain(blocked);
  CHECK(at_blocked.empty());
}
