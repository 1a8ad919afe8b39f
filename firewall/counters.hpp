#pragma once
// What the drop/reject rules have stopped, per rule kind, direction and interface, and the
// one-line summary status shows ("blocked 42 UDP packets towards the internet via eth0").
// Pure: the adapter reads raw counters from the kernel, this file turns them into Counters.
#include <cstdint>
#include <string>
#include <vector>

namespace leakguard::firewall {

/// A counter as read from the kernel: one tagged rule ("udp-out") ...
struct RuleCounter {
  std::string chain;
  std::string tag;  ///< the rule's comment: "<kind>-<direction>"
  std::uint64_t packets = 0, bytes = 0;
};
/// ... or one element of a per-interface counting set ("ifstat_out": eth0 . udp).
struct InterfaceCounter {
  std::string set;
  std::string ifname;
  std::uint8_t proto = 0;
  std::uint64_t packets = 0, bytes = 0;
};

/// One figure for status and D-Bus.
struct Counter {
  std::string kind;                ///< "udp", "tcp", "ip" (everything else), "dns"
  std::string direction;           ///< "out" (our packets), "in", "fwd" (forwarded)
  std::string interface_or_scope;  ///< an interface name, or "all" for the rule's total
  std::uint64_t packets = 0, bytes = 0;
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
