#pragma once
// Hop probes: the routing-leak probe that needs no STUN server (docs/probe.md, "Hop probes").
// From a socket bound to each non-tunnel interface, UDP datagrams with TTL (hop limit) 1, 2, 3 go
// toward each STUN server and each VPN endpoint's address (to a port the endpoint exception does
// not cover, and without the VPN client's mark). The block must stop every one of them before it
// leaves: the send fails (EPERM), or our own reject answers from one of this machine's addresses.
// If a router on the way (or the target itself) answers with an ICMP error, the datagram left the
// machine outside the tunnel: a path out, whether or not any STUN server can be reached.
//
// Pure: what one error-queue message means, and the result types. The sockets are in prober.cpp.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "common/defaults.hpp"
#include "common/iface.hpp"
#include "common/ip.hpp"
#include "common/strong.hpp"
#include "probes/transaction.hpp"

namespace leakguard::probes {

/// Destination port of the datagram with TTL t: kHopPortBase + t - 1 (traceroute's ports). The
/// port says which datagram an ICMP error is about; the target only has to not be an endpoint
/// exception there (see hop_port_base()).
inline constexpr std::uint16_t kHopPortBase = 33434;
inline constexpr int kMaxHops = kMaxProbeHops;
/// Once every device-bound and routed STUN probe of a round has ended, a secondary probe (hop,
/// address-bound) still waiting gets as long again as they took, and at least kSecondaryGrace: its
/// answer comes over a path like theirs (a router is nearer still). The round's deadline bounds it.
inline constexpr milliseconds kSecondaryGrace{50};

/// A router on the path, or the target, answered one of the datagrams: it left this machine.
struct HopAnswer {
  IpAddress from;         ///< who answered (the ICMP error's source)
  int ttl = 0;            ///< the TTL of the datagram it answered (1 = the first router)
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
  milliseconds rtt{0};    ///< from the send to the answer
  bool operator==(const HopAnswer&) const = default;
};

/// Blocked: every datagram was refused here (the send failed, or this machine's own reject
/// answered). TimedOut: nothing answered before the round's deadline ("silent"). LocalFailure: the
/// socket could not be set up.
using HopOutcome = std::variant<HopAnswer, Blocked, TimedOut, LocalFailure>;
/// "answered", "blocked", "silent", "failed".
std::string_view kind(const HopOutcome& o);
std::string str(const HopOutcome& o);

/// One hop probe: one socket bound to one interface and address, datagrams with TTL 1..max_ttl
/// toward one target.
struct HopResult {
  std::string interface;
  IfIndex index;
  InterfaceClass cls = InterfaceClass::other;
  Family family = Family::v4;
  std::optional<IpAddress> source;
  IpAddress target;
  std::string target_of;  ///< what the target is: "203.0.113.3:3478/udp" (a STUN server), "endpoint 203.0.113.5"
  int max_ttl = 3;
  int sent = 0;           ///< datagrams that left the socket (the others were refused at the send)
  HopOutcome outcome = TimedOut{};
  milliseconds elapsed{0};  ///< from the start of the round to the end of this probe
  bool operator==(const HopResult&) const = default;
  /// "eth0 ipv4 192.0.2.10 -> 203.0.113.3 (203.0.113.3:3478/udp), TTL 1-3: answered by 198.51.100.1 at TTL 1 (time exceeded)".
  std::string str() const;
};

/// One message of a socket's error queue (IP_RECVERR / IPV6_RECVERR), as read.
struct QueuedError {
  bool icmp = false;               ///< ee_origin is ICMP / ICMPv6 (else: a local error, e.g. EMSGSIZE)
  Family family = Family::v4;
  std::uint8_t type = 0, code = 0;
  std::optional<IpAddress> offender;  ///< SO_EE_OFFENDER: who sent the ICMP error
  std::uint16_t port = 0;          ///< the original datagram's destination port
};

enum class HopSignal {
  answered,      ///< an ICMP error from elsewhere: the datagram left this machine
  refused_here,  ///< an ICMP error from one of this machine's own addresses: our reject
  ignored,       ///< not about a datagram of ours, or not an ICMP error
};

/// What an error-queue message means. `local` are this machine's addresses (every interface's);
/// a loopback or unspecified offender counts as local too.
HopSignal classify(const QueuedError& e, std::span<const IpAddress> local, int max_ttl, std::uint16_t port_base = kHopPortBase);

/// The TTL of the datagram sent to `port`, or 0 if it is not one of ours.
int ttl_of_port(std::uint16_t port, int max_ttl, std::uint16_t port_base = kHopPortBase);

/// A port base for the hop datagrams that none of `udp_ports` (the UDP ports of the endpoint
/// exceptions) falls into: a hop probe must meet the block, never the exception.
std::uint16_t pick_hop_port_base(std::span<const std::uint16_t> udp_ports, int max_ttl);

/// "time exceeded", "port unreachable", "admin prohibited", ... (ICMP or ICMPv6).
std::string icmp_text(Family f, std::uint8_t type, std::uint8_t code);

}  // namespace leakguard::probes
