#pragma once
// The pure model of table inet leakguard: chains, sets and rules as values.
// build_ruleset() turns a validated Policy into it; nft_text renders it for `nft -f`, ruleset_nft
// encodes it as one nftnl batch. Every match below lowers to a fixed expression sequence that
// mirrors what nft 1.0.6 generates for the same text, so `nft list` reads the same either way.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/iface.hpp"
#include "common/ip.hpp"
#include "common/strong.hpp"
#include "firewall/policy.hpp"

namespace leakguard::firewall {

/// The sets where the output chain's log rules remember who sent a blocked packet (RememberSender):
/// at most kSenderSetSize elements each, each kept kSenderTimeoutS seconds; the sending socket's
/// cgroup at levels 1..kSenderLevels of the cgroup v2 tree.
inline constexpr std::string_view kSenderSet4 = "senders4";
inline constexpr std::string_view kSenderSet6 = "senders6";
inline constexpr std::uint32_t kSenderSetSize = 4096;
inline constexpr std::uint32_t kSenderTimeoutS = 10;
inline constexpr std::uint8_t kSenderLevels = 8;

/// Our one table: `table inet leakguard`.
inline constexpr std::string_view kTableName = "leakguard";
/// A copy of our rules that stands in while our table is made anew (Firewall's recreate), and
/// exists only for that moment.
inline constexpr std::string_view kHandoverTable = "leakguard-handover";

// IANA protocol numbers (RFC 790 / RFC 2460 §4: "ipv6-icmp" is 58).
inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kProtoIcmpv6 = 58;
inline constexpr std::uint8_t kProtoDccp = 33;      // RFC 4340
inline constexpr std::uint8_t kProtoSctp = 132;     // RFC 9260
inline constexpr std::uint8_t kProtoUdplite = 136;  // RFC 3828
inline constexpr std::uint8_t kProtoL2tp = 115;     // RFC 3931 (L2TPv3 over IP)

/// The datagram protocols an unprivileged process can send with a socket of its own: what `udp`
/// mode blocks outside the tunnel (and counts as "udp"). UDP first: it is nearly all of them.
/// UDP-Lite takes any unprivileged SOCK_DGRAM socket; SCTP and DCCP sockets load their modules on
/// demand where the kernel has them (DCCP left Linux in 6.16, but older kernels still carry it);
/// so does L2TPv3 over IP (`l2tp_ip`, `l2tp_ip6`: SOCK_DGRAM, no privilege, Debian's kernels build
/// it as a module). Raw IP and ICMP need CAP_NET_RAW (ICMP echo through ping sockets aside: see
/// docs/firewall.md).
inline constexpr std::uint8_t kDatagramProtos[] = {kProtoUdp, kProtoUdplite, kProtoSctp, kProtoDccp, kProtoL2tp};

// ---- set keys and elements -------------------------------------------------------------------

/// Key types of our sets (the nft datatypes in brackets).
enum class KeyType : std::uint8_t {
  ipv4_addr,     ///< ipv4_addr
  ipv6_addr,     ///< ipv6_addr
  inet_service,  ///< inet_service (a port)
  endpoint4,     ///< ipv4_addr . inet_proto . inet_service
  endpoint6,     ///< ipv6_addr . inet_proto . inet_service
  ifname_proto,  ///< ifname . nf_proto . inet_proto (the per-interface counting sets)
  sender4,       ///< cgroupsv2 . ipv4_addr . inet_proto . inet_service . inet_service (who sent a blocked packet)
  sender6,       ///< cgroupsv2 . ipv6_addr . inet_proto . inet_service . inet_service
};
/// The nft type text, e.g. "ipv4_addr . inet_proto . inet_service".
std::string_view nft_type(KeyType k);

/// An inclusive address range; a prefix is the common case.
struct AddressRange {
  IpAddress first;
  IpAddress last;

