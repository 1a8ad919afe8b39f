#include "firewall/ruleset_nft.hpp"

#include <arpa/inet.h>
#include <endian.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "common/overloaded.hpp"

namespace leakguard::firewall::nft {

namespace {

// ---- small RAII wrappers for libnftnl objects ----------------------------------------------------

struct TableDel { void operator()(nftnl_table* p) const { nftnl_table_free(p); } };
struct ChainDel { void operator()(nftnl_chain* p) const { nftnl_chain_free(p); } };
struct SetDel { void operator()(nftnl_set* p) const { nftnl_set_free(p); } };
struct RuleDel { void operator()(nftnl_rule* p) const { nftnl_rule_free(p); } };
using TablePtr = std::unique_ptr<nftnl_table, TableDel>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDel>;
using SetPtr = std::unique_ptr<nftnl_set, SetDel>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleDel>;

// nft datatypes (nftables src/datatype.h, enum datatypes) and how concatenations combine them:
// each component shifts the previous ones left by TYPE_BITS = 6.
constexpr std::uint32_t kTypeIpAddr = 7, kTypeIp6Addr = 8, kTypeInetProto = 12, kTypeInetService = 13,
                        kTypeIfname = 41;
constexpr std::uint32_t concat(std::uint32_t a, std::uint32_t b) { return (a << 6) | b; }

// nft's set user data (libnftnl udata TLVs, as nft 1.0.6 writes them): key byte order and, for
// concatenations, a "typeof" nest. They only matter for how nft prints the set, which is why
// they are copied byte for byte.
constexpr std::uint8_t kUdataKeyByteorder = 0;  // NFTNL_UDATA_SET_KEYBYTEORDER
constexpr std::uint8_t kUdataKeyTypeof = 3;     // NFTNL_UDATA_SET_KEY_TYPEOF
constexpr std::uint32_t kByteorderInvalid = 0, kByteorderBigEndian = 2;
constexpr std::uint32_t kExprConcat = 13;       // nft's EXPR_CONCAT
// Element user data: NFTNL_UDATA_SET_ELEM_FLAGS = 1 with NFTNL_SET_ELEM_F_INTERVAL_OPEN = 1,
// which nft puts on an interval that runs to the end of the address space.
constexpr std::uint8_t kUdataElemFlags = 1;
constexpr std::uint32_t kElemIntervalOpen = 1;
// Rule user data: NFTNL_UDATA_RULE_COMMENT = 0, a NUL-terminated string.
constexpr std::uint8_t kUdataRuleComment = 0;

struct KeyInfo {
  std::uint32_t type, len;
  bool concat;
};

KeyInfo key_info(KeyType k) {
  switch (k) {
    case KeyType::ipv4_addr: return {kTypeIpAddr, 4, false};
    case KeyType::ipv6_addr: return {kTypeIp6Addr, 16, false};
    case KeyType::inet_service: return {kTypeInetService, 2, false};
    // Concatenated keys: every component takes a multiple of 4 bytes (one 32-bit register).
    case KeyType::endpoint4: return {concat(concat(kTypeIpAddr, kTypeInetProto), kTypeInetService), 4 + 4 + 4, true};
    case KeyType::endpoint6: return {concat(concat(kTypeIp6Addr, kTypeInetProto), kTypeInetService), 16 + 4 + 4, true};
    case KeyType::ifname_proto: return {concat(kTypeIfname, kTypeInetProto), 16 + 4, true};
  }
  return {0, 0, false};
}

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

/// One kernel element: key bytes, flags, optional user data.
struct RawElement {
  std::array<std::uint8_t, 24> key{};
  std::uint32_t key_len = 0;
  std::uint32_t flags = 0;  // NFT_SET_ELEM_INTERVAL_END
  bool open_interval = false;
};

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

/// The kernel's form of a set's elements. Interval sets hold boundaries: a start element per
/// range and an "end" element at the first address after it (none if the range reaches the top).
/// Like nft, an end element at address zero comes first when no range starts there.
std::vector<RawElement> raw_elements(KeyType key, bool interval, const std::vector<Element>& elements,
                                     bool with_zero_end) {
  std::vector<RawElement> out;
  if (interval && with_zero_end && !elements.empty()) {
    const auto* first = std::get_if<AddressRange>(&elements.front());
    if (first && !first->first.is_unspecified()) {
      IpAddress zero;
      zero.family = first->first.family;
      out.push_back(raw_address(zero, NFT_SET_ELEM_INTERVAL_END));
    }
  }
  for (const auto& e : elements) {
    std::visit(overloaded{
                   [&](const Endpoint& ep) {
                     RawElement r;
                     const std::size_t alen = ep.address.size();
                     std::memcpy(r.key.data(), ep.address.bytes.data(), alen);
                     r.key[alen] = static_cast<std::uint8_t>(ep.transport);  // inet_proto, padded to 4
                     r.key[alen + 4] = static_cast<std::uint8_t>(ep.port >> 8);  // inet_service, big endian
                     r.key[alen + 5] = static_cast<std::uint8_t>(ep.port & 0xff);
                     r.key_len = key_info(key).len;
                     out.push_back(r);
                   },
                   [&](const AddressRange& range) {
                     IpAddress end = range.last;
                     const bool has_end = increment(end);
                     RawElement start = raw_address(range.first, 0);
                     start.open_interval = interval && !has_end;
                     out.push_back(start);
                     if (interval && has_end) out.push_back(raw_address(end, NFT_SET_ELEM_INTERVAL_END));
                   },
                   [&](std::uint16_t port) {
                     RawElement r;
                     r.key[0] = static_cast<std::uint8_t>(port >> 8);
                     r.key[1] = static_cast<std::uint8_t>(port & 0xff);
                     r.key_len = 2;
                     out.push_back(r);
                   },
               },
               e);
  }
  return out;
}

std::size_t align4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

/// Bytes one element takes inside NFTA_SET_ELEM_LIST_ELEMENTS.
std::size_t encoded_size(const RawElement& r) {
  std::size_t n = 4;                     // NFTA_LIST_ELEM
  n += 4 + 4 + align4(r.key_len);        // NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }
  if (r.flags) n += 8;                   // NFTA_SET_ELEM_FLAGS
  if (r.open_interval) n += 4 + align4(6);  // NFTA_SET_ELEM_USERDATA
  return n;
}

// ---- batch building --------------------------------------------------------------------------

class Builder {
 public:
  explicit Builder(std::uint32_t first_seq) : seq_(first_seq) {
    batch_.bytes.reserve(16 * 1024);
    batch_.begin_seq = seq_;
    char* buf = reserve(NLMSG_HDRLEN + 64);
    commit(nftnl_batch_begin(buf, seq_));
  }

