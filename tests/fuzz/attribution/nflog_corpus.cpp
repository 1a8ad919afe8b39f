// Writes the seed corpus of the nfnetlink_log fuzz target (nflog_fuzz.cpp): datagrams built as the
// kernel writes NFULNL_MSG_PACKET messages (linux/netfilter/nfnetlink_log.h: attribute values in
// network byte order, the netlink header in the host's), the same way as
// tests/unit/attribution/attribution_test.cpp builds them, plus truncated and malformed variants.
// Usage: nflog_corpus DIR (e.g. build/tests/fuzz/attribution/nflog_corpus tests/fuzz/attribution/corpus)
// The corpus's files named by a SHA-1 are not from here: libFuzzer found them (a 300 s run, kept
// with `nflog_fuzz -merge=1 -use_counters=0 tests/fuzz/attribution/corpus RUN_DIR`: only inputs
// that reach code the corpus did not).
#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/attribution/nflog_bytes.hpp"

namespace {

using leakguard::test::nflog::Bytes;
using leakguard::test::nflog::attr;
using leakguard::test::nflog::attr32;
using leakguard::test::nflog::put;
constexpr std::uint16_t kGroup = 19527;  // attribution.nflog_group's default

void append(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }
// An address in network order, from its text (AF_INET: 4 bytes, AF_INET6: 16).
void put_address(Bytes& b, int af, const char* text) {
  in6_addr a{};
  inet_pton(af, text, &a);
  put(b, &a, af == AF_INET ? 4 : 16);
}

// Headers only, as the log rule's copy range keeps them (the transport's first bytes suffice).
Bytes ipv4(std::uint8_t proto, const char* src, const char* dst, const Bytes& l4, std::uint16_t frag = 0x4000,
           const Bytes& options = {}) {
  Bytes p = {static_cast<std::uint8_t>(0x40 | (5 + options.size() / 4)), 0, 0, 0, 0x12, 0x34,
             static_cast<std::uint8_t>(frag >> 8), static_cast<std::uint8_t>(frag), 64, proto, 0, 0};
  put_address(p, AF_INET, src);
  put_address(p, AF_INET, dst);
  append(p, options);
  append(p, l4);
  const auto total = static_cast<std::uint16_t>(p.size());
  p[2] = static_cast<std::uint8_t>(total >> 8);
  p[3] = static_cast<std::uint8_t>(total);
  return p;
}
// `exts`: extension headers, each with its own next-header byte first; `first` names the first.
Bytes ipv6(std::uint8_t first, const char* src, const char* dst, const Bytes& exts, const Bytes& l4) {
  Bytes p(8, 0);
  p[0] = 0x60;
  const auto len = static_cast<std::uint16_t>(exts.size() + l4.size());
  p[4] = static_cast<std::uint8_t>(len >> 8);
  p[5] = static_cast<std::uint8_t>(len);
  p[6] = first;
  p[7] = 64;
  put_address(p, AF_INET6, src);
  put_address(p, AF_INET6, dst);
  append(p, exts);
  append(p, l4);
  return p;
}
Bytes udp(std::uint16_t sport, std::uint16_t dport) {
  return {static_cast<std::uint8_t>(sport >> 8), static_cast<std::uint8_t>(sport),
          static_cast<std::uint8_t>(dport >> 8), static_cast<std::uint8_t>(dport), 0, 28, 0, 0};
}
Bytes tcp_syn(std::uint16_t sport, std::uint16_t dport) {
  return {static_cast<std::uint8_t>(sport >> 8), static_cast<std::uint8_t>(sport),
          static_cast<std::uint8_t>(dport >> 8), static_cast<std::uint8_t>(dport),
          0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0};
}
const Bytes kEchoRequest = {8, 0, 0xf7, 0xff, 0, 1, 0, 1};

struct Options {
  std::uint8_t family = AF_INET;
  std::uint32_t indev = 0, outdev = 2;
  std::optional<std::uint32_t> uid = 1000, gid = 1000;
  std::optional<std::uint32_t> mark;
  Options& v6() { family = AF_INET6; return *this; }
  Options& owner(std::optional<std::uint32_t> id) { uid = gid = id; return *this; }
  Options& forwarded(std::uint32_t in) { indev = in; return owner(std::nullopt); }
  Options& with_mark(std::uint32_t m) { mark = m; return *this; }
};

Bytes message_of(const Bytes& attrs, std::uint8_t family, std::uint16_t type) {
  Bytes m;
  nlmsghdr h{};
  h.nlmsg_len = static_cast<std::uint32_t>(sizeof h + sizeof(nfgenmsg) + attrs.size());
  h.nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_ULOG << 8) | type);
  put(m, &h, sizeof h);
  const nfgenmsg g{family, NFNETLINK_V0, htons(kGroup)};
  put(m, &g, sizeof g);
  append(m, attrs);
  return m;
}

