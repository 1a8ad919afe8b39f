#include "daemon/control.hpp"

#include <algorithm>
#include <set>

#include "common/iface.hpp"
#include "firewall/policy.hpp"

namespace leakguard::daemon {

std::string Caller::str() const { return "uid " + std::to_string(uid) + " (pid " + std::to_string(pid) + ")"; }

bool may_control(const Caller& c, std::optional<gid_t> control_group) {
  if (c.uid == 0) return true;
  if (!control_group) return false;
  return c.gid == *control_group || std::find(c.groups.begin(), c.groups.end(), *control_group) != c.groups.end();
}

Result<TunnelDeclaration> check_tunnel(const std::string& interface, const std::vector<std::string>& endpoints,
                                       std::uint32_t fwmark) {
  TunnelDeclaration t;
  auto name = validate_ifname(interface);
  if (!name) return fail("interface", name.error().message);
  // A declared tunnel is one interface, named literally. The kernel would accept a '*' in a name,
  // but the rules, the classifier and `oifname` read a trailing '*' as a wildcard: "e*" would make
  // eth0 the tunnel. Patterns come only from the configuration file (tunnel_interfaces).
  if (name->find('*') != std::string::npos)
    return fail("interface", "'" + *name + "' contains '*': a declared tunnel is one interface named literally "
                             "(name patterns belong in tunnel_interfaces in the configuration file)");
  t.interface = *name;
  if (endpoints.empty()) return fail("endpoints", "at least one endpoint is needed (ADDRESS:PORT[/udp|/tcp])");
  // The firewall's own limit: a declaration it would refuse is refused here, with the same number.
  const std::size_t max = firewall::Limits{}.max_endpoints;
  if (endpoints.size() > max)
    return fail("endpoints", std::to_string(endpoints.size()) + " endpoints given, at most " + std::to_string(max) +
                                 " allowed");
  std::set<Endpoint> seen;
  for (const auto& text : endpoints) {
    auto ep = Endpoint::parse(text);
    if (!ep) return fail("endpoints", ep.error().message);
    if (!seen.insert(*ep).second) return fail("endpoints", "'" + text + "' is given twice");
    t.endpoints.push_back(*ep);
  }
  if (fwmark != 0) t.fwmark = FwMark{fwmark};
  return t;
}

}  // namespace leakguard::daemon
