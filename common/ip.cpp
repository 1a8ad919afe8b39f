#include "common/ip.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace leakguard {

std::string_view to_string(Family f) { return f == Family::v4 ? "ipv4" : "ipv6"; }
std::string_view to_string(Transport t) { return t == Transport::udp ? "udp" : "tcp"; }

IpAddress IpAddress::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddress ip;
  ip.bytes[0] = a;
  ip.bytes[1] = b;
  ip.bytes[2] = c;
  ip.bytes[3] = d;
  return ip;
}

Result<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; the longest valid IPv6 text is 45 characters.
  if (text.empty() || text.size() > 45) return fail("parse address", "'" + std::string(text) + "' is not an IP address");
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress ip;
  if (inet_pton(AF_INET, buf, ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, buf, ip.bytes.data()) == 1) {
    ip.family = Family::v6;
    return ip;
  }
  return fail("parse address", "'" + std::string(text) + "' is not an IP address");
}

bool IpAddress::is_loopback() const {
  if (family == Family::v4) return bytes[0] == 127;
  static constexpr std::array<std::uint8_t, 16> one{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return bytes == one;
}

bool IpAddress::is_link_local() const {
  if (family == Family::v4) return bytes[0] == 169 && bytes[1] == 254;
  return bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80;
}

bool IpAddress::is_multicast() const {
  if (family == Family::v4) return (bytes[0] & 0xf0) == 0xe0;
  return bytes[0] == 0xff;
}

bool IpAddress::is_unspecified() const {
  for (std::size_t i = 0; i < size(); ++i)
    if (bytes[i] != 0) return false;
  return true;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == Family::v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

Result<Prefix> Prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return fail("parse prefix", addr.error().message);
  const unsigned max = addr->family == Family::v4 ? 32 : 128;
  unsigned len = max;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || len > max)
      return fail("parse prefix", "'" + std::string(text) + "' has a bad prefix length (0.." + std::to_string(max) + ")");
  }
  return Prefix{*addr, static_cast<std::uint8_t>(len)};
}

Prefix Prefix::network() const {
  Prefix p = *this;
  for (std::size_t i = 0; i < p.address.size(); ++i) {
    const int bits_here = static_cast<int>(length) - static_cast<int>(i * 8);
    if (bits_here >= 8) continue;
    const auto mask = bits_here <= 0 ? 0 : static_cast<std::uint8_t>(0xff << (8 - bits_here));
    p.address.bytes[i] = static_cast<std::uint8_t>(p.address.bytes[i] & mask);
  }
  return p;
}

bool Prefix::contains(const IpAddress& a) const {
  if (a.family != address.family) return false;
  Prefix other{a, length};
  return other.network().address == network().address;
}

std::string Prefix::str() const { return address.str() + "/" + std::to_string(length); }

Result<std::uint16_t> parse_port(std::string_view text) {
  unsigned v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v == 0 || v > 65535)
    return fail("parse port", "'" + std::string(text) + "' is not a port (1..65535)");
  return static_cast<std::uint16_t>(v);
}

Result<HostPort> split_host_port(std::string_view text) {
  const std::string whole = "'" + std::string(text) + "'";
  HostPort hp;
  if (auto slash = text.rfind('/'); slash != std::string_view::npos) {
    auto proto = text.substr(slash + 1);
    if (proto == "udp") hp.transport = Transport::udp;
    else if (proto == "tcp") hp.transport = Transport::tcp;
    else return fail("parse host:port", whole + ": protocol must be udp or tcp");
    text = text.substr(0, slash);
  }
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail("parse host:port", whole + ": expected [IPv6]:PORT");
    hp.host = std::string(text.substr(1, close - 1));
    hp.bracketed = true;
    port = text.substr(close + 2);
  } else {
    auto colon = text.find(':');
    if (colon == std::string_view::npos)
      return fail("parse host:port", whole + ": the port is missing (expected ADDR:PORT[/udp|/tcp])");
    if (text.find(':', colon + 1) != std::string_view::npos)
      return fail("parse host:port", whole + ": expected ADDR:PORT, IPv6 addresses go in brackets ([ADDR]:PORT)");
    hp.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  auto p = parse_port(port);
  if (!p) return fail("parse host:port", whole + ": " + p.error().message);
  hp.port = *p;
  return hp;
}

Result<Endpoint> Endpoint::parse(std::string_view text) {
  const std::string whole = "'" + std::string(text) + "'";
  auto hp = split_host_port(text);
  if (!hp) return fail("parse endpoint", hp.error().message);
  auto addr = IpAddress::parse(hp->host);
  if (!addr) return fail("parse endpoint", whole + ": " + addr.error().message);
  if (addr->family == Family::v6 && !hp->bracketed) return fail("parse endpoint", whole + ": IPv6 addresses go in brackets");
  if (addr->family == Family::v4 && hp->bracketed) return fail("parse endpoint", whole + ": only IPv6 addresses go in brackets");
  return Endpoint{*addr, hp->port, hp->transport};
}

std::string Endpoint::str() const {
  std::string host = address.family == Family::v6 ? "[" + address.str() + "]" : address.str();
  return host + ":" + std::to_string(port) + "/" + std::string(to_string(transport));
}

}  // namespace leakguard
