#include "attribution/packet.hpp"

#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>

#include <cstring>

namespace leakguard::attribution {
namespace {

using Bytes = std::span<const std::uint8_t>;

template <typename T>
T read(Bytes b, std::size_t off = 0) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

std::optional<std::string> read_be32(Bytes p, const char* what, std::uint32_t& out) {
  if (p.size() != 4) return std::string(what) + " has " + std::to_string(p.size()) + " bytes, not 4";
  out = ntohl(read<std::uint32_t>(p));
  return std::nullopt;
}

// One NFULNL_MSG_PACKET message's attributes (after struct nfgenmsg).
std::optional<std::string> parse_packet(Bytes attrs, LoggedPacket& p) {
  std::optional<Bytes> payload;
  std::size_t off = 0;
  while (off < attrs.size()) {
    if (attrs.size() - off < sizeof(nlattr)) return "truncated attribute header";
    const auto a = read<nlattr>(attrs, off);
    if (a.nla_len < sizeof(nlattr) || a.nla_len > attrs.size() - off)
      return "attribute " + std::to_string(a.nla_type & NLA_TYPE_MASK) + " has length " + std::to_string(a.nla_len);
    const Bytes v = attrs.subspan(off + sizeof(nlattr), a.nla_len - sizeof(nlattr));
    std::optional<std::string> bad;
    switch (a.nla_type & NLA_TYPE_MASK) {
      case NFULA_PREFIX: {
        const auto* nul = static_cast<const std::uint8_t*>(std::memchr(v.data(), 0, v.size()));
        if (!nul) return std::string("the prefix is not NUL-terminated");
        p.rule.assign(reinterpret_cast<const char*>(v.data()), static_cast<std::size_t>(nul - v.data()));
        if (p.rule.size() > 64) return std::string("the prefix is longer than 64 bytes");
        break;
      }
      case NFULA_IFINDEX_INDEV: bad = read_be32(v, "the input interface", p.indev); break;
      case NFULA_IFINDEX_OUTDEV: bad = read_be32(v, "the output interface", p.outdev); break;
      case NFULA_UID: {
        std::uint32_t u = 0;
        bad = read_be32(v, "the uid", u);
        p.uid = u;
        break;
      }
      case NFULA_GID: {
        std::uint32_t g = 0;
        bad = read_be32(v, "the gid", g);
        p.gid = g;
        break;
      }
      case NFULA_PAYLOAD: payload = v; break;
      default: break;
    }
    if (bad) return bad;
    off += NLA_ALIGN(a.nla_len);
  }
  if (!payload) return std::string("no payload (the group must copy packets)");
  return parse_ip(*payload, p);
}

}  // namespace

std::optional<std::string> parse_ip(Bytes b, LoggedPacket& p) {
  if (b.empty()) return std::string("an empty payload");
  const unsigned version = b[0] >> 4;
  std::size_t l4 = 0;
  std::uint8_t proto = 0;
  if (version == 4) {
    if (b.size() < 20) return std::string("an IPv4 header of ") + std::to_string(b.size()) + " bytes";
    const std::size_t ihl = static_cast<std::size_t>(b[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > b.size()) return std::string("an IPv4 header length of ") + std::to_string(ihl);
    p.source.family = p.destination.family = Family::v4;
    p.source.bytes = {};
    p.destination.bytes = {};
    std::memcpy(p.source.bytes.data(), b.data() + 12, 4);
    std::memcpy(p.destination.bytes.data(), b.data() + 16, 4);
    proto = b[9];
    // A fragment after the first carries no transport header.
    const std::uint16_t frag = static_cast<std::uint16_t>((b[6] << 8) | b[7]);
    l4 = (frag & 0x1fff) ? b.size() : ihl;
  } else if (version == 6) {
    if (b.size() < 40) return std::string("an IPv6 header of ") + std::to_string(b.size()) + " bytes";
    p.source.family = p.destination.family = Family::v6;
    std::memcpy(p.source.bytes.data(), b.data() + 8, 16);
    std::memcpy(p.destination.bytes.data(), b.data() + 24, 16);
    proto = b[6];
    l4 = 40;
    // Extension headers (RFC 8200 §4): hop-by-hop, routing, destination options (8-byte units
    // after the first 8), fragment (8 bytes; a later fragment has no transport header).
    for (int n = 0; n < 8; ++n) {
      if (proto == 0 || proto == 43 || proto == 60) {
        if (b.size() < l4 + 8) return std::string("a truncated IPv6 extension header");
        const std::uint8_t next = b[l4];
        l4 += (static_cast<std::size_t>(b[l4 + 1]) + 1) * 8;
        proto = next;
      } else if (proto == 44) {
        if (b.size() < l4 + 8) return std::string("a truncated IPv6 fragment header");
        const std::uint8_t next = b[l4];
        const std::uint16_t off = static_cast<std::uint16_t>((b[l4 + 2] << 8) | b[l4 + 3]);
        l4 = (off & 0xfff8) ? b.size() : l4 + 8;
        proto = next;
      } else {
        break;
      }
    }
  } else {
    return "IP version " + std::to_string(version);
  }
  p.protocol = proto;
  p.source_port = p.destination_port = 0;
  switch (proto) {
    case 6: case 17: case 33: case 132: case 136:
      // Every one of them begins with the source and destination ports.
      if (b.size() >= l4 + 4) {
        p.source_port = static_cast<std::uint16_t>((b[l4] << 8) | b[l4 + 1]);
        p.destination_port = static_cast<std::uint16_t>((b[l4 + 2] << 8) | b[l4 + 3]);
      }
      break;
    default: break;
  }
  return std::nullopt;
}

NflogBatch parse_nflog(Bytes d) {
  NflogBatch out;
  std::size_t off = 0;
  while (off < d.size()) {
    if (d.size() - off < sizeof(nlmsghdr)) {
      out.rejected.push_back("a truncated netlink header");
      break;
    }
    const auto h = read<nlmsghdr>(d, off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > d.size() - off) {
      out.rejected.push_back("a netlink message of length " + std::to_string(h.nlmsg_len) + " in " +
                             std::to_string(d.size() - off) + " bytes");
      break;
    }
    const Bytes m = d.subspan(off + sizeof(nlmsghdr), h.nlmsg_len - sizeof(nlmsghdr));
    off += NLMSG_ALIGN(h.nlmsg_len);
    if (NFNL_SUBSYS_ID(h.nlmsg_type) != NFNL_SUBSYS_ULOG || NFNL_MSG_TYPE(h.nlmsg_type) != NFULNL_MSG_PACKET) continue;
    if (m.size() < sizeof(nfgenmsg)) {
      out.rejected.push_back("a packet message without its nfgenmsg");
      continue;
    }
    LoggedPacket p;
    if (auto bad = parse_packet(m.subspan(sizeof(nfgenmsg)), p)) {
      out.rejected.push_back(*bad);
      continue;
    }
    out.packets.push_back(std::move(p));
  }
  return out;
}

std::string protocol_name(std::uint8_t proto) {
  switch (proto) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 33: return "dccp";
    case 58: return "ipv6-icmp";
    case 132: return "sctp";
    case 136: return "udplite";
    default: return std::to_string(proto);
  }
}

bool may_be_own_probe(const LoggedPacket& p, std::uint32_t own_uid) {
  if (p.uid) return *p.uid == own_uid;
  return p.protocol == 6 && p.rule.ends_with("-out");  // TCP (RFC 9293), output chain tags end in -out
}

std::string destination_text(const LoggedPacket& p) {
  const std::string a = p.destination.family == Family::v6 ? "[" + p.destination.str() + "]" : p.destination.str();
  const bool ports = p.protocol == 6 || p.protocol == 17 || p.protocol == 33 || p.protocol == 132 || p.protocol == 136;
  return (ports ? a + ":" + std::to_string(p.destination_port) : p.destination.str()) + "/" + protocol_name(p.protocol);
}

}  // namespace leakguard::attribution
