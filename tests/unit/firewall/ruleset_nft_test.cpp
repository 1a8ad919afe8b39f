// The nftnl batch encoder and the parsers for the kernel's answers, on bytes (no socket, no root).
#include <doctest/doctest.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "firewall/netfilter_socket.hpp"
#include "firewall/nft_dump.hpp"
#include "firewall/nft_objects.hpp"
#include "firewall/ruleset_nft.hpp"
#include "firewall/table_guard.hpp"

using namespace leakguard;
using namespace leakguard::firewall;

namespace {

constexpr std::uint16_t nft_type(std::uint16_t msg) { return static_cast<std::uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | msg); }

struct Msg {
  std::uint16_t type, flags;
  std::uint32_t seq, len;
  std::vector<std::uint8_t> bytes;
};

std::vector<Msg> messages(const nft::Batch& b) {
  std::vector<Msg> out;
  nft::for_each_message(b.bytes.data(), b.bytes.size(), [&](const nlmsghdr* n) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(n);
    out.push_back({n->nlmsg_type, n->nlmsg_flags, n->nlmsg_seq, n->nlmsg_len, std::vector<std::uint8_t>(p, p + n->nlmsg_len)});
  });
  return out;
}

const nlmsghdr* hdr(const Msg& m) { return reinterpret_cast<const nlmsghdr*>(m.bytes.data()); }

Policy policy(std::size_t endpoints = 1, bool lan = false) {
  Policy p;
  p.tunnels = {*IfnamePattern::parse("wg0")};
  for (std::size_t i = 0; i < endpoints; ++i) {
    Endpoint e;
    e.address = IpAddress::v4(10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i));
    e.port = 51820;
    p.endpoints.push_back(e);
  }
  p.allow_lan = lan;
  p.lan_subnets = {*Prefix::parse("192.0.2.0/24")};
  return p;
}

/// Elements in a NEWSETELEM/DELSETELEM message. Not with nftnl_set_elems_nlmsg_parse: libnftnl
/// 1.2.4 numbers the list items 1, 2, 3 when it builds them but wants NFTA_LIST_ELEM when it parses.
std::size_t count_elements(const Msg& m) {
  const nlattr* list = nullptr;
  mnl_attr_parse(
      hdr(m), sizeof(nfgenmsg),
      [](const nlattr* a, void* d) -> int {
        if (mnl_attr_get_type(a) == NFTA_SET_ELEM_LIST_ELEMENTS) *static_cast<const nlattr**>(d) = a;
        return MNL_CB_OK;
      },
      &list);
  REQUIRE(list != nullptr);
  std::size_t n = 0;
  REQUIRE(mnl_attr_parse_nested(
              list,
              [](const nlattr*, void* d) -> int {
                ++*static_cast<std::size_t*>(d);
                return MNL_CB_OK;
              },
              &n) >= 0);
  return n;
}

}  // namespace

TEST_CASE("a recreate is one batch: create-if-missing - delete - create with flags - sets - elements - chains - rules") {
  const Ruleset rs = build_ruleset(policy(2, true));
  const auto b = nft::encode_recreate(rs, nft::kTableOwner | nft::kTablePersist, 1000);
  const auto m = messages(b);
  REQUIRE(m.size() >= 8);
  CHECK(m.front().type == NFNL_MSG_BATCH_BEGIN);
  CHECK(m.back().type == NFNL_MSG_BATCH_END);
  CHECK(b.begin_seq == 1000);
  CHECK(b.end_seq == 1000 + m.size() - 1);
  CHECK(b.next_seq() == b.end_seq + 1);
  CHECK(m[1].type == nft_type(NFT_MSG_NEWTABLE));
  CHECK(m[2].type == nft_type(NFT_MSG_DELTABLE));
  CHECK(m[3].type == nft_type(NFT_MSG_NEWTABLE));

  // The first NEWTABLE carries no flags (a no-op on our own table, and allowed on an orphan);
  // the second asks for owner + persist.
  nftnl_table* t = nftnl_table_alloc();
  REQUIRE(nftnl_table_nlmsg_parse(hdr(m[1]), t) >= 0);
  CHECK_FALSE(nftnl_table_is_set(t, NFTNL_TABLE_FLAGS));
  nftnl_table_free(t);
  t = nftnl_table_alloc();
  REQUIRE(nftnl_table_nlmsg_parse(hdr(m[3]), t) >= 0);
  CHECK(nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) == 6u);
  CHECK(std::string(nftnl_table_get_str(t, NFTNL_TABLE_NAME)) == "leakguard");
  nftnl_table_free(t);

  std::map<std::uint16_t, std::size_t> count;
  for (std::size_t i = 1; i + 1 < m.size(); ++i) {
    count[static_cast<std::uint16_t>(m[i].type & 0xff)]++;
    CHECK((m[i].flags & NLM_F_ACK) != 0);  // every command is acknowledged: errors name the step
    CHECK(m[i].seq == 1000 + i);
    REQUIRE(b.step(m[i].seq) != nullptr);
  }
  CHECK(b.steps.size() == m.size() - 2);
  CHECK(count[NFT_MSG_NEWSET] == rs.sets.size());
  CHECK(count[NFT_MSG_NEWCHAIN] == 4);  // output, input, forward, senders
  CHECK(count[NFT_MSG_NEWRULE] == rs.rule_count());
  // endpoints4, dns_ports, lan4, lan6 have elements; endpoints6 and the counting sets do not.
  CHECK(count[NFT_MSG_NEWSETELEM] == 4);
  // Order: all sets and elements before the chains, chains before rules.
  std::size_t last_set = 0, first_chain = m.size(), last_chain = 0, first_rule = m.size();
  for (std::size_t i = 0; i < m.size(); ++i) {
    const auto t2 = m[i].type & 0xff;
    if (m[i].type >> 8 != NFNL_SUBSYS_NFTABLES) continue;
    if (t2 == NFT_MSG_NEWSET || t2 == NFT_MSG_NEWSETELEM) last_set = i;
    if (t2 == NFT_MSG_NEWCHAIN) first_chain = std::min(first_chain, i), last_chain = i;
    if (t2 == NFT_MSG_NEWRULE) first_rule = std::min(first_rule, i);
  }
  CHECK(last_set < first_chain);
  CHECK(last_chain < first_rule);
  CHECK(b.step(m[3].seq)->what() == "add table inet leakguard");
  CHECK(b.step(m.back().seq - 1)->what() == "add rule 16 to chain forward");  // udp mode's final accept
}

