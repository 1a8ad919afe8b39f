#include "firewall/policy.hpp"

#include <algorithm>
#include <cstdio>

namespace leakguard::firewall {

namespace {

template <typename T, typename F>
std::string join(const std::vector<T>& v, F&& f) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + f(v[i]);
  return s + "]";
}

std::string indexed(std::string_view field, std::size_t i) { return std::string(field) + "[" + std::to_string(i) + "]"; }

tl::unexpected<Error> invalid(std::string message) { return fail("validate policy", std::move(message)); }

}  // namespace

const char* endpoint_problem(const Endpoint& e) {
  if (e.address.family != Family::v4 && e.address.family != Family::v6) return "unknown address family";
  if (e.port == 0) return "port 0 is not a port (1..65535)";
  if (e.transport != Transport::udp && e.transport != Transport::tcp) return "transport must be udp or tcp";
  if (e.address.is_unspecified()) return "the unspecified address is not an endpoint";
  if (e.address.is_multicast()) return "a multicast address is not an endpoint";
  if (e.address.is_loopback()) return "a loopback address is not an endpoint (loopback is always allowed)";
  return nullptr;
}

std::string Policy::str() const {
  std::string s = "mode=" + std::string(to_string(mode));
  s += " allow_lan=" + std::string(allow_lan ? "yes" : "no");
  s += " tunnels=" + join(tunnels, [](const IfnamePattern& p) { return p.text; });
  s += " endpoints=" + join(endpoints, [](const Endpoint& e) { return e.str(); });
  if (fwmark) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%x", fwmark->value);
    s += " fwmark=" + std::string(hex);
  } else {
    s += " fwmark=none";
  }
  if (endpoint_uid) s += " endpoint_uid=" + std::to_string(*endpoint_uid);
  s += " lan=" + join(lan_subnets, [](const Prefix& p) { return p.str(); });
  if (!tunnel_addresses.empty()) s += " tunnel_addresses=" + join(tunnel_addresses, [](const IpAddress& a) { return a.str(); });
  if (!dhcp_subnets.empty()) s += " dhcp=" + join(dhcp_subnets, [](const Prefix& p) { return p.str(); });
  if (emergency) s += " emergency";
  if (log_blocked && !emergency)
    s += " log=group:" + std::to_string(log_blocked->group) + "," + std::to_string(log_blocked->per_second) + "/s";
  if (!escalated.empty() && mode == Mode::udp)
    s += " escalated=" + join(escalated, [](Family f) { return std::string(to_string(f)); });
  return s;
}

Result<void> validate(const Policy& p, const Limits& limits) {
  if (auto ok = validate_rules(p, limits); !ok) return ok;
  if (p.endpoints.size() > limits.max_endpoints)
    return invalid("endpoints: " + std::to_string(p.endpoints.size()) + " endpoints, at most " +
                   std::to_string(limits.max_endpoints) + " allowed");
  for (std::size_t i = 0; i < p.endpoints.size(); ++i) {
    if (auto problem = endpoint_problem(p.endpoints[i]))
      return invalid(indexed("endpoints", i) + ": '" + p.endpoints[i].str() + "': " + problem);
  }
  if (p.lan_subnets.size() > limits.max_lan_subnets)
    return invalid("lan_subnets: " + std::to_string(p.lan_subnets.size()) + " subnets, at most " +
                   std::to_string(limits.max_lan_subnets) + " allowed");
  for (std::size_t i = 0; i < p.lan_subnets.size(); ++i) {
    const Prefix& n = p.lan_subnets[i];
    const std::string where = indexed("lan_subnets", i) + ": '" + n.str() + "'";
    const bool v4 = n.address.family == Family::v4;
    if (!v4 && n.address.family != Family::v6) return invalid(where + ": unknown address family");
    const unsigned max = v4 ? 32 : 128;
    if (n.length > max) return invalid(where + ": prefix length above " + std::to_string(max));
    const std::uint8_t min = v4 ? limits.min_lan_prefix_v4 : limits.min_lan_prefix_v6;
    if (n.length < min)
      return invalid(where + ": shorter than /" + std::to_string(min) + ", that is not a local network");
    if (n.address.is_loopback()) return invalid(where + ": loopback is not a LAN (it is always allowed)");
  }
  return {};
}

