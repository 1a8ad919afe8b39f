#pragma once
// Reading table inet leakguard back: netlink requests, parsers for the kernel's answers, and the
// table as comparable values (TableSnapshot) - what the kernel holds, what it should hold for a
// ruleset, and how the two differ. No sockets here (netfilter_socket.cpp sends the requests).
#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "firewall/counters.hpp"
#include "firewall/ruleset.hpp"

namespace leakguard::firewall::nft {

/// The parts of our table that decide what passes, in a form that compares with ==.
struct TableSnapshot {
  struct ChainState {
    std::string name, type;
    std::uint32_t hook = 0;
    std::int32_t priority = 0;
    std::uint32_t policy = 0;         ///< NF_DROP 0 / NF_ACCEPT 1
    std::vector<std::string> rules;   ///< canonical expression text, counter values left out
    bool operator==(const ChainState&) const = default;
  };
  struct SetState {
    std::string name;
    std::uint32_t key_type = 0, key_len = 0, flags = 0;
    std::vector<std::string> elements;  ///< sorted "hexkey/flags"; empty for counting sets
    bool operator==(const SetState&) const = default;
  };
  bool present = false;
  std::uint32_t flags = 0;        ///< table flags as the kernel reports them
  std::uint32_t owner = 0;        ///< NFTA_TABLE_OWNER: portid of the owning socket, 0 if none
  std::vector<ChainState> chains; ///< sorted by name
  std::vector<SetState> sets;     ///< sorted by name
};

/// What the kernel should hold for `rs` (flags/owner left for the caller to check).
TableSnapshot expected_snapshot(const Ruleset& rs);
/// expected_snapshot() without rules and elements: the chains and sets as declared, all that
/// conflicts() reads (the whole snapshot of 10,000 endpoints is 10,000 strings, sorted).
TableSnapshot expected_declarations(const Ruleset& rs);
/// Differences, one line each ("rule 3 of chain output differs", "set lan4 missing"); empty if equal.
/// Table flags and owner are not compared here.
std::vector<std::string> compare(const TableSnapshot& expected, const TableSnapshot& actual);

/// What in the kernel's table (`actual`: table, chains and sets are enough) a repair batch for
/// `expected` cannot set right in place, one line each: chains or sets that are not ours, ours
/// declared differently, table flags the kernel will not change to `table_flags`. Empty if the
/// table is missing or repairable.
std::vector<std::string> conflicts(const TableSnapshot& expected, const TableSnapshot& actual, std::uint32_t table_flags);

/// Netlink requests for reading the table (each is one message; dumps end with NLMSG_DONE).
std::vector<std::uint8_t> request_get_table(std::string_view table, std::uint32_t seq);
std::vector<std::uint8_t> request_dump_chains(std::string_view table, std::uint32_t seq);
std::vector<std::uint8_t> request_dump_sets(std::string_view table, std::uint32_t seq);
std::vector<std::uint8_t> request_dump_rules(std::string_view table, std::uint32_t seq);
std::vector<std::uint8_t> request_dump_elements(std::string_view table, std::string_view set, std::uint32_t seq);

/// Parsers for the replies; each ignores objects of other tables.
Result<void> parse_table(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out);
Result<void> parse_chain(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out);
/// Also collects the rule's counter, if it has a tag.
Result<void> parse_rule(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out, std::vector<RuleCounter>* counters);
Result<void> parse_set(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out);
/// Adds the elements to the named set of `out` (or, for counting sets, to `counters`).
Result<void> parse_elements(const nlmsghdr* nlh, std::string_view table, TableSnapshot& out,
                            std::vector<InterfaceCounter>* counters);
/// The elements of a sender set (NEWSETELEM of a dump of senders4/senders6), added to `out`.
Result<void> parse_sender_elements(const nlmsghdr* nlh, std::string_view table, std::vector<SenderRecord>& out);
/// Puts chains, rules and sets in the order expected_snapshot() uses.
void normalize(TableSnapshot& s);

/// The rules of one chain as canonical text (what expected_snapshot() holds), for tests.
std::vector<std::string> canonical_rules(const Chain& c, const Ruleset& rs);

/// Walks the netlink messages of one buffer (libmnl's callbacks stop at the first ACK).
void for_each_message(const std::uint8_t* data, std::size_t len, const std::function<void(const nlmsghdr*)>& f);

}  // namespace leakguard::firewall::nft