namespace {

std::vector<std::string> step_texts(const nft::Batch& b) {
  std::vector<std::string> out;
  for (const auto& s : b.steps) out.push_back(s.what());
  return out;
}

}  // namespace

TEST_CASE("an update changes rules and elements in place: no table, chain or set is created or deleted") {
  Policy before = policy(2, true);
  Policy after = before;
  after.mode = Mode::strict;
  after.endpoints.push_back(*Endpoint::parse("198.51.100.9:51820"));
  const Ruleset from = build_ruleset(before), to = build_ruleset(after);
  const Change change = plan_change(from, to);
  REQUIRE(change.kind == Change::Kind::rules);
  const auto b = nft::encode_update(to, change, 7);
  const auto m = messages(b);
  std::map<std::uint16_t, std::size_t> count;
  for (std::size_t i = 1; i + 1 < m.size(); ++i) {
    CHECK((m[i].flags & NLM_F_ACK) != 0);
    count[static_cast<std::uint16_t>(m[i].type & 0xff)]++;
  }
  // The three chains flushed (DELRULE naming the chain, no handle), one element added, every
  // rule of the new ruleset added; nothing else.
  CHECK(count.size() == 3);
  CHECK(count[NFT_MSG_DELRULE] == 3);
  CHECK(count[NFT_MSG_NEWSETELEM] == 1);
  CHECK(count[NFT_MSG_NEWRULE] == to.rule_count());
  const auto steps = step_texts(b);
  CHECK(steps[0] == "flush chain output");
  CHECK(steps[1] == "flush chain input");
  CHECK(steps[2] == "flush chain forward");
  CHECK(steps[3] == "add 1 elements to set endpoints4 (0..0)");
  CHECK(steps[4] == "add rule 0 to chain output");
  nftnl_rule* r = nftnl_rule_alloc();
  REQUIRE(nftnl_rule_nlmsg_parse(hdr(m[1]), r) >= 0);
  CHECK(std::string(nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)) == "output");
  CHECK_FALSE(nftnl_rule_is_set(r, NFTNL_RULE_HANDLE));
  nftnl_rule_free(r);

  // Only the fwmark changes: only the output chain is touched.
  Policy marked = before;
  marked.fwmark = FwMark{7};
  const auto only_output = step_texts(nft::encode_update(build_ruleset(marked), plan_change(from, build_ruleset(marked)), 1));
  CHECK(only_output.front() == "flush chain output");
  for (const auto& s : only_output) CHECK(s.find("input") == std::string::npos);
}

