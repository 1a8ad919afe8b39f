#include "firewall/nft_objects.hpp"

#include <libnftnl/expr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstring>

#include "common/overloaded.hpp"

namespace leakguard::firewall::nft {

namespace {

// nft datatypes (nftables src/datatype.h, enum datatypes) and how concatenations combine them:
// each component shifts the previous ones left by TYPE_BITS = 6.
constexpr std::uint32_t kTypeNfproto = 2, kTypeIpAddr = 7, kTypeIp6Addr = 8, kTypeInetProto = 12, kTypeInetService = 13,
                        kTypeIfname = 41, kTypeCgroupV2 = 46;
constexpr std::uint32_t concat(std::uint32_t a, std::uint32_t b) { return (a << 6) | b; }

// nft's set user data (libnftnl udata TLVs, as nft 1.0.6 writes them): key byte order and, for
// concatenations, a "typeof" nest. They only matter for how nft prints the set, which is why
// they are copied byte for byte.
constexpr std::uint8_t kUdataKeyByteorder = 0;  // NFTNL_UDATA_SET_KEYBYTEORDER
constexpr std::uint8_t kUdataKeyTypeof = 3;     // NFTNL_UDATA_SET_KEY_TYPEOF
constexpr std::uint32_t kByteorderInvalid = 0, kByteorderBigEndian = 2;
constexpr std::uint32_t kExprConcat = 13;       // nft's EXPR_CONCAT

void put_u32_tlv(std::vector<std::uint8_t>& out, std::uint8_t type, std::uint32_t v) {
  out.push_back(type);
  out.push_back(4);
  std::uint8_t b[4];
  std::memcpy(b, &v, 4);  // host byte order, as nftnl_udata_put_u32 writes it
  out.insert(out.end(), b, b + 4);
}

std::vector<std::uint8_t> set_udata(KeyType k) {
  std::vector<std::uint8_t> u;
  if (key_info(k).concat) {
    put_u32_tlv(u, kUdataKeyByteorder, kByteorderInvalid);
    std::vector<std::uint8_t> nest;
    put_u32_tlv(nest, 0, kExprConcat);
    nest.push_back(1);  // an empty "data" attribute
    nest.push_back(0);
    u.push_back(kUdataKeyTypeof);
    u.push_back(static_cast<std::uint8_t>(nest.size()));
    u.insert(u.end(), nest.begin(), nest.end());
  } else {
    put_u32_tlv(u, kUdataKeyByteorder, kByteorderBigEndian);
  }
  return u;
}

// ---- element keys ----------------------------------------------------------------------------


bool increment(IpAddress& a) {
  for (std::size_t i = a.size(); i-- > 0;)
    if (++a.bytes[i] != 0) return true;
  return false;
}

RawElement raw_address(const IpAddress& a, std::uint32_t flags) {
  RawElement r;
  r.key_len = static_cast<std::uint32_t>(a.size());
  std::memcpy(r.key.data(), a.bytes.data(), a.size());
  r.flags = flags;
  return r;
}

// ---- lowering rules to expressions -----------------------------------------------------------

/// The loopback interface's index in every network namespace (LOOPBACK_IFINDEX, include/net/flow.h).
constexpr std::uint32_t kLoopbackIfindex = 1;

/// nft's register numbering: a value that starts at a 16-byte boundary uses a 128-bit register
/// number (NFT_REG_1..4), any other 32-bit slot its NFT_REG32_xx number (nft's
/// netlink_put_register does the same, for compatibility with old kernels).
std::uint32_t reg_for_slot(std::uint32_t slot) {
  return slot % 4 == 0 ? NFT_REG_1 + slot / 4 : NFT_REG32_00 + slot;
}

class Lowering {
 public:
  Lowering(nftnl_rule* r, const std::vector<Set>& sets) : r_(r), sets_(sets) {}

