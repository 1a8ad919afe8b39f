// The C++ lab fixture: namespaces appear and disappear with the objects, commands run inside them,
// threads can enter them, and background processes end with their owner.
#include <doctest/doctest.h>
#include <net/if.h>
#include <signal.h>
#include <sys/stat.h>

#include "tests/lab/lab.hpp"

using namespace leakguard::lab;

namespace {
bool netns_exists(const std::string& name) {
  struct stat st {};
  return stat(("/run/netns/" + name).c_str(), &st) == 0;
}
ino_t current_netns() {
  struct stat st {};
  REQUIRE(stat("/proc/thread-self/ns/net", &st) == 0);
  return st.st_ino;
}
}  // namespace

TEST_CASE("run captures output and exit status, and enforces its timeout") {
  auto ok = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(ok.status == 3);
  CHECK(ok.out.find("out") != std::string::npos);
  CHECK(ok.out.find("err") != std::string::npos);
  CHECK(run({"/nonexistent/program"}).status == 127);
  auto slow = run({"sleep", "5"}, std::chrono::milliseconds(100));
  CHECK(slow.status == -1);
  CHECK(slow.out.find("timed out") != std::string::npos);
}

TEST_CASE("Netns: unique, usable, gone after destruction with its processes") {
  std::string name;
  pid_t pid = -1;
  {
    Netns a("fixture");
    Netns b("fixture");
    name = a.name();
    CHECK(a.name() != b.name());
    CHECK(a.name().starts_with("lgt-"));
    CHECK(netns_exists(a.name()));
    auto r = a.run({"ip", "-o", "link", "show", "lo"});
    CHECK(r.status == 0);
    CHECK(r.out.find("UP") != std::string::npos);
    Process p(a.name(), {"sleep", "60"});
    pid = p.pid();
    CHECK(kill(pid, 0) == 0);
    p.stop(SIGKILL);  // ended explicitly; the Netns destructor ends anything else left inside
  }
  CHECK_FALSE(netns_exists(name));
}

TEST_CASE("NetnsScope moves only this thread, and back") {
  Netns ns("scope");
  const ino_t outside = current_netns();
  {
    NetnsScope in(ns.name());
    CHECK(current_netns() != outside);
    CHECK(if_nametoindex("lo") == 1);  // a fresh namespace has only lo
  }
  CHECK(current_netns() == outside);
  CHECK_THROWS(NetnsScope("lgt-does-not-exist"));
  CHECK(current_netns() == outside);
}

TEST_CASE("Lab: topology, variables, knobs, teardown") {
  std::string host;
  {
    Lab lab({.tunnel = true, .ipv6_tunnel = true, .split_stun = false, .second_uplink = false});
    host = lab.ns("host");
    CHECK(netns_exists(host));
    CHECK(lab.var("STUN4") == "203.0.113.3");
    CHECK(lab.var("VPN_EXIT4") == "203.0.113.66");
    CHECK_THROWS(lab.var("NO_SUCH_THING"));
    {
      NetnsScope in(host);
      CHECK(if_nametoindex("eth0") != 0);
      CHECK(if_nametoindex("wg0") != 0);
    }
    // The tunnel carries traffic: the VPN server answers on its tunnel address.
    CHECK(lab.run("host", {"ping", "-c1", "-W2", "-q", "100.64.0.1"}).status == 0);
    lab.set("tunnel", "down");
    CHECK(lab.run("host", {"ip", "link", "show", "wg0"}).status != 0);
    lab.set("second-uplink", "on");
    CHECK(lab.run("host", {"ip", "link", "show", "wlan0"}).status == 0);
    CHECK(netns_exists(lab.ns("isp2")));
    CHECK_THROWS(lab.set("tunnel", "sideways"));
  }
  CHECK_FALSE(netns_exists(host));
}
