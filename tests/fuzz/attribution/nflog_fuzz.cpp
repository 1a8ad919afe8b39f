// Fuzz target for the nfnetlink_log parser (attribution/packet.hpp): any datagram must parse
// without reading out of bounds, and every packet it yields must print. Built as a libFuzzer
// target with clang (-DLEAKGUARD_FUZZ=ON), and always as a replay test over the committed corpus
// (datagrams as the kernel writes them, made by nflog_corpus.cpp) plus deterministic mutations.
//
// Besides "no crash, no sanitizer report", it checks what the parser promises: at most one packet
// or one reason per message (and one for a rest too short for a header); a packet has an IPv4 or IPv6 source and destination of
// the same family, a rule of at most 64 bytes without a NUL, and ports only for a protocol that
// has them; destination_text ends in the protocol's name and brackets an IPv6 address before a
// port.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "attribution/packet.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();  // the fuzzer reports it as a crash with the input
}

bool has_ports(std::uint8_t proto) {
  return proto == 6 || proto == 17 || proto == 33 || proto == 132 || proto == 136;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace leakguard;
  using namespace leakguard::attribution;
  const auto batch = parse_nflog(std::span<const std::uint8_t>(data, size));
  // Each message takes at least a netlink header (16 bytes); one more reason may be for a rest.
  require(batch.packets.size() + batch.rejected.size() <= size / 16 + 1);
  for (const auto& reason : batch.rejected) require(!reason.empty());
  for (const auto& p : batch.packets) {
    require(p.source.family == Family::v4 || p.source.family == Family::v6);
    require(p.destination.family == p.source.family);
    require(p.rule.size() <= 64 && p.rule.find('\0') == std::string::npos);
    if (!has_ports(p.protocol)) require(p.source_port == 0 && p.destination_port == 0);
    const std::string text = destination_text(p);
    const std::string suffix = "/" + protocol_name(p.protocol);
    require(text.size() > suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0);
    // An IPv6 address is bracketed when a port follows it.
    require((text.front() == '[') == (p.destination.family == Family::v6 && has_ports(p.protocol)));
  }
  return 0;
}