TEST_CASE("the rule memo copies a rule's message only where a fresh encoding would give the same bytes") {
  Policy udp = policy(2, true), strict = udp;
  strict.mode = Mode::strict;
  const Ruleset a = build_ruleset(udp), b = build_ruleset(strict);
  const Change to_b = plan_change(a, b), to_a = plan_change(b, a);
  REQUIRE(to_b.kind == Change::Kind::rules);
  nft::RuleMemo memo;
  // Filled by the install (every rule encoded, nothing to copy yet).
  CHECK(nft::encode_repair(a, 0, 1, {}, &memo).bytes == nft::encode_repair(a, 0, 1).bytes);
  CHECK(memo.reused == 0);
  // Flips both ways, sequence numbers moving on: byte for byte what the memo-less encoder makes.
  // The first flip copies the rules the two modes share and encodes strict's own; from then on
  // each mode's own rules come from the older generation: every rule is copied.
  std::uint32_t seq = 100;
  auto rules_in = [](const Ruleset& rs, const Change& change) {
    std::size_t n = 0;
    for (const auto& c : rs.chains)
      if (std::find(change.chains.begin(), change.chains.end(), c.name) != change.chains.end()) n += c.rules.size();
    return n;
  };
  const std::size_t rules_in_changed = rules_in(a, to_a);
  for (int i = 0; i < 4; ++i) {
    const Ruleset& to = i % 2 ? a : b;
    const Change& change = i % 2 ? to_a : to_b;
    const std::size_t before = memo.reused;
    const auto with = nft::encode_update(to, change, seq, &memo);
    CHECK(with.bytes == nft::encode_update(to, change, seq).bytes);
    CHECK(step_texts(with) == step_texts(nft::encode_update(to, change, seq)));
    const std::size_t copied = memo.reused - before;
    CAPTURE(i);
    CHECK(copied > 0);
    if (i == 0) CHECK(copied < to.rule_count());
    else CHECK(copied == rules_in(to, change));
    seq = with.next_seq();
  }
  // At most two generations are held: a third ruleset (another tunnel) pushes strict's own rules
  // out, so going back to strict encodes them anew.
  Policy other_tunnel = udp;
  other_tunnel.tunnels = {*IfnamePattern::parse("tun7")};
  const Ruleset c = build_ruleset(other_tunnel);
  seq = nft::encode_update(c, plan_change(a, c), seq, &memo).next_seq();
  seq = nft::encode_update(a, plan_change(c, a), seq, &memo).next_seq();
  const std::size_t at_third = memo.reused;
  CHECK(nft::encode_update(b, to_b, seq, &memo).bytes == nft::encode_update(b, to_b, seq).bytes);
  CHECK(memo.reused - at_third < rules_in(b, to_b));
  // The same change again: every rule copied.
  const std::size_t before = memo.reused;
  CHECK(nft::encode_update(a, to_a, seq, &memo).bytes == nft::encode_update(a, to_a, seq).bytes);
  CHECK(memo.reused - before == rules_in_changed);

  // Another table (the handover table) or another order of sets: nothing copied, and the memo
  // then holds that table's messages.
  Ruleset other = a;
  other.table = "leakguard_handover";
  const std::size_t at = memo.reused;
  CHECK(nft::encode_repair(other, 0, 1, {}, &memo).bytes == nft::encode_repair(other, 0, 1).bytes);
  CHECK(memo.reused == at);
  CHECK(memo.table == "leakguard_handover");
  Ruleset reordered = a;
  std::swap(reordered.sets[0], reordered.sets[1]);
  CHECK(nft::encode_repair(reordered, 0, 1, {}, &memo).bytes == nft::encode_repair(reordered, 0, 1).bytes);
  CHECK(memo.reused == at);

  // A chain holding the same rule twice, and a rule moved: each message still in its place.
  Ruleset twice = a;
  auto& out = twice.chains[0].rules;
  out.insert(out.begin(), out.back());
  out.push_back(out[1]);
  const Change change_twice = plan_change(a, twice);
  nft::RuleMemo fresh;
  nft::encode_repair(a, 0, 1, {}, &fresh);
  CHECK(nft::encode_update(twice, change_twice, 5, &fresh).bytes == nft::encode_update(twice, change_twice, 5).bytes);
  CHECK(nft::encode_update(a, plan_change(twice, a), 9, &fresh).bytes == nft::encode_update(a, plan_change(twice, a), 9).bytes);
}

TEST_CASE("allow_lan switched on and off in place: nft's zero boundary element comes with the first ranges and goes with the last") {
  const Ruleset off = build_ruleset(policy(1, false)), on = build_ruleset(policy(1, true));
  auto lan4_messages = [](const nft::Batch& b, std::uint16_t type) {
    std::size_t n = 0;
    for (const auto& s : b.steps)
      if (s.type == type && s.what().find("set lan4") != std::string::npos) ++n;
    return n;
  };
  const auto up = nft::encode_update(on, plan_change(off, on), 1);
  const auto down = nft::encode_update(off, plan_change(on, off), 1);
  REQUIRE(lan4_messages(up, NFT_MSG_NEWSETELEM) == 1);
  REQUIRE(lan4_messages(down, NFT_MSG_DELSETELEM) == 1);
  // lan4 holds 169.254.0.0/16, 192.0.2.0/24, 224.0.0.0/24, 239.255.255.250 and 255.255.255.255:
  // a start and an end element each but the last (it runs to the top), plus the end element at
  // 0.0.0.0 that nft puts below the first range - what a recreate or `nft -f` installs too.
  const std::size_t raw = 2 + 2 + 2 + 2 + 1 + 1;
  auto lan4_elements = [&](const nft::Batch& b) {
    for (const auto& m : messages(b))
      if (const auto* step = b.step(m.seq); step && step->what().find("set lan4") != std::string::npos) return count_elements(m);
    return std::size_t{0};
  };
  CHECK(lan4_elements(up) == raw);
  CHECK(lan4_elements(down) == raw);
}

