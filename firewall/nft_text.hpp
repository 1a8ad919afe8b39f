#pragma once
// The ruleset in nft syntax: the dry run people review before they trust a change, loadable
// with `nft -f` (the benchmark and an integration test load exactly this text).
#include <string>

#include "firewall/policy.hpp"
#include "firewall/ruleset.hpp"

namespace leakguard::firewall {

struct TextOptions {
  /// Prepend "add table …; delete table …" so that `nft -f` replaces an existing table in one
  /// transaction, as our own batch does.
  bool replace = false;
  /// A leading "# …" comment line (e.g. the policy); empty for none.
  std::string header;
};

/// The whole table as `nft -f` input. Table flags (owner, persist) are not part of the text:
/// they only make sense for the netlink socket that keeps the table (see docs/firewall.md).
std::string to_nft_text(const Ruleset& rs, const TextOptions& options = {});

/// One rule as nft prints it, e.g. `meta l4proto udp counter reject with icmpx admin-prohibited comment "udp-out"`.
std::string to_nft_text(const Rule& r);

/// The dry run: the text for a policy, headed by the policy's one-line form. Validates first.
Result<std::string> dry_run(const Policy& p, const Limits& limits = {});

}  // namespace leakguard::firewall
