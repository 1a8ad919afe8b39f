// The WireGuard peer parsers: a userspace implementation's "get=1" answer (as wireguard-go writes
// it), and the kernel's WG_CMD_GET_DEVICE attributes built here per linux/wireguard.h, split over
// messages as a dump of a large device is; each with malformed variants.
#include <doctest/doctest.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "netwatch/wireguard.hpp"

using namespace leakguard;
using namespace leakguard::netwatch;

namespace {

Endpoint ep(const char* text) { return *Endpoint::parse(text); }

// As wireguard-go answers for a client with two peers, one of them without an endpoint.
const char* const kAnswer =
    "private_key=a8dac1d8a70a751f0f699fb14ba1cff7b79cf4fbd8f09f44c6e6a90d0369604f\n"
    "listen_port=41414\n"
    "fwmark=51820\n"
    "public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
    "endpoint=198.51.100.2:51820\n"
    "last_handshake_time_sec=1764640000\n"
    "last_handshake_time_nsec=0\n"
    "tx_bytes=1234\n"
    "rx_bytes=5678\n"
    "persistent_keepalive_interval=25\n"
    "allowed_ip=0.0.0.0/0\n"
    "allowed_ip=::/0\n"
    "public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\n"
    "persistent_keepalive_interval=0\n"
    "allowed_ip=100.64.0.9/32\n"
    "public_key=662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58\n"
    "endpoint=[2001:db8:5::1]:443\n"
    "errno=0\n"
    "\n";

}  // namespace

TEST_CASE("a userspace implementation's answer: every peer's endpoint, sorted, UDP") {
  auto r = parse_uapi_peers(kAnswer);
  REQUIRE_MESSAGE(r, r.error().str());
  CHECK(*r == PeerEndpoints{ep("198.51.100.2:51820"), ep("[2001:db8:5::1]:443")});
  for (const auto& e : *r) CHECK(e.transport == Transport::udp);
  // No peer has an endpoint: none (a device that only answers).
  auto none = parse_uapi_peers("private_key=00\nlisten_port=51820\nerrno=0\n\n");
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("a userspace implementation's answer that is broken or says an error is an error, never a list") {
  const std::string good = kAnswer;
  struct Case {
    const char* what;
    std::string text;
    const char* says;
  };
  const Case cases[] = {
      {"errno not 0", "errno=19\n\n", "errno=19"},
      {"no errno line", "listen_port=1\n\n", "no end"},
      {"no empty line at the end", good.substr(0, good.size() - 1), "no end"},
      {"cut in the middle of a line", good.substr(0, 200), "middle of a line"},
      {"empty", "", "no end"},
      {"a line without '='", "public_key\nerrno=0\n\n", "without '='"},
      {"an endpoint that is a name", "endpoint=vpn.example.com:51820\nerrno=0\n\n", "endpoint"},
      {"a scoped IPv6 endpoint", "endpoint=[fe80::1%eth0]:51820\nerrno=0\n\n", "endpoint"},
      {"an IPv6 endpoint without brackets", "endpoint=2001:db8::1:51820\nerrno=0\n\n", "endpoint"},
      {"port 0", "endpoint=198.51.100.2:0\nerrno=0\n\n", "endpoint"},
      {"our /tcp suffix", "endpoint=198.51.100.2:443/tcp\nerrno=0\n\n", "endpoint"},
  };
  for (const auto& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    auto r = parse_uapi_peers(c.text);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(c.says) != std::string::npos);
  }
}

namespace {

// Netlink attributes written out as the kernel writes them (native byte order, 4-byte aligned).
struct Attrs {
  std::vector<std::uint8_t> b;
  void put(std::uint16_t type, const void* data, std::size_t n) {
    nlattr a{static_cast<std::uint16_t>(sizeof(nlattr) + n), type};
    append(&a, sizeof a);
    append(data, n);
    b.resize(NLA_ALIGN(b.size()));
  }
  void nest(std::uint16_t type, const Attrs& inner) { put(type | NLA_F_NESTED, inner.b.data(), inner.b.size()); }
  void append(const void* p, std::size_t n) {
    const auto* c = static_cast<const std::uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  }
};

Attrs peer(const char* address, std::uint16_t port) {
  Attrs p;
  const std::uint8_t key[WG_KEY_LEN] = {1, 2, 3};
  p.put(WGPEER_A_PUBLIC_KEY, key, sizeof key);
  if (std::strchr(address, ':')) {
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(port);
    inet_pton(AF_INET6, address, &s.sin6_addr);
    p.put(WGPEER_A_ENDPOINT, &s, sizeof s);
  } else if (*address) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(port);
    inet_pton(AF_INET, address, &s.sin_addr);
    p.put(WGPEER_A_ENDPOINT, &s, sizeof s);
  }
  const std::uint16_t keepalive = 25;
  p.put(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, &keepalive, sizeof keepalive);
  return p;
}