  /// Room for one message of at most `max` bytes at the end of the batch.
  char* reserve(std::size_t max) {
    start_ = batch_.bytes.size();
    batch_.bytes.resize(start_ + max);
    return reinterpret_cast<char*>(batch_.bytes.data() + start_);
  }
  std::uint32_t seq() const { return seq_; }
  /// Keeps the message just built; records it as a step when it is one.
  void commit(const nlmsghdr* nlh, std::string what = {}) {
    const std::size_t len = NLMSG_ALIGN(nlh->nlmsg_len);
    batch_.bytes.resize(start_ + len);
    batch_.largest_message = std::max(batch_.largest_message, static_cast<std::size_t>(nlh->nlmsg_len));
    if (!what.empty()) batch_.steps.push_back({nlh->nlmsg_seq, static_cast<std::uint16_t>(nlh->nlmsg_type & 0xff), std::move(what)});
    ++seq_;
  }
  nlmsghdr* header(char* buf, std::uint16_t type, std::uint16_t flags) {
    return nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, static_cast<std::uint16_t>(flags | NLM_F_ACK), seq_);
  }

  Batch finish() {
    char* buf = reserve(NLMSG_HDRLEN + 64);
    batch_.end_seq = seq_;
    commit(nftnl_batch_end(buf, seq_));
    return std::move(batch_);
  }

 private:
  Batch batch_;
  std::uint32_t seq_;
  std::size_t start_ = 0;
};

void add_table(Builder& b, std::string_view name, std::optional<std::uint32_t> flags, const char* why) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, std::string(name).c_str());
  if (flags) nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, *flags);
  char* buf = b.reserve(512);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_NEWTABLE, NLM_F_CREATE);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  b.commit(nlh, std::string(why) + " table inet " + std::string(name));
}

void delete_table(Builder& b, std::string_view name) {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, std::string(name).c_str());
  char* buf = b.reserve(512);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_DELTABLE, 0);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  b.commit(nlh, "delete table inet " + std::string(name));
}

SetPtr make_set(std::string_view table, const Set& s, std::uint32_t id) {
  SetPtr set(nftnl_set_alloc());
  const KeyInfo k = key_info(s.key);
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, std::string(table).c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, s.name.c_str());
  std::uint32_t flags = 0;
  if (s.interval) flags |= NFT_SET_INTERVAL;
  if (s.counting) flags |= NFT_SET_EVAL;  // "flags dynamic": the datapath adds elements
  nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, flags);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, k.type);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, k.len);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, id);
  if (s.counting) {
    nftnl_set_set_u32(set.get(), NFTNL_SET_DESC_SIZE, s.size);
    nftnl_set_add_expr(set.get(), nftnl_expr_alloc("counter"));  // each element gets a counter
  }
  auto u = set_udata(s.key);
  nftnl_set_set_data(set.get(), NFTNL_SET_USERDATA, u.data(), static_cast<std::uint32_t>(u.size()));
  return set;
}

/// NEWSETELEM/DELSETELEM messages for `elements`, each below kMaxElementBytesPerMessage.
void add_element_messages(Builder& b, std::string_view table, const std::string& set_name, std::uint32_t set_id,
                          const std::vector<RawElement>& elements, bool remove) {
  static const std::uint8_t open_udata[] = {kUdataElemFlags, 4, kElemIntervalOpen & 0xff, 0, 0, 0};
  std::size_t i = 0;
  while (i < elements.size()) {
    std::size_t bytes = 0;
    std::size_t j = i;
    while (j < elements.size() && bytes + encoded_size(elements[j]) <= kMaxElementBytesPerMessage) {
      bytes += encoded_size(elements[j]);
      ++j;
    }
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, std::string(table).c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set_name.c_str());
    if (set_id) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, set_id);
    for (std::size_t k = i; k < j; ++k) {
      nftnl_set_elem* e = nftnl_set_elem_alloc();
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, elements[k].key.data(), elements[k].key_len);
      if (elements[k].flags) nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, elements[k].flags);
      if (elements[k].open_interval) nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, open_udata, sizeof open_udata);
      nftnl_set_elem_add(s.get(), e);
    }
    char* buf = b.reserve(kMaxElementBytesPerMessage + 1024);
    nlmsghdr* nlh = b.header(buf, remove ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM, remove ? 0 : NLM_F_CREATE);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    b.commit(nlh, std::string(remove ? "delete " : "add ") + std::to_string(j - i) + " elements " + (remove ? "from" : "to") +
                      " set " + set_name + " (" + std::to_string(i) + ".." + std::to_string(j - 1) + ")");
    i = j;
  }
}

