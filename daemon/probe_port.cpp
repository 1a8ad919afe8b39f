#include "daemon/probe_port.hpp"

#include <algorithm>
#include <cerrno>

#include "common/json_text.hpp"
#include "probes/interfaces.hpp"
#include "probes/prober.hpp"
#include "probes/report.hpp"

namespace leakguard::daemon {

ProbeOutcome to_outcome(const probes::Report& r) {
  ProbeOutcome o;
  // exposed-host is no leak through the firewall: the state stays secured, the report says why.
  // Without a leak, only an answer through the tunnel (its exit) is evidence: silence is not.
  const bool tunnel_answered = !r.exits4.empty() || !r.exits6.empty();
  // Probes this machine could not even make (out of file descriptors, buffers or memory) tested
  // nothing: the paths they stood for are unknown, and a round without a leak is not evidence.
  std::size_t starved = 0;
  std::string starved_why;
  for (const auto& p : r.probes)
    if (const auto* l = std::get_if<probes::LocalFailure>(&p.outcome);
        l && (l->error == EMFILE || l->error == ENFILE || l->error == ENOBUFS || l->error == ENOMEM)) {
      ++starved;
      if (starved_why.empty()) starved_why = l->message.empty() ? std::to_string(l->error) : l->message;
    }
  o.verdict = r.verdict == probes::Verdict::leak ? ProbeVerdict::leak
              : tunnel_answered && starved == 0  ? ProbeVerdict::ok
                                                 : ProbeVerdict::unverified;
  o.verdict_text = o.verdict == ProbeVerdict::unverified ? "unverified" : std::string(probes::to_string(r.verdict));
  o.summary = r.summary();
  if (o.verdict == ProbeVerdict::unverified) {
    // "ok; 2 probes (2 failed) in 3 ms": the probe's own "ok" (no leak) would read as a claim.
    if (o.summary.rfind("ok; ", 0) == 0) o.summary.erase(0, 4);
    o.summary = (!tunnel_answered ? "the tunnel did not answer (no VPN exit seen); "
                                  : std::to_string(starved) + (starved == 1 ? " probe" : " probes") + " could not be made (" +
                                        starved_why + "): the paths they stood for are not known; ") +
                o.summary;
  }
  // `routed` for the daemon: a page's own socket (routed, or bound by address as browsers bind).
  for (const auto& l : r.leaks)
    o.leaks.push_back({l.routed ? "routed via " + l.interface : l.address_bound ? l.interface + " by address" : l.interface,
                       std::string(to_string(l.family)), l.hop ? std::string() : l.reflexive.str(), l.server,
                       l.routed || l.address_bound, l.hop ? l.hop->str() : std::string()});
  for (Family f : {Family::v4, Family::v6}) {
    bool answered = false, refused = false;
    // A page's sockets: the routed ones must answer through the tunnel; none of them, nor of the
    // address-bound ones (which may time out in a full tunnel), may be refused or leak.
    for (const auto& p : r.probes) {
      if ((!p.routed && !p.address_bound) || p.family != f) continue;
      if (p.routed && std::holds_alternative<probes::Reflexive>(p.outcome)) answered = true;
      if (std::holds_alternative<probes::Blocked>(p.outcome)) refused = true;
      if (const auto* l = std::get_if<probes::LocalFailure>(&p.outcome); l && l->error == ECONNREFUSED) refused = true;
    }
    const bool leaked = std::any_of(r.leaks.begin(), r.leaks.end(),
                                    [&](const probes::Leak& l) { return (l.routed || l.address_bound) && l.family == f; });
    if (answered && !refused && !leaked) o.routed_into_tunnel.push_back(f);
  }
  // The report as everyone reads it (ProbeNow, LastProbe, GetStatus): headed by the round's
  // verdict; the prober's own ("ok": nothing leaked, answered or not) beside it where it differs.
  auto j = probes::to_json(r);
  head_report(j, o.verdict_text);
  o.json = json_text(j);
  return o;
}

std::optional<LeakFinding> page_path_out(const probes::ProbeResult& p) {
  const auto* x = std::get_if<probes::Reflexive>(&p.outcome);
  if (!x || !(p.routed || p.address_bound) || !p.arrival_class || *p.arrival_class == InterfaceClass::tunnel ||
      *p.arrival_class == InterfaceClass::loopback)
    return std::nullopt;
  const std::string via = printable_ifname(p.arrival_interface);
  return LeakFinding{p.routed ? "routed via " + via : printable_ifname(p.interface) + " by address via " + via,
                     std::string(to_string(p.family)), x->mapped.str(), p.server, true, ""};
}

StunProbePort::StunProbePort(boost::asio::io_context& io, std::function<netwatch::NetModel()> model,
                             std::function<bool(const std::string&)> is_tunnel, std::function<config::Probe()> settings,
                             std::function<bool()> strict, std::function<std::vector<Endpoint>()> endpoints)
    : model_(std::move(model)),
      is_tunnel_(std::move(is_tunnel)),
      settings_(std::move(settings)),
      strict_(std::move(strict)),
      endpoints_(std::move(endpoints)),
      prober_(std::make_unique<probes::Prober>(io)) {}

StunProbePort::~StunProbePort() = default;

void StunProbePort::start(std::function<void(ProbeOutcome)> done, std::function<void(const LeakFinding&)> path_out) {
  // The interfaces as the watcher sees them now, classified with the tunnels as declared now.
  auto plan = probes::plan_for(settings_(), probes::interfaces_from(model_(), is_tunnel_));
  plan.report.strict = strict_();
  probes::add_endpoint_hop_targets(plan, endpoints_());
  plan.on_result = [path_out = std::move(path_out)](const probes::ProbeResult& p) {
    if (auto l = page_path_out(p); l && path_out) path_out(*l);
  };
  // An interface made while the round runs: classified as it is when its answer comes, with the
  // tunnels declared then (wg-quick's PreUp declares wg0 before making it; the round its
  // declaration started was planned without it). Left unclassified, the routed probe's answer
  // through wg0 read as "path unknown": a false leak on every connect.
  plan.classify_unknown = [model = model_, is_tunnel = is_tunnel_](const std::string& ifname) -> std::optional<InterfaceClass> {
    if (is_tunnel(ifname)) return InterfaceClass::tunnel;
    const auto m = model();
    if (const auto* l = m.link(ifname)) return m.classify(*l, netwatch::Classifier{});
    return std::nullopt;
  };
  prober_->start(std::move(plan), [done = std::move(done)](probes::Report r) { done(to_outcome(r)); });
}

}  // namespace leakguard::daemon