TEST_CASE("a repair re-declares everything, flushes rules and elements and refills them - without deleting the table") {
  const Ruleset rs = build_ruleset(policy(2, true));
  const auto b = nft::encode_repair(rs, nft::kTableOwner | nft::kTablePersist, 1);
  const auto m = messages(b);
  std::map<std::uint16_t, std::size_t> count;
  for (std::size_t i = 1; i + 1 < m.size(); ++i) count[static_cast<std::uint16_t>(m[i].type & 0xff)]++;
  CHECK(count[NFT_MSG_DELTABLE] == 0);
  CHECK(count[NFT_MSG_DELCHAIN] == 0);
  CHECK(count[NFT_MSG_DELSET] == 0);
  CHECK(count[NFT_MSG_NEWTABLE] == 1);
  CHECK(count[NFT_MSG_NEWSET] == rs.sets.size());
  CHECK(count[NFT_MSG_NEWCHAIN] == 4);
  CHECK(count[NFT_MSG_DELRULE] == 1);  // the whole table's rules: DELRULE naming no chain
  CHECK(count[NFT_MSG_DELSETELEM] == 8);  // every set we fill; the counting and sender sets keep theirs
  CHECK(count[NFT_MSG_NEWRULE] == rs.rule_count());
  nftnl_table* t = nftnl_table_alloc();
  REQUIRE(nftnl_table_nlmsg_parse(hdr(m[1]), t) >= 0);
  CHECK(nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) == 6u);  // a missing table comes back owned
  nftnl_table_free(t);
  // NEWCHAIN without NLM_F_EXCL: created if missing, updated (same hook, policy drop) if there.
  for (const auto& x : m)
    if ((x.type & 0xff) == NFT_MSG_NEWCHAIN) CHECK((x.flags & NLM_F_EXCL) == 0);
  const auto steps = step_texts(b);
  CHECK(std::find(steps.begin(), steps.end(), "flush set ifstat_out") == steps.end());
  CHECK(std::find(steps.begin(), steps.end(), "flush set endpoints4") != steps.end());
}

