#pragma once
// What the kernel logged of a blocked packet: our blocking rules in the output and forward chains
// also log (`limit ... log prefix "udp-out" group G`, firewall/ruleset.cpp) to nfnetlink_log,
// and leakguardd reads the group (docs/attribution.md). Pure: bytes in, values out; anything
// malformed is rejected with a reason and never read past.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/ip.hpp"

namespace leakguard::attribution {

struct LoggedPacket {
  std::string rule;                       ///< NFULA_PREFIX: the blocking rule's tag, e.g. "udp-out"
  std::uint32_t indev = 0, outdev = 0;    ///< interface indexes (0: none)
  std::optional<std::uint32_t> uid, gid;  ///< the sending socket's owner; none without a local socket (forwarded)
  IpAddress source, destination;
  std::uint8_t protocol = 0;              ///< IANA number of the transport (after IPv6 extension headers)
  std::uint16_t source_port = 0, destination_port = 0;  ///< 0 for a protocol without ports
  bool operator==(const LoggedPacket&) const = default;
};

struct NflogBatch {
  std::vector<LoggedPacket> packets;
  std::vector<std::string> rejected;  ///< one reason per message left out
};

/// Every NFULNL_MSG_PACKET message in one datagram read from an nfnetlink_log socket (other
/// messages, e.g. the acknowledgements of our configuration, are skipped).
NflogBatch parse_nflog(std::span<const std::uint8_t> datagram);

/// The IP header (IPv4, or IPv6 with its extension headers skipped) and the ports (TCP, UDP,
/// UDP-Lite, SCTP, DCCP) at the start of a logged payload, into `p`. A reason on failure.
std::optional<std::string> parse_ip(std::span<const std::uint8_t> payload, LoggedPacket& p);

/// Whether `p` may be one of the daemon's own probe packets, sent as uid `own_uid`: its socket's
/// owner is that uid; or it is TCP stopped in the output chain with no socket at all - the kernel
/// ending a probe's connection after close (its FIN, RST, a time-wait answer), refused once an
/// escalation closed that path. The caller checks that a probe had its source port just now
/// (probes/own_ports.hpp). A forwarded packet has no socket either, and never matches.
bool may_be_own_probe(const LoggedPacket& p, std::uint32_t own_uid);

/// "203.0.113.3:3478/udp", "[2001:db8::3]:443/tcp", "198.51.100.9/icmp" (no port).
std::string destination_text(const LoggedPacket& p);
/// "udp", "tcp", "udplite", "sctp", "dccp", "icmp", "ipv6-icmp", else the number.
std::string protocol_name(std::uint8_t proto);

}  // namespace leakguard::attribution
