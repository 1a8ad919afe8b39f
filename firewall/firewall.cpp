#include "firewall/firewall.hpp"

#include <linux/netfilter/nf_tables.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <optional>
#include <utility>

#include "firewall/nft_dump.hpp"
#include "firewall/ruleset_nft.hpp"

namespace leakguard::firewall {

std::string ApplyReport::str() const {
  const char* h = "unchanged";
  switch (how) {
    case How::unchanged: break;
    case How::set_elements: h = "set elements"; break;
    case How::replaced: h = "rules replaced in place"; break;
    case How::installed: h = "installed"; break;
    case How::repaired: h = "repaired in place"; break;
    case How::recreated: h = "recreated"; break;
    case How::removed: h = "removed"; break;
  }
  return std::string(h) + ", " + std::to_string(messages) + " messages, " + std::to_string(bytes) + " bytes, " +
         std::to_string(took.count()) + " us";
}

struct Firewall::Impl {
  mutable std::mutex m;
  NetfilterSocket sock;
  Options options;
  bool owner = false;
  std::string note;
  std::optional<Policy> policy;
  std::optional<Ruleset> ruleset;
  std::optional<nft::TableSnapshot> expected;
  nft::RuleMemo memo;  ///< the rule messages last encoded, copied when a rule recurs
  /// The chains a change of rules replaced, and what they were built from (rules_of()): taken
  /// back instead of built again when the next change undoes it (a tunnel gone and back).
  struct Replaced {
    Policy rules;
    std::vector<Chain> chains;
  };
  std::optional<Replaced> replaced;
  ApplyReport last;

  explicit Impl(NetfilterSocket s) : sock(std::move(s)) {}

  std::uint32_t table_flags() const { return owner ? (nft::kTableOwner | nft::kTablePersist) : 0; }

  Result<void> send(const nft::Batch& b, ApplyReport::How how, std::chrono::steady_clock::time_point t0) {
    if (auto ok = sock.send(b); !ok) return ok;
    last = ApplyReport{how, b.steps.size(), b.bytes.size(),
                       std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)};
    return {};
  }

