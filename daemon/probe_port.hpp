#pragma once
// The Controller's ProbePort on the STUN prober (probes/): every round takes the interfaces and
// addresses from the network watcher's model, classifies them with the current tunnel patterns,
// and turns the report into the daemon's ProbeOutcome (verdict, leak findings, JSON).
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "daemon/controller.hpp"
#include "netwatch/model.hpp"

namespace leakguard::probes {
class Prober;
struct Report;
}  // namespace leakguard::probes

namespace leakguard::daemon {

/// A finished probe report as the Controller needs it: verdict, one-line summary, each leak.
ProbeOutcome to_outcome(const probes::Report& r);

class StunProbePort final : public ProbePort {
 public:
  /// `strict`: whether the block in force refuses every packet outside the tunnel (then a TCP
  /// answer to a device-bound socket is a leak, not an exposure: probes::ReportOptions::strict).
  /// `endpoints`: the VPN endpoints in force (configured and declared), the hop probes' targets.
  StunProbePort(boost::asio::io_context& io, std::function<netwatch::NetModel()> model,
                std::function<bool(const std::string&)> is_tunnel, std::function<config::Probe()> settings,
                std::function<bool()> strict, std::function<std::vector<Endpoint>()> endpoints);
  ~StunProbePort() override;
  void start(std::function<void(ProbeOutcome)> done) override;

 private:
  std::function<netwatch::NetModel()> model_;
  std::function<bool(const std::string&)> is_tunnel_;
  std::function<config::Probe()> settings_;
  std::function<bool()> strict_;
  std::function<std::vector<Endpoint>()> endpoints_;
  std::unique_ptr<probes::Prober> prober_;
};

}  // namespace leakguard::daemon