TEST_CASE("golden bytes: oifname wg-prefix accept") {
  Ruleset rs;
  Chain c{"output", Hook::output, 0, false, {}};
  c.rules.push_back(Rule{{IfnameIs{true, *IfnamePattern::parse("wg*")}}, std::nullopt, false, Verdict::accept, ""});
  rs.chains.push_back(c);
  const auto m = messages(nft::encode_recreate(rs, 0, 100));
  REQUIRE(m.size() == 7);  // begin, table x3, chain, rule, end
  // nft add rule inet leakguard output oifname "wg*" accept
  const std::vector<std::uint8_t> golden{
      0xb4, 0x00, 0x00, 0x00,  // nlmsg_len 180
      0x06, 0x0a, 0x05, 0x0c,  // type NFNL_SUBSYS_NFTABLES<<8 | NFT_MSG_NEWRULE; flags REQUEST|ACK|CREATE|APPEND
      0x69, 0x00, 0x00, 0x00,  // seq 105 (begin 100, three table messages, one chain)
      0x00, 0x00, 0x00, 0x00,  // portid 0: the kernel
      0x01, 0x00, 0x00, 0x00,  // nfgenmsg: family NFPROTO_INET, version 0, res_id 0
      0x0e, 0x00, 0x01, 0x00,  // NFTA_RULE_TABLE, 14 bytes
      0x6c, 0x65, 0x61, 0x6b,  // "leak"
      0x67, 0x75, 0x61, 0x72,  // "guar"
      0x64, 0x00, 0x00, 0x00,  // "d\0" + padding
      0x0b, 0x00, 0x02, 0x00,  // NFTA_RULE_CHAIN, 11 bytes
      0x6f, 0x75, 0x74, 0x70,  // "outp"
      0x75, 0x74, 0x00, 0x00,  // "ut\0" + padding
      0x84, 0x00, 0x04, 0x80,  // NFTA_RULE_EXPRESSIONS (nested), 132 bytes
      0x24, 0x00, 0x01, 0x80,  //   NFTA_LIST_ELEM, 36 bytes
      0x09, 0x00, 0x01, 0x00,  //     NFTA_EXPR_NAME, 9 bytes
      0x6d, 0x65, 0x74, 0x61,  //     "meta"
      0x00, 0x00, 0x00, 0x00,  //     "\0" + padding
      0x14, 0x00, 0x02, 0x80,  //     NFTA_EXPR_DATA, 20 bytes
      0x08, 0x00, 0x02, 0x00,  //       NFTA_META_KEY
      0x00, 0x00, 0x00, 0x07,  //       NFT_META_OIFNAME
      0x08, 0x00, 0x01, 0x00,  //       NFTA_META_DREG
      0x00, 0x00, 0x00, 0x01,  //       NFT_REG_1
      0x2c, 0x00, 0x01, 0x80,  //   NFTA_LIST_ELEM, 44 bytes
      0x08, 0x00, 0x01, 0x00,  //     NFTA_EXPR_NAME, 8 bytes
      0x63, 0x6d, 0x70, 0x00,  //     "cmp\0"
      0x20, 0x00, 0x02, 0x80,  //     NFTA_EXPR_DATA, 32 bytes
      0x08, 0x00, 0x01, 0x00,  //       NFTA_CMP_SREG
      0x00, 0x00, 0x00, 0x01,  //       NFT_REG_1
      0x08, 0x00, 0x02, 0x00,  //       NFTA_CMP_OP
      0x00, 0x00, 0x00, 0x00,  //       NFT_CMP_EQ
      0x0c, 0x00, 0x03, 0x80,  //       NFTA_CMP_DATA (nested), 12 bytes
      0x06, 0x00, 0x01, 0x00,  //         NFTA_DATA_VALUE, 6 bytes: the prefix only, no NUL
      0x77, 0x67, 0x00, 0x00,  //         "wg" + padding
      0x30, 0x00, 0x01, 0x80,  //   NFTA_LIST_ELEM, 48 bytes
      0x0e, 0x00, 0x01, 0x00,  //     NFTA_EXPR_NAME, 14 bytes
      0x69, 0x6d, 0x6d, 0x65,  //     "imme"
      0x64, 0x69, 0x61, 0x74,  //     "diat"
      0x65, 0x00, 0x00, 0x00,  //     "e\0" + padding
      0x1c, 0x00, 0x02, 0x80,  //     NFTA_EXPR_DATA, 28 bytes
      0x08, 0x00, 0x01, 0x00,  //       NFTA_IMMEDIATE_DREG
      0x00, 0x00, 0x00, 0x00,  //       NFT_REG_VERDICT
      0x10, 0x00, 0x02, 0x80,  //       NFTA_IMMEDIATE_DATA (nested), 16 bytes
      0x0c, 0x00, 0x02, 0x80,  //         NFTA_DATA_VERDICT (nested), 12 bytes
      0x08, 0x00, 0x01, 0x00,  //           NFTA_VERDICT_CODE
      0x00, 0x00, 0x00, 0x01,  //           NF_ACCEPT
  };
  CHECK(m[5].bytes == golden);
}

TEST_CASE("10000 endpoints: element messages split below 64 KiB - every element there once") {
  const Ruleset rs = build_ruleset(policy(10000));
  const auto b = nft::encode_recreate(rs, 0, 1);
  std::size_t elements = 0, messages_with_endpoints = 0;
  for (const auto& m : messages(b)) {
    CHECK(m.len < 65536);
    if (m.type != nft_type(NFT_MSG_NEWSETELEM)) continue;
    // The element list is one attribute: its 16-bit length must not have wrapped.
    const nlattr* list = nullptr;
    mnl_attr_parse(
        hdr(m), sizeof(nfgenmsg),
        [](const nlattr* a, void* d) -> int {
          if (mnl_attr_get_type(a) == NFTA_SET_ELEM_LIST_ELEMENTS) *static_cast<const nlattr**>(d) = a;
          return MNL_CB_OK;
        },
        &list);
    REQUIRE(list != nullptr);
    CHECK(list->nla_len <= nft::kMaxElementBytesPerMessage + 4);  // + the nest header
    CHECK(list->nla_len < 65535);
    const std::size_t n = count_elements(m);
    if (n > 2) {  // not dns_ports
      ++messages_with_endpoints;
      elements += n;
    }
  }
  CHECK(elements == 10000);
  CHECK(messages_with_endpoints == 4);  // 24 bytes per element: 2560 per message
  CHECK(b.largest_message < 64 * 1024);
  CHECK(b.largest_message > 60 * 1024 - 100);
}