  static AddressRange of(const Prefix& p);
  /// The prefix length if the range is exactly one prefix.
  std::optional<std::uint8_t> prefix_length() const;
  /// nft form: "192.0.2.0/24", "10.0.0.1" or "10.0.0.0-10.0.0.5".
  std::string str() const;
  auto operator<=>(const AddressRange&) const = default;
};

/// One set element: an endpoint (address . proto . port), an address range, or a port.
using Element = std::variant<Endpoint, AddressRange, std::uint16_t>;
std::string to_string(const Element& e);

/// A named set of the table.
struct Set {
  std::string name;
  KeyType key = KeyType::ipv4_addr;
  bool interval = false;            ///< flags interval (address ranges)
  bool counting = false;            ///< flags dynamic; counter; filled by the datapath, not by us
  std::uint32_t size = 0;           ///< max elements (counting and sender sets only)
  std::vector<Element> elements;    ///< sorted, unique, non-overlapping (ranges merged)
  /// flags dynamic,timeout; timeout N s: filled by the datapath, each element forgotten N s
  /// after it was last added (the sender sets); 0 for every other set.
  std::uint32_t timeout_s = 0;
  bool operator==(const Set&) const = default;
  /// Elements come from the datapath, not from us (counting and sender sets).
  bool datapath_filled() const { return counting || timeout_s != 0; }
};

// ---- rules -----------------------------------------------------------------------------------

/// meta nfproto ipv4|ipv6
struct NfprotoIs { Family family; bool operator==(const NfprotoIs&) const = default; };
/// meta l4proto N
struct L4protoIs { std::uint8_t proto; bool operator==(const L4protoIs&) const = default; };
/// iifname/oifname "x" or "x*"; with `negated`, != "x" (an exact name only)
struct IfnameIs {
  bool output;
  IfnamePattern pattern;
  bool negated = false;
  bool operator==(const IfnameIs&) const = default;
};
/// oif|iif "lo": the loopback interface by index (always 1, LOOPBACK_IFINDEX), a 4-byte compare
/// instead of a 16-byte name - loopback is the busiest interface there is.
struct LoopbackIs { bool output; bool operator==(const LoopbackIs&) const = default; };
/// meta mark M
struct MarkIs { FwMark mark; bool operator==(const MarkIs&) const = default; };
/// ip/ip6 saddr|daddr PREFIX (a full-length prefix is a plain address)
struct AddressIs { bool destination; Prefix prefix; bool operator==(const AddressIs&) const = default; };
/// udp|tcp sport S dport D (both given: one 4-byte compare, as nft merges them)
struct PortsAre {
  std::uint8_t proto;
  std::optional<std::uint16_t> sport, dport;
  bool operator==(const PortsAre&) const = default;
};
/// icmpv6 type FROM[-TO]
struct Icmpv6TypeIn { std::uint8_t from, to; bool operator==(const Icmpv6TypeIn&) const = default; };
/// ip6 hoplimit N
struct HoplimitIs { std::uint8_t value; bool operator==(const HoplimitIs&) const = default; };
/// ct state established[,related]: the packet belongs to a flow conntrack has seen both ways (a
/// reply to what this host sent or forwarded, or more of it), or with `related` is an ICMP error
/// about such a flow. With `invalid` instead, `ct state invalid`: conntrack could place it in
/// no flow (an ICMP error quoting no flow of this host's, or quoting one but addressed to another
/// of its addresses). Enables connection tracking in the namespace.
struct CtState {
  bool related = false;
  bool invalid = false;  ///< ct state invalid (`related` ignored)
  bool operator==(const CtState&) const = default;
};
/// meta skuid != UID: the local socket that sends belongs to another user. Never matches a packet
/// without a user's socket (the kernel's own, as WireGuard's: nftables breaks off the rule).
struct SocketUidIsNot { std::uint32_t uid; bool operator==(const SocketUidIsNot&) const = default; };
/// ip/ip6 saddr|daddr @set
struct AddressInSet { Family family; bool destination; std::string set; bool operator==(const AddressInSet&) const = default; };
/// ip daddr . meta l4proto . th dport @set (saddr/sport when !destination)
struct EndpointInSet { Family family; bool destination; std::string set; bool operator==(const EndpointInSet&) const = default; };
/// udp|tcp dport|sport @set
struct PortInSet { std::uint8_t proto; bool destination; std::string set; bool operator==(const PortInSet&) const = default; };

using Match = std::variant<NfprotoIs, L4protoIs, IfnameIs, LoopbackIs, MarkIs, AddressIs, PortsAre, Icmpv6TypeIn, HoplimitIs,
                           CtState, SocketUidIsNot, AddressInSet, EndpointInSet, PortInSet>;

/// update @set { oifname . meta nfproto . meta l4proto } (iifname when !output): per-interface
/// counting, per family.
struct CountPerInterface {
  bool output;
  std::string set;
  bool operator==(const CountPerInterface&) const = default;
};

/// update @SET { socket cgroupv2 level L . ip daddr . meta l4proto . th sport . th dport }
/// (ip6 daddr for IPv6): remembers which cgroup v2 (the level-L ancestor of the sending socket's
/// cgroup) sent a packet to that destination from that port, for the daemon to read when the
/// socket itself is gone (a TCP connection refused with a reset closes it at once). The rule
/// breaks off where the socket's cgroup is less than L deep, or where there is no local socket.
struct RememberSender {
  Family family;
  std::uint8_t level;
  std::string set;
  bool operator==(const RememberSender&) const = default;
};

/// limit rate N/second burst B packets log prefix "P" group G: a blocked packet, logged to
/// nfnetlink_log for the daemon (at most N a second per rule; over that the rule breaks off
/// before the log, and evaluation goes on to the block).
struct LogTo {
  std::uint16_t group = 0;
  std::uint32_t per_second = 0;
  std::uint32_t burst = 0;
  std::string prefix;  ///< the blocking rule's tag, e.g. "udp-out"
  bool operator==(const LogTo&) const = default;
};

enum class Verdict : std::uint8_t {
  none,        ///< no verdict: evaluation continues with the next rule
  accept,
  drop,
  reject,      ///< reject with icmpx admin-prohibited (the sender gets an error at once)
  tcp_reset,   ///< reject with tcp reset (connect() fails at once instead of retrying)
  jump,        ///< jump to Rule::target (a chain of ours without a hook), then on with the next rule
};

struct Rule {
  std::vector<Match> matches;               ///< all must hold
  std::optional<CountPerInterface> count_per_interface;
  bool counter = false;                     ///< counter statement
  Verdict verdict = Verdict::none;
  std::string comment;                      ///< tag of a counted rule: "<kind>-<direction>", e.g. "udp-out"
  std::optional<LogTo> log{};               ///< only in a rule without a verdict, or a jump (limit breaks off)
  std::optional<RememberSender> remember{};
  std::string target{};                     ///< the chain of Verdict::jump
  bool operator==(const Rule&) const = default;
};

enum class Hook : std::uint8_t { input, output, forward };
std::string_view to_string(Hook h);

struct Chain {
  std::string name;
  Hook hook = Hook::output;
  std::int32_t priority = 0;  ///< 0 = "filter": after DNAT (-100) and mangle/reroute (-150)
  /// Base chain policy. Always drop in what build_ruleset() makes: every verdict is an explicit
  /// rule, and the policy decides only when a chain is evaluated empty, which the kernel does for
  /// a chain being deleted or created within a transaction (see docs/firewall.md, "zero window").
  bool policy_drop = true;
  std::vector<Rule> rules;
  /// A base chain (type filter hook ...). Otherwise a regular chain, only reached by a jump from
  /// chains of `hook` (hook, priority and policy mean nothing for it).
  bool base = true;
  bool operator==(const Chain&) const = default;
};

struct Ruleset {
  std::string table{kTableName};
  std::vector<Set> sets;
  std::vector<Chain> chains;

