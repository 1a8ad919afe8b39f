#pragma once
// Ruleset -> nftnl batch (netlink bytes), and the kernel's answers -> comparable values.
// No sockets here: netfilter_socket.cpp sends what this file encodes. Every expression sequence
// mirrors what nft 1.0.6 generates for the text of nft_text.cpp (checked by the integration
// test that compares `nft list table` after our batch and after `nft -f` of the text).
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

// Table flags (linux/netfilter/nf_tables.h, enum nft_table_flags).
inline constexpr std::uint32_t kTableOwner = 0x2;    ///< NFT_TABLE_F_OWNER: only our socket may change it
inline constexpr std::uint32_t kTablePersist = 0x4;  ///< NFT_TABLE_F_PERSIST: outlives that socket (orphaned)

/// Elements per NEWSETELEM message stay below this many bytes: the element list is one netlink
/// attribute, and an attribute's length field has 16 bits.
inline constexpr std::size_t kMaxElementBytesPerMessage = 60 * 1024;

/// One encoded transaction: batch begin, messages, batch end, ready for one sendmsg.
struct Batch {
  std::vector<std::uint8_t> bytes;
  /// A message inside the batch that asks for an ACK, and what it does (for errors).
  struct Step {
    std::uint32_t seq;
    std::uint16_t type;  ///< NFT_MSG_*
    std::string what;    ///< e.g. "add rule to chain output (#12 udp-out)"
  };
  std::vector<Step> steps;
  std::uint32_t begin_seq = 0;
  std::uint32_t end_seq = 0;
  std::size_t largest_message = 0;  ///< bytes of the largest message

  /// The first sequence number after this batch.
  std::uint32_t next_seq() const { return end_seq + 1; }
  /// The step a sequence number belongs to, or nullptr (batch begin/end).
  const Step* step(std::uint32_t seq) const;
};

/// The table made anew in one transaction: NEWTABLE (no flags: a no-op if present, so the delete
/// cannot fail with ENOENT), DELTABLE, NEWTABLE with `table_flags`, sets, elements, chains, rules.
/// Only for installing, taking an orphan over and as the last resort of a repair: new base chains
/// are hooked in before the old ones, and a packet can meet the new chain still empty and the
/// old one already empty; only their drop policy stops it then (docs/firewall.md, "zero window").
Batch encode_recreate(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq);
/// `change` (Kind::rules or Kind::elements, planned from the ruleset installed) in place: the
/// changed chains flushed and refilled, element deltas; no chain or set is created or deleted, so
/// every packet meets either the old rules or the new ones.
Batch encode_update(const Ruleset& rs, const Change& change, std::uint32_t first_seq);
/// Puts `rs` back in place whatever our table holds now, without deleting it: NEWTABLE with
/// `table_flags`, NEWSET and NEWCHAIN for every declaration (created if missing, kept if there),
/// every rule flushed, every non-counting set flushed and refilled, every rule added. Fails (and
/// changes nothing) if a declaration in the kernel conflicts, e.g. a chain on another hook.
/// `also_remove` names a table deleted in the same transaction if it exists (a handover table
/// left behind), or is empty.
Batch encode_repair(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq, std::string_view also_remove = {});

/// Removes the table (create-then-delete, so a missing table is not an error).
Batch encode_remove(std::string_view table, std::uint32_t first_seq);
/// Element changes only: deletions first, then additions, in one transaction; no rule changes.
Batch encode_set_deltas(std::string_view table, const std::vector<SetDelta>& deltas, std::uint32_t first_seq);
/// Creates and deletes a scratch table with `table_flags` in one transaction: succeeds only if
/// the kernel knows the flags (EOPNOTSUPP on kernels without NFT_TABLE_F_PERSIST).
Batch encode_probe(std::string_view scratch_table, std::uint32_t table_flags, std::uint32_t first_seq);

// ---- reading the kernel's table ----------------------------------------------------------------

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
/// Puts chains, rules and sets in the order expected_snapshot() uses.
void normalize(TableSnapshot& s);

/// The rules of one chain as canonical text (what expected_snapshot() holds), for tests.
std::vector<std::string> canonical_rules(const Chain& c, const Ruleset& rs);

/// Walks the netlink messages of one buffer (libmnl's callbacks stop at the first ACK).
void for_each_message(const std::uint8_t* data, std::size_t len, const std::function<void(const nlmsghdr*)>& f);

}  // namespace leakguard::firewall::nft
