#include "netwatch/wireguard.hpp"

#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "common/iface.hpp"

namespace leakguard::netwatch {
namespace {

using Bytes = std::span<const std::uint8_t>;

PeerEndpoints sorted_unique(std::vector<Endpoint> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Walks the attributes in `b`; false (with `why`) when a length does not fit.
template <typename F>
bool each_attr(Bytes b, std::string& why, F&& f) {
  std::size_t off = 0;
  while (off < b.size()) {
    nlattr a;
    if (b.size() - off < sizeof a) return why = "truncated attribute header", false;
    std::memcpy(&a, b.data() + off, sizeof a);
    if (a.nla_len < sizeof a || a.nla_len > b.size() - off) return why = "attribute length " + std::to_string(a.nla_len) + " does not fit", false;
    if (!f(static_cast<std::uint16_t>(a.nla_type & NLA_TYPE_MASK), b.subspan(off + sizeof a, a.nla_len - sizeof a))) return false;
    off += NLA_ALIGN(a.nla_len);
  }
  return true;
}

// A struct sockaddr_in or sockaddr_in6, as WGPEER_A_ENDPOINT carries it.
std::optional<Endpoint> sockaddr_endpoint(Bytes p) {
  sa_family_t af;
  if (p.size() < sizeof af) return std::nullopt;
  std::memcpy(&af, p.data(), sizeof af);
  Endpoint e;
  if (af == AF_INET && p.size() >= sizeof(sockaddr_in)) {
    sockaddr_in s;
    std::memcpy(&s, p.data(), sizeof s);
    e.address.family = Family::v4;
    std::memcpy(e.address.bytes.data(), &s.sin_addr, 4);
    e.port = ntohs(s.sin_port);
  } else if (af == AF_INET6 && p.size() >= sizeof(sockaddr_in6)) {
    sockaddr_in6 s;
    std::memcpy(&s, p.data(), sizeof s);
    // A link-local peer is reached through one link (sin6_scope_id): the rules cannot say which.
    if (s.sin6_scope_id != 0) return std::nullopt;
    e.address.family = Family::v6;
    std::memcpy(e.address.bytes.data(), &s.sin6_addr, 16);
    e.port = ntohs(s.sin6_port);
  } else {
    return std::nullopt;
  }
  if (e.port == 0) return std::nullopt;
  return e;
}

}  // namespace

Result<PeerEndpoints> parse_uapi_peers(std::string_view answer) {
  constexpr const char* step = "read WireGuard peers";
  std::vector<Endpoint> found;
  std::optional<std::string_view> err;
  std::size_t pos = 0;
  bool ended = false;
  while (pos < answer.size()) {
    const auto nl = answer.find('\n', pos);
    if (nl == std::string_view::npos) return fail(step, "the answer ends in the middle of a line");
    const auto line = answer.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) {
      ended = true;
      break;
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) return fail(step, "a line without '=': '" + printable_ifname(std::string(line.substr(0, 64))) + "'");
    const auto key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "errno") {
      err = value;
    } else if (key == "endpoint") {
      // Always UDP: a '/' (our own "/tcp" suffix) is no part of WireGuard's syntax.
      auto e = value.find('/') == std::string_view::npos ? Endpoint::parse(value) : fail("parse endpoint", "a '/'");
      if (!e) return fail(step, "endpoint '" + printable_ifname(std::string(value.substr(0, 64))) + "': " + e.error().message);
      found.push_back(*e);
    }
  }
  if (!ended || !err) return fail(step, "the answer has no end (errno=N and an empty line)");
  if (*err != "0") return fail(step, "the device answered errno=" + printable_ifname(std::string(err->substr(0, 16))));
  return sorted_unique(std::move(found));
}

Result<void> GenlPeerReader::add(Bytes attributes) {
  std::string why;
  std::vector<Endpoint> here;
  const bool ok = each_attr(attributes, why, [&](std::uint16_t type, Bytes device_attr) {
    if (type != WGDEVICE_A_PEERS) return true;
    return each_attr(device_attr, why, [&](std::uint16_t, Bytes peer) {
      return each_attr(peer, why, [&](std::uint16_t ptype, Bytes v) {
        if (ptype != WGPEER_A_ENDPOINT) return true;
        auto e = sockaddr_endpoint(v);
        if (!e) return why = "a peer's endpoint is no IPv4 or global IPv6 sockaddr (" + std::to_string(v.size()) + " bytes)", false;
        here.push_back(*e);
        return true;
      });
    });
  });
  if (!ok) return fail("read WireGuard peers", why);
  found_.insert(found_.end(), here.begin(), here.end());
  return {};
}

PeerEndpoints GenlPeerReader::endpoints() const { return sorted_unique(found_); }

}  // namespace leakguard::netwatch
