#pragma once
// Ruleset -> nftnl batches (netlink bytes): one transaction per change of the table.
// No sockets here: netfilter_socket.cpp sends what this file encodes. Every expression sequence
// mirrors what nft 1.0.6 generates for the text of nft_text.cpp (checked by the integration
// test that compares `nft list table` after our batch and after `nft -f` of the text). Reading
// the kernel's table back is nft_dump.hpp's job.
#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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
    std::string text;    ///< what it does; for a rule, its chain
    std::int32_t rule = -1;  ///< a rule's index in its chain, else -1
    std::string comment;     ///< a rule's comment
    /// e.g. "add set lan4", "add rule 12 to chain output (udp-out)". A rule's text is put
    /// together only when asked for (an error): a policy change sends dozens of rules.
    std::string what() const;
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

/// The NEWRULE messages of the last two encodings, chain by chain, to copy instead of encoding
/// again. A rule's message depends on the table, its chain, the rule and the order of the table's
/// sets (a lookup names its set's id) - and the sequence number, which is rewritten. A policy
/// change flushes and refills whole chains, most of whose rules are those sent before (udp <->
/// strict, a tunnel declared, an escalation), and a change is often undone (the tunnel goes and
/// comes back, an escalation ends): their encoding through libnftnl was most of a change's own
/// CPU time (docs/firewall.md, "Measured"). Holds, per chain, the messages last encoded and those
/// of the encoding before that were not needed again: at most two chains' worth.
struct RuleMemo {
  struct Entry {
    Rule rule;
    std::vector<std::uint8_t> message;  ///< empty once taken
  };
  struct Generations {
    std::vector<Entry> last;   ///< the chain's rules as last encoded, in order
    std::vector<Entry> older;  ///< the rules of the encoding before that which `last` does not hold
  };
  std::string table;
  std::vector<std::string> sets;  ///< the set order the messages were made for
  std::map<std::string, Generations, std::less<>> chains;
  std::size_t reused = 0;         ///< messages copied rather than encoded, since made (for tests)
};

/// The table made anew in one transaction: NEWTABLE (no flags: a no-op if present, so the delete
/// cannot fail with ENOENT), DELTABLE, NEWTABLE with `table_flags`, sets, elements, chains, rules.
/// Not a safe change on its own: the kernel hooks the new base chains in before the old ones, and
/// a packet can meet the new chain still empty and the old one already gone. Firewall uses it
/// only for a fresh handover table, and for our table while a handover table stands in front
/// (docs/firewall.md, "The zero window").
Batch encode_recreate(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq, RuleMemo* memo = nullptr);
/// `change` (Kind::rules or Kind::elements, planned from the ruleset installed) in place: the
/// changed chains flushed and refilled, element deltas; no chain or set is created or deleted, so
/// every packet meets either the old rules or the new ones.
Batch encode_update(const Ruleset& rs, const Change& change, std::uint32_t first_seq, RuleMemo* memo = nullptr);
/// Puts `rs` back in place whatever our table holds now, without deleting it: NEWTABLE with
/// `table_flags`, NEWSET and NEWCHAIN for every declaration (created if missing, kept if there),
/// every rule flushed, every non-counting set flushed and refilled, every rule added. Fails (and
/// changes nothing) if a declaration in the kernel conflicts, e.g. a chain on another hook.
/// `also_remove` names a table deleted in the same transaction if it exists (a handover table
/// left behind), or is empty.
Batch encode_repair(const Ruleset& rs, std::uint32_t table_flags, std::uint32_t first_seq, std::string_view also_remove = {},
                    RuleMemo* memo = nullptr);

/// Removes the table (create-then-delete, so a missing table is not an error).
Batch encode_remove(std::string_view table, std::uint32_t first_seq);
/// Element changes only: deletions first, then additions, in one transaction; no rule changes.
Batch encode_set_deltas(std::string_view table, const std::vector<SetDelta>& deltas, std::uint32_t first_seq);
/// Only NEWTABLE with `table_flags` for an existing table: an orphan (a table whose owning socket
/// closed) becomes owned by this socket, its chains, sets, rules and elements untouched. Without
/// NLM_F_CREATE, so that a table gone meanwhile is not made anew, empty.
Batch encode_adopt(std::string_view table, std::uint32_t table_flags, std::uint32_t first_seq);
/// Creates and deletes a scratch table with `table_flags` in one transaction: succeeds only if
/// the kernel knows the flags (EOPNOTSUPP on kernels without NFT_TABLE_F_PERSIST).
Batch encode_probe(std::string_view scratch_table, std::uint32_t table_flags, std::uint32_t first_seq);

}  // namespace leakguard::firewall::nft
