#pragma once
// The Controller's FirewallPort on the real firewall (firewall/): Desired + the LAN's on-link
// subnets -> firewall::Policy -> one nftables transaction; the table guard's reports go to
// `on_tamper`. If nf_tables cannot be reached, every apply says why (the daemon goes to `error`)
// and the next apply tries again.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.hpp"
#include "config/config.hpp"
#include "daemon/controller.hpp"
#include "firewall/firewall.hpp"

namespace leakguard::firewall {
class TableGuard;
}  // namespace leakguard::firewall

namespace leakguard::daemon {

/// Desired (+ the network's sets: LAN, the tunnels' addresses, DHCP subnets) as the firewall's policy.
firewall::Policy to_policy(const Desired& d, const NetworkSets& network = {});
/// How many blocked packets a second each blocking rule logs for attribution (then a burst).
inline constexpr std::uint32_t kLogPerSecond = 100;
inline constexpr std::uint32_t kLogBurst = 50;

class NftFirewallPort final : public FirewallPort {
 public:
  /// by: "nft[1234]"; what: what was changed; restored: whether our table is back.
  using TamperFn = std::function<void(const std::string& by, const std::string& what, bool restored)>;

  /// `options`: how the Firewall is opened (Ownership::off: no owner flag, the guard alone).
  NftFirewallPort(boost::asio::io_context& io, firewall::Options options, TamperFn on_tamper);
  ~NftFirewallPort() override;

  Result<void> apply(const Desired& d) override;
  Result<void> remove() override;
  Result<void> check(const Desired& d) const override;
  Result<bool> keep_existing_table() override;

  /// Keeps the network's sets in step with the network (set updates, no rule change).
  void set_network(const NetworkSets& sets) override;
  /// Ownership, counters ("blocked 42 UDP packets ... via eth0"), last error: for GetStatus.
  nlohmann::json status() const override;

  /// The cgroups (ids) the sender sets hold for a blocked packet's flow: same destination,
  /// protocol and ports. Empty without a table or on any error (attribution only).
  std::vector<std::uint64_t> sender_cgroups(const IpAddress& destination, std::uint8_t protocol, std::uint16_t source_port,
                                            std::uint16_t destination_port);

  /// The policy of the table this port installed and keeps (none: no table of ours, or one kept
  /// from before the start whose rules this run does not know).
  std::optional<firewall::Policy> in_force() const;

  /// The ruleset `cfg` would install, in nft syntax, without installing anything.
  static Result<std::string> dry_run(const config::Config& cfg, const NetworkSets& network);

 private:
  Result<void> ensure_open();

  boost::asio::io_context& io_;
  firewall::Options options_;
  TamperFn on_tamper_;
  std::unique_ptr<firewall::Firewall> fw_;
  std::unique_ptr<firewall::TableGuard> guard_;
  std::optional<Desired> applied_;  // what is installed (nullopt: no table of ours)
  NetworkSets network_;
  std::string last_error_;
  // The sender sets as last read (sender_cgroups()).
  std::vector<firewall::SenderRecord> senders_;
  std::chrono::steady_clock::time_point senders_read_{};
};

}  // namespace leakguard::daemon