// The attributes in the kernel's order (nfulnl_log_packet): header, prefix, interfaces, mark,
// uid/gid, payload.
Bytes message(const Bytes& payload, const char* prefix, const Options& o = {}) {
  Bytes attrs;
  const nfulnl_msg_packet_hdr ph{htons(o.family == AF_INET6 ? 0x86dd : 0x0800), 3, 0};
  attr(attrs, NFULA_PACKET_HDR, &ph, sizeof ph);
  attr(attrs, NFULA_PREFIX, prefix, std::strlen(prefix) + 1);
  if (o.indev) attr32(attrs, NFULA_IFINDEX_INDEV, o.indev);
  if (o.outdev) attr32(attrs, NFULA_IFINDEX_OUTDEV, o.outdev);
  if (o.mark) attr32(attrs, NFULA_MARK, *o.mark);
  if (o.uid) attr32(attrs, NFULA_UID, *o.uid);
  if (o.gid) attr32(attrs, NFULA_GID, *o.gid);
  attr(attrs, NFULA_PAYLOAD, payload.data(), payload.size());
  return message_of(attrs, o.family, NFULNL_MSG_PACKET);
}

Bytes v4_udp() { return ipv4(17, "192.0.2.10", "203.0.113.3", udp(40001, 3478)); }
Bytes v4_tcp() { return ipv4(6, "192.0.2.10", "198.51.100.9", tcp_syn(40002, 443)); }
Bytes v6_udp() { return ipv6(17, "2001:db8:2::10", "2001:db8:3::3", {}, udp(40003, 3478)); }
Bytes v6_hbh_tcp() {  // hop-by-hop (8 bytes: a PadN option), then TCP
  return ipv6(0, "2001:db8:2::10", "2001:db8:3::3", {6, 0, 1, 4, 0, 0, 0, 0}, tcp_syn(50000, 443));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  int written = 0;
  auto write = [&](const char* name, const Bytes& b) {
    std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    ++written;
  };

  // One packet each: the common cases.
  write("ipv4-udp", message(v4_udp(), "udp-out"));
  write("ipv4-tcp", message(v4_tcp(), "tcp-out", Options().owner(0)));
  write("ipv4-icmp", message(ipv4(1, "192.0.2.10", "198.51.100.9", kEchoRequest), "ip-out", Options().with_mark(0x4c47)));
  write("ipv6-udp", message(v6_udp(), "udp-out", Options().v6()));
  write("ipv6-hbh-tcp", message(v6_hbh_tcp(), "tcp-out", Options().v6()));
  write("ipv6-icmp", message(ipv6(58, "2001:db8:2::10", "2001:db8:3::3", {}, {128, 0, 0, 0, 0, 1, 0, 1}), "ip-out", Options().v6()));
  // Forwarded (a container's): in and out interfaces, no socket, so no uid/gid.
  write("forwarded-ipv4-udp",
        message(ipv4(17, "10.13.0.2", "203.0.113.3", udp(51000, 19302)), "udp-fwd",
                Options().forwarded(7)));
  // Rarer headers: IPv4 options (IHL 6); routing + destination options + a first fragment, then
  // SCTP; a later IPv4 fragment (no ports).
  write("ipv4-options-udp", message(ipv4(17, "192.0.2.10", "203.0.113.3", udp(40004, 53), 0x4000, {0x94, 4, 0, 0}), "udp-out"));
  write("ipv6-ext-chain-sctp",
        message(ipv6(43, "2001:db8:2::10", "2001:db8:3::3",
                     {60, 0, 0, 0, 0, 0, 0, 0,    // routing (type 0, no segments left), next: dest. options
                      44, 0, 1, 4, 0, 0, 0, 0,    // destination options (PadN), next: fragment
                      132, 0, 0, 1, 0, 0, 0, 9},  // fragment: offset 0, more fragments, next: SCTP
                     {0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0}),
                "ip-out", Options().v6()));
  write("ipv4-later-fragment", message(ipv4(17, "192.0.2.10", "203.0.113.3", Bytes(8, 0xab), 0x0010), "udp-out"));
  // Several messages in one datagram, with one the parser skips (the acknowledgement of our
  // configuration) and one it rejects between them.
  {
    Bytes d = message(v4_udp(), "udp-out");
    append(d, message(v6_hbh_tcp(), "tcp-out", Options().v6().owner(std::nullopt)));
    append(d, message_of({}, AF_UNSPEC, NFULNL_MSG_CONFIG));
    append(d, message(Bytes{0x45, 0, 0}, "udp-out"));  // an IPv4 header of 3 bytes
    append(d, message(v6_udp(), "udp-out", Options().v6().with_mark(1)));
    append(d, message(ipv4(136, "192.0.2.10", "203.0.113.3", udp(40005, 5004)), "udp-out"));
    write("batch", d);
  }
  // Malformed.
  {
    const Bytes payload = v4_udp();
    Bytes m = message(payload, "udp-out");
    write("truncated-payload", Bytes(m.begin(), m.end() - 6));  // nlmsg_len promises more
    write("prefix-of-65-bytes", message(payload, std::string(65, 'x').c_str()));  // 64 at most
    Bytes a;
    attr(a, NFULA_PREFIX, "udp-out", 7);  // no NUL
    attr(a, NFULA_PAYLOAD, payload.data(), payload.size());
    write("prefix-without-nul", message_of(a, AF_INET, NFULNL_MSG_PACKET));
    a.clear();
    attr(a, NFULA_PREFIX, "udp-out", 8);
    const std::uint16_t short_uid = htons(1000);
    attr(a, NFULA_UID, &short_uid, 2);  // a uid of 2 bytes
    attr(a, NFULA_PAYLOAD, payload.data(), payload.size());
    write("uid-of-2-bytes", message_of(a, AF_INET, NFULNL_MSG_PACKET));
    a.clear();
    attr(a, NFULA_PREFIX, "udp-out", 8);
    attr32(a, NFULA_IFINDEX_OUTDEV, 2);
    write("no-payload", message_of(a, AF_INET, NFULNL_MSG_PACKET));
    a.clear();
    attr(a, NFULA_PREFIX, "udp-out", 8);
    a.insert(a.end(), {2, 0, NFULA_PAYLOAD, 0});  // an attribute length below its header
    write("attribute-length-2", message_of(a, AF_INET, NFULNL_MSG_PACKET));
    // Payloads that are not what they claim: IP version 5; an IPv6 header cut short; an IPv6
    // extension header longer than what was copied (taken, as UDP without ports).
    Bytes bad = payload;
    bad[0] = 0x55;
    Bytes d = message(bad, "udp-out");
    Bytes v6 = v6_udp();
    append(d, message(Bytes(v6.begin(), v6.begin() + 30), "udp-out", Options().v6()));
    append(d, message(ipv6(0, "2001:db8:2::10", "2001:db8:3::3", {17, 200, 1, 4, 0, 0, 0, 0}, udp(1, 2)), "udp-out", Options().v6()));
    write("bad-payloads", d);
  }
  std::printf("wrote %d files to %s\n", written, dir.c_str());
  return 0;
}