  void match(const Match& m) {
    std::visit(overloaded{
                   [&](const NfprotoIs& x) {
                     meta(NFT_META_NFPROTO, NFT_REG_1);
                     cmp_u8(NFT_CMP_EQ, x.family == Family::v4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
                     nfproto_known_ = true;
                   },
                   [&](const L4protoIs& x) {
                     meta(NFT_META_L4PROTO, NFT_REG_1);
                     cmp_u8(NFT_CMP_EQ, x.proto);
                     l4_known_ = true;
                   },
                   [&](const IfnameIs& x) {
                     meta(x.output ? NFT_META_OIFNAME : NFT_META_IIFNAME, NFT_REG_1);
                     // An exact name compares all IFNAMSIZ bytes (NUL padded); a "wg*" prefix only
                     // the stem's bytes, without the NUL.
                     std::array<std::uint8_t, 16> name{};
                     const auto stem = x.pattern.stem();
                     std::memcpy(name.data(), stem.data(), std::min<std::size_t>(stem.size(), 15));
                     cmp(x.negated ? NFT_CMP_NEQ : NFT_CMP_EQ, name.data(), x.pattern.is_prefix() ? stem.size() : name.size());
                   },
                   [&](const LoopbackIs& x) {
                     meta(x.output ? NFT_META_OIF : NFT_META_IIF, NFT_REG_1);
                     const std::uint32_t index = kLoopbackIfindex;  // meta values are in host byte order
                     cmp(NFT_CMP_EQ, &index, 4);
                   },
                   [&](const MarkIs& x) {
                     meta(NFT_META_MARK, NFT_REG_1);
                     const std::uint32_t v = x.mark.value;  // meta values are in host byte order
                     cmp(NFT_CMP_EQ, &v, 4);
                   },
                   [&](const AddressIs& x) {
                     need_nfproto(x.prefix.address.family);
                     const Prefix n = x.prefix.network();
                     const std::uint32_t alen = static_cast<std::uint32_t>(n.address.size());
                     const std::uint32_t off = address_offset(n.address.family, x.destination);
                     if (n.length == alen * 8) {
                       payload(NFT_PAYLOAD_NETWORK_HEADER, off, alen, NFT_REG_1);
                       cmp(NFT_CMP_EQ, n.address.bytes.data(), alen);
                     } else if (n.length % 8 == 0) {
                       payload(NFT_PAYLOAD_NETWORK_HEADER, off, n.length / 8u, NFT_REG_1);
                       cmp(NFT_CMP_EQ, n.address.bytes.data(), n.length / 8u);
                     } else {
                       payload(NFT_PAYLOAD_NETWORK_HEADER, off, alen, NFT_REG_1);
                       std::array<std::uint8_t, 16> mask{}, zero{};
                       for (std::uint32_t bit = 0; bit < n.length; ++bit)
                         mask[bit / 8] = static_cast<std::uint8_t>(mask[bit / 8] | (0x80 >> (bit % 8)));
                       bitwise(alen, mask.data(), zero.data());
                       cmp(NFT_CMP_EQ, n.address.bytes.data(), alen);
                     }
                   },
                   [&](const PortsAre& x) {
                     need_l4(x.proto);
                     std::uint8_t b[4];
                     if (x.sport && x.dport) {  // adjacent fields: nft merges them into one load
                       put_be16(b, *x.sport);
                       put_be16(b + 2, *x.dport);
                       payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 4, NFT_REG_1);
                       cmp(NFT_CMP_EQ, b, 4);
                     } else if (x.sport || x.dport) {
                       put_be16(b, x.sport ? *x.sport : *x.dport);
                       payload(NFT_PAYLOAD_TRANSPORT_HEADER, x.sport ? 0 : 2, 2, NFT_REG_1);
                       cmp(NFT_CMP_EQ, b, 2);
                     }
                   },
                   [&](const Icmpv6TypeIn& x) {
                     need_nfproto(Family::v6);
                     need_l4(kProtoIcmpv6);
                     payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG_1);  // ICMPv6 type (RFC 4443 §2.1)
                     if (x.from == x.to) {
                       cmp_u8(NFT_CMP_EQ, x.from);
                     } else {
                       cmp_u8(NFT_CMP_GTE, x.from);
                       cmp_u8(NFT_CMP_LTE, x.to);
                     }
                   },
                   [&](const HoplimitIs& x) {
                     need_nfproto(Family::v6);
                     payload(NFT_PAYLOAD_NETWORK_HEADER, 7, 1, NFT_REG_1);  // RFC 8200 §3
                     cmp_u8(NFT_CMP_EQ, x.value);
                   },
                   [&](const CtState& x) {
                     // ct state is a bit mask in host byte order: established is bit 1
                     // (NF_CT_STATE_BIT(IP_CT_ESTABLISHED)), related bit 2; tested as nft does:
                     // & mask != 0.
                     nftnl_expr* e = nftnl_expr_alloc("ct");
                     nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
                     nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
                     nftnl_rule_add_expr(r_, e);
                     const std::uint32_t bit =
                         x.invalid ? NF_CT_STATE_INVALID_BIT
                                   : NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | (x.related ? NF_CT_STATE_BIT(IP_CT_RELATED) : 0u);
                     std::uint8_t mask[4], zero[4] = {};
                     std::memcpy(mask, &bit, 4);
                     bitwise(4, mask, zero);
                     cmp(NFT_CMP_NEQ, zero, 4);
                   },
                   [&](const SocketUidIsNot& x) {
                     meta(NFT_META_SKUID, NFT_REG_1);
                     const std::uint32_t uid = x.uid;  // meta values are in host byte order
                     cmp(NFT_CMP_NEQ, &uid, 4);
                   },
                   [&](const AddressInSet& x) {
                     need_nfproto(x.family);
                     payload(NFT_PAYLOAD_NETWORK_HEADER, address_offset(x.family, x.destination),
                             x.family == Family::v4 ? 4 : 16, NFT_REG_1);
                     lookup(x.set, NFT_REG_1);
                   },
                   [&](const EndpointInSet& x) {
                     need_nfproto(x.family);
                     const std::uint32_t alen = x.family == Family::v4 ? 4 : 16;
                     payload(NFT_PAYLOAD_NETWORK_HEADER, address_offset(x.family, x.destination), alen, reg_for_slot(0));
                     meta(NFT_META_L4PROTO, reg_for_slot(alen / 4));
                     // th sport/dport: offset 0/2 of the transport header (RFC 768, RFC 9293 §3.1)
                     payload(NFT_PAYLOAD_TRANSPORT_HEADER, x.destination ? 2 : 0, 2, reg_for_slot(alen / 4 + 1));
                     lookup(x.set, NFT_REG_1);
                   },
                   [&](const PortInSet& x) {
                     need_l4(x.proto);
                     payload(NFT_PAYLOAD_TRANSPORT_HEADER, x.destination ? 2 : 0, 2, NFT_REG_1);
                     lookup(x.set, NFT_REG_1);
                   },
               },
               m);
  }

