#pragma once
// The table model's values as libnftnl objects and kernel bytes: set keys, element keys, sets,
// chains, and rules lowered to expressions. Shared by the batch encoder (ruleset_nft.cpp) and the
// table reader (nft_dump.cpp), which builds the expected state from the same objects. Internal to
// firewall/.
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "firewall/ruleset.hpp"

namespace leakguard::firewall::nft {

// Owners of libnftnl objects.

struct TableDel { void operator()(nftnl_table* p) const { nftnl_table_free(p); } };
struct ChainDel { void operator()(nftnl_chain* p) const { nftnl_chain_free(p); } };
struct SetDel { void operator()(nftnl_set* p) const { nftnl_set_free(p); } };
struct RuleDel { void operator()(nftnl_rule* p) const { nftnl_rule_free(p); } };
using TablePtr = std::unique_ptr<nftnl_table, TableDel>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDel>;
using SetPtr = std::unique_ptr<nftnl_set, SetDel>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleDel>;

// Element user data: NFTNL_UDATA_SET_ELEM_FLAGS = 1 with NFTNL_SET_ELEM_F_INTERVAL_OPEN = 1,
// which nft puts on an interval that runs to the end of the address space.
constexpr std::uint8_t kUdataElemFlags = 1;
constexpr std::uint32_t kElemIntervalOpen = 1;
// Rule user data: NFTNL_UDATA_RULE_COMMENT = 0, a NUL-terminated string.
constexpr std::uint8_t kUdataRuleComment = 0;

/// A set key's nft datatype and length in the kernel (concatenations: 4-byte slots each).
struct KeyInfo {
  std::uint32_t type, len;
  bool concat;
};
KeyInfo key_info(KeyType k);

/// One kernel element: key bytes, flags, optional user data.
struct RawElement {
  std::array<std::uint8_t, 24> key{};
  std::uint32_t key_len = 0;
  std::uint32_t flags = 0;  // NFT_SET_ELEM_INTERVAL_END
  bool open_interval = false;
};
/// The kernel's form of a set's elements. Interval sets hold boundaries: a start element per
/// range and an "end" element at the first address after it (none if the range reaches the top).
/// With `with_zero_end`, like nft, an end element at address zero comes first when no range
/// starts there.
std::vector<RawElement> raw_elements(KeyType key, bool interval, const std::vector<Element>& elements, bool with_zero_end);
/// The same elements one by one, without the vector (10,000 endpoints are 360 KB of it).
void for_each_raw_element(KeyType key, bool interval, const std::vector<Element>& elements, bool with_zero_end,
                          const std::function<void(const RawElement&)>& fn);

/// NEWSET payload for `s` (`id`: NFTA_SET_ID, how rules in the same batch refer to a new set).
SetPtr make_set(std::string_view table, const Set& s, std::uint32_t id);
/// NEWCHAIN payload for a base chain.
ChainPtr make_chain(std::string_view table, const Chain& c);
/// NEWRULE payload: the rule lowered to the expressions nft 1.0.6 makes of the same text.
RulePtr make_rule(std::string_view table, const Chain& c, const Rule& rule, const std::vector<Set>& sets);
/// The netfilter hook number (NF_INET_*).
std::uint32_t hooknum(Hook h);

}  // namespace leakguard::firewall::nft