// ---- lowering rules to expressions -----------------------------------------------------------

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
                     cmp(NFT_CMP_EQ, name.data(), x.pattern.is_prefix() ? stem.size() : name.size());
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
    meta(NFT_META_L4PROTO, reg_for_slot(4));  // after the 16 bytes of the name
    nftnl_expr* e = nftnl_expr_alloc("dynset");
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
    nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, c.set.c_str());
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SET_ID, set_id(c.set));
    nftnl_rule_add_expr(r_, e);
  }

  void counter() { nftnl_rule_add_expr(r_, nftnl_expr_alloc("counter")); }

  void verdict(Verdict v) {
    switch (v) {
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

RulePtr make_rule(std::string_view table, const Chain& c, const Rule& rule, const std::vector<Set>& sets) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, std::string(table).c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, c.name.c_str());
  Lowering low(r.get(), sets);
  for (const auto& m : rule.matches) low.match(m);
  if (rule.count_per_interface) low.count_per_interface(*rule.count_per_interface);
  if (rule.counter) low.counter();
  low.verdict(rule.verdict);
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
  nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_HOOKNUM, hooknum(c.hook));
  nftnl_chain_set_s32(ch.get(), NFTNL_CHAIN_PRIO, c.priority);
  nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_POLICY, c.policy_drop ? NF_DROP : NF_ACCEPT);
  return ch;
}

// ---- canonical text of kernel objects (for comparing) ----------------------------------------

std::string hex(const void* data, std::uint32_t len) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::uint32_t i = 0; i < len; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 0xf];
  }
  return s;
}

std::uint32_t u32_or0(const nftnl_expr* e, std::uint16_t attr) { return nftnl_expr_is_set(e, attr) ? nftnl_expr_get_u32(e, attr) : 0; }
std::string str_or_empty(const nftnl_expr* e, std::uint16_t attr) {
  return nftnl_expr_is_set(e, attr) ? std::string(nftnl_expr_get_str(e, attr)) : std::string();
}
std::string data_hex(const nftnl_expr* e, std::uint16_t attr) {
  if (!nftnl_expr_is_set(e, attr)) return "-";
  std::uint32_t len = 0;
  const void* d = nftnl_expr_get(e, attr, &len);
  return hex(d, len);
}

/// One expression in a fixed text form. Only what decides the verdict is kept: counter values,
/// set ids, and the expressions the kernel clones into dynset are left out.
std::string canonical_expr(const nftnl_expr* e) {
  const std::string name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
  auto u = [&](std::uint16_t a) { return std::to_string(u32_or0(e, a)); };
  if (name == "meta") return "meta key " + u(NFTNL_EXPR_META_KEY) + " dreg " + u(NFTNL_EXPR_META_DREG) + " sreg " + u(NFTNL_EXPR_META_SREG);
  if (name == "cmp") return "cmp sreg " + u(NFTNL_EXPR_CMP_SREG) + " op " + u(NFTNL_EXPR_CMP_OP) + " " + data_hex(e, NFTNL_EXPR_CMP_DATA);
  if (name == "payload")
    return "payload base " + u(NFTNL_EXPR_PAYLOAD_BASE) + " off " + u(NFTNL_EXPR_PAYLOAD_OFFSET) + " len " +
           u(NFTNL_EXPR_PAYLOAD_LEN) + " dreg " + u(NFTNL_EXPR_PAYLOAD_DREG) + " sreg " + u(NFTNL_EXPR_PAYLOAD_SREG);
  if (name == "bitwise")
    return "bitwise sreg " + u(NFTNL_EXPR_BITWISE_SREG) + " dreg " + u(NFTNL_EXPR_BITWISE_DREG) + " op " +
           u(NFTNL_EXPR_BITWISE_OP) + " len " + u(NFTNL_EXPR_BITWISE_LEN) + " mask " + data_hex(e, NFTNL_EXPR_BITWISE_MASK) +
           " xor " + data_hex(e, NFTNL_EXPR_BITWISE_XOR);
  if (name == "lookup")
    return "lookup sreg " + u(NFTNL_EXPR_LOOKUP_SREG) + " set " + str_or_empty(e, NFTNL_EXPR_LOOKUP_SET) + " dreg " +
           u(NFTNL_EXPR_LOOKUP_DREG) + " flags " + u(NFTNL_EXPR_LOOKUP_FLAGS);
  if (name == "immediate") {
    std::string s = "immediate dreg " + u(NFTNL_EXPR_IMM_DREG);
    if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT)) s += " verdict " + std::to_string(static_cast<std::int32_t>(nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT)));
    if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_CHAIN)) s += " chain " + str_or_empty(e, NFTNL_EXPR_IMM_CHAIN);
    if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_DATA)) s += " data " + data_hex(e, NFTNL_EXPR_IMM_DATA);
    return s;
  }
  if (name == "counter") return "counter";
  if (name == "reject") {
    const std::uint32_t code = nftnl_expr_is_set(e, NFTNL_EXPR_REJECT_CODE) ? nftnl_expr_get_u8(e, NFTNL_EXPR_REJECT_CODE) : 0;
    return "reject type " + u(NFTNL_EXPR_REJECT_TYPE) + " code " + std::to_string(code);
  }
  if (name == "dynset")
    return "dynset op " + u(NFTNL_EXPR_DYNSET_OP) + " sreg_key " + u(NFTNL_EXPR_DYNSET_SREG_KEY) + " sreg_data " +
           u(NFTNL_EXPR_DYNSET_SREG_DATA) + " set " + str_or_empty(e, NFTNL_EXPR_DYNSET_SET_NAME) + " timeout " +
           std::to_string(nftnl_expr_is_set(e, NFTNL_EXPR_DYNSET_TIMEOUT) ? nftnl_expr_get_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT) : 0);
  // Anything else is not ours: print what libnftnl makes of it so the difference is visible.
  char buf[512];
  nftnl_expr_snprintf(buf, sizeof buf, e, NFTNL_OUTPUT_DEFAULT, 0);
  return name + " " + buf;
}

