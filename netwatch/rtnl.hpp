#pragma once
// rtnetlink messages -> typed events. Pure: bytes in, values out, every length checked.
// A malformed message is rejected with a reason and never misread; unknown attributes are skipped.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/iface.hpp"
#include "common/ip.hpp"
#include "common/strong.hpp"

namespace leakguard::netwatch {

/// A network interface (RTM_NEWLINK).
struct Link {
  IfIndex index;
  std::string name;
  std::string kind;           ///< IFLA_INFO_KIND: "veth", "tun", "bridge", "wireguard", ... ("" for hardware)
  std::uint16_t type = 0;     ///< ARPHRD_* (1 ether, 772 loopback, 65534 none: TUN)
  std::uint32_t flags = 0;    ///< IFF_*
  std::uint8_t operstate = 0; ///< IF_OPER_* (6 = up)
  std::uint32_t mtu = 0;
  bool operator==(const Link&) const = default;
  bool up() const;  ///< administratively up (IFF_UP)
  bool running() const;  ///< carrier/operational (IFF_RUNNING or IF_OPER_UP/UNKNOWN)
};

/// An address on an interface (RTM_NEWADDR).
struct Address {
  IfIndex index;
  Prefix prefix;              ///< the local address with its prefix length
  std::uint8_t scope = 0;     ///< RT_SCOPE_* (0 universe/global, 253 link, 254 host)
  std::uint32_t flags = 0;    ///< IFA_F_*
  auto operator<=>(const Address&) const = default;
};

/// A route in any table (RTM_NEWROUTE).
struct Route {
  Family family = Family::v4;
  std::uint32_t table = 254;  ///< RT_TABLE_MAIN
  Prefix dst;                 ///< 0.0.0.0/0 or ::/0 for a default route
  std::optional<IpAddress> gateway;
  IfIndex oif;
  std::uint32_t priority = 0;  ///< the metric
  std::uint8_t type = 1;       ///< RTN_UNICAST
  std::uint8_t protocol = 0;
  std::uint8_t scope = 0;
  std::uint8_t tos = 0;
  auto operator<=>(const Route&) const = default;
  bool is_default() const { return dst.length == 0; }
};

/// A policy-routing rule (RTM_NEWRULE), e.g. wg-quick's "not fwmark 51820 lookup 51820".
struct Rule {
  Family family = Family::v4;
  std::uint32_t priority = 0;
  std::uint32_t table = 0;
  std::optional<std::uint32_t> fwmark;
  std::uint32_t fwmask = 0xffffffff;
  bool invert = false;                          ///< "not"
  std::optional<std::uint32_t> suppress_prefixlen;
  std::uint8_t action = 1;                      ///< FR_ACT_TO_TBL
  // Selectors (`ip rule` from/to/iif/oif/uidrange/ipproto/sport/dport/l3mdev): a rule holding one
  // matches only the packets it names.
  std::optional<Prefix> src, dst;
  std::string iif, oif;
  std::optional<std::pair<std::uint32_t, std::uint32_t>> uid_range;
  std::uint8_t ip_proto = 0;
  std::optional<std::pair<std::uint16_t, std::uint16_t>> sport, dport;
  bool l3mdev = false;
  std::uint8_t tos = 0;             ///< "tos N" (the rule header's)
  std::uint32_t flow = 0;           ///< "realms" (FRA_FLOW)
  std::optional<std::uint64_t> tun_id;
  std::vector<std::uint16_t> other;  ///< selectors this model does not know (a newer kernel's): types
  auto operator<=>(const Rule&) const = default;
  /// Whether it may match all that an unbound socket of this host sends to the internet: no
  /// source or destination prefix, no output device, no input device but lo (locally sent
  /// traffic's), no TOS, realm, tunnel id or unknown selector.
  bool local_traffic() const {
    return !src && !dst && (iif.empty() || iif == "lo") && oif.empty() && !l3mdev && tos == 0 && flow == 0 && !tun_id &&
           other.empty();
  }
  /// Whether it matches only some of that traffic: one range of users, a protocol, ports.
  bool selective() const { return uid_range || ip_proto || sport || dport; }
  /// Whether a web page's TCP can be among what it selects: TCP (or any protocol), a source port
  /// the kernel may pick for a browser's socket (1024 and up), not DNS alone (blocked anyway),
  /// a user who may run a browser (a uid range reaching 1000). `ip rule add sport 22 lookup main`
  /// (SSH's answers kept off the tunnel on a server) selects none.
  bool may_carry_pages() const {
    if (ip_proto != 0 && ip_proto != 6) return false;
    if (sport && sport->second < 1024) return false;
    if (dport && dport->first == 53 && dport->second == 53) return false;
    if (uid_range && uid_range->second < 1000) return false;
    return true;
  }
  /// The selective part as `ip rule` writes it: "uidrange 1000-1000 ipproto 6".
  std::string selector_text() const;
};

template <typename T>
struct Added { T value; bool replace = false; };
template <typename T>
struct Removed { T value; };

/// The end of a dump (NLMSG_DONE) or the kernel's answer to a request (NLMSG_ERROR).
struct Done {};
struct Ack { int error = 0; };  ///< 0 for success, else a negative errno

using Event = std::variant<Added<Link>, Removed<Link>, Added<Address>, Removed<Address>, Added<Route>, Removed<Route>,
                           Added<Rule>, Removed<Rule>, Done, Ack>;

struct Parsed {
  std::vector<Event> events;
  std::vector<std::string> rejected;  ///< one reason per malformed message (the rest still parsed)
};

/// Parses a buffer as the kernel delivers it: netlink messages one after another.
/// Message types other than the ones above are ignored; a broken framing stops the walk.
Parsed parse(std::span<const std::uint8_t> buffer);

/// One-line forms for logs and diffs.
std::string str(const Link& l);
std::string str(const Address& a);
std::string str(const Route& r);
std::string str(const Rule& r);

}  // namespace leakguard::netwatch
