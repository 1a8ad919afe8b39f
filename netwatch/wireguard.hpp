#pragma once
// Where a WireGuard interface's peers send to now, read from the device itself. WireGuard
// announces nothing when a peer's endpoint changes (`wg set wg0 peer K endpoint A:P`, a VPN app
// switching its server's address, a peer roaming), so the daemon reads this while a WireGuard
// tunnel is declared and lets the declaration follow (daemon/controller.hpp, follow_peers()).
//
// Two sources, one per kind of implementation:
//  - the kernel's (link kind "wireguard"): generic netlink family "wireguard", WG_CMD_GET_DEVICE
//    dumped for the interface (linux/wireguard.h; needs CAP_NET_ADMIN);
//  - userspace ones (wireguard-go, boringtun; a tun device): the cross-platform configuration
//    protocol on the UNIX socket <dir>/<interface>.sock, "get=1" (wireguard.com/xplatform).
// The parsers are pure and take any bytes; read_wireguard_peers() does the I/O, blocking for at
// most a short deadline.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip.hpp"
#include "common/result.hpp"

namespace leakguard::netwatch {

/// The peers' endpoints (UDP), sorted, each once. A peer without an endpoint (one that only
/// answers) adds none.
using PeerEndpoints = std::vector<Endpoint>;

/// The endpoints in a userspace implementation's answer to "get=1": "key=value" lines, a peer's
/// keys after its "public_key=", "endpoint=198.51.100.1:51820" or "endpoint=[2001:db8::1]:51820",
/// the answer ending with "errno=N" and an empty line. An error for a non-zero errno, a missing
/// end, a line without '=', or an endpoint that is no address:port (a scoped IPv6 address
/// included: the rules cannot hold one).
Result<PeerEndpoints> parse_uapi_peers(std::string_view answer);

/// Collects the endpoints of the kernel's WG_CMD_GET_DEVICE answers: each message's attributes
/// (after the generic netlink header) go to add(); a large device's peers come in several
/// messages, a peer's own attributes possibly split between two.
class GenlPeerReader {
 public:
  /// One answer message's attributes. An error for attributes that do not fit, or an endpoint
  /// that is no sockaddr_in/sockaddr_in6.
  Result<void> add(std::span<const std::uint8_t> attributes);
  PeerEndpoints endpoints() const;

 private:
  std::vector<Endpoint> found_;
};

/// How long read_wireguard_peers() may take at most.
inline constexpr std::chrono::milliseconds kPeerReadDeadline{500};

/// The endpoints of `ifname`'s peers as the device has them now: from the kernel when `kind` (the
/// link's IFLA_INFO_KIND) is "wireguard", else from a userspace implementation's socket in
/// `uapi_dir`. nullopt: no WireGuard device of either kind by that name (no such socket). An
/// error if the device cannot be read (permission, a broken answer, the deadline).
Result<std::optional<PeerEndpoints>> read_wireguard_peers(const std::string& ifname, const std::string& kind,
                                                          const std::string& uapi_dir = "/run/wireguard");

}  // namespace leakguard::netwatch
