// Fuzz target for the configuration parser: any text must yield a Config or an error with a
// position, never a crash, a hang or an exception escaping. Corpus: the shipped file and variants.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = leakguard::config::parse(text, "fuzz.yaml");
  if (c) (void)c->str();
  else (void)c.error().str();
  return 0;
}