  /// `p` differs from the installed policy in rules only (same_sets()): the chains whose rules
  /// differ are flushed and refilled in one transaction. nullopt if that does not fit (the
  /// chains are declared differently, or the kernel lost something: the general path repairs).
  std::optional<Result<void>> change_rules(const Policy& p, std::chrono::steady_clock::time_point t0) {
    Ruleset& current = *ruleset;
    std::vector<Chain> next;
    if (replaced && same_rules(replaced->rules, p)) next = std::move(replaced->chains);
    else next = build_chains(p);
    replaced.reset();
    if (next.size() != current.chains.size()) return std::nullopt;
    Change change{Change::Kind::rules, {}, {}};
    for (std::size_t i = 0; i < next.size(); ++i) {
      const Chain& a = current.chains[i];
      const Chain& b = next[i];
      if (a.name != b.name || a.hook != b.hook || a.priority != b.priority || a.policy_drop != b.policy_drop ||
          a.base != b.base)
        return std::nullopt;
      if (a.rules != b.rules) change.chains.push_back(b.name);
    }
    // Only what may differ is copied: the endpoints and subnets are those installed.
    auto take_rules_of = [&] { take_rules(*policy, p); };
    if (change.chains.empty()) {
      take_rules_of();
      last = ApplyReport{ApplyReport::How::unchanged, 0, 0,
                         std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)};
      return Result<void>{};
    }
    // The model takes the new chains for the encoding (the sets stay as they are); put back if
    // the kernel refuses.
    std::vector<Chain> before = std::exchange(current.chains, std::move(next));
    auto sent = send(nft::encode_update(current, change, sock.seq(), &memo), ApplyReport::How::replaced, t0);
    if (!sent) {
      current.chains = std::move(before);
      if (sent.error().code == ENOENT) return std::nullopt;
      return sent;
    }
    replaced = Replaced{rules_of(*policy), std::move(before)};
    take_rules_of();
    expected.reset();
    return Result<void>{};
  }

  /// Our table put in place the first time in this process: repaired in place (created if
  /// missing, an orphan adopted), made anew only if a declaration is in the way. A handover
  /// table left by a process that died mid-handover goes in the same transaction.
  Result<void> install(const Ruleset& rs, std::chrono::steady_clock::time_point t0) {
    return repair(rs, t0, ApplyReport::How::installed, kHandoverTable);
  }

  /// Everything of `rs` put back without deleting the table (the repair batch). Made anew
  /// instead (a handover) if the kernel's table holds what a repair cannot set right (a chain or
  /// set that is not ours, one of ours declared differently, flags the kernel will not change),
  /// or if the kernel refuses the repair. A table owned by another live process is an error
  /// (EPERM), never taken.
  Result<void> repair(const Ruleset& rs, std::chrono::steady_clock::time_point t0,
                      ApplyReport::How how = ApplyReport::How::repaired, std::string_view also_remove = {}) {
    auto now = declarations();
    if (!now) return tl::unexpected(now.error());
    if (!now->present || nft::conflicts(nft::expected_declarations(rs), *now, table_flags()).empty()) {
      auto r = send(nft::encode_repair(rs, table_flags(), sock.seq(), also_remove, &memo), how, t0);
      if (r || r.error().code == EPERM) return r;
    }
    return recreate(rs, t0);
  }

  /// The table made anew without a moment in which nothing stops a packet. Deleting and adding a
  /// table in one transaction is not enough: the kernel hooks the new base chains in front of the
  /// old ones and lets them accept until the commit, and the commit unhooks the old ones, so a
  /// packet can pass the new chain before its rules are live and find the old one gone (see
  /// docs/firewall.md, "zero window"). So the same rules first go into a handover table, which
  /// stops what the new chains let pass while our table is recreated, and is then removed.
  Result<void> recreate(const Ruleset& rs, std::chrono::steady_clock::time_point t0) {
    Ruleset handover = rs;
    handover.table = kHandoverTable;
    if (auto ok = sock.send(nft::encode_recreate(handover, 0, sock.seq())); !ok) return ok;
    auto r = send(nft::encode_recreate(rs, table_flags(), sock.seq(), &memo), ApplyReport::How::recreated, t0);
    auto gone = sock.send(nft::encode_remove(kHandoverTable, sock.seq()));
    if (!r) return r;
    return gone;
  }

  /// The table's flags, chains and sets as the kernel has them (no rules, no elements).
  Result<nft::TableSnapshot> declarations() {
    const std::string table(kTableName);
    nft::TableSnapshot s;
    auto t = sock.request(nft::request_get_table(table, sock.take_seq()),
                          [&](const nlmsghdr* nlh) { return nft::parse_table(nlh, table, s); }, "read table");
    if (!t) {
      if (t.error().code == ENOENT) return s;  // not present
      return tl::unexpected(t.error());
    }
    auto c = sock.request(nft::request_dump_chains(table, sock.take_seq()),
                          [&](const nlmsghdr* nlh) { return nft::parse_chain(nlh, table, s); }, "dump chains");
    if (!c) return tl::unexpected(c.error());
    auto st = sock.request(nft::request_dump_sets(table, sock.take_seq()),
                           [&](const nlmsghdr* nlh) { return nft::parse_set(nlh, table, s); }, "dump sets");
    if (!st) return tl::unexpected(st.error());
    return s;
  }

  /// One read of the table; a dump interrupted by a concurrent change is retried.
  Result<nft::TableSnapshot> snapshot(std::vector<RuleCounter>* rule_counters, std::vector<InterfaceCounter>* if_counters) {
    for (int attempt = 0;; ++attempt) {
      auto r = snapshot_once(rule_counters, if_counters);
      if (r || r.error().code != EINTR || attempt == 4) return r;
      if (rule_counters) rule_counters->clear();
      if (if_counters) if_counters->clear();
    }
  }

  Result<nft::TableSnapshot> snapshot_once(std::vector<RuleCounter>* rule_counters, std::vector<InterfaceCounter>* if_counters) {
    const std::string table(kTableName);
    auto d = declarations();
    if (!d || !d->present) return d;
    nft::TableSnapshot& s = *d;
    auto r = sock.request(nft::request_dump_rules(table, sock.take_seq()),
                          [&](const nlmsghdr* nlh) { return nft::parse_rule(nlh, table, s, rule_counters); }, "dump rules");
    if (!r) return tl::unexpected(r.error());
    std::vector<std::string> names;
    for (const auto& set : s.sets) {
      if (set.flags & NFT_SET_TIMEOUT) continue;  // the sender sets: read by senders(), never compared
      const bool counting = (set.flags & NFT_SET_EVAL) != 0;
      if (counting ? if_counters != nullptr : rule_counters == nullptr) names.push_back(set.name);
    }
    for (const auto& name : names) {
      auto e = sock.request(nft::request_dump_elements(table, name, sock.take_seq()),
                            [&](const nlmsghdr* nlh) { return nft::parse_elements(nlh, table, s, if_counters); },
                            "dump set elements");
      if (!e) return tl::unexpected(e.error());
    }
    nft::normalize(s);
    return d;
  }
};

