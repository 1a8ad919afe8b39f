#pragma once
// The prober: one round of STUN Binding transactions on the caller's io_context, the way a web
// page's ICE agent gathers candidates. For every interface that carries addresses (loopback
// excepted), for each family and each server: one transaction from a UDP socket bound to the
// interface (SO_BINDTODEVICE) and to its address; plus one per family and server from a socket that
// is not bound to anything and follows the routing table. All at once, no threads, no sleeps; the
// round ends when every transaction has ended, at the latest after the configured timeout.
//
// Hop probes (hops.hpp) go beside them: UDP with TTL 1..hops from each non-tunnel interface toward
// every server and every hop target (the VPN endpoints), read back through the error queue.
//
// The probe gets no exemption from the firewall (no SO_MARK): it meets the rules a browser meets.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "probes/report.hpp"

namespace leakguard::probes {

/// A target of hop probes besides the STUN servers.
struct HopTarget {
  IpAddress address;
  std::string what;  ///< e.g. "endpoint 203.0.113.5:51820/udp"
};

struct Plan {
  /// Every interface of the namespace (loopback and address-less ones too): bound probes run on
  /// those with addresses, and answers are classified by the interface they arrive on.
  std::vector<Interface> interfaces;
  /// If not empty, bound probes only on these interface names (host candidates still list all).
  std::vector<std::string> only;
  std::vector<config::StunServer> servers;  ///< names are resolved when the round starts
  bool ipv4 = true;
  bool ipv6 = true;
  bool bound = true;    ///< per-interface probes
  bool routed = true;   ///< the unbound probe that follows the routing table
  /// Per interface and address also a probe bound to the address alone (no device), as browsers
  /// bind: it follows the routes from that source (ProbeResult::address_bound).
  bool address_bound = true;
  int hops = kDefaultHops;                      ///< hop probes with TTL 1..hops; 0: none
  std::vector<HopTarget> hop_targets;           ///< besides the servers (the daemon: the VPN endpoints)
  std::uint16_t hop_port_base = kHopPortBase;   ///< see pick_hop_port_base()
  milliseconds timeout = kDefaultProbeTimeout;  ///< the whole round, name resolution included
  milliseconds rto = kInitialRto;                  ///< first retransmission timeout (RFC 8489 §6.2.1)
  std::string software;        ///< SOFTWARE in requests; empty: none (browsers send none)
  ReportOptions report;
  /// Called on the io_context with each STUN probe's result as soon as it ends, before the round
  /// does (the daemon acts on a page's path out without waiting for the slowest server).
  std::function<void(const ProbeResult&)> on_result;
  /// The class of an interface the plan does not list, asked when an answer comes in through one
  /// (an interface made while the round runs: the tunnel wg-quick brings up after its PreUp
  /// declared it). Unset, or nullopt: no class (the report then judges by the tunnel's exit).
  std::function<std::optional<InterfaceClass>(const std::string& ifname)> classify_unknown;
};

/// A plan from the configuration's probe section (servers, families, timeout) and the interfaces.
Plan plan_for(const config::Probe& probe, std::vector<Interface> interfaces);

/// The VPN endpoints as hop targets (each address once), and a hop port base clear of their UDP
/// ports: a hop datagram toward an endpoint must meet the block, not the endpoint's exception.
void add_endpoint_hop_targets(Plan& plan, const std::vector<Endpoint>& endpoints);

class Prober {
 public:
  using Done = std::function<void(Report)>;

  explicit Prober(boost::asio::io_context& io);
  /// Cancels a running round; its callback is then never called.
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  /// Starts a round; `done` runs on the io_context when it ends. A round already running is
  /// cancelled first (its callback never runs). Sockets are opened in the calling thread's network
  /// namespace, partly from handlers: run the io_context in the same namespace.
  void start(Plan plan, Done done);
  /// Stops the running round at once, without calling its callback.
  void cancel();
  bool running() const;
  /// Whether a name lookup of the last round has not returned yet (getaddrinfo cannot be
  /// cancelled: it may outlive the round's deadline).
  bool lookups_in_flight() const;

 private:
  struct Round;
  boost::asio::io_context& io_;
  std::shared_ptr<Round> round_;
};

/// One round on a private io_context, returned when it ends (for leakguardctl candidates and tests).
Report probe(Plan plan);

}  // namespace leakguard::probes
