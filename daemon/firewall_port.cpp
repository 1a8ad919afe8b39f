#include "daemon/firewall_port.hpp"

#include "firewall/counters.hpp"
#include "firewall/firewall.hpp"
#include "firewall/nft_text.hpp"
#include "firewall/policy.hpp"
#include "firewall/ruleset.hpp"
#include "firewall/table_guard.hpp"

namespace leakguard::daemon {

firewall::Policy to_policy(const Desired& d, const NetworkSets& network) {
  firewall::Policy p;
  p.mode = d.mode;
  p.allow_lan = d.allow_lan;
  p.tunnels = d.tunnels;
  p.endpoints = d.endpoints;
  p.fwmark = d.fwmark;
  p.endpoint_uid = d.endpoint_uid;
  if (d.allow_lan) p.lan_subnets = network.lan;
  p.tunnel_addresses = network.tunnel_addresses;
  p.dhcp_subnets = network.dhcp;
  p.emergency = d.emergency;
  p.escalated = d.escalated;
  // At most 100 logged packets a second per blocking rule (after a burst of 50): what the daemon
  // reads stays small whatever is blocked; the counters still count every packet.
  if (d.log_group) p.log_blocked = firewall::Policy::LogBlocked{*d.log_group, kLogPerSecond, kLogBurst};
  return p;
}

NftFirewallPort::NftFirewallPort(boost::asio::io_context& io, firewall::Options options, TamperFn on_tamper)
    : io_(io), options_(std::move(options)), on_tamper_(std::move(on_tamper)) {}

NftFirewallPort::~NftFirewallPort() {
  if (guard_) guard_->stop();
}

Result<void> NftFirewallPort::ensure_open() {
  if (fw_) return {};
  auto f = firewall::Firewall::open(options_);
  if (!f) return tl::unexpected(f.error());
  fw_ = std::make_unique<firewall::Firewall>(std::move(*f));
  // The guard only defends a table we installed; without it enforcement still stands (and with
  // the owner flag the kernel itself refuses foreign changes), so its failure is reported, not fatal.
  auto g = firewall::TableGuard::start(io_, *fw_, [this](const firewall::TamperEvent& e) {
    on_tamper_(e.by, e.what + (e.repaired ? " (repaired in " + std::to_string(e.repair_time.count()) + " us)" : ""),
               e.restored);
  });
  if (g) guard_ = std::move(*g);
  else last_error_ = "table guard: " + g.error().str();
  return {};
}

std::optional<firewall::Policy> NftFirewallPort::in_force() const {
  if (!applied_) return std::nullopt;
  return to_policy(*applied_, network_);
}

Result<void> NftFirewallPort::apply(const Desired& d) {
  if (auto r = ensure_open(); !r) {
    last_error_ = r.error().str();
    return r;
  }
  auto r = fw_->apply(to_policy(d, network_));
  if (!r) {
    last_error_ = r.error().str();
    return r;
  }
  applied_ = d;
  // What failed before (an apply, a set update) stands no more; the guard's failure still does.
  if (!last_error_.starts_with("table guard: ")) last_error_.clear();
  return {};
}

Result<void> NftFirewallPort::remove() {
  // Also when nothing was applied by this process: an orphaned table from a previous run must go
  // when the administrator disarms.
  if (auto r = ensure_open(); !r) return r;
  auto r = fw_->remove();
  if (r) applied_.reset();
  return r;
}

Result<bool> NftFirewallPort::keep_existing_table() {
  if (auto r = ensure_open(); !r) {
    last_error_ = r.error().str();
    return tl::unexpected(r.error());
  }
  auto kept = fw_->adopt_as_is();
  if (!kept) last_error_ = "keeping the table left by the previous run: " + kept.error().str();
  return kept;
}

Result<void> NftFirewallPort::check(const Desired& d) const {
  return firewall::validate(to_policy(d, network_), options_.limits);
}

void NftFirewallPort::set_network(const NetworkSets& sets) {
  if (sets == network_) return;
  network_ = sets;
  if (!applied_ || !fw_) return;
  // Only sets change: element updates, no rule touched.
  if (auto r = fw_->apply(to_policy(*applied_, network_)); !r) last_error_ = "network set update: " + r.error().str();
  else if (last_error_.starts_with("network set update: ")) last_error_.clear();
}

nlohmann::json NftFirewallPort::status() const {
  nlohmann::json j;
  j["installed"] = applied_.has_value();
  j["error"] = last_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_error_);
  j["lan_subnets"] = nlohmann::json::array();
  for (const auto& p : network_.lan) j["lan_subnets"].push_back(p.str());
  j["tunnel_addresses"] = nlohmann::json::array();
  for (const auto& a : network_.tunnel_addresses) j["tunnel_addresses"].push_back(a.str());
  j["dhcp_subnets"] = nlohmann::json::array();
  for (const auto& p : network_.dhcp) j["dhcp_subnets"].push_back(p.str());
  if (!fw_) return j;
  j["owner"] = fw_->owns_table();
  j["ownership"] = fw_->ownership_note();
  j["last_apply"] = fw_->last_apply().str();
  j["guard"] = guard_ != nullptr;
  if (applied_) {
    if (auto c = fw_->counters()) {
      j["blocked"] = firewall::summarize(*c);
      j["counters"] = nlohmann::json::array();
      for (const auto& x : *c) {
        nlohmann::json one = {{"kind", x.kind}, {"direction", x.direction}, {"scope", x.interface_or_scope},
                              {"packets", x.packets}, {"bytes", x.bytes}};
        if (!x.family.empty()) one["family"] = x.family;
        j["counters"].push_back(std::move(one));
      }
    }
  }
  return j;
}

std::vector<std::uint64_t> NftFirewallPort::sender_cgroups(const IpAddress& destination, std::uint8_t protocol,
                                                           std::uint16_t source_port, std::uint16_t destination_port) {
  std::vector<std::uint64_t> out;
  if (!fw_) return out;
  auto match = [&] {
    for (const auto& r : senders_)
      if (r.destination == destination && r.protocol == protocol && r.source_port == source_port &&
          r.destination_port == destination_port)
        out.push_back(r.cgroup_id);
  };
  // The sets are read again only for a flow the last reading lacks (its packet came since) or
  // once that reading is 250 ms old: a burst of lookups for one application's closed sockets
  // reads them once, not once per lookup (each reading is up to 2 x 4096 elements).
  const auto now = std::chrono::steady_clock::now();
  if (now - senders_read_ < std::chrono::milliseconds(250)) {
    match();
    if (!out.empty()) return out;
  }
  auto records = fw_->senders();
  if (!records) return out;
  senders_ = std::move(*records);
  senders_read_ = now;
  match();
  return out;
}

Result<std::string> NftFirewallPort::dry_run(const config::Config& cfg, const NetworkSets& network) {
  return firewall::dry_run(to_policy(desired_from(cfg), network));
}

}  // namespace leakguard::daemon
