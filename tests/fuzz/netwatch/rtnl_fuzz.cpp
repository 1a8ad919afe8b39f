// Fuzz target for the rtnetlink parser and the model: any bytes must parse without reading out of
// bounds, and whatever parses must apply to a model and print. Built as a libFuzzer target with
// clang (-DLEAKGUARD_FUZZ=ON), and always as a replay test over the committed corpus (real dumps
// captured in a lab namespace) plus deterministic mutations of it.
#include <cstddef>
#include <cstdint>
#include <span>

#include "netwatch/model.hpp"
#include "netwatch/rtnl.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace leakguard::netwatch;
  auto parsed = parse(std::span<const std::uint8_t>(data, size));
  NetModel m;
  m.apply(parsed.events);
  const Classifier c{};
  (void)to_text(m, c);
  (void)to_json(m, c).dump();
  (void)m.egress(leakguard::Family::v4);
  (void)diff(NetModel{}, m);
  return 0;
}