TEST_CASE("set deltas: deletions then additions - element messages only") {
  Policy before = policy(3);
  Policy after = before;
  after.endpoints.erase(after.endpoints.begin());
  after.endpoints.push_back(*Endpoint::parse("198.51.100.9:51820"));
  const Change c = plan_change(build_ruleset(before), build_ruleset(after));
  REQUIRE(c.kind == Change::Kind::elements);
  const auto m = messages(nft::encode_set_deltas("leakguard", c.deltas, 50));
  REQUIRE(m.size() == 4);
  CHECK(m[1].type == nft_type(NFT_MSG_DELSETELEM));
  CHECK(m[2].type == nft_type(NFT_MSG_NEWSETELEM));
  CHECK(count_elements(m[1]) == 1);
  CHECK(count_elements(m[2]) == 1);
}

TEST_CASE("interval sets hold boundaries: a zero end first - start and end per range - open at the top") {
  Ruleset rs = build_ruleset(policy(1, true));
  const auto snap = nft::expected_snapshot(rs);
  auto it = std::find_if(snap.sets.begin(), snap.sets.end(), [](const auto& s) { return s.name == "lan4"; });
  REQUIRE(it != snap.sets.end());
  CHECK(it->flags == NFT_SET_INTERVAL);
  CHECK(it->key_type == 7u);  // ipv4_addr
  // "hexkey/end-flag", sorted: 0.0.0.0 end; 169.254/16; 192.0.2/24; 224.0.0/24; 239.255.255.250;
  // 255.255.255.255 open.
  CHECK(it->elements == std::vector<std::string>{"00000000/1", "a9fe0000/0", "a9ff0000/1", "c0000200/0", "c0000300/1",
                                                 "e0000000/0", "e0000100/1", "effffffa/0", "effffffb/1", "ffffffff/0"});
  auto ep = std::find_if(snap.sets.begin(), snap.sets.end(), [](const auto& s) { return s.name == "endpoints4"; });
  REQUIRE(ep != snap.sets.end());
  CHECK(ep->key_type == ((7u << 12) | (12u << 6) | 13u));  // ipv4_addr . inet_proto . inet_service
  CHECK(ep->key_len == 12u);
  // 10.0.0.0 . udp . 51820: address, protocol padded to 4 bytes, port big endian padded to 4.
  CHECK(ep->elements == std::vector<std::string>{"0a000000" "11000000" "ca6c0000/0"});

  // The declarations alone (what a repair checks the kernel's table against): the same chains and
  // sets, declared the same, without rules and elements.
  auto bare = snap;
  for (auto& c : bare.chains) c.rules.clear();
  for (auto& set : bare.sets) set.elements.clear();
  const auto declared = nft::expected_declarations(rs);
  CHECK(declared.chains.size() == 4);
  CHECK(nft::compare(bare, declared).empty());
  CHECK_FALSE(nft::compare(snap, declared).empty());
}

TEST_CASE("our own messages parse back to exactly the expected snapshot - tampering shows as differences") {
  for (bool lan : {false, true}) {
    Policy p = policy(3, lan);
    p.mode = lan ? Mode::strict : Mode::udp;
    p.fwmark = FwMark{51820};
    p.endpoints.push_back(*Endpoint::parse("[2001:db8::1]:443/tcp"));
    const Ruleset rs = build_ruleset(p);
    nft::TableSnapshot parsed;
    parsed.present = true;
    std::vector<RuleCounter> counters;
    for (const auto& m : messages(nft::encode_recreate(rs, 0, 1))) {
      switch (m.type & 0xff) {
        case NFT_MSG_NEWCHAIN: REQUIRE(nft::parse_chain(hdr(m), "leakguard", parsed)); break;
        case NFT_MSG_NEWSET: REQUIRE(nft::parse_set(hdr(m), "leakguard", parsed)); break;
        case NFT_MSG_NEWSETELEM: REQUIRE(nft::parse_elements(hdr(m), "leakguard", parsed, nullptr)); break;
        case NFT_MSG_NEWRULE: REQUIRE(nft::parse_rule(hdr(m), "leakguard", parsed, &counters)); break;
        default: break;
      }
    }
    nft::normalize(parsed);
    const auto expected = nft::expected_snapshot(rs);
    CHECK(nft::compare(expected, parsed).empty());
    // One per counted rule: DNS x2 + tcp, 5 datagram protocols, ip (strict) or the 4 (udp), x3
    // chains; and input's two drops of what is addressed to the tunnel, and its two of ICMP errors
    // that quote no flow of this host's.
    CHECK(counters.size() == (lan ? 31u : 25u));

    auto t = parsed;
    t.chains[1].rules.insert(t.chains[1].rules.begin(), "[immediate dreg 0 verdict 1]");  // an accept at the top
    const auto added = nft::compare(expected, t);
    REQUIRE(added.size() == 2);
    CHECK(added.front() == "rule 0 of chain input differs (and " + std::to_string(t.chains[1].rules.size() - 2) + " after it)");
    CHECK(added.back() == "1 rule(s) added to chain input");
    t = parsed;
    t.chains[2].rules.pop_back();
    CHECK(nft::compare(expected, t) == std::vector<std::string>{"1 rule(s) missing from chain output"});
    t = parsed;
    auto filled = std::find_if(t.sets.begin(), t.sets.end(), [](const auto& s) { return s.name == "endpoints4"; });
    REQUIRE(filled != t.sets.end());
    REQUIRE_FALSE(filled->elements.empty());
    filled->elements.pop_back();
    CHECK(nft::compare(expected, t).size() == 1);
    t = parsed;
    t.chains[0].policy ^= 1;
    CHECK(nft::compare(expected, t) == std::vector<std::string>{"chain forward has another policy"});
    CHECK(nft::compare(expected, nft::TableSnapshot{}) == std::vector<std::string>{"table is missing"});
  }
}

