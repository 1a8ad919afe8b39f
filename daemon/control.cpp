#include "daemon/control.hpp"

#include <algorithm>
#include <set>

#include "common/iface.hpp"
#include "firewall/policy.hpp"

namespace leakguard::daemon {

std::string Caller::str() const { return "uid " + std::to_string(uid) + ", pid " + std::to_string(pid); }

bool may_control(const Caller& c, std::optional<gid_t> control_group) {
  if (c.uid == 0) return true;
  if (!control_group) return false;
  return std::find(c.groups.begin(), c.groups.end(), *control_group) != c.groups.end();
}

Result<TunnelDeclaration> check_tunnel(const std::string& interface, const std::vector<std::string>& endpoints,
                                       std::uint32_t fwmark) {
  TunnelDeclaration t;
  auto name = validate_ifname(interface);
  if (!name) return fail("interface", name.error().message);
  // A declared tunnel is one interface, named literally. The kernel would accept a '*' in a name,
  // but the rules, the classifier and `oifname` read a trailing '*' as a wildcard: "e*" would make
  // eth0 the tunnel. Patterns come only from the configuration file (tunnel.interfaces).
  if (name->find('*') != std::string::npos)
    return fail("interface", "'" + *name + "' contains '*': a declared tunnel is one interface named literally "
                             "(name patterns belong in tunnel.interfaces in the configuration file)");
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

std::string public_reason(const std::string& reason) {
  for (const char* prefix : {"probe ", "LEAK"})
    if (reason.rfind(prefix, 0) == 0) return reason.substr(0, reason.find(':'));
  return reason;
}

nlohmann::json public_status(const nlohmann::json& s) {
  nlohmann::json p = nlohmann::json::object();
  if (!s.is_object()) return p;
  for (const char* k : {"state", "armed", "policy", "escalated", "allow_lan", "tunnel_up", "leak_count", "protection", "config_error"})
    if (s.contains(k)) p[k] = s[k];
  if (s.contains("reason") && s["reason"].is_string()) p["reason"] = public_reason(s["reason"].get<std::string>());
  if (s.contains("last_probe") && s["last_probe"].is_object() && s["last_probe"].contains("verdict"))
    p["last_probe"] = {{"verdict", s["last_probe"]["verdict"]}};
  else if (s.contains("last_probe"))
    p["last_probe"] = nullptr;
  if (s.contains("firewall") && s["firewall"].is_object()) {
    auto& fw = p["firewall"] = nlohmann::json::object();
    for (const char* k : {"installed", "owner", "blocked"})
      if (s["firewall"].contains(k)) fw[k] = s["firewall"][k];
  }
  // How much was blocked, not what nor whose: applications and destinations name the user's doings.
  if (s.contains("blocked") && s["blocked"].is_object() && s["blocked"].contains("packets"))
    p["blocked"] = {{"packets", s["blocked"]["packets"]}};
  p["redacted"] = "endpoints, addresses, probe details, the network and who was blocked are shown to root and group leakguard only";
  return p;
}

}  // namespace leakguard::daemon
