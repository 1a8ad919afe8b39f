#include "firewall/ruleset_nft.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <algorithm>
#include <cstring>

#include "firewall/nft_objects.hpp"

namespace leakguard::firewall::nft {

namespace {

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

  /// Room for one message of at most `max` bytes at the end of the batch, cleared: libmnl 1.0.4
  /// leaves an attribute's padding as it finds it, and the messages must not depend on what the
  /// buffer held before (the rule memo copies them; tests compare them byte for byte).
  char* reserve(std::size_t max) {
    start_ = batch_.bytes.size();
    batch_.bytes.resize(start_ + max);  // the new bytes value-initialized: zero
    return reinterpret_cast<char*>(batch_.bytes.data() + start_);
  }
  std::uint32_t seq() const { return seq_; }
  /// Room for `bytes` more at the end of the batch, made at once (10,000 elements are ~400 KB,
  /// which the vector would otherwise reach by doubling, copying what it holds each time).
  void expect(std::size_t bytes) { batch_.bytes.reserve(batch_.bytes.size() + bytes); }
  /// Keeps the message just built; records it as a step when it is one.
  void commit(const nlmsghdr* nlh, std::string what = {}) {
    batch_.bytes.resize(start_ + NLMSG_ALIGN(nlh->nlmsg_len));
    batch_.largest_message = std::max(batch_.largest_message, static_cast<std::size_t>(nlh->nlmsg_len));
    if (!what.empty()) batch_.steps.push_back({nlh->nlmsg_seq, static_cast<std::uint16_t>(nlh->nlmsg_type & 0xff), std::move(what), -1, {}});
    ++seq_;
  }
  /// commit() of rule `index` of `chain`.
  void commit_rule(const nlmsghdr* nlh, const std::string& chain, std::size_t index, const std::string& comment) {
    commit(nlh, chain);
    batch_.steps.back().rule = static_cast<std::int32_t>(index);
    batch_.steps.back().comment = comment;
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

/// NEWSETELEM/DELSETELEM messages for a set's elements, each below kMaxElementBytesPerMessage,
/// written as the elements come (for_each_raw_element). Attribute by attribute, in libnftnl's
/// layout (nftnl_set_elems_nlmsg_build_payload: set name, set id, table, then the list, each
/// element a nest numbered from 1 holding flags, key, user data): the same bytes without an
/// object per element, which the 10,000 elements of a large install paid for in allocations and
/// fresh heap pages (`unit/firewall_encoder_test/element messages ...` compares both byte for byte).
class ElementMessages {
 public:
  ElementMessages(Builder& b, std::string_view table, const std::string& set, std::uint32_t set_id, bool remove)
      : b_(b), table_(table), set_(set), set_id_(set_id), remove_(remove) {}

  void add(const RawElement& e) {
    static const std::uint8_t open_udata[] = {kUdataElemFlags, 4, kElemIntervalOpen & 0xff, 0, 0, 0};
    const std::size_t size = encoded_size(e);
    if (nlh_ && bytes_ + size > kMaxElementBytesPerMessage) finish();
    if (!nlh_) start();
    nlattr* element = mnl_attr_nest_start(nlh_, static_cast<std::uint16_t>(count_ + 1));
    if (e.flags) mnl_attr_put_u32(nlh_, NFTA_SET_ELEM_FLAGS, htonl(e.flags));
    nlattr* key = mnl_attr_nest_start(nlh_, NFTA_SET_ELEM_KEY);
    mnl_attr_put(nlh_, NFTA_DATA_VALUE, e.key_len, e.key.data());
    mnl_attr_nest_end(nlh_, key);
    if (e.open_interval) mnl_attr_put(nlh_, NFTA_SET_ELEM_USERDATA, sizeof open_udata, open_udata);
    mnl_attr_nest_end(nlh_, element);
    bytes_ += size;
    ++count_;
  }

  /// Commits the message being written, if any.
  void finish() {
    if (!nlh_) return;
    mnl_attr_nest_end(nlh_, list_);
    b_.commit(nlh_, std::string(remove_ ? "delete " : "add ") + std::to_string(count_) + " elements " + (remove_ ? "from" : "to") +
                        " set " + set_ + " (" + std::to_string(first_) + ".." + std::to_string(first_ + count_ - 1) + ")");
    first_ += count_;
    nlh_ = nullptr;
  }

 private:
  void start() {
    char* buf = b_.reserve(kMaxElementBytesPerMessage + 1024);
    nlh_ = b_.header(buf, remove_ ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM, remove_ ? 0 : NLM_F_CREATE);
    mnl_attr_put_strz(nlh_, NFTA_SET_ELEM_LIST_SET, set_.c_str());
    if (set_id_) mnl_attr_put_u32(nlh_, NFTA_SET_ELEM_LIST_SET_ID, htonl(set_id_));
    mnl_attr_put_strz(nlh_, NFTA_SET_ELEM_LIST_TABLE, table_.c_str());
    list_ = mnl_attr_nest_start(nlh_, NFTA_SET_ELEM_LIST_ELEMENTS);
    bytes_ = 0;
    count_ = 0;
  }

  Builder& b_;
  std::string table_;
  const std::string& set_;
  std::uint32_t set_id_;
  bool remove_;
  nlmsghdr* nlh_ = nullptr;
  nlattr* list_ = nullptr;
  std::size_t bytes_ = 0, count_ = 0, first_ = 0;
};

void add_element_messages(Builder& b, std::string_view table, const std::string& set_name, std::uint32_t set_id, KeyType key,
                          bool interval, const std::vector<Element>& elements, bool with_zero_end, bool remove) {
  if (elements.empty()) return;
  b.expect(elements.size() * (interval ? 2 : 1) * 48 + kMaxElementBytesPerMessage + 1024);
  ElementMessages m(b, table, set_name, set_id, remove);
  for_each_raw_element(key, interval, elements, with_zero_end, [&](const RawElement& e) { m.add(e); });
  m.finish();
}

}  // namespace

std::string Batch::Step::what() const {
  if (rule < 0) return text;
  std::string s = "add rule " + std::to_string(rule) + " to chain " + text;
  if (!comment.empty()) s += " (" + comment + ")";
  return s;
}

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

/// The memo, emptied if it was made for another table or another order of sets.
RuleMemo* memo_for(RuleMemo* memo, const Ruleset& rs) {
  if (!memo) return nullptr;
  const bool same_sets = memo->sets.size() == rs.sets.size() &&
                         std::equal(rs.sets.begin(), rs.sets.end(), memo->sets.begin(), [](const Set& s, const std::string& n) { return s.name == n; });
  if (memo->table != rs.table || !same_sets) {
    memo->chains.clear();
    memo->table = rs.table;
    memo->sets.clear();
    for (const auto& s : rs.sets) memo->sets.push_back(s.name);
  }
  return memo;
}

/// Takes the first entry at or after `cursor` whose rule is `rule` (its message moves out), or
/// returns false. A chain's rules keep their order: entries taken lie behind the cursor.
bool take(std::vector<RuleMemo::Entry>& from, std::size_t& cursor, const Rule& rule, std::vector<RuleMemo::Entry>& into) {
  for (std::size_t k = cursor; k < from.size(); ++k)
    if (!from[k].message.empty() && from[k].rule == rule) {
      into.push_back(std::move(from[k]));
      from[k].message.clear();  // moved from: taken
      cursor = k + 1;
      return true;
    }
  return false;
}

void add_rules(Builder& b, const Ruleset& rs, const Chain& c, RuleMemo* memo) {
  // With a memo: each rule is looked for among the chain's rules last encoded, then among the
  // older ones (a change undone), each searched in order from just after its last hit.
  RuleMemo::Generations* gen = memo ? &memo->chains[c.name] : nullptr;
  std::vector<RuleMemo::Entry> now;
  if (memo) now.reserve(c.rules.size());
  std::size_t cursor_last = 0, cursor_older = 0;
  for (std::size_t i = 0; i < c.rules.size(); ++i) {
    const Rule& rule = c.rules[i];
    nlmsghdr* nlh;
    if (gen && (take(gen->last, cursor_last, rule, now) || take(gen->older, cursor_older, rule, now))) {
      const auto& message = now.back().message;
      char* buf = b.reserve(message.size());
      std::memcpy(buf, message.data(), message.size());
      nlh = reinterpret_cast<nlmsghdr*>(buf);
      nlh->nlmsg_seq = b.seq();
      ++memo->reused;
    } else {
      RulePtr r = make_rule(rs.table, c, rule, rs.sets);
      char* buf = b.reserve(4096);
      nlh = b.header(buf, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
      nftnl_rule_nlmsg_build_payload(nlh, r.get());
      if (memo) {
        const auto* bytes = reinterpret_cast<const std::uint8_t*>(nlh);
        now.push_back({rule, std::vector<std::uint8_t>(bytes, bytes + nlh->nlmsg_len)});
      }
    }
    b.commit_rule(nlh, c.name, i, rule.comment);
  }
  if (!gen) return;
  // What the last encoding held and this one did not need becomes the older generation.
  std::vector<RuleMemo::Entry> older;
  for (auto& e : gen->last)
    if (!e.message.empty()) older.push_back(std::move(e));
  gen->older = std::move(older);
  gen->last = std::move(now);
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
      add_element_messages(b, table, d.set, 0, d.key, d.interval, d.remove, d.becomes_empty, true);
  for (const auto& d : deltas)
    if (!d.add.empty()) add_element_messages(b, table, d.set, 0, d.key, d.interval, d.add, d.was_empty, false);
}

}  // namespace

Batch encode_recreate(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq, RuleMemo* memo) {
  memo = memo_for(memo, rs);
  Builder b(first_seq);
  add_table(b, rs.table, std::nullopt, "create (if missing)");
  delete_table(b, rs.table);
  add_table(b, rs.table, table_flags, "add");
  for (std::size_t i = 0; i < rs.sets.size(); ++i) {
    const Set& s = rs.sets[i];
    const std::uint32_t id = static_cast<std::uint32_t>(i + 1);
    add_set(b, rs.table, s, id);
    if (!s.elements.empty())
      add_element_messages(b, rs.table, s.name, id, s.key, s.interval, s.elements, true, false);
  }
  for (const auto& c : rs.chains) add_chain(b, rs.table, c);
  for (const auto& c : rs.chains) add_rules(b, rs, c, memo);
  return b.finish();
}

Batch encode_update(const Ruleset& rs, const Change& change, std::uint32_t first_seq, RuleMemo* memo) {
  memo = memo_for(memo, rs);
  Builder b(first_seq);
  for (const auto& name : change.chains) flush_rules(b, rs.table, name);
  add_deltas(b, rs.table, change.deltas);
  for (const auto& c : rs.chains)
    if (std::find(change.chains.begin(), change.chains.end(), c.name) != change.chains.end()) add_rules(b, rs, c, memo);
  return b.finish();
}

Batch encode_repair(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq, std::string_view also_remove,
                    RuleMemo* memo) {
  memo = memo_for(memo, rs);
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
    if (s.datapath_filled()) continue;  // the datapath's elements stay
    flush_set(b, rs.table, s.name);
    add_element_messages(b, rs.table, s.name, static_cast<std::uint32_t>(i + 1), s.key, s.interval, s.elements, true, false);
  }
  for (const auto& c : rs.chains) add_rules(b, rs, c, memo);
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

Batch encode_adopt(std::string_view table, std::uint32_t table_flags, std::uint32_t first_seq) {
  Builder b(first_seq);
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, std::string(table).c_str());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, table_flags);
  char* buf = b.reserve(512);
  nlmsghdr* nlh = b.header(buf, NFT_MSG_NEWTABLE, 0);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  b.commit(nlh, "adopt table inet " + std::string(table));
  return b.finish();
}

Batch encode_probe(std::string_view scratch_table, std::uint32_t table_flags, std::uint32_t first_seq) {
  Builder b(first_seq);
  add_table(b, scratch_table, table_flags, "add (probe)");
  delete_table(b, scratch_table);
  return b.finish();
}

}  // namespace leakguard::firewall::nft
