#pragma once
// leakguard's configuration (/etc/leakguard/leakguard.yaml) as a plain value.
// Pure: parse() reads text; only load() touches the file system. See docs/configuration.md.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/defaults.hpp"
#include "common/iface.hpp"
#include "common/ip.hpp"
#include "common/mode.hpp"
#include "common/result.hpp"
#include "common/strong.hpp"

namespace leakguard::config {

/// The configuration file leakguardd (and leakguardctl candidates) read unless told otherwise.
inline constexpr std::string_view kDefaultPath = "/etc/leakguard/leakguard.yaml";

/// What a clean stop (SIGTERM) does with the rules: keep blocking (fail closed) or remove them.
enum class OnStop { keep, remove };
std::string_view to_string(OnStop o);

/// A STUN server for the probe: a host name or address, a port, a transport.
struct StunServer {
  std::string host;  ///< DNS name or numeric address (IPv6 without brackets)
  std::uint16_t port = 3478;
  Transport transport = Transport::udp;

  /// "host:port/udp", IPv6 in brackets.
  std::string str() const;
  bool operator==(const StunServer&) const = default;
};

/// What the daemon does when a probe round finds a path a web page can use out of the tunnel
/// that the rules leave open on purpose (in `udp` policy: TCP, e.g. TURN over TCP on an
/// untunnelled IPv6): escalate = hold that family as in `strict` until a later round shows the
/// path gone; alert = only report it (state `leaking`).
enum class OnExposure { escalate, alert };
std::string_view to_string(OnExposure o);

struct Probe {
  std::chrono::milliseconds interval = kDefaultProbeInterval;  ///< between scheduled rounds
  std::chrono::milliseconds timeout = kDefaultProbeTimeout;    ///< one round at most
  bool ipv4 = true;
  bool ipv6 = true;
  std::vector<StunServer> servers;
  OnExposure on_exposure = OnExposure::escalate;
  /// Hop probes (docs/probe.md): UDP with TTL 1..hops out of each non-tunnel interface; 0: none.
  int hops = kDefaultHops;
  bool operator==(const Probe&) const = default;
};

/// Who sent what the block stopped (docs/attribution.md): blocked packets that leave are logged
/// to an nfnetlink_log group (rate-limited in the kernel) that leakguardd reads.
struct Attribution {
  bool enabled = true;
  std::uint16_t nflog_group = kDefaultNflogGroup;  ///< one listener per group and network namespace
  bool operator==(const Attribution&) const = default;
};

/// Where node_exporter's textfile collector reads by default on Debian
/// (prometheus-node-exporter's --collector.textfile.directory).
inline constexpr std::string_view kDefaultMetricsTextfile = "/var/lib/prometheus/node-exporter/leakguard.prom";

/// The metrics file for node_exporter's textfile collector (docs/metrics.md).
struct Metrics {
  bool enabled = false;
  std::string textfile = std::string(kDefaultMetricsTextfile);  ///< absolute, ends in ".prom"
  bool operator==(const Metrics&) const = default;
};

struct Config {
  Mode policy = Mode::udp;  ///< what is stopped outside the tunnel (common/mode.hpp)
  bool armed = true;  ///< lockdown from the start
  OnStop on_stop = OnStop::keep;
  bool allow_lan = false;
  /// Ranges that count as LAN besides the on-link parts of the private ranges (common/lan.hpp):
  /// a LAN on public addresses, or 100.64.0.0/10. Installed as they are while allow_lan is on.
  std::vector<Prefix> allow_lan_ranges;
  std::vector<IfnamePattern> tunnel_interfaces;  ///< names or "prefix*" patterns
  std::vector<Endpoint> endpoints;               ///< VPN servers allowed on physical interfaces
  std::optional<FwMark> fwmark;                  ///< if set, endpoints only for packets with this mark
  /// Without a mark: endpoints only for sockets of this user (the VPN client's; root by default)
  /// and the kernel's own; nullopt ("any") lets every local user reach them.
  std::optional<std::uint32_t> endpoint_uid = 0;
  Probe probe;
  Attribution attribution;
  Metrics metrics;

  bool operator==(const Config&) const = default;
  /// One line, for the log: every field, compactly.
  std::string str() const;
};

/// The configuration used when the file does not say otherwise.
Config defaults();

/// Parses YAML text. Errors read "FILE:LINE:COL: FIELD: what is wrong (expected ...)".
Result<Config> parse(std::string_view yaml, std::string_view filename);
/// The largest file load() reads: a configuration with every list at its limit is far smaller; a
/// larger file (or /dev/zero in its place) is no configuration, and is refused before it is read.
inline constexpr long kMaxConfigBytes = 4L * 1024 * 1024;
/// Reads and parses a file: a regular file only (a FIFO, a device or a directory is refused, never
/// waited on), of at most kMaxConfigBytes.
Result<Config> load(const std::string& path);

/// Parses a duration: "250ms", "3s", "5m", "1h" or a bare number of seconds.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace leakguard::config