std::string rule_comment(const nftnl_rule* r) {
  if (!nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) return {};
  std::uint32_t len = 0;
  const auto* u = static_cast<const std::uint8_t*>(nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len));
  // TLVs: type, length, value (libnftnl udata).
  for (std::uint32_t i = 0; i + 2 <= len;) {
    const std::uint8_t type = u[i], l = u[i + 1];
    if (i + 2u + l > len) break;
    if (type == kUdataRuleComment && l > 0) return std::string(reinterpret_cast<const char*>(u + i + 2), strnlen(reinterpret_cast<const char*>(u + i + 2), l));
    i += 2u + l;
  }
  return {};
}

std::string canonical_rule(nftnl_rule* r) {
  std::string s;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) s += "[" + canonical_expr(e) + "]";
  nftnl_expr_iter_destroy(it);
  const std::string c = rule_comment(r);
  if (!c.empty()) s += " comment " + c;
  return s;
}

std::string element_text(const void* key, std::uint32_t len, std::uint32_t flags) {
  return hex(key, len) + "/" + std::to_string(flags & NFT_SET_ELEM_INTERVAL_END);
}

}  // namespace

const Batch::Step* Batch::step(std::uint32_t seq) const {
  for (const auto& s : steps)
    if (s.seq == seq) return &s;
  return nullptr;
}

namespace {

void add_set(Builder& b, std::string_view table, const Set& s, std::uint32_t id) {
  SetPtr set = make_set(table, s, id);
  char* buf = b.reserve(1024);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_NEWSET, NLM_F_CREATE);
  nftnl_set_nlmsg_build_payload(nlh, set.get());
  b.commit(nlh, "add set " + s.name);
}

void add_chain(Builder& b, std::string_view table, const Chain& c) {
  ChainPtr ch = make_chain(table, c);
  char* buf = b.reserve(1024);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
  nftnl_chain_nlmsg_build_payload(nlh, ch.get());
  b.commit(nlh, "add chain " + c.name);
}

void add_rules(Builder& b, const Ruleset& rs, const Chain& c) {
  for (std::size_t i = 0; i < c.rules.size(); ++i) {
    RulePtr r = make_rule(rs.table, c, c.rules[i], rs.sets);
    char* buf = b.reserve(4096);
    nlmsghdr* nlh = b.header(buf, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    nftnl_rule_nlmsg_build_payload(nlh, r.get());
    std::string what = "add rule " + std::to_string(i) + " to chain " + c.name;
    if (!c.rules[i].comment.empty()) what += " (" + c.rules[i].comment + ")";
    b.commit(nlh, what);
  }
}

/// DELRULE without a handle: every rule of `chain` (of the whole table if `chain` is empty).
void flush_rules(Builder& b, std::string_view table, const std::string& chain) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, std::string(table).c_str());
  if (!chain.empty()) nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
  char* buf = b.reserve(512);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_DELRULE, 0);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  b.commit(nlh, chain.empty() ? "flush every chain" : "flush chain " + chain);
}

/// DELSETELEM without elements: every element of the set.
void flush_set(Builder& b, std::string_view table, const std::string& set_name) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, std::string(table).c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set_name.c_str());
  char* buf = b.reserve(512);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_DELSETELEM, 0);
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  b.commit(nlh, "flush set " + set_name);
}

void add_deltas(Builder& b, std::string_view table, const std::vector<SetDelta>& deltas) {
  for (const auto& d : deltas)
    if (!d.remove.empty())
      add_element_messages(b, table, d.set, 0, raw_elements(d.key, d.interval, d.remove, d.becomes_empty), true);
  for (const auto& d : deltas)
    if (!d.add.empty()) add_element_messages(b, table, d.set, 0, raw_elements(d.key, d.interval, d.add, d.was_empty), false);
}

}  // namespace

