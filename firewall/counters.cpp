#include "firewall/counters.hpp"

#include <linux/netfilter.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <tuple>

#include "firewall/ruleset.hpp"

namespace leakguard::firewall {

namespace {

int direction_rank(const std::string& d) { return d == "out" ? 0 : d == "fwd" ? 1 : d == "in" ? 2 : 3; }
int kind_rank(const std::string& k) {
  return k == "udp"        ? 0
         : k == "tcp"      ? 1
         : k == "ip"       ? 2
         : k == "dns"      ? 3
         : k == "tunaddr"  ? 4
         : k == "icmperr"  ? 5
         : k == "endpoint" ? 6
                           : 7;
}

std::string kind_of_proto(std::uint8_t proto) {
  // "udp" is every datagram protocol the rules block as UDP (kDatagramProtos).
  if (std::find(std::begin(kDatagramProtos), std::end(kDatagramProtos), proto) != std::end(kDatagramProtos)) return "udp";
  if (proto == kProtoTcp) return "tcp";
  return "ip";
}

std::string upper_kind(const std::string& k) {
  if (k == "ip") return "IP";
  std::string s = k;
  for (auto& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return s;
}

std::string packets(std::uint64_t n) { return std::to_string(n) + (n == 1 ? " packet" : " packets"); }

}  // namespace

std::string Counter::str() const {
  return kind + " " + direction + (interface_or_scope == "all" ? " total" : " via " + interface_or_scope) +
         (family.empty() ? "" : " (" + family + ")") + ": " +
         std::to_string(packets) + " packets, " + std::to_string(bytes) + " bytes";
}

std::vector<Counter> make_counters(const std::vector<RuleCounter>& rules, const std::vector<InterfaceCounter>& interfaces) {
  // (direction, kind, scope, family) -> sums; several rules share a tag (e.g. the TCP and UDP DNS rules).
  std::map<std::tuple<std::string, std::string, std::string, std::string>, Counter> sums;
  for (const auto& r : rules) {
    const auto dash = r.tag.rfind('-');
    if (dash == std::string::npos || dash == 0) continue;  // untagged: not one of our counters
    Counter& c = sums[{r.tag.substr(dash + 1), r.tag.substr(0, dash), "all", ""}];
    c.kind = r.tag.substr(0, dash);
    c.direction = r.tag.substr(dash + 1);
    c.interface_or_scope = "all";
    c.packets += r.packets;
    c.bytes += r.bytes;
  }
  for (const auto& i : interfaces) {
    const auto us = i.set.rfind('_');
    const std::string direction = us == std::string::npos ? i.set : i.set.substr(us + 1);
    const std::string kind = kind_of_proto(i.proto);
    const std::string family = i.nfproto == NFPROTO_IPV4   ? std::string(to_string(Family::v4))
                               : i.nfproto == NFPROTO_IPV6 ? std::string(to_string(Family::v6))
                                                           : std::to_string(i.nfproto);
    Counter& c = sums[{direction, kind, i.ifname, family}];
    c.kind = kind;
    c.family = family;
    c.direction = direction;
    c.interface_or_scope = printable_ifname(i.ifname);  // from the kernel: any bytes
    c.packets += i.packets;
    c.bytes += i.bytes;
  }
  std::vector<Counter> out;
  for (auto& [key, c] : sums) out.push_back(c);
  std::sort(out.begin(), out.end(), [](const Counter& a, const Counter& b) {
    return std::make_tuple(direction_rank(a.direction), kind_rank(a.kind), a.interface_or_scope != "all", a.interface_or_scope, a.family) <
           std::make_tuple(direction_rank(b.direction), kind_rank(b.kind), b.interface_or_scope != "all", b.interface_or_scope, b.family);
  });
  return out;
}

std::string summarize(const std::vector<Counter>& counters) {
  std::vector<std::string> parts;
  std::uint64_t dns = 0, tunaddr = 0, icmperr = 0, endpoint = 0;
  for (const auto& total : counters) {
    if (total.interface_or_scope != "all" || total.packets == 0) continue;
    if (total.kind == "dns") {
      dns += total.packets;
      continue;
    }
    if (total.kind == "tunaddr") {
      tunaddr += total.packets;
      continue;
    }
    if (total.kind == "icmperr") {
      icmperr += total.packets;
      continue;
    }
    if (total.kind == "endpoint") {
      endpoint += total.packets;
      continue;
    }
    // The interfaces that saw this kind in this direction (both families together), busiest first.
    std::vector<Counter> per_if;
    for (const auto& c : counters) {
      if (c.interface_or_scope == "all" || c.kind != total.kind || c.direction != total.direction || c.packets == 0) continue;
      auto it = std::find_if(per_if.begin(), per_if.end(), [&](const Counter& x) { return x.interface_or_scope == c.interface_or_scope; });
      if (it == per_if.end()) per_if.push_back(c);
      else it->packets += c.packets;
    }
    std::stable_sort(per_if.begin(), per_if.end(), [](const Counter& a, const Counter& b) { return a.packets > b.packets; });
    // Names only: the total is the rule's counter (since the rules were last written), the
    // interfaces' counts come from the counting sets (since the table was made), so their
    // numbers beside the total would not add up (Counter lists each with what it covers).
    std::string where;
    for (std::size_t i = 0; i < per_if.size(); ++i) where += (i == 0 ? " via " : ", ") + per_if[i].interface_or_scope;
    const std::string kind = upper_kind(total.kind);
    if (total.direction == "out")
      parts.push_back("blocked " + std::to_string(total.packets) + " " + kind + (total.packets == 1 ? " packet" : " packets") +
                      " towards the internet" + where);
    else if (total.direction == "fwd")
      parts.push_back("blocked " + std::to_string(total.packets) + " forwarded " + kind +
                      (total.packets == 1 ? " packet" : " packets") + where);
    else
      parts.push_back("dropped " + std::to_string(total.packets) + " incoming " + kind +
                      (total.packets == 1 ? " packet" : " packets") + (where.empty() ? "" : " on" + where.substr(4)));
  }
  if (dns > 0) parts.push_back("blocked " + packets(dns) + " of DNS outside the tunnel");
  if (tunaddr > 0) parts.push_back("dropped " + packets(tunaddr) + " for the tunnel's address from outside the tunnel");
  if (icmperr > 0) parts.push_back("dropped " + packets(icmperr) + " of ICMP errors about no flow of this host's");
  if (endpoint > 0) parts.push_back("refused " + packets(endpoint) + " to the VPN endpoint from another user's socket");
  if (parts.empty()) return "nothing blocked";
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : "; ") + p;
  return s;
}

std::optional<SenderRecord> parse_sender_key(const std::uint8_t* key, std::size_t len) {
  if (len != 24 && len != 36) return std::nullopt;
  const std::size_t alen = len == 24 ? 4 : 16;
  SenderRecord r;
  std::memcpy(&r.cgroup_id, key, 8);  // the socket expression's u64, as the kernel wrote it
  r.destination.family = alen == 4 ? Family::v4 : Family::v6;
  std::memcpy(r.destination.bytes.data(), key + 8, alen);
  r.protocol = key[8 + alen];
  r.source_port = static_cast<std::uint16_t>(key[12 + alen] << 8 | key[13 + alen]);
  r.destination_port = static_cast<std::uint16_t>(key[16 + alen] << 8 | key[17 + alen]);
  return r;
}

}  // namespace leakguard::firewall
