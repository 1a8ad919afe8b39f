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

  // A new daemon takes over: delete + add with the flags in one transaction.
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