TEST_CASE("NEWGEN: generation id - pid and process name") {
  // What the kernel multicasts after `nft flush ruleset` from pid 4242 (generation 7).
  const std::vector<std::uint8_t> msg{
      0x2c, 0x00, 0x00, 0x00,  // nlmsg_len 44
      0x0f, 0x0a, 0x00, 0x00,  // NFNL_SUBSYS_NFTABLES<<8 | NFT_MSG_NEWGEN, no flags
      0x05, 0x00, 0x00, 0x00,  // seq
      0x11, 0x22, 0x00, 0x00,  // portid of the sender
      0x00, 0x00, 0x00, 0x00,  // nfgenmsg: AF_UNSPEC, version 0, res_id (generation, 16 bits) 0
      0x08, 0x00, 0x01, 0x00,  // NFTA_GEN_ID
      0x00, 0x00, 0x00, 0x07,  //   7 (big endian)
      0x08, 0x00, 0x02, 0x00,  // NFTA_GEN_PROC_PID
      0x00, 0x00, 0x10, 0x92,  //   4242
      0x08, 0x00, 0x03, 0x00,  // NFTA_GEN_PROC_NAME, 8 bytes
      0x6e, 0x66, 0x74, 0x00,  //   "nft\0"
  };
  auto g = parse_newgen(msg.data(), msg.size());
  REQUIRE(g);
  CHECK(g->id == 7u);
  CHECK(g->pid == 4242u);
  CHECK(g->process == "nft");

  auto truncated = parse_newgen(msg.data(), 16);
  CHECK_FALSE(truncated);
  auto other = msg;
  other[4] = 0x10;  // NFT_MSG_GETGEN is not a notification
  CHECK_FALSE(parse_newgen(other.data(), other.size()));
}

TEST_CASE("the probe batch creates and deletes a scratch table with the flags") {
  const auto m = messages(nft::encode_probe("leakguard-probe-1", 6, 10));
  REQUIRE(m.size() == 4);
  CHECK(m[1].type == nft_type(NFT_MSG_NEWTABLE));
  CHECK(m[2].type == nft_type(NFT_MSG_DELTABLE));
  nftnl_table* t = nftnl_table_alloc();
  REQUIRE(nftnl_table_nlmsg_parse(hdr(m[1]), t) >= 0);
  CHECK(nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) == 6u);
  CHECK(std::string(nftnl_table_get_str(t, NFTNL_TABLE_NAME)) == "leakguard-probe-1");
  nftnl_table_free(t);
}

TEST_CASE("adopting a table left behind is one NEWTABLE with our flags - without NLM_F_CREATE - nothing else") {
  const auto b = nft::encode_adopt("leakguard", nft::kTableOwner | nft::kTablePersist, 20);
  const auto m = messages(b);
  REQUIRE(m.size() == 3);  // batch begin, NEWTABLE, batch end: no chain, set, rule or element touched
  CHECK(m[1].type == nft_type(NFT_MSG_NEWTABLE));
  // A table deleted meanwhile must not come back empty (ENOENT instead), nor may an existing one
  // be refused (no NLM_F_EXCL): the kernel updates the flags of the one that is there.
  CHECK((m[1].flags & NLM_F_CREATE) == 0);
  CHECK((m[1].flags & NLM_F_EXCL) == 0);
  CHECK((m[1].flags & NLM_F_ACK) != 0);
  nftnl_table* t = nftnl_table_alloc();
  REQUIRE(nftnl_table_nlmsg_parse(hdr(m[1]), t) >= 0);
  CHECK(nftnl_table_get_u32(t, NFTNL_TABLE_FLAGS) == (nft::kTableOwner | nft::kTablePersist));
  CHECK(std::string(nftnl_table_get_str(t, NFTNL_TABLE_NAME)) == "leakguard");
  nftnl_table_free(t);
  REQUIRE(b.steps.size() == 1);
  CHECK(b.steps[0].what() == "adopt table inet leakguard");
}