Result<void> validate_rules(const Policy& p, const Limits& limits) {
  if (p.mode != Mode::udp && p.mode != Mode::strict) return invalid("mode: must be udp or strict");

  if (p.tunnels.size() > limits.max_tunnels)
    return invalid("tunnels: " + std::to_string(p.tunnels.size()) + " patterns, at most " +
                   std::to_string(limits.max_tunnels) + " allowed");
  for (std::size_t i = 0; i < p.tunnels.size(); ++i) {
    // Re-check even though IfnamePattern::parse exists: a Policy can be built field by field.
    if (auto ok = IfnamePattern::parse(p.tunnels[i].text); !ok)
      return invalid(indexed("tunnels", i) + ": " + ok.error().message);
    // (IfnamePattern::parse also refuses quotes, backslashes and non-ASCII bytes: they could not
    // be written inside an nft string literal, and the dry run prints exactly what is installed.)
  }

  if (p.fwmark && p.fwmark->value == 0) return invalid("fwmark: 0 means unmarked; leave the mark out instead");
  if (p.dhcp_subnets.size() > limits.max_lan_subnets)
    return invalid("dhcp_subnets: " + std::to_string(p.dhcp_subnets.size()) + " subnets, at most " +
                   std::to_string(limits.max_lan_subnets) + " allowed");
  for (std::size_t i = 0; i < p.dhcp_subnets.size(); ++i) {
    const Prefix& n = p.dhcp_subnets[i];
    if (n.address.family != Family::v4 || n.length > 32 || n.length < limits.min_lan_prefix_v4)
      return invalid(indexed("dhcp_subnets", i) + ": '" + n.str() + "' is no IPv4 subnet of a link");
  }
  if (p.tunnel_addresses.size() > limits.max_tunnel_addresses)
    return invalid("tunnel_addresses: " + std::to_string(p.tunnel_addresses.size()) + " addresses, at most " +
                   std::to_string(limits.max_tunnel_addresses) + " allowed");
  for (std::size_t i = 0; i < p.tunnel_addresses.size(); ++i) {
    const IpAddress& a = p.tunnel_addresses[i];
    if (a.family != Family::v4 && a.family != Family::v6) return invalid(indexed("tunnel_addresses", i) + ": unknown address family");
    if (a.is_unspecified() || a.is_loopback() || a.is_multicast())
      return invalid(indexed("tunnel_addresses", i) + ": '" + a.str() + "' is no address of an interface");
  }
  return {};
}

bool same_sets(const Policy& a, const Policy& b) {
  return a.emergency == b.emergency && a.allow_lan == b.allow_lan && a.endpoints == b.endpoints &&
         a.lan_subnets == b.lan_subnets && a.tunnel_addresses == b.tunnel_addresses && a.dhcp_subnets == b.dhcp_subnets;
}

void take_rules(Policy& into, const Policy& from) {
  into.mode = from.mode;
  into.allow_lan = from.allow_lan;
  into.tunnels = from.tunnels;
  into.fwmark = from.fwmark;
  into.endpoint_uid = from.endpoint_uid;
  into.emergency = from.emergency;
  into.escalated = from.escalated;
  into.log_blocked = from.log_blocked;
}

Policy rules_of(const Policy& p) {
  Policy r;
  take_rules(r, p);
  return r;
}

bool same_rules(const Policy& a, const Policy& b) { return rules_of(a) == rules_of(b); }

std::vector<Prefix> link_scope_ranges(Family f) {
  std::vector<const char*> r;
  if (f == Family::v4)
    r = {"169.254.0.0/16",       // link-local (RFC 3927)
         "224.0.0.0/24",         // Local Network Control Block (RFC 5771 §4)
         "239.255.255.250/32",   // SSDP (UPnP discovery; sent with TTL 2)
         "255.255.255.255/32"};  // limited broadcast (RFC 919)
  else
    r = {"fe80::/10",   // link-local (RFC 4291 §2.5.6)
         "ff02::/16"};  // link-local scope multicast (RFC 4291 §2.7)
  std::vector<Prefix> out;
  for (const char* t : r) out.push_back(*Prefix::parse(t));
  return out;
}

bool lan_allows(const Policy& p, const IpAddress& to) {
  if (!p.allow_lan) return false;
  auto in = [&](const Prefix& n) { return n.contains(to); };
  const auto link = link_scope_ranges(to.family);
  return std::any_of(p.lan_subnets.begin(), p.lan_subnets.end(), in) || std::any_of(link.begin(), link.end(), in);
}

bool refuses_outside_tunnel(const Policy& p, Transport transport, const IpAddress& to, std::uint16_t port) {
  if (p.emergency) return true;
  for (const auto& e : p.endpoints)
    if (e.address == to && e.transport == transport && e.port == port) return false;
  if (port == 53 || port == 853) return true;  // DNS outside the tunnel, in both modes and to the LAN too
  if (transport == Transport::udp && (port == 67 || port == 547)) return false;  // DHCP, DHCPv6 servers
  if (lan_allows(p, to)) return false;
  if (transport == Transport::udp) return true;
  return p.mode == Mode::strict || std::find(p.escalated.begin(), p.escalated.end(), to.family) != p.escalated.end();
}

}  // namespace leakguard::firewall
