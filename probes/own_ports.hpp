#pragma once
// The local ports the prober's own sockets had in the last kOwnPortMemory: its probes leave
// outside the tunnel on purpose, and the daemon's attribution of blocked packets names them as
// its own rather than as some application's (daemon/main.cpp). One process, one loop; locked
// anyway, it costs nothing at a probe's rate.
#include <chrono>
#include <cstdint>

#include "common/ip.hpp"

namespace leakguard::probes {

inline constexpr std::chrono::seconds kOwnPortMemory{10};

/// A probe socket of `protocol` (IANA number) and `family` is bound to local `port`.
void note_own_port(std::uint8_t protocol, Family family, std::uint16_t port);
/// Was one bound to it within kOwnPortMemory?
bool is_own_port(std::uint8_t protocol, Family family, std::uint16_t port);

}  // namespace leakguard::probes
