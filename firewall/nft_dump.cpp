#include "firewall/nft_dump.hpp"

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

#include "firewall/nft_objects.hpp"
#include "firewall/ruleset_nft.hpp"

namespace leakguard::firewall::nft {

namespace {

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
  if (name == "ct")
    return "ct key " + u(NFTNL_EXPR_CT_KEY) + " dreg " + u(NFTNL_EXPR_CT_DREG) +
           (nftnl_expr_is_set(e, NFTNL_EXPR_CT_DIR) ? " dir " + std::to_string(nftnl_expr_get_u8(e, NFTNL_EXPR_CT_DIR)) : "");
  if (name == "counter") return "counter";
  if (name == "socket")
    return "socket key " + u(NFTNL_EXPR_SOCKET_KEY) + " dreg " + u(NFTNL_EXPR_SOCKET_DREG) + " level " + u(NFTNL_EXPR_SOCKET_LEVEL);
  if (name == "limit")
    return "limit rate " + std::to_string(nftnl_expr_is_set(e, NFTNL_EXPR_LIMIT_RATE) ? nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_RATE) : 0) +
           " unit " + std::to_string(nftnl_expr_is_set(e, NFTNL_EXPR_LIMIT_UNIT) ? nftnl_expr_get_u64(e, NFTNL_EXPR_LIMIT_UNIT) : 0) +
           " burst " + u(NFTNL_EXPR_LIMIT_BURST) + " type " + u(NFTNL_EXPR_LIMIT_TYPE) + " flags " + u(NFTNL_EXPR_LIMIT_FLAGS);
  if (name == "log")
    return "log group " + std::to_string(nftnl_expr_is_set(e, NFTNL_EXPR_LOG_GROUP) ? nftnl_expr_get_u16(e, NFTNL_EXPR_LOG_GROUP) : 0) +
           " prefix " + str_or_empty(e, NFTNL_EXPR_LOG_PREFIX);
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

// ---- snapshots -------------------------------------------------------------------------------

namespace {

TableSnapshot snapshot_of(const Ruleset& rs, bool contents) {
  TableSnapshot s;
  s.present = true;
  for (const auto& c : rs.chains) {
    std::vector<std::string> rules = contents ? canonical_rules(c, rs) : std::vector<std::string>{};
    TableSnapshot::ChainState cs = c.base ? TableSnapshot::ChainState{c.name, "filter", hooknum(c.hook), c.priority,
                                                                      static_cast<std::uint32_t>(c.policy_drop ? NF_DROP : NF_ACCEPT),
                                                                      std::move(rules)}
                                          : TableSnapshot::ChainState{c.name, "", 0, 0, 0, std::move(rules)};
    s.chains.push_back(std::move(cs));
  }
  for (const auto& set : rs.sets) {
    const KeyInfo k = key_info(set.key);
    TableSnapshot::SetState ss{set.name, k.type, k.len,
                               static_cast<std::uint32_t>((set.interval ? NFT_SET_INTERVAL : 0) | (set.datapath_filled() ? NFT_SET_EVAL : 0) |
                                                          (set.timeout_s ? NFT_SET_TIMEOUT : 0)),
                               {}};
    if (contents && !set.datapath_filled())
      for_each_raw_element(set.key, set.interval, set.elements, true,
                           [&](const RawElement& r) { ss.elements.push_back(element_text(r.key.data(), r.key_len, r.flags)); });
    s.sets.push_back(std::move(ss));
  }
  normalize(s);
  return s;
}

}  // namespace

TableSnapshot expected_snapshot(const Ruleset& rs) { return snapshot_of(rs, true); }

TableSnapshot expected_declarations(const Ruleset& rs) { return snapshot_of(rs, false); }

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
  if (!ctx->counters || klen < 24) return MNL_CB_OK;
  InterfaceCounter c;
  c.set = ctx->set_name;
  const auto* k = static_cast<const char*>(kp);
  c.ifname = std::string(k, strnlen(k, 16));
  c.nfproto = static_cast<std::uint8_t>(k[16]);  // NFPROTO_IPV4 2, NFPROTO_IPV6 10
  c.proto = static_cast<std::uint8_t>(k[20]);
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
                 it != out.sets.end() && (it->flags & NFT_SET_EVAL) != 0 && (it->flags & NFT_SET_TIMEOUT) == 0};
  if (tb[NFTA_SET_ELEM_LIST_ELEMENTS]) mnl_attr_parse_nested(tb[NFTA_SET_ELEM_LIST_ELEMENTS], element_cb, &ctx);
  return {};
}

Result<void> parse_sender_elements(const nlmsghdr* nlh, std::string_view table, std::vector<SenderRecord>& out) {
  if (family_of(nlh) != NFPROTO_INET) return {};
  Attrs<NFTA_SET_ELEM_LIST_MAX + 1> tb{};
  if (mnl_attr_parse(nlh, sizeof(nfgenmsg), collect_cb<NFTA_SET_ELEM_LIST_MAX + 1>, &tb) < 0)
    return fail("parse set elements", "malformed NEWSETELEM message");
  if (!tb[NFTA_SET_ELEM_LIST_TABLE] || table != mnl_attr_get_str(tb[NFTA_SET_ELEM_LIST_TABLE])) return {};
  if (!tb[NFTA_SET_ELEM_LIST_ELEMENTS]) return {};
  mnl_attr_parse_nested(
      tb[NFTA_SET_ELEM_LIST_ELEMENTS],
      [](const nlattr* a, void* data) -> int {
        auto el = nested<NFTA_SET_ELEM_MAX + 1>(a);
        if (!el[NFTA_SET_ELEM_KEY]) return MNL_CB_OK;
        auto key = nested<NFTA_DATA_MAX + 1>(el[NFTA_SET_ELEM_KEY]);
        if (!key[NFTA_DATA_VALUE]) return MNL_CB_OK;
        auto r = parse_sender_key(static_cast<const std::uint8_t*>(mnl_attr_get_payload(key[NFTA_DATA_VALUE])),
                                  mnl_attr_get_payload_len(key[NFTA_DATA_VALUE]));
        if (r) static_cast<std::vector<SenderRecord>*>(data)->push_back(*r);
        return MNL_CB_OK;
      },
      &out);
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
