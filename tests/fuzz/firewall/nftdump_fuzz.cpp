// Fuzz target for the nftables dump parsers the table guard relies on (firewall/ruleset_nft.hpp).
// libnftnl aborts the process on an attribute of the wrong size ("kernel ABI is broken"), so
// mutating raw bytes only finds that (see docs/firewall.md, "Trust boundary"). This target is
// structure-aware instead: it keeps a real dump of our table (table-dump.bin: tables, chains,
// sets and rules of a strict policy, captured in a lab namespace) with every length, type and
// string terminator intact, and lets the fuzz input rewrite attribute *values* — verdicts,
// operators, registers, lengths inside expressions, names — then runs every parser, normalises
// and compares with what a policy expects. Input: records of 3 bytes (position index, 2 bytes;
// new value, 1 byte, non-zero) applied to the mutable bytes of the dump.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include <linux/netfilter/nf_tables.h>

#include "firewall/policy.hpp"
#include "firewall/ruleset.hpp"
#include "firewall/nft_dump.hpp"
#include "firewall/ruleset_nft.hpp"

namespace {

using Bytes = std::vector<std::uint8_t>;

std::size_t align4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

// Does [off, off+n) parse as a sequence of attributes that fills it exactly?
bool nested(const Bytes& b, std::size_t off, std::size_t n) {
  if (n < 4) return false;
  std::size_t at = off;
  while (at < off + n) {
    if (off + n - at < 4) return false;
    std::uint16_t len;
    std::memcpy(&len, &b[at], 2);
    if (len < 4 || at + len > off + n) return false;
    at += align4(len);
  }
  return at == align4(off + n) || at == off + n;
}

// Collects the payload bytes of leaf attributes that may change: non-zero ones (zeros are kept,
// so every string keeps its terminator and its length).
void leaves(const Bytes& b, std::size_t off, std::size_t n, std::vector<std::size_t>& out) {
  std::size_t at = off;
  while (at + 4 <= off + n) {
    std::uint16_t len;
    std::memcpy(&len, &b[at], 2);
    if (len < 4 || at + len > off + n) return;
    const std::size_t p = at + 4, pn = len - 4u;
    if (nested(b, p, pn)) leaves(b, p, pn, out);
    else
      for (std::size_t i = p; i < p + pn; ++i)
        if (b[i] != 0) out.push_back(i);
    at += align4(len);
  }
}

struct Dump {
  Bytes bytes;
  std::vector<std::size_t> mutable_at;
};

const Dump& dump() {
  static const Dump d = [] {
    Dump x;
    std::ifstream f(LEAKGUARD_NFT_DUMP, std::ios::binary);
    x.bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    std::size_t at = 0;
    while (at + 20 <= x.bytes.size()) {  // nlmsghdr (16) + nfgenmsg (4), then attributes
      std::uint32_t len;
      std::memcpy(&len, &x.bytes[at], 4);
      if (len < 20 || at + len > x.bytes.size()) break;
      leaves(x.bytes, at + 20, len - 20, x.mutable_at);
      at += align4(len);
    }
    return x;
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace leakguard::firewall;
  static const Ruleset expected_rs = [] {
    Policy p;
    p.mode = Mode::strict;
    p.tunnels = {*leakguard::IfnamePattern::parse("wg*")};
    p.endpoints = {*leakguard::Endpoint::parse("198.51.100.1:51820/udp")};
    return build_ruleset(p);
  }();
  const Dump& d = dump();
  if (d.mutable_at.empty()) return 0;
  Bytes b = d.bytes;
  for (std::size_t i = 0; i + 3 <= size; i += 3) {
    const std::size_t which = (std::size_t{data[i]} << 8 | data[i + 1]) % d.mutable_at.size();
    if (data[i + 2] != 0) b[d.mutable_at[which]] = data[i + 2];
  }
  nft::TableSnapshot snap;
  std::vector<RuleCounter> rule_counters;
  std::vector<InterfaceCounter> if_counters;
  // Each reply goes to its own parser, as Firewall::verify() does (message types stay intact).
  nft::for_each_message(b.data(), b.size(), [&](const nlmsghdr* nlh) {
    switch (nlh->nlmsg_type & 0xff) {
      case NFT_MSG_NEWTABLE: (void)nft::parse_table(nlh, "leakguard", snap); break;
      case NFT_MSG_NEWCHAIN: (void)nft::parse_chain(nlh, "leakguard", snap); break;
      case NFT_MSG_NEWRULE: (void)nft::parse_rule(nlh, "leakguard", snap, &rule_counters); break;
      case NFT_MSG_NEWSET: (void)nft::parse_set(nlh, "leakguard", snap); break;
      case NFT_MSG_NEWSETELEM: (void)nft::parse_elements(nlh, "leakguard", snap, &if_counters); break;
      default: break;
    }
  });
  nft::normalize(snap);
  (void)nft::compare(nft::expected_snapshot(expected_rs), snap);
  return 0;
}
