#pragma once
// IP addresses, prefixes and VPN endpoints as plain values (no sockets, no Asio).
#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace leakguard {

enum class Family : std::uint8_t { v4 = 4, v6 = 6 };
/// "ipv4" or "ipv6".
std::string_view to_string(Family f);

/// An IPv4 or IPv6 address in network byte order.
struct IpAddress {
  Family family = Family::v4;
  std::array<std::uint8_t, 16> bytes{};  ///< first 4 used for IPv4

  static IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d);
  /// Parses dotted-quad IPv4 or RFC 4291 text IPv6 (no brackets, no zone).
  static Result<IpAddress> parse(std::string_view text);

  std::size_t size() const { return family == Family::v4 ? 4 : 16; }
  bool is_loopback() const;
  bool is_link_local() const;  ///< 169.254/16, fe80::/10
  bool is_multicast() const;   ///< 224/4, ff00::/8
  bool is_unspecified() const;
  std::string str() const;
  auto operator<=>(const IpAddress&) const = default;
  /// A compare of constant size, which the compiler does in place (std::array's == goes through a
  /// library memcmp; the firewall compares up to max_endpoints addresses on every change of rules).
  bool operator==(const IpAddress& o) const {
    return family == o.family && std::memcmp(bytes.data(), o.bytes.data(), sizeof bytes) == 0;
  }
};

/// An address with a prefix length, e.g. 192.0.2.0/24. Host bits are kept as given.
struct Prefix {
  IpAddress address;
  std::uint8_t length = 0;

  /// Parses "ADDR/LEN" or a bare address (full length).
  static Result<Prefix> parse(std::string_view text);
  /// The same prefix with host bits cleared.
  Prefix network() const;
  bool contains(const IpAddress& a) const;
  std::string str() const;
  auto operator<=>(const Prefix&) const = default;
};

enum class Transport : std::uint8_t { udp = 17, tcp = 6 };
std::string_view to_string(Transport t);

/// "HOST:PORT[/udp|/tcp]" taken apart; an IPv6 literal goes in brackets ("[2001:db8::1]:3478").
/// The host is not checked here: callers decide whether it must be an address or may be a name.
struct HostPort {
  std::string host;        ///< without brackets
  bool bracketed = false;  ///< written as [host]
  std::uint16_t port = 0;
  Transport transport = Transport::udp;  ///< udp unless "/tcp" is given
};
Result<HostPort> split_host_port(std::string_view text);

/// A VPN server endpoint: address, port, transport. Text form "198.51.100.1:51820/udp",
/// "[2001:db8::1]:51820/udp"; the "/udp" suffix is optional (udp is the default).
struct Endpoint {
  IpAddress address;
  std::uint16_t port = 0;
  Transport transport = Transport::udp;

  static Result<Endpoint> parse(std::string_view text);
  std::string str() const;
  auto operator<=>(const Endpoint&) const = default;
};

/// Parses a decimal port 1..65535 (0 and anything else rejected).
Result<std::uint16_t> parse_port(std::string_view text);

}  // namespace leakguard
