#pragma once
// The kill switch's policy, one definition for the configuration, the firewall, the daemon and
// the control surface: what is stopped on non-tunnel interfaces.
#include <array>
#include <cstdint>
#include <string_view>

#include "common/result.hpp"

namespace leakguard {

/// UDP only (the WebRTC leak guard) or all IP.
enum class Mode : std::uint8_t { udp, strict };
/// Every policy by name, indexed by its value.
inline constexpr std::array<std::string_view, 2> kModeNames{"udp", "strict"};
/// "udp" or "strict".
std::string_view to_string(Mode m);
/// "udp" or "strict"; anything else is an error naming the choices. Step: "policy".
Result<Mode> parse_mode(std::string_view text);

}  // namespace leakguard
