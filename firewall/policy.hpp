#pragma once
// What the kill switch allows: a plain value, validated before it becomes a ruleset.
// Pure: no sockets, no libmnl (see docs/firewall.md).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/lan.hpp"
#include "common/iface.hpp"
#include "common/ip.hpp"
#include "common/mode.hpp"
#include "common/result.hpp"
#include "common/strong.hpp"

namespace leakguard::firewall {

/// What is stopped on non-tunnel interfaces: UDP only (the WebRTC leak guard) or all IP.
using Mode = leakguard::Mode;
using leakguard::to_string;  // firewall::to_string(Mode) keeps working: "udp" or "strict"

/// The firewall's input: everything the ruleset is a function of.
struct Policy {
  Mode mode = Mode::udp;
  bool allow_lan = false;                ///< lan_subnets, link-local and multicast allowed
  std::vector<IfnamePattern> tunnels;    ///< "wg0" or "wg*": always allowed
  std::vector<Endpoint> endpoints;       ///< VPN servers allowed on every interface
  std::optional<FwMark> fwmark;          ///< if set, endpoints only for packets with this mark
  /// Without a mark: if set, endpoints only for sockets of this user (or the kernel's own, as
  /// WireGuard's); others are refused, counted. With a mark, the mark alone decides.
  std::optional<std::uint32_t> endpoint_uid;
  std::vector<Prefix> lan_subnets;       ///< on-link subnets of the physical interfaces
  /// The tunnel interfaces' own addresses (not link-local): nothing addressed to them may come in
  /// through another interface (CVE-2019-14899: a LAN peer routing the tunnel address via eth0).
  std::vector<IpAddress> tunnel_addresses;
  /// IPv4 subnets where a DHCP server may be reached by unicast from port 68 (the on-link subnets
  /// of the physical interfaces: renewals); DHCP to the broadcast address always passes.
  std::vector<Prefix> dhcp_subnets;
  /// The emergency block (no usable configuration): everything but loopback stopped in every
  /// chain, both families; the fields above are ignored. The same chains and sets as any other
  /// policy, so a good policy later replaces it in place (docs/firewall.md, "The zero window").
  bool emergency = false;
  /// In udp mode: families held as in strict (every packet outside the tunnel refused), because the
  /// probe found a path a web page can use out of the tunnel in them, e.g. TCP over untunnelled
  /// IPv6 (probe.on_exposure: escalate). Ignored in strict mode and by the emergency block.
  std::vector<Family> escalated;
  /// Where blocked packets that leave (output and forward chains) are also logged, for the daemon
  /// to say who sent them (NFLOG, docs/attribution.md); rate-limited in the kernel. None: no log
  /// rules. Ignored by the emergency block.
  struct LogBlocked {
    std::uint16_t group = 0;       ///< nfnetlink_log group
    std::uint32_t per_second = 0;  ///< at most this many logged packets per second, per rule
    std::uint32_t burst = 0;       ///< ... after a burst of this many
    bool operator==(const LogBlocked&) const = default;
  };
  std::optional<LogBlocked> log_blocked;
  // A new field belongs to same_sets() or to rules_of() (what the chains are built from), or
  // to both: keep them in step with this list.

  bool operator==(const Policy&) const = default;
  /// One line: every field, compactly.
  std::string str() const;
};

/// Bounds that keep one policy within what a single transaction should carry.
struct Limits {
  std::size_t max_endpoints = 1024;   ///< per policy, both families together
  std::size_t max_tunnels = 64;       ///< interface patterns
  std::size_t max_lan_subnets = 256;  ///< on-link subnets
  std::size_t max_tunnel_addresses = 256;
  std::uint8_t min_lan_prefix_v4 = kMinLanPrefixV4;  ///< shorter LAN prefixes would open most of the internet
  std::uint8_t min_lan_prefix_v6 = kMinLanPrefixV6;
  bool operator==(const Limits&) const = default;
};

/// What is wrong with one endpoint (port 0, unspecified, multicast or loopback address, a
/// transport other than udp/tcp), or nullptr if nothing.
const char* endpoint_problem(const Endpoint& e);

/// Checks a policy; the error names the field, e.g. "tunnels[1]: 'wg 0' contains ...".
/// Step: "validate policy".
Result<void> validate(const Policy& p, const Limits& limits = {});
/// validate() but for the endpoints and LAN subnets one by one: for a policy whose endpoints
/// and subnets are those of one that passed validate() (see same_sets()).
Result<void> validate_rules(const Policy& p, const Limits& limits = {});

/// True if both policies give the table the same set elements (same endpoints, allow_lan and LAN
/// subnets, both emergency blocks or neither): a change from one to the other changes rules only.
bool same_sets(const Policy& a, const Policy& b);

/// `p` with only the fields the chains are built from (build_chains()): mode, tunnels, mark,
/// endpoint user, emergency, allow_lan, escalation, logging; no endpoints, no subnets.
Policy rules_of(const Policy& p);
/// Copies the fields rules_of() keeps from `from` into `into`; the endpoints and subnets of
/// `into` stay.
void take_rules(Policy& into, const Policy& from);
/// True if both policies give the table the same chains and rules: rules_of(a) == rules_of(b).
bool same_rules(const Policy& a, const Policy& b);

/// The ranges `allow_lan` opens besides the LAN's own subnets: link-local addresses, multicast
/// that stays on the link (the Local Network Control Block, SSDP; ff02::/16) and, in IPv4, the
/// limited broadcast.
std::vector<Prefix> link_scope_ranges(Family f);

/// Whether `p`'s allow_lan lets `to` through: its LAN subnets and link_scope_ranges() (false
/// without allow_lan).
bool lan_allows(const Policy& p, const IpAddress& to);

/// Whether the rules built from `p` refuse what an ordinary local socket (no mark, whoever owns
/// it) sends out of a non-tunnel interface to `to` over `transport`: every datagram in either
/// mode, and TCP in strict or an escalated family; DNS (53, 853) in both; the emergency block
/// everything. Where the rules may let it pass, false: a VPN endpoint (whatever its mark or owner
/// test), DHCP (UDP to port 67 or 547, anywhere), and with allow_lan the LAN's subnets and
/// link_scope_ranges(): looser than the rules, never stricter. What a probe bound to eth0 must
/// meet: EPERM.
bool refuses_outside_tunnel(const Policy& p, Transport transport, const IpAddress& to, std::uint16_t port);

}  // namespace leakguard::firewall