TEST_CASE("kernel errors are explained - missing nf_tables and missing permission are told apart from ownership") {
  CHECK(describe_netlink_error(EOPNOTSUPP, true).find("nf_tables is not available") != std::string::npos);
  CHECK(describe_netlink_error(EPERM, true).find("CAP_NET_ADMIN") != std::string::npos);
  CHECK(describe_netlink_error(EPERM, false).find("owned by another process") != std::string::npos);
  CHECK(describe_netlink_error(ENOENT, false).find("does not exist") != std::string::npos);
}

namespace {

/// libnftnl's encoding of one element message (what the encoder used before it wrote the
/// attributes itself), for the comparison below.
std::vector<std::uint8_t> nftnl_element_message(const Msg& ours, const std::string& table, const std::string& set, std::uint32_t id,
                                                const std::vector<nft::RawElement>& elements) {
  static const std::uint8_t open_udata[] = {nft::kUdataElemFlags, 4, nft::kElemIntervalOpen & 0xff, 0, 0, 0};
  nftnl_set* s = nftnl_set_alloc();
  nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s, NFTNL_SET_NAME, set.c_str());
  if (id) nftnl_set_set_u32(s, NFTNL_SET_ID, id);
  for (const auto& r : elements) {
    nftnl_set_elem* e = nftnl_set_elem_alloc();
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, r.key.data(), r.key_len);
    if (r.flags) nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, r.flags);
    if (r.open_interval) nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, open_udata, sizeof open_udata);
    nftnl_set_elem_add(s, e);
  }
  std::vector<std::uint8_t> buf(ours.len + 4096, 0);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(reinterpret_cast<char*>(buf.data()), static_cast<std::uint16_t>(ours.type & 0xff),
                                        NFPROTO_INET, ours.flags, ours.seq);
  nftnl_set_elems_nlmsg_build_payload(nlh, s);
  nftnl_set_free(s);
  buf.resize(nlh->nlmsg_len);
  return buf;
}

}  // namespace

TEST_CASE("element messages are written as libnftnl writes them, byte for byte - endpoints, intervals, deletions, set ids") {
  // 10,000 endpoints (three messages), the LAN's interval set with an open range at the top, and
  // deletions (no set id, no NLM_F_CREATE).
  Policy p = policy(10000, true);
  p.lan_subnets = {*Prefix::parse("192.0.2.0/24"), *Prefix::parse("255.255.255.0/24")};
  const Ruleset rs = build_ruleset(p);
  std::size_t compared = 0;
  auto check = [&](const nft::Batch& b, bool with_ids) {
    const auto m = messages(b);
    std::map<std::string, std::size_t> taken;  // per set: elements already in earlier messages
    for (const auto& msg : m) {
      const std::uint16_t t = msg.type & 0xff;
      if ((msg.type >> 8) != NFNL_SUBSYS_NFTABLES || (t != NFT_MSG_NEWSETELEM && t != NFT_MSG_DELSETELEM)) continue;
      const auto* step = b.step(msg.seq);
      REQUIRE(step);
      const std::string what = step->what();
      CAPTURE(what);
      // "add N elements to set NAME (i..j)"
      const auto set_at = what.find(" set ") + 5;
      const std::string set = what.substr(set_at, what.find(' ', set_at) - set_at);
      const Set* s = rs.find_set(set);
      REQUIRE(s);
      const auto all = nft::raw_elements(s->key, s->interval, s->elements, true);
      const std::size_t n = static_cast<std::size_t>(std::stoul(what.substr(what.find(' ') + 1)));
      const std::size_t from = taken[set];
      REQUIRE(from + n <= all.size());
      const std::vector<nft::RawElement> part(all.begin() + static_cast<long>(from), all.begin() + static_cast<long>(from + n));
      taken[set] += n;
      std::uint32_t id = 0;
      if (with_ids)
        for (std::size_t i = 0; i < rs.sets.size(); ++i)
          if (rs.sets[i].name == set) id = static_cast<std::uint32_t>(i + 1);
      CHECK(msg.bytes == nftnl_element_message(msg, rs.table, set, id, part));
      ++compared;
    }
  };
  check(nft::encode_recreate(rs, 0, 1), true);
  CHECK(compared >= 5);  // endpoints4 (3 messages), lan4, lan6, dns_ports
  // Deletions of everything, as set deltas: no ids.
  std::vector<SetDelta> deltas;
  for (const auto& s : rs.sets)
    if (!s.elements.empty() && !s.datapath_filled()) deltas.push_back(SetDelta{s.name, s.key, s.interval, s.elements, {}, false, true});
  const std::size_t before = compared;
  check(nft::encode_set_deltas(rs.table, deltas, 1), false);
  CHECK(compared > before);
}