Firewall::Firewall(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Firewall::Firewall(Firewall&&) noexcept = default;
Firewall& Firewall::operator=(Firewall&&) noexcept = default;
Firewall::~Firewall() = default;

Result<Firewall> Firewall::open(const Options& options) {
  auto sock = NetfilterSocket::open(options.socket);
  if (!sock) return tl::unexpected(sock.error());
  auto impl = std::make_unique<Impl>(std::move(*sock));
  impl->options = options;
  // A scratch table created and deleted in one transaction answers three questions at once:
  // is nf_tables there, may we change it, and does the kernel know owner + persist.
  const std::string scratch = "leakguard-probe-" + std::to_string(impl->sock.portid());
  const std::uint32_t flags = options.ownership == Ownership::automatic ? (nft::kTableOwner | nft::kTablePersist) : 0;
  auto probe = impl->sock.send(nft::encode_probe(scratch, flags, impl->sock.seq()));
  if (probe) {
    impl->owner = flags != 0;
    impl->note = flags ? "owner+persist" : "no owner flag (--no-table-owner)";
    return Firewall(std::move(impl));
  }
  const Error& e = probe.error();
  const bool at_table_step = e.step.find("table inet") != std::string::npos;
  if (flags != 0 && at_table_step && (e.code == EOPNOTSUPP || e.code == EINVAL)) {
    // An older kernel: without persist, the owner flag alone would delete the table when the
    // daemon dies (fail-open). Go without it; the table guard re-asserts instead.
    auto plain = impl->sock.send(nft::encode_probe(scratch, 0, impl->sock.seq()));
    if (!plain) return fail("check nf_tables", plain.error().str(), plain.error().code);
    impl->owner = false;
    impl->note = "kernel lacks NFT_TABLE_F_PERSIST (" + e.message + "): no owner flag, the guard re-asserts";
    return Firewall(std::move(impl));
  }
  if (e.code == EPERM) return fail("check nf_tables", "permission denied: changing nftables needs CAP_NET_ADMIN (" + e.str() + ")", e.code);
  if (e.code == EOPNOTSUPP || e.code == EPROTONOSUPPORT || e.code == ENOENT)
    return fail("check nf_tables", "nf_tables is not available in this kernel (" + e.str() + ")", e.code);
  return fail("check nf_tables", e.str(), e.code);
}

Result<void> Firewall::apply(const Policy& p) {
  std::lock_guard lock(impl_->m);
  const auto t0 = std::chrono::steady_clock::now();
  // Same endpoints and LAN as installed (a tunnel declared, the mode changed): only chains are
  // built and compared, so the cost does not grow with the number of endpoints.
  if (impl_->ruleset && impl_->policy && same_sets(*impl_->policy, p)) {
    if (auto ok = validate_rules(p, impl_->options.limits); !ok) return ok;
    if (auto done = impl_->change_rules(p, t0)) return *done;
  }
  if (auto ok = validate(p, impl_->options.limits); !ok) return ok;
  Ruleset rs = build_ruleset(p);
  Result<void> sent;
  const Change change = impl_->ruleset ? plan_change(*impl_->ruleset, rs) : Change{Change::Kind::declarations, {}, {}};
  switch (change.kind) {
    case Change::Kind::none:
      impl_->last = ApplyReport{ApplyReport::How::unchanged, 0, 0,
                                std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)};
      break;
    case Change::Kind::elements:
    case Change::Kind::rules:
      sent = impl_->send(nft::encode_update(rs, change, impl_->sock.seq(), &impl_->memo),
                         change.kind == Change::Kind::rules ? ApplyReport::How::replaced : ApplyReport::How::set_elements, t0);
      // The table, a chain, a set or an element we counted on is gone (possible only without the
      // owner flag: someone else changed it; the guard would notice too): put it all back.
      if (!sent && sent.error().code == ENOENT) sent = impl_->repair(rs, t0);
      break;
    case Change::Kind::declarations:
      sent = impl_->ruleset ? impl_->repair(rs, t0) : impl_->install(rs, t0);
      break;
  }
  if (!sent) return sent;
  impl_->policy = p;
  impl_->expected.reset();  // computed when first needed: it costs more than a set update
  impl_->ruleset = std::move(rs);
  return {};
}

