#pragma once
// The candidate report: what a web page would learn on this machine (host candidates, server-
// reflexive addresses per interface and family) and the verdict. Pure: built from the interface
// list and the finished probes; printed as text, JSON or ICE candidate lines. See docs/probe.md.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ip.hpp"
#include "common/strong.hpp"
#include "common/iface.hpp"
#include "probes/hops.hpp"
#include "probes/transaction.hpp"

namespace leakguard::probes {

/// An interface as the prober sees it: what a browser enumerates (getifaddrs) plus our class.
struct Interface {
  std::string name;
  IfIndex index;
  InterfaceClass cls = InterfaceClass::other;
  std::vector<IpAddress> addresses;  ///< usable local addresses (no tentative/failed DAD)
  bool operator==(const Interface&) const = default;
  /// "eth0 #2 (physical) 192.0.2.10 2001:db8:2::10".
  std::string str() const;
};

/// One finished probe: one transaction from one socket to one server.
struct ProbeResult {
  bool routed = false;       ///< from an unbound socket that follows the routing table
  /// From a socket bound to the interface's address only, no device: how a browser binds each
  /// host candidate. It follows the routing table from that source (source-address policy rules
  /// included), so it is judged like the routed probe: a page's own path.
  bool address_bound = false;
  std::string interface;     ///< the bound interface ("" when routed)
  IfIndex index;             ///< its index (0 when routed)
  InterfaceClass cls = InterfaceClass::other;  ///< its class (routed: unused)
  Family family = Family::v4;
  std::optional<IpAddress> source;  ///< bound address; routed: the local address the answer came to
  std::uint16_t local_port = 0;
  std::string server;                                 ///< as configured, e.g. "203.0.113.3:3478/udp"
  std::optional<stun::TransportAddress> server_address;  ///< what it resolved to
  Transport transport = Transport::udp;
  Outcome outcome = TimedOut{};
  std::string arrival_interface;  ///< UDP: where the answer came in (IP_PKTINFO); TCP: whose address was the source; "" if unknown
  std::optional<InterfaceClass> arrival_class;
  /// A request left this machine: sendto took a datagram (UDP), or the connection was made
  /// (TCP). Out of a non-tunnel device where the block refuses it, that alone is a hole.
  bool sent = false;
  std::size_t ignored = 0;        ///< messages received and rejected (wrong source, garbage, other id)
  std::string ignored_reason;     ///< the last such reason
  milliseconds elapsed{0};        ///< from the start of the round to the end of this probe
  bool operator==(const ProbeResult&) const = default;
  /// "eth0 ipv4 192.0.2.10 -> 203.0.113.3:3478/udp: reflexive 203.0.113.2:4000 after 1 ms (1 attempt)".
  std::string str() const;
};

enum class Verdict { ok, leak, exposed_host };
/// "ok", "leak", "exposed-host".
std::string_view to_string(Verdict v);

/// An address a page can read from the local interfaces (an ICE host candidate).
struct HostCandidate {
  std::string interface;
  InterfaceClass cls = InterfaceClass::other;
  IpAddress address;
  std::uint16_t port = 0;  ///< the port of a probe socket bound to it (9 if none was)
  bool is_public = false;  ///< globally reachable by its range, see is_public()
  bool exposed = false;    ///< counts for the exposed-host verdict
  bool operator==(const HostCandidate&) const = default;
};

/// A reflexive address that came back outside the tunnel, or (`hop` set) a router that answered a
/// hop probe's datagram sent outside it.
struct Leak {
  std::string interface;  ///< bound interface, or for a routed probe the one the answer came in by
  bool routed = false;
  Family family = Family::v4;
  stun::TransportAddress reflexive;  ///< unset (0.0.0.0:0) for a hop: no server saw us
  std::string server;     ///< the STUN server; for a hop, the hop probe's target (HopResult::target_of)
  std::string why;        ///< one line
  std::optional<IpAddress> hop;  ///< who answered a hop probe (HopAnswer::from)
  bool address_bound = false;     ///< found by an address-bound probe (ProbeResult::address_bound)
  bool operator==(const Leak&) const = default;
};

struct ReportOptions {
  /// Count the documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32) as
  /// public. RFC 6890 says they are not globally reachable; the lab uses them as its internet.
  bool documentation_is_public = false;
  /// The block is `strict` (every packet outside the tunnel is refused): a TCP answer to a socket
  /// bound to a non-tunnel device is then a leak too. Otherwise (`udp` policy, or no block known)
  /// it is an exposure: see Report::exposures.
  bool strict = false;
};

struct Report {
  std::vector<HostCandidate> hosts;
  std::vector<ProbeResult> probes;
  std::vector<Leak> leaks;
  /// Reflexive addresses that came back over TCP to a socket bound to a non-tunnel device (not in
  /// strict): any local process can reach the server that way, a web page cannot (it cannot bind
  /// a device, and what it can reach - routed and address-bound sockets - is judged as a leak).
  /// `udp` policy leaves TCP open on purpose; `strict` closes it. Never a leak, never the verdict.
  std::vector<Leak> exposures;
  std::vector<HopResult> hops;  ///< hop probes (hops.hpp): one answered is a leak
  std::vector<IpAddress> exits4, exits6;  ///< reflexive addresses seen through tunnel interfaces
  Verdict verdict = Verdict::ok;
  milliseconds duration{0};

  /// The tunnel exit addresses of a family.
  const std::vector<IpAddress>& exits(Family f) const { return f == Family::v4 ? exits4 : exits6; }
  /// Host candidates that make the verdict exposed-host.
  std::vector<HostCandidate> exposed() const;
  /// One line: verdict, the first leak or exposure, exits, counts.
  std::string summary() const;
  bool operator==(const Report&) const = default;
};

/// Globally reachable by its range (RFC 6890 registries): not private, shared (100.64/10), loopback,
/// link-local, ULA, multicast, benchmarking or reserved; documentation ranges per the option.
bool is_public(const IpAddress& a, const ReportOptions& options = {});

/// Builds the report and decides the verdict (rules in docs/probe.md):
/// - leak: a probe bound to a non-tunnel interface got a reflexive address (over TCP only in
///   strict; otherwise that is an exposure, see Report::exposures); or the routed probe got
///   one and its answer came in through a non-tunnel interface (loopback excepted: a server on this
///   machine), or (tunnel exits known for that family) it is not one of them, or (nothing known
///   about the path) no tunnel exit was seen; or a hop probe out of a non-tunnel interface was
///   answered by a router or its target (the datagram left the machine outside the tunnel).
/// - exposed-host: no leak, but a non-tunnel interface carries a public address (see is_public)
///   that no probe showed translated: a page that can read host candidates learns it directly.
/// - ok: otherwise. Blocked, timed-out, failed and error probes never make a leak.
Report make_report(const std::vector<Interface>& interfaces, std::vector<ProbeResult> probes, milliseconds duration,
                   const ReportOptions& options = {}, std::vector<HopResult> hops = {});

/// For people: verdict first, then exits, host candidates, probes, leaks.
std::string to_text(const Report& r);
/// For machines (the daemon's D-Bus report, `leakguardctl candidates --json`).
nlohmann::json to_json(const Report& r);
/// As a browser would print them (RTCIceCandidate.candidate): host lines, then srflx lines.
std::vector<std::string> ice_candidates(const Report& r);

}  // namespace leakguard::probes
