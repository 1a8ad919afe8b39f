#include "common/mode.hpp"

#include <string>

namespace leakguard {

std::string_view to_string(Mode m) {
  const auto i = static_cast<std::size_t>(m);
  return i < kModeNames.size() ? kModeNames[i] : "?";
}

Result<Mode> parse_mode(std::string_view text) {
  for (std::size_t i = 0; i < kModeNames.size(); ++i)
    if (text == kModeNames[i]) return static_cast<Mode>(i);
  std::string names;
  for (auto n : kModeNames) names += (names.empty() ? "" : " or ") + std::string(n);
  return fail("policy", "'" + std::string(text) + "' is not a policy (expected " + names + ")");
}

}  // namespace leakguard