Batch encode_recreate(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq) {
  Builder b(first_seq);
  add_table(b, rs.table, std::nullopt, "create (if missing)");
  delete_table(b, rs.table);
  add_table(b, rs.table, table_flags, "add");
  for (std::size_t i = 0; i < rs.sets.size(); ++i) {
    const Set& s = rs.sets[i];
    const std::uint32_t id = static_cast<std::uint32_t>(i + 1);
    add_set(b, rs.table, s, id);
    if (!s.elements.empty())
      add_element_messages(b, rs.table, s.name, id, raw_elements(s.key, s.interval, s.elements, true), false);
  }
  for (const auto& c : rs.chains) add_chain(b, rs.table, c);
  for (const auto& c : rs.chains) add_rules(b, rs, c);
  return b.finish();
}

Batch encode_update(const Ruleset& rs, const Change& change, std::uint32_t first_seq) {
  Builder b(first_seq);
  for (const auto& name : change.chains) flush_rules(b, rs.table, name);
  add_deltas(b, rs.table, change.deltas);
  for (const auto& c : rs.chains)
    if (std::find(change.chains.begin(), change.chains.end(), c.name) != change.chains.end()) add_rules(b, rs, c);
  return b.finish();
}

Batch encode_repair(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq, std::string_view also_remove) {
  Builder b(first_seq);
  if (!also_remove.empty()) {
    add_table(b, also_remove, std::nullopt, "create (if missing)");
    delete_table(b, also_remove);
  }
  add_table(b, rs.table, table_flags, "create or keep");
  for (std::size_t i = 0; i < rs.sets.size(); ++i) add_set(b, rs.table, rs.sets[i], static_cast<std::uint32_t>(i + 1));
  for (const auto& c : rs.chains) add_chain(b, rs.table, c);
  flush_rules(b, rs.table, "");
  for (std::size_t i = 0; i < rs.sets.size(); ++i) {
    const Set& s = rs.sets[i];
    if (s.counting) continue;  // the datapath's counts stay
    flush_set(b, rs.table, s.name);
    if (!s.elements.empty())
      add_element_messages(b, rs.table, s.name, static_cast<std::uint32_t>(i + 1), raw_elements(s.key, s.interval, s.elements, true),
                           false);
  }
  for (const auto& c : rs.chains) add_rules(b, rs, c);
  return b.finish();
}

Batch encode_remove(std::string_view table, std::uint32_t first_seq) {
  Builder b(first_seq);
  add_table(b, table, std::nullopt, "create (if missing)");
  delete_table(b, table);
  return b.finish();
}

Batch encode_set_deltas(std::string_view table, const std::vector<SetDelta>& deltas, std::uint32_t first_seq) {
  Builder b(first_seq);
  add_deltas(b, table, deltas);
  return b.finish();
}

Batch encode_probe(std::string_view scratch_table, std::uint32_t table_flags, std::uint32_t first_seq) {
  Builder b(first_seq);
  add_table(b, scratch_table, table_flags, "add (probe)");
  delete_table(b, scratch_table);
  return b.finish();
}

// ---- snapshots -------------------------------------------------------------------------------

TableSnapshot expected_snapshot(const Ruleset& rs) {
  TableSnapshot s;
  s.present = true;
  for (const auto& c : rs.chains) {
    TableSnapshot::ChainState cs{c.name, "filter", hooknum(c.hook), c.priority,
                                 static_cast<std::uint32_t>(c.policy_drop ? NF_DROP : NF_ACCEPT), canonical_rules(c, rs)};
    s.chains.push_back(std::move(cs));
  }
  for (const auto& set : rs.sets) {
    const KeyInfo k = key_info(set.key);
    TableSnapshot::SetState ss{set.name, k.type, k.len,
                               static_cast<std::uint32_t>((set.interval ? NFT_SET_INTERVAL : 0) | (set.counting ? NFT_SET_EVAL : 0)),
                               {}};
    if (!set.counting)
      for (const auto& r : raw_elements(set.key, set.interval, set.elements, true))
        ss.elements.push_back(element_text(r.key.data(), r.key_len, r.flags));
    s.sets.push_back(std::move(ss));
  }
  normalize(s);
  return s;
}

std::vector<std::string> canonical_rules(const Chain& c, const Ruleset& rs) {
  std::vector<std::string> out;
  for (const auto& rule : c.rules) {
    RulePtr r = make_rule(rs.table, c, rule, rs.sets);
    out.push_back(canonical_rule(r.get()));
  }
  return out;
}

