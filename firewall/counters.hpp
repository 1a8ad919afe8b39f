#pragma once
// What the drop/reject rules have stopped, per rule kind, direction and interface, and the
// one-line summary status shows ("blocked 42 UDP packets towards the internet via eth0").
// Pure: the adapter reads raw counters from the kernel, this file turns them into Counters.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.hpp"

namespace leakguard::firewall {

/// A counter as read from the kernel: one tagged rule ("udp-out") ...
struct RuleCounter {
  std::string chain;
  std::string tag;  ///< the rule's comment: "<kind>-<direction>"
  std::uint64_t packets = 0, bytes = 0;
};
/// ... or one element of a per-interface counting set ("ifstat_out": eth0 . ipv4 . udp).
struct InterfaceCounter {
  std::string set;
  std::string ifname;
  std::uint8_t proto = 0;
  std::uint64_t packets = 0, bytes = 0;
  std::uint8_t nfproto = 0;  ///< NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10)
};

/// One element of a sender set (RememberSender): a cgroup v2 id (one level of the sending
/// socket's cgroup) that sent a blocked packet to `destination` from `source_port`.
struct SenderRecord {
  std::uint64_t cgroup_id = 0;
  IpAddress destination;
  std::uint8_t protocol = 0;
  std::uint16_t source_port = 0, destination_port = 0;
  bool operator==(const SenderRecord&) const = default;
};
/// A sender set's element key as the kernel keeps it (cgroup id in host byte order, address,
/// protocol, ports big endian, each part in 4-byte slots): 24 bytes for IPv4, 36 for IPv6.
std::optional<SenderRecord> parse_sender_key(const std::uint8_t* key, std::size_t len);

/// One figure for status and D-Bus.
struct Counter {
  std::string kind;                ///< "udp", "tcp", "ip" (everything else), "dns"
  std::string direction;           ///< "out" (our packets), "in", "fwd" (forwarded)
  std::string interface_or_scope;  ///< an interface name, or "all" for the rule's total
  std::uint64_t packets = 0, bytes = 0;
  std::string family{};            ///< per interface: "ipv4" or "ipv6"; "" for a rule's total
  bool operator==(const Counter&) const = default;
  /// "udp out via eth0: 42 packets, 3360 bytes"
  std::string str() const;
};

/// Totals per (kind, direction) from the tagged rules, scope "all", and per interface from the
/// counting sets (kind from the IP protocol). Sorted by direction, kind, scope.
std::vector<Counter> make_counters(const std::vector<RuleCounter>& rules, const std::vector<InterfaceCounter>& interfaces);

/// One line, e.g. "blocked 42 UDP packets towards the internet via eth0; blocked 3 DNS packets
/// outside the tunnel"; "nothing blocked" when every counter is zero.
std::string summarize(const std::vector<Counter>& counters);

}  // namespace leakguard::firewall