  void count_per_interface(const CountPerInterface& c) {
    meta(c.output ? NFT_META_OIFNAME : NFT_META_IIFNAME, reg_for_slot(0));
    meta(NFT_META_NFPROTO, reg_for_slot(4));  // after the 16 bytes of the name
    meta(NFT_META_L4PROTO, reg_for_slot(5));
    update(c.set);
  }

  void remember(const RememberSender& x) {
    // As nft 1.0.6 lowers `update @S { socket cgroupv2 level L . ip daddr . meta l4proto . th
    // sport . th dport }`: the concatenation's parts in consecutive 32-bit slots, the cgroup id
    // (8 bytes) first.
    need_nfproto(x.family);
    nftnl_expr* e = nftnl_expr_alloc("socket");
    nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_KEY, NFT_SOCKET_CGROUPV2);
    nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_DREG, reg_for_slot(0));
    nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_LEVEL, x.level);
    nftnl_rule_add_expr(r_, e);
    const std::uint32_t alen = x.family == Family::v4 ? 4 : 16;
    payload(NFT_PAYLOAD_NETWORK_HEADER, address_offset(x.family, true), alen, reg_for_slot(2));
    meta(NFT_META_L4PROTO, reg_for_slot(2 + alen / 4));
    payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, reg_for_slot(3 + alen / 4));
    payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg_for_slot(4 + alen / 4));
    update(x.set);
  }

  void counter() { nftnl_rule_add_expr(r_, nftnl_expr_alloc("counter")); }

  void log(const LogTo& l) {
    nftnl_expr* lim = nftnl_expr_alloc("limit");
    nftnl_expr_set_u64(lim, NFTNL_EXPR_LIMIT_RATE, l.per_second);
    nftnl_expr_set_u64(lim, NFTNL_EXPR_LIMIT_UNIT, 1);  // seconds
    nftnl_expr_set_u32(lim, NFTNL_EXPR_LIMIT_BURST, l.burst);
    nftnl_expr_set_u32(lim, NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS);
    nftnl_expr_set_u32(lim, NFTNL_EXPR_LIMIT_FLAGS, 0);
    nftnl_rule_add_expr(r_, lim);
    nftnl_expr* e = nftnl_expr_alloc("log");
    nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, l.prefix.c_str());
    nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, l.group);
    nftnl_rule_add_expr(r_, e);
  }

  void verdict(Verdict v, const std::string& target) {
    switch (v) {
      case Verdict::jump: {
        nftnl_expr* e = nftnl_expr_alloc("immediate");
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NFT_JUMP);
        nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, target.c_str());
        nftnl_rule_add_expr(r_, e);
        return;
      }
      case Verdict::none: return;
      case Verdict::accept: immediate(NF_ACCEPT); return;
      case Verdict::drop: immediate(NF_DROP); return;
      case Verdict::reject: reject(NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_ADMIN_PROHIBITED); return;
      case Verdict::tcp_reset: reject(NFT_REJECT_TCP_RST, 0); return;
    }
  }

 private:
  static std::uint32_t address_offset(Family f, bool destination) {
    // IPv4 saddr/daddr at 12/16 (RFC 791 §3.1), IPv6 at 8/24 (RFC 8200 §3).
    if (f == Family::v4) return destination ? 16 : 12;
    return destination ? 24 : 8;
  }
  static void put_be16(std::uint8_t* b, std::uint16_t v) {
    b[0] = static_cast<std::uint8_t>(v >> 8);
    b[1] = static_cast<std::uint8_t>(v & 0xff);
  }
  std::uint32_t set_id(const std::string& name) const {
    for (std::size_t i = 0; i < sets_.size(); ++i)
      if (sets_[i].name == name) return static_cast<std::uint32_t>(i + 1);
    return 0;
  }
  void need_nfproto(Family f) {
    if (nfproto_known_) return;
    meta(NFT_META_NFPROTO, NFT_REG_1);
    cmp_u8(NFT_CMP_EQ, f == Family::v4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
    nfproto_known_ = true;
  }
  void need_l4(std::uint8_t proto) {
    if (l4_known_) return;
    meta(NFT_META_L4PROTO, NFT_REG_1);
    cmp_u8(NFT_CMP_EQ, proto);
    l4_known_ = true;
  }
  void meta(std::uint32_t key, std::uint32_t dreg) {
    nftnl_expr* e = nftnl_expr_alloc("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
    nftnl_rule_add_expr(r_, e);
  }
  void cmp(std::uint32_t op, const void* data, std::size_t len) {
    nftnl_expr* e = nftnl_expr_alloc("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, static_cast<std::uint32_t>(len));
    nftnl_rule_add_expr(r_, e);
  }
  void cmp_u8(std::uint32_t op, std::uint8_t v) { cmp(op, &v, 1); }
  void payload(std::uint32_t base, std::uint32_t offset, std::uint32_t len, std::uint32_t dreg) {
    nftnl_expr* e = nftnl_expr_alloc("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
    nftnl_rule_add_expr(r_, e);
  }
  void bitwise(std::uint32_t len, const std::uint8_t* mask, const std::uint8_t* x) {
    nftnl_expr* e = nftnl_expr_alloc("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, x, len);
    nftnl_rule_add_expr(r_, e);
  }
  /// update @set { the key in the registers from NFT_REG_1 on }
  void update(const std::string& set) {
    nftnl_expr* e = nftnl_expr_alloc("dynset");
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
    nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set.c_str());
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SET_ID, set_id(set));
    nftnl_rule_add_expr(r_, e);
  }
  void lookup(const std::string& set, std::uint32_t sreg) {
    nftnl_expr* e = nftnl_expr_alloc("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id(set));
    nftnl_rule_add_expr(r_, e);
  }
  void immediate(std::uint32_t verdict) {
    nftnl_expr* e = nftnl_expr_alloc("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, verdict);
    nftnl_rule_add_expr(r_, e);
  }
  void reject(std::uint32_t type, std::uint8_t code) {
    nftnl_expr* e = nftnl_expr_alloc("reject");
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, type);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, code);
    nftnl_rule_add_expr(r_, e);
  }

  nftnl_rule* r_;
  const std::vector<Set>& sets_;
  bool nfproto_known_ = false;
  bool l4_known_ = false;
};

}  // namespace

KeyInfo key_info(KeyType k) {
  switch (k) {
    case KeyType::ipv4_addr: return {kTypeIpAddr, 4, false};
    case KeyType::ipv6_addr: return {kTypeIp6Addr, 16, false};
    case KeyType::inet_service: return {kTypeInetService, 2, false};
    // Concatenated keys: every component takes a multiple of 4 bytes (one 32-bit register).
    case KeyType::endpoint4: return {concat(concat(kTypeIpAddr, kTypeInetProto), kTypeInetService), 4 + 4 + 4, true};
    case KeyType::endpoint6: return {concat(concat(kTypeIp6Addr, kTypeInetProto), kTypeInetService), 16 + 4 + 4, true};
    case KeyType::ifname_proto: return {concat(concat(kTypeIfname, kTypeNfproto), kTypeInetProto), 16 + 4 + 4, true};
    case KeyType::sender4:
      return {concat(concat(concat(concat(kTypeCgroupV2, kTypeIpAddr), kTypeInetProto), kTypeInetService), kTypeInetService),
              8 + 4 + 4 + 4 + 4, true};
    case KeyType::sender6:
      return {concat(concat(concat(concat(kTypeCgroupV2, kTypeIp6Addr), kTypeInetProto), kTypeInetService), kTypeInetService),
              8 + 16 + 4 + 4 + 4, true};
  }
  return {0, 0, false};
}

/// The kernel's form of a set's elements. Interval sets hold boundaries: a start element per
/// range and an "end" element at the first address after it (none if the range reaches the top).
/// Like nft, an end element at address zero comes first when no range starts there.
void for_each_raw_element(KeyType key, bool interval, const std::vector<Element>& elements, bool with_zero_end,
                          const std::function<void(const RawElement&)>& fn) {
  if (interval && with_zero_end && !elements.empty()) {
    const auto* first = std::get_if<AddressRange>(&elements.front());
    if (first && !first->first.is_unspecified()) {
      IpAddress zero;
      zero.family = first->first.family;
      fn(raw_address(zero, NFT_SET_ELEM_INTERVAL_END));
    }
  }
  const std::uint32_t key_len = key_info(key).len;
  for (const auto& e : elements) {
    std::visit(overloaded{
                   [&](const Endpoint& ep) {
                     RawElement r;
                     const std::size_t alen = ep.address.size();
                     std::memcpy(r.key.data(), ep.address.bytes.data(), alen);
                     r.key[alen] = static_cast<std::uint8_t>(ep.transport);  // inet_proto, padded to 4
                     r.key[alen + 4] = static_cast<std::uint8_t>(ep.port >> 8);  // inet_service, big endian
                     r.key[alen + 5] = static_cast<std::uint8_t>(ep.port & 0xff);
                     r.key_len = key_len;
                     fn(r);
                   },
                   [&](const AddressRange& range) {
                     IpAddress end = range.last;
                     const bool has_end = increment(end);
                     RawElement start = raw_address(range.first, 0);
                     start.open_interval = interval && !has_end;
                     fn(start);
                     if (interval && has_end) fn(raw_address(end, NFT_SET_ELEM_INTERVAL_END));
                   },
                   [&](std::uint16_t port) {
                     RawElement r;
                     r.key[0] = static_cast<std::uint8_t>(port >> 8);
                     r.key[1] = static_cast<std::uint8_t>(port & 0xff);
                     r.key_len = 2;
                     fn(r);
                   },
               },
               e);
  }
}

std::vector<RawElement> raw_elements(KeyType key, bool interval, const std::vector<Element>& elements, bool with_zero_end) {
  std::vector<RawElement> out;
  out.reserve(interval ? 2 * elements.size() + 1 : elements.size());
  for_each_raw_element(key, interval, elements, with_zero_end, [&](const RawElement& r) { out.push_back(r); });
  return out;
}

SetPtr make_set(std::string_view table, const Set& s, std::uint32_t id) {
  SetPtr set(nftnl_set_alloc());
  const KeyInfo k = key_info(s.key);
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, std::string(table).c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, s.name.c_str());
  std::uint32_t flags = 0;
  if (s.interval) flags |= NFT_SET_INTERVAL;
  if (s.datapath_filled()) flags |= NFT_SET_EVAL;  // "flags dynamic": the datapath adds elements
  if (s.timeout_s) flags |= NFT_SET_TIMEOUT;
  nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, flags);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, k.type);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, k.len);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, id);
  if (s.datapath_filled()) nftnl_set_set_u32(set.get(), NFTNL_SET_DESC_SIZE, s.size);
  if (s.counting) nftnl_set_add_expr(set.get(), nftnl_expr_alloc("counter"));  // each element gets a counter
  if (s.timeout_s) nftnl_set_set_u64(set.get(), NFTNL_SET_TIMEOUT, std::uint64_t{s.timeout_s} * 1000);  // milliseconds
  auto u = set_udata(s.key);
  nftnl_set_set_data(set.get(), NFTNL_SET_USERDATA, u.data(), static_cast<std::uint32_t>(u.size()));
  return set;
}