void normalize(TableSnapshot& s) {
  std::sort(s.chains.begin(), s.chains.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(s.sets.begin(), s.sets.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (auto& set : s.sets) std::sort(set.elements.begin(), set.elements.end());
}

std::vector<std::string> compare(const TableSnapshot& expected, const TableSnapshot& actual) {
  std::vector<std::string> diff;
  if (!actual.present) return {"table is missing"};
  for (const auto& ec : expected.chains) {
    auto it = std::find_if(actual.chains.begin(), actual.chains.end(), [&](const auto& c) { return c.name == ec.name; });
    if (it == actual.chains.end()) {
      diff.push_back("chain " + ec.name + " is missing");
      continue;
    }
    if (it->type != ec.type || it->hook != ec.hook || it->priority != ec.priority)
      diff.push_back("chain " + ec.name + " has another type, hook or priority");
    if (it->policy != ec.policy) diff.push_back("chain " + ec.name + " has another policy");
    const std::size_t n = std::min(ec.rules.size(), it->rules.size());
    std::size_t first = n, differing = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (ec.rules[i] != it->rules[i]) {
        if (first == n) first = i;
        ++differing;
      }
    // One line per chain: an inserted rule shifts all that follow, listing each says nothing more.
    if (differing)
      diff.push_back("rule " + std::to_string(first) + " of chain " + ec.name + " differs" +
                     (differing > 1 ? " (and " + std::to_string(differing - 1) + " after it)" : ""));
    if (it->rules.size() > ec.rules.size())
      diff.push_back(std::to_string(it->rules.size() - ec.rules.size()) + " rule(s) added to chain " + ec.name);
    if (it->rules.size() < ec.rules.size())
      diff.push_back(std::to_string(ec.rules.size() - it->rules.size()) + " rule(s) missing from chain " + ec.name);
  }
  for (const auto& ac : actual.chains)
    if (std::none_of(expected.chains.begin(), expected.chains.end(), [&](const auto& c) { return c.name == ac.name; }))
      diff.push_back("chain " + ac.name + " was added");
  for (const auto& es : expected.sets) {
    auto it = std::find_if(actual.sets.begin(), actual.sets.end(), [&](const auto& s) { return s.name == es.name; });
    if (it == actual.sets.end()) {
      diff.push_back("set " + es.name + " is missing");
      continue;
    }
    if (it->key_type != es.key_type || it->key_len != es.key_len || it->flags != es.flags)
      diff.push_back("set " + es.name + " has another key or flags");
    if (it->elements != es.elements) diff.push_back("elements of set " + es.name + " differ");
  }
  for (const auto& as : actual.sets)
    if (std::none_of(expected.sets.begin(), expected.sets.end(), [&](const auto& s) { return s.name == as.name; }))
      diff.push_back("set " + as.name + " was added");
  return diff;
}

std::vector<std::string> conflicts(const TableSnapshot& expected, const TableSnapshot& actual, std::uint32_t table_flags) {
  std::vector<std::string> out;
  if (!actual.present) return out;
  const bool want_owner = (table_flags & kTableOwner) != 0;
  // The kernel adopts an orphan (flags persist, owner gone) and keeps our own table; a table
  // without persist cannot be given an owner, nor can persist be taken from one.
  if (want_owner && !(actual.flags & kTablePersist)) out.push_back("table has no persist flag: it cannot be given an owner");
  if (!want_owner && (actual.flags & kTablePersist)) out.push_back("table has the persist flag, which cannot be cleared");
  for (const auto& ac : actual.chains) {
    auto it = std::find_if(expected.chains.begin(), expected.chains.end(), [&](const auto& c) { return c.name == ac.name; });
    if (it == expected.chains.end()) out.push_back("chain " + ac.name + " is not ours");
    else if (ac.type != it->type || ac.hook != it->hook || ac.priority != it->priority)
      out.push_back("chain " + ac.name + " has another type, hook or priority");
  }
  for (const auto& as : actual.sets) {
    auto it = std::find_if(expected.sets.begin(), expected.sets.end(), [&](const auto& s) { return s.name == as.name; });
    if (it == expected.sets.end()) out.push_back("set " + as.name + " is not ours");
    else if (as.key_type != it->key_type || as.key_len != it->key_len || as.flags != it->flags)
      out.push_back("set " + as.name + " has another key or flags");
  }
  return out;
}

// ---- requests --------------------------------------------------------------------------------

namespace {
std::vector<std::uint8_t> one_message(std::uint16_t type, std::uint16_t flags, std::uint32_t seq,
                                      const std::function<void(nlmsghdr*)>& payload) {
  std::vector<std::uint8_t> buf(4096);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(reinterpret_cast<char*>(buf.data()), type, NFPROTO_INET, flags, seq);
  payload(nlh);
  buf.resize(nlh->nlmsg_len);
  return buf;
}
}  // namespace

std::vector<std::uint8_t> request_get_table(std::string_view table, std::uint32_t seq) {
  return one_message(NFT_MSG_GETTABLE, NLM_F_ACK, seq, [&](nlmsghdr* nlh) {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, std::string(table).c_str());
    nftnl_table_nlmsg_build_payload(nlh, t.get());
  });
}

std::vector<std::uint8_t> request_dump_chains(std::string_view table, std::uint32_t seq) {
  return one_message(NFT_MSG_GETCHAIN, NLM_F_DUMP, seq, [&](nlmsghdr* nlh) {
    ChainPtr c(nftnl_chain_alloc());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, std::string(table).c_str());
    nftnl_chain_nlmsg_build_payload(nlh, c.get());
  });
}

std::vector<std::uint8_t> request_dump_sets(std::string_view table, std::uint32_t seq) {
  return one_message(NFT_MSG_GETSET, NLM_F_DUMP, seq, [&](nlmsghdr* nlh) {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, std::string(table).c_str());
    nftnl_set_nlmsg_build_payload(nlh, s.get());
  });
}

