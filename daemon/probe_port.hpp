#pragma once
// The Controller's ProbePort on the STUN prober (probes/): every round takes the interfaces and
// addresses from the network watcher's model, classifies them with the current tunnel patterns,
// and turns the report into the daemon's ProbeOutcome (verdict, leak findings, JSON).
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "firewall/policy.hpp"
#include "daemon/controller.hpp"
#include "netwatch/model.hpp"

namespace leakguard::probes {
class Prober;
struct Report;
struct ProbeResult;
}  // namespace leakguard::probes

namespace leakguard::daemon {

/// A finished probe report as the Controller needs it: verdict, one-line summary, each leak.
/// `rules`: the block that was in force for the whole round (null: none, or it changed during
/// the round). A request that left a non-tunnel device although those rules refuse it
/// (firewall::refuses_outside_tunnel) is a leak even if no server answered: the kernel took it
/// where the rules should have answered EPERM (the block does not hold), found as `unrefused`.
ProbeOutcome to_outcome(const probes::Report& r, const firewall::Policy* rules = nullptr);

/// A probe that shows by itself a web page's path out: a routed or address-bound probe whose answer
/// came in through a non-tunnel interface (loopback excepted: a server on this machine). The report
/// would call it a leak whatever the rest of the round shows (probes::make_report's first rule for
/// a page's sockets). Also the routed TCP probe whose connection was made through an uplink although
/// no STUN answer came (a server that speaks TLS only): `connected_only` - not to this host's own
/// address, a container behind a bridge, nor the LAN that `rules` let through with allow_lan.
/// `locals`: this host's addresses; `rules`: the block in force (null: none known).
std::optional<LeakFinding> page_path_out(const probes::ProbeResult& p, const std::vector<IpAddress>& locals = {},
                                         const firewall::Policy* rules = nullptr);

class StunProbePort final : public ProbePort {
 public:
  /// `strict`: whether the block in force refuses every packet outside the tunnel (then a TCP
  /// answer to a device-bound socket is a leak, not an exposure: probes::ReportOptions::strict).
  /// `endpoints`: the VPN endpoints in force (configured and declared), the hop probes' targets.
  /// `rules`: the firewall's policy in the kernel now (none: no table of ours), asked at a
  /// round's start and end (see to_outcome).
  StunProbePort(boost::asio::io_context& io, std::function<netwatch::NetModel()> model,
                std::function<bool(const std::string&)> is_tunnel, std::function<config::Probe()> settings,
                std::function<bool()> strict, std::function<std::vector<Endpoint>()> endpoints,
                std::function<std::optional<firewall::Policy>()> rules = {});
  ~StunProbePort() override;
  void start(std::function<void(ProbeOutcome)> done, std::function<void(const LeakFinding&)> path_out) override;

 private:
  std::function<netwatch::NetModel()> model_;
  std::function<bool(const std::string&)> is_tunnel_;
  std::function<config::Probe()> settings_;
  std::function<bool()> strict_;
  std::function<std::vector<Endpoint>()> endpoints_;
  std::function<std::optional<firewall::Policy>()> rules_;
  std::unique_ptr<probes::Prober> prober_;
};

}  // namespace leakguard::daemon
