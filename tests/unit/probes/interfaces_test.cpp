// The interface list the prober works from, built from a network model (pure: no netlink here).
#include <doctest/doctest.h>

#include <linux/if_addr.h>
#include <net/if.h>

#include "probes/interfaces.hpp"
#include "probes/prober.hpp"

using namespace leakguard;
using namespace leakguard::probes;

namespace {

netwatch::NetModel model() {
  using namespace netwatch;
  NetModel m;
  auto link = [](std::uint32_t i, const char* name, const char* kind, std::uint16_t type, std::uint32_t flags) {
    return Added<Link>{Link{IfIndex{i}, name, kind, type, flags, 6, 1500}};
  };
  auto addr = [](std::uint32_t i, const char* prefix, std::uint32_t flags = 0) {
    return Added<Address>{Address{IfIndex{i}, *Prefix::parse(prefix), 0, flags}};
  };
  m.apply(std::vector<Event>{
      link(1, "lo", "", 772, IFF_UP | IFF_LOOPBACK | IFF_RUNNING),
      link(2, "eth0", "", 1, IFF_UP | IFF_RUNNING),
      link(3, "wg0", "tun", 65534, IFF_UP | IFF_RUNNING),
      link(4, "eth1", "", 1, 0),  // down
      link(5, "docker0", "bridge", 1, IFF_UP),
      addr(1, "127.0.0.1/8"),
      addr(2, "192.0.2.10/24"),
      addr(2, "2001:db8:2::10/64"),
      addr(2, "2001:db8:2::99/64", IFA_F_TENTATIVE),  // still in DAD: cannot be bound
      addr(3, "100.64.0.2/24"),
      addr(4, "198.51.100.5/24"),
      addr(5, "172.17.0.1/16"),
  });
  return m;
}

}  // namespace

TEST_CASE("interfaces_from: up links only, classified, without addresses that cannot be bound") {
  auto list = interfaces_from(model(), netwatch::Classifier{{*IfnamePattern::parse("wg*")}});
  std::vector<std::string> lines;
  for (const auto& i : list) lines.push_back(i.str());
  CHECK(lines == std::vector<std::string>{"lo #1 (loopback) 127.0.0.1", "eth0 #2 (physical) 192.0.2.10 2001:db8:2::10",
                                          "wg0 #3 (tunnel) 100.64.0.2", "docker0 #5 (other) 172.17.0.1"});
}

TEST_CASE("interfaces_from with the daemon's predicate: declared tunnels, never loopback") {
  auto list = interfaces_from(model(), [](const std::string& name) { return name == "wg0" || name == "lo"; });
  REQUIRE(list.size() == 4);
  CHECK(list[0].cls == InterfaceClass::loopback);
  CHECK(list[1].cls == InterfaceClass::physical);
  CHECK(list[2].cls == InterfaceClass::tunnel);
  CHECK(list[3].cls == InterfaceClass::other);
  auto none = interfaces_from(model(), std::function<bool(const std::string&)>{});
  REQUIRE(none.size() == 4);
  CHECK(none[2].cls == InterfaceClass::other);  // a TUN device nobody called a tunnel
}

TEST_CASE("plan_for takes servers, families and timeout from the configuration") {
  config::Probe p;
  p.servers = {{"203.0.113.3", 3478, Transport::udp}, {"2001:db8:3::3", 3478, Transport::tcp}};
  p.ipv6 = false;
  p.timeout = std::chrono::milliseconds(1500);
  auto plan = plan_for(p, interfaces_from(model(), netwatch::Classifier{}));
  CHECK(plan.servers == p.servers);
  CHECK(plan.ipv4);
  CHECK_FALSE(plan.ipv6);
  CHECK(plan.timeout == std::chrono::milliseconds(1500));
  CHECK(plan.interfaces.size() == 4);
  CHECK(plan.bound);
  CHECK(plan.routed);
}

TEST_CASE("one default each: the prober's timing when nothing is configured is the configuration's") {
  const Plan plan;
  const TransactionOptions tx;
  const config::Probe configured = config::defaults().probe;
  CHECK(configured.interval == kDefaultProbeInterval);
  CHECK(configured.timeout == kDefaultProbeTimeout);
  CHECK(plan.timeout == configured.timeout);
  CHECK(tx.total == configured.timeout);
  CHECK(plan.rto == kInitialRto);
  CHECK(tx.rto == kInitialRto);
  CHECK(kInitialRto == std::chrono::milliseconds(500));  // RFC 8489 §6.2.1
  CHECK(plan_for(configured, {}).rto == tx.rto);
}
