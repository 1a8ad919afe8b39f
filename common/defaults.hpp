#pragma once
// Defaults that more than one library needs, defined once: the configuration's defaults
// (config/) are the prober's (probes/) when nothing is configured.
#include <chrono>
#include <cstdint>

namespace leakguard {

/// Between scheduled probe rounds (probe.interval).
inline constexpr std::chrono::milliseconds kDefaultProbeInterval = std::chrono::seconds(60);
/// One probe round at most, name resolution included (probe.timeout).
inline constexpr std::chrono::milliseconds kDefaultProbeTimeout = std::chrono::seconds(3);
/// Hop probes' largest TTL (probe.hops): the first routers past this machine; 0 switches them off.
inline constexpr int kDefaultHops = 3;
/// The largest probe.hops accepted.
inline constexpr int kMaxProbeHops = 8;

/// The nfnetlink_log group blocked packets are logged to (attribution.nflog_group): "LG".
inline constexpr std::uint16_t kDefaultNflogGroup = 0x4c47;

}  // namespace leakguard