Attrs device(const std::vector<Attrs>& peers) {
  Attrs d, list;
  const std::uint32_t index = 7;
  d.put(WGDEVICE_A_IFINDEX, &index, sizeof index);
  d.put(WGDEVICE_A_IFNAME, "wg0", 4);
  for (std::size_t i = 0; i < peers.size(); ++i) list.nest(static_cast<std::uint16_t>(i), peers[i]);
  d.nest(WGDEVICE_A_PEERS, list);
  return d;
}

}  // namespace

TEST_CASE("the kernel's answers: every peer's endpoint across the dump's messages, sorted, each once") {
  GenlPeerReader r;
  REQUIRE(r.add(device({peer("198.51.100.2", 51820), peer("", 0)}).b));
  // The next message of the dump: the same device, more peers (the first one again, continued).
  REQUIRE(r.add(device({peer("198.51.100.2", 51820), peer("2001:db8:5::1", 443)}).b));
  CHECK(r.endpoints() == PeerEndpoints{ep("198.51.100.2:51820"), ep("[2001:db8:5::1]:443")});
  // A device without peers.
  GenlPeerReader empty;
  REQUIRE(empty.add(device({}).b));
  CHECK(empty.endpoints().empty());
}

TEST_CASE("the kernel's answers that do not fit are errors, and add nothing") {
  const auto good = device({peer("198.51.100.2", 51820)}).b;
  SUBCASE("every truncation") {
    for (std::size_t n = 1; n < good.size(); ++n) {
      GenlPeerReader r;
      auto res = r.add(std::span(good.data(), n));
      // A cut between two whole top-level attributes leaves a shorter, well-formed message.
      if (res) continue;
      CHECK(r.endpoints().empty());
    }
  }
  SUBCASE("an endpoint that is no sockaddr_in/in6") {
    Attrs p;
    const std::uint8_t junk[6] = {AF_INET, 0, 1, 2, 3, 4};
    p.put(WGPEER_A_ENDPOINT, junk, sizeof junk);
    GenlPeerReader r;
    CHECK_FALSE(r.add(device({p}).b));
    CHECK(r.endpoints().empty());
  }
  SUBCASE("a link-local endpoint with a scope the rules cannot hold") {
    Attrs p;
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(51820);
    inet_pton(AF_INET6, "fe80::1", &s.sin6_addr);
    s.sin6_scope_id = 2;
    p.put(WGPEER_A_ENDPOINT, &s, sizeof s);
    GenlPeerReader r;
    CHECK_FALSE(r.add(device({p}).b));
  }
  SUBCASE("an attribute longer than the message") {
    auto bad = good;
    nlattr a;
    std::memcpy(&a, bad.data(), sizeof a);
    a.nla_len = static_cast<std::uint16_t>(bad.size() + 4);
    std::memcpy(bad.data(), &a, sizeof a);
    GenlPeerReader r;
    CHECK_FALSE(r.add(bad));
  }
}

TEST_CASE("reading a device that is not there says so, and a name that is no interface is refused") {
  // No socket by that name in an empty directory: no userspace WireGuard (not an error).
  auto r = read_wireguard_peers("wg0", "tun", "/nonexistent-leakguard-test-dir");
  REQUIRE(r);
  CHECK_FALSE(r->has_value());
  for (const char* bad : {"", "../x", "a/b", "..", "wg0123456789abcdef"}) {
    CAPTURE(bad);
    CHECK_FALSE(read_wireguard_peers(bad, "tun", "/nonexistent-leakguard-test-dir"));
  }
}

TEST_CASE("asking the kernel about a device it does not have: an answer either way, never a hang or a list") {
  // Real generic netlink (no root needed to ask): without the WireGuard module the family is
  // unknown (said so), with it the device is (no such device: nothing to follow).
  auto r = read_wireguard_peers("lgtnowg0", "wireguard");
  if (r) {
    CHECK_FALSE(r->has_value());
  } else {
    CAPTURE(r.error().str());
    CHECK(r.error().code == ENOENT);
    CHECK(r.error().message.find("no WireGuard") != std::string::npos);
  }
}