  bool operator==(const Ruleset&) const = default;
  const Set* find_set(std::string_view name) const;
  std::size_t rule_count() const;
  std::size_t element_count() const;
  /// One line: chains, rule and element counts.
  std::string str() const;
};

/// The table for a policy. The policy must have passed validate().
Ruleset build_ruleset(const Policy& p);
/// Only the chains of build_ruleset(p) (they refer to its sets by name): for a change of rules,
/// whose cost must not grow with the number of endpoints.
std::vector<Chain> build_chains(const Policy& p);

/// Element changes to one set.
struct SetDelta {
  std::string set;
  KeyType key = KeyType::ipv4_addr;
  bool interval = false;
  std::vector<Element> remove;
  std::vector<Element> add;
  /// The set was empty before / is empty after: an interval set's boundary element at address
  /// zero (which nft keeps below the first range) comes or goes with the ranges.
  bool was_empty = false, becomes_empty = false;
  bool operator==(const SetDelta&) const = default;
};

/// How the kernel's table gets from one ruleset to another.
struct Change {
  enum class Kind : std::uint8_t {
    none,      ///< nothing differs
    elements,  ///< only elements of non-counting sets: `deltas`
    rules,     ///< rules of `chains` replaced in place (flush + add), plus `deltas`
    declarations,  ///< table, chain or set declarations differ: the table is repaired (or made anew)
  };
  Kind kind = Kind::none;
  std::vector<std::string> chains;  ///< chains whose rules differ, in the ruleset's order
  std::vector<SetDelta> deltas;     ///< element changes
  bool operator==(const Change&) const = default;
};

/// True if both rulesets declare the same table, chains (name, hook, priority, policy) and sets
/// (name, key, flags, size): then one can become the other without creating or deleting any
/// chain or set, which is what keeps a change free of windows.
bool same_declarations(const Ruleset& a, const Ruleset& b);
/// The smallest change that turns `from` into `to`.
Change plan_change(const Ruleset& from, const Ruleset& to);

/// The element changes that add `add` to and take `remove` out of the endpoint sets of `rs`
/// (endpoints already there / not there are skipped). O(k log n): for updates that must not cost
/// more with 10,000 endpoints than with 10.
std::vector<SetDelta> endpoint_deltas(const Ruleset& rs, const std::vector<Endpoint>& add, const std::vector<Endpoint>& remove);
/// Applies element changes to the model (after the kernel took them).
void apply_deltas(Ruleset& rs, const std::vector<SetDelta>& deltas);

/// Sorts, removes duplicates and merges overlapping or adjacent ranges (one family per call).
std::vector<AddressRange> merge_ranges(std::vector<AddressRange> ranges);

}  // namespace leakguard::firewall