Result<void> Firewall::update_endpoints(const std::vector<Endpoint>& add, const std::vector<Endpoint>& remove) {
  std::lock_guard lock(impl_->m);
  const auto t0 = std::chrono::steady_clock::now();
  if (!impl_->ruleset || !impl_->policy) return fail("update endpoints", "no policy is installed");
  for (std::size_t i = 0; i < add.size(); ++i)
    if (const char* problem = endpoint_problem(add[i]))
      return fail("validate policy", "endpoints (added)[" + std::to_string(i) + "]: '" + add[i].str() + "': " + problem);
  const auto deltas = endpoint_deltas(*impl_->ruleset, add, remove);
  std::size_t added = 0, removed = 0;
  for (const auto& d : deltas) {
    added += d.add.size();
    removed += d.remove.size();
  }
  // The policy's list may hold duplicates; the sets do not. Count what the policy will hold.
  const std::size_t now = impl_->policy->endpoints.size();
  if (now + added - std::min(now, removed) > impl_->options.limits.max_endpoints)
    return fail("validate policy", "endpoints: " + std::to_string(now + added - removed) + " endpoints, at most " +
                                       std::to_string(impl_->options.limits.max_endpoints) + " allowed");
  if (deltas.empty()) {
    impl_->last = ApplyReport{ApplyReport::How::unchanged, 0, 0,
                              std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)};
    return {};
  }
  if (auto ok = impl_->send(nft::encode_set_deltas(kTableName, deltas, impl_->sock.seq()), ApplyReport::How::set_elements, t0); !ok)
    return ok;
  apply_deltas(*impl_->ruleset, deltas);
  auto& eps = impl_->policy->endpoints;
  for (const auto& d : deltas) {
    for (const auto& r : d.remove)
      eps.erase(std::remove(eps.begin(), eps.end(), std::get<Endpoint>(r)), eps.end());
    for (const auto& a : d.add) eps.push_back(std::get<Endpoint>(a));
  }
  impl_->expected.reset();
  return {};
}

