#pragma once
// Building nfnetlink_log messages byte by byte, as the kernel writes them (netlink attributes:
// length and type in the host's byte order, values as the caller gives them, padded to 4 bytes).
// Shared by the unit test and the fuzz corpus's generator (tests/fuzz/attribution).
#include <arpa/inet.h>
#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace leakguard::test::nflog {

using Bytes = std::vector<std::uint8_t>;

inline void put(Bytes& b, const void* p, std::size_t n) {
  const auto* c = static_cast<const std::uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}
inline void attr(Bytes& b, std::uint16_t type, const void* p, std::size_t n) {
  const nlattr a{static_cast<std::uint16_t>(sizeof(nlattr) + n), type};
  put(b, &a, sizeof a);
  put(b, p, n);
  b.resize(NLA_ALIGN(b.size()));
}
/// A 32-bit attribute in network byte order (NFULA_UID, NFULA_IFINDEX_*).
inline void attr32(Bytes& b, std::uint16_t type, std::uint32_t host) {
  const std::uint32_t be = htonl(host);
  attr(b, type, &be, 4);
}

}  // namespace leakguard::test::nflog
