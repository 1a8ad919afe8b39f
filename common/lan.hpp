#pragma once
// What `allow_lan` may open, defined once (the daemon picks the subnets, the configuration checks
// the ranges a user adds, the firewall refuses anything wider).
//
// A network can hand out any address: a hotspot whose DHCP server gives 52.1.2.3/8 would make
// 52.0.0.0/8 "on-link" (TunnelCrack's LocalNet attack). So an on-link prefix counts as LAN only
// where it lies inside the private ranges; anything else is LAN only if the user lists it in
// allow_lan_ranges.
#include <cstdint>
#include <optional>
#include <vector>

#include "common/ip.hpp"

namespace leakguard {

/// Shorter LAN prefixes would open most of the internet: never offered, never installed.
inline constexpr std::uint8_t kMinLanPrefixV4 = 8;
inline constexpr std::uint8_t kMinLanPrefixV6 = 16;

/// The ranges a LAN may use without being listed: 10/8, 172.16/12, 192.168/16 (RFC 1918) and
/// fc00::/7 (RFC 4193). Not 100.64/10 (RFC 6598: a carrier's, not yours) unless listed.
const std::vector<Prefix>& private_ranges();

/// The part of `p` that lies inside `range`: `p` itself, `range` itself, or nothing (prefixes
/// either nest or are disjoint). Host bits are cleared.
std::optional<Prefix> intersect(const Prefix& p, const Prefix& range);

/// Long enough to be a LAN (kMinLanPrefixV4 / kMinLanPrefixV6).
bool lan_sized(const Prefix& p);

}  // namespace leakguard