std::vector<std::uint8_t> request_dump_rules(std::string_view table, std::uint32_t seq) {
  return one_message(NFT_MSG_GETRULE, NLM_F_DUMP, seq, [&](nlmsghdr* nlh) {
    RulePtr r(nftnl_rule_alloc());
    nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, std::string(table).c_str());
    nftnl_rule_nlmsg_build_payload(nlh, r.get());
  });
}

std::vector<std::uint8_t> request_dump_elements(std::string_view table, std::string_view set, std::uint32_t seq) {
  return one_message(NFT_MSG_GETSETELEM, NLM_F_DUMP, seq, [&](nlmsghdr* nlh) {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, std::string(table).c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, std::string(set).c_str());
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  });
}

// ---- parsing ---------------------------------------------------------------------------------

namespace {
std::uint8_t family_of(const nlmsghdr* nlh) {
  const auto* g = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  return g->nfgen_family;
}
}  // namespace

Result<void> parse_table(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out) {
  if (family_of(nlh) != NFPROTO_INET) return {};
  TablePtr t(nftnl_table_alloc());
  if (nftnl_table_nlmsg_parse(nlh, t.get()) < 0) return fail("parse table", "malformed NEWTABLE message");
  if (table != nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME)) return {};
  out.present = true;
  out.flags = nftnl_table_is_set(t.get(), NFTNL_TABLE_FLAGS) ? nftnl_table_get_u32(t.get(), NFTNL_TABLE_FLAGS) : 0;
  out.owner = nftnl_table_is_set(t.get(), NFTNL_TABLE_OWNER) ? nftnl_table_get_u32(t.get(), NFTNL_TABLE_OWNER) : 0;
  return {};
}

Result<void> parse_chain(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out) {
  if (family_of(nlh) != NFPROTO_INET) return {};
  ChainPtr c(nftnl_chain_alloc());
  if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return fail("parse chain", "malformed NEWCHAIN message");
  if (table != nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) return {};
  TableSnapshot::ChainState cs;
  cs.name = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME);
  if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_TYPE)) cs.type = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE);
  if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM)) cs.hook = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM);
  if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_PRIO)) cs.priority = nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO);
  if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_POLICY)) cs.policy = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY);
  // Rules may have been dumped first; keep them.
  for (auto& existing : out.chains)
    if (existing.name == cs.name) {
      cs.rules = std::move(existing.rules);
      existing = std::move(cs);
      return {};
    }
  out.chains.push_back(std::move(cs));
  return {};
}

Result<void> parse_rule(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out, std::vector<RuleCounter>* counters) {
  if (family_of(nlh) != NFPROTO_INET) return {};
  RulePtr r(nftnl_rule_alloc());
  if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return fail("parse rule", "malformed NEWRULE message");
  if (table != nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE)) return {};
  const std::string chain = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
  auto it = std::find_if(out.chains.begin(), out.chains.end(), [&](const auto& c) { return c.name == chain; });
  if (it == out.chains.end()) {
    out.chains.push_back(TableSnapshot::ChainState{chain, "", 0, 0, 0, {}});
    it = out.chains.end() - 1;
  }
  it->rules.push_back(canonical_rule(r.get()));
  if (counters) {
    const std::string tag = rule_comment(r.get());
    nftnl_expr_iter* iter = nftnl_expr_iter_create(r.get());
    for (nftnl_expr* e = nftnl_expr_iter_next(iter); e; e = nftnl_expr_iter_next(iter)) {
      if (std::string_view(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) != "counter") continue;
      counters->push_back(RuleCounter{chain, tag, nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS),
                                      nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES)});
    }
    nftnl_expr_iter_destroy(iter);
  }
  return {};
}

Result<void> parse_set(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out) {
  if (family_of(nlh) != NFPROTO_INET) return {};
  SetPtr s(nftnl_set_alloc());
  if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return fail("parse set", "malformed NEWSET message");
  if (table != nftnl_set_get_str(s.get(), NFTNL_SET_TABLE)) return {};
  TableSnapshot::SetState ss;
  ss.name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
  ss.key_type = nftnl_set_is_set(s.get(), NFTNL_SET_KEY_TYPE) ? nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_TYPE) : 0;
  ss.key_len = nftnl_set_is_set(s.get(), NFTNL_SET_KEY_LEN) ? nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_LEN) : 0;
  ss.flags = nftnl_set_is_set(s.get(), NFTNL_SET_FLAGS) ? nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS) : 0;
  out.sets.push_back(std::move(ss));
  return {};
}