RulePtr make_rule(std::string_view table, const Chain& c, const Rule& rule, const std::vector<Set>& sets) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, std::string(table).c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, c.name.c_str());
  Lowering low(r.get(), sets);
  for (const auto& m : rule.matches) low.match(m);
  if (rule.count_per_interface) low.count_per_interface(*rule.count_per_interface);
  if (rule.remember) low.remember(*rule.remember);
  if (rule.log) low.log(*rule.log);
  if (rule.counter) low.counter();
  low.verdict(rule.verdict, rule.target);
  if (!rule.comment.empty()) {
    std::vector<std::uint8_t> u;
    const std::size_t len = std::min<std::size_t>(rule.comment.size() + 1, 255);
    u.push_back(kUdataRuleComment);
    u.push_back(static_cast<std::uint8_t>(len));
    u.insert(u.end(), rule.comment.begin(), rule.comment.begin() + static_cast<std::ptrdiff_t>(len - 1));
    u.push_back(0);
    nftnl_rule_set_data(r.get(), NFTNL_RULE_USERDATA, u.data(), static_cast<std::uint32_t>(u.size()));
  }
  return r;
}

std::uint32_t hooknum(Hook h) {
  switch (h) {
    case Hook::input: return NF_INET_LOCAL_IN;
    case Hook::output: return NF_INET_LOCAL_OUT;
    case Hook::forward: return NF_INET_FORWARD;
  }
  return NF_INET_LOCAL_OUT;
}

ChainPtr make_chain(std::string_view table, const Chain& c) {
  ChainPtr ch(nftnl_chain_alloc());
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TABLE, std::string(table).c_str());
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_NAME, c.name.c_str());
  if (!c.base) return ch;  // a regular chain: only a name
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_HOOKNUM, hooknum(c.hook));
  nftnl_chain_set_s32(ch.get(), NFTNL_CHAIN_PRIO, c.priority);
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_POLICY, c.policy_drop ? NF_DROP : NF_ACCEPT);
  return ch;
}

}  // namespace leakguard::firewall::nft