Result<void> Firewall::reassert() {
  std::lock_guard lock(impl_->m);
  if (!impl_->ruleset) return {};
  return impl_->repair(*impl_->ruleset, std::chrono::steady_clock::now());
}

Result<void> Firewall::remove() {
  std::lock_guard lock(impl_->m);
  const auto t0 = std::chrono::steady_clock::now();
  if (auto ok = impl_->send(nft::encode_remove(kTableName, impl_->sock.seq()), ApplyReport::How::removed, t0); !ok) return ok;
  impl_->policy.reset();
  impl_->ruleset.reset();
  impl_->expected.reset();
  return {};
}

Result<bool> Firewall::adopt_as_is() {
  std::lock_guard lock(impl_->m);
  auto before = impl_->declarations();
  if (!before) return tl::unexpected(before.error());
  if (!before->present || before->chains.empty()) return false;  // nothing that blocks: nothing to keep
  if (impl_->owner) {
    if (auto ok = impl_->sock.send(nft::encode_adopt(kTableName, impl_->table_flags(), impl_->sock.seq())); !ok)
      return tl::unexpected(ok.error());
  }
  // Still there, with its chains (it may have been deleted in between: then there is nothing kept).
  auto after = impl_->declarations();
  if (!after) return tl::unexpected(after.error());
  return after->present && !after->chains.empty();
}

Result<std::vector<std::string>> Firewall::verify() {
  std::lock_guard lock(impl_->m);
  if (!impl_->ruleset) return std::vector<std::string>{};
  if (!impl_->expected) impl_->expected = nft::expected_snapshot(*impl_->ruleset);
  auto s = impl_->snapshot(nullptr, nullptr);
  if (!s) return tl::unexpected(s.error());
  auto diff = nft::compare(*impl_->expected, *s);
  if (s->present && impl_->owner && (!(s->flags & nft::kTableOwner) || s->owner != impl_->sock.portid()))
    diff.push_back("table is not owned by us (flags " + std::to_string(s->flags) + ", owner " + std::to_string(s->owner) + ")");
  return diff;
}

Result<std::vector<Counter>> Firewall::counters() {
  std::lock_guard lock(impl_->m);
  std::vector<RuleCounter> rules;
  std::vector<InterfaceCounter> ifs;
  auto s = impl_->snapshot(&rules, &ifs);
  if (!s) return tl::unexpected(s.error());
  if (!s->present) return fail("read counters", "table inet leakguard is not installed");
  return make_counters(rules, ifs);
}

Result<std::vector<SenderRecord>> Firewall::senders() {
  std::lock_guard lock(impl_->m);
  std::vector<SenderRecord> out;
  if (!impl_->ruleset) return out;
  const std::string table(kTableName);
  for (std::string_view set : {kSenderSet4, kSenderSet6}) {
    auto e = impl_->sock.request(nft::request_dump_elements(table, set, impl_->sock.take_seq()),
                                 [&](const nlmsghdr* nlh) { return nft::parse_sender_elements(nlh, table, out); },
                                 "dump set elements");
    if (!e) return tl::unexpected(e.error());
  }
  return out;
}

bool Firewall::owns_table() const {
  std::lock_guard lock(impl_->m);
  return impl_->owner;
}

std::string Firewall::ownership_note() const {
  std::lock_guard lock(impl_->m);
  return impl_->note;
}

std::uint32_t Firewall::portid() const { return impl_->sock.portid(); }

bool Firewall::installed() const {
  std::lock_guard lock(impl_->m);
  return impl_->ruleset.has_value();
}

std::optional<Policy> Firewall::policy() const {
  std::lock_guard lock(impl_->m);
  return impl_->policy;
}

std::optional<Ruleset> Firewall::ruleset() const {
  std::lock_guard lock(impl_->m);
  return impl_->ruleset;
}

ApplyReport Firewall::last_apply() const {
  std::lock_guard lock(impl_->m);
  return impl_->last;
}

}  // namespace leakguard::firewall