namespace {

template <std::size_t N>
using Attrs = std::array<const nlattr*, N>;

template <std::size_t N>
int collect_cb(const nlattr* a, void* data) {
  auto* tb = static_cast<Attrs<N>*>(data);
  const auto type = mnl_attr_get_type(a);
  if (type < N) (*tb)[type] = a;
  return MNL_CB_OK;
}

template <std::size_t N>
Attrs<N> nested(const nlattr* nest) {
  Attrs<N> tb{};
  mnl_attr_parse_nested(nest, collect_cb<N>, &tb);
  return tb;
}

std::uint64_t be64(const nlattr* a) {
  std::uint64_t v = mnl_attr_get_u64(a);
  return be64toh(v);
}

/// Packets and bytes of a counter expression nest (NFTA_EXPR_NAME "counter", NFTA_EXPR_DATA).
bool read_counter(const nlattr* expr, std::uint64_t& packets, std::uint64_t& bytes) {
  auto tb = nested<NFTA_EXPR_MAX + 1>(expr);
  if (!tb[NFTA_EXPR_NAME] || !tb[NFTA_EXPR_DATA]) return false;
  if (std::string_view(mnl_attr_get_str(tb[NFTA_EXPR_NAME])) != "counter") return false;
  auto data = nested<NFTA_COUNTER_MAX + 1>(tb[NFTA_EXPR_DATA]);
  if (data[NFTA_COUNTER_PACKETS]) packets = be64(data[NFTA_COUNTER_PACKETS]);
  if (data[NFTA_COUNTER_BYTES]) bytes = be64(data[NFTA_COUNTER_BYTES]);
  return true;
}

struct ElementCtx {
  TableSnapshot::SetState* set;
  std::string set_name;
  std::vector<InterfaceCounter>* counters;
  bool counting;
};

int element_cb(const nlattr* a, void* data) {
  auto* ctx = static_cast<ElementCtx*>(data);
  // No check of the nest's type: the kernel numbers list items NFTA_LIST_ELEM, but libnftnl
  // 1.2.4 (and so nft) numbers them 1, 2, 3, ... and the kernel accepts either.
  auto tb = nested<NFTA_SET_ELEM_MAX + 1>(a);
  if (!tb[NFTA_SET_ELEM_KEY]) return MNL_CB_OK;
  auto key = nested<NFTA_DATA_MAX + 1>(tb[NFTA_SET_ELEM_KEY]);
  if (!key[NFTA_DATA_VALUE]) return MNL_CB_OK;
  const void* kp = mnl_attr_get_payload(key[NFTA_DATA_VALUE]);
  const auto klen = static_cast<std::uint32_t>(mnl_attr_get_payload_len(key[NFTA_DATA_VALUE]));
  const std::uint32_t flags = tb[NFTA_SET_ELEM_FLAGS] ? ntohl(mnl_attr_get_u32(tb[NFTA_SET_ELEM_FLAGS])) : 0;
  if (!ctx->counting) {
    if (ctx->set) ctx->set->elements.push_back(element_text(kp, klen, flags));
    return MNL_CB_OK;
  }
  if (!ctx->counters || klen < 17) return MNL_CB_OK;
  InterfaceCounter c;
  c.set = ctx->set_name;
  const auto* k = static_cast<const char*>(kp);
  c.ifname = std::string(k, strnlen(k, 16));
  c.proto = static_cast<std::uint8_t>(k[16]);
  bool found = false;
  if (tb[NFTA_SET_ELEM_EXPR]) found = read_counter(tb[NFTA_SET_ELEM_EXPR], c.packets, c.bytes);
  if (!found && tb[NFTA_SET_ELEM_EXPRESSIONS]) {
    // A list of NFTA_LIST_ELEM expression nests (several expressions per element).
    mnl_attr_parse_nested(
        tb[NFTA_SET_ELEM_EXPRESSIONS],
        [](const nlattr* item, void* d) -> int {
          auto* cnt = static_cast<InterfaceCounter*>(d);
          return read_counter(item, cnt->packets, cnt->bytes) ? MNL_CB_STOP : MNL_CB_OK;
        },
        &c);
  }
  ctx->counters->push_back(std::move(c));
  return MNL_CB_OK;
}

}  // namespace

Result<void> parse_elements(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out,
                            std::vector<InterfaceCounter>* counters) {
  if (family_of(nlh) != NFPROTO_INET) return {};
  Attrs<NFTA_SET_ELEM_LIST_MAX + 1> tb{};
  if (mnl_attr_parse(nlh, sizeof(nfgenmsg), collect_cb<NFTA_SET_ELEM_LIST_MAX + 1>, &tb) < 0)
    return fail("parse set elements", "malformed NEWSETELEM message");
  if (!tb[NFTA_SET_ELEM_LIST_TABLE] || !tb[NFTA_SET_ELEM_LIST_SET]) return fail("parse set elements", "no table or set name");
  if (table != mnl_attr_get_str(tb[NFTA_SET_ELEM_LIST_TABLE])) return {};
  const std::string name = mnl_attr_get_str(tb[NFTA_SET_ELEM_LIST_SET]);
  auto it = std::find_if(out.sets.begin(), out.sets.end(), [&](const auto& s) { return s.name == name; });
  ElementCtx ctx{it == out.sets.end() ? nullptr : &*it, name, counters,
                 it != out.sets.end() && (it->flags & NFT_SET_EVAL) != 0};
  if (tb[NFTA_SET_ELEM_LIST_ELEMENTS]) mnl_attr_parse_nested(tb[NFTA_SET_ELEM_LIST_ELEMENTS], element_cb, &ctx);
  return {};
}

void for_each_message(const std::uint8_t* data, std::size_t len, const std::function<void(const nlmsghdr*)>& f) {
  int remaining = static_cast<int>(len);
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(data);
  while (mnl_nlmsg_ok(nlh, remaining)) {
    f(nlh);
    nlh = mnl_nlmsg_next(nlh, &remaining);
  }
}

}  // namespace leakguard::firewall::nft
