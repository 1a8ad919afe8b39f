#include "daemon/probe_port.hpp"

#include <algorithm>
#include <cerrno>

#include "common/json_text.hpp"
#include "probes/interfaces.hpp"
#include "probes/prober.hpp"
#include "probes/report.hpp"

namespace leakguard::daemon {

namespace {

/// This host's own, a loopback or the unspecified address: what is sent there never leaves (the
/// kernel routes it through `lo`, whatever the source address or the bound device).
bool local_address(const IpAddress& a, const std::vector<IpAddress>& locals) {
  return a.is_unspecified() || a.is_loopback() || std::find(locals.begin(), locals.end(), a) != locals.end();
}

std::vector<IpAddress> host_addresses(const probes::Report& r) {
  std::vector<IpAddress> out;
  for (const auto& h : r.hosts) out.push_back(h.address);
  return out;
}

/// Device-bound probes out of non-tunnel interfaces whose request the kernel sent although
/// `rules` refuse it (an answer with an address is a leak of the report's already). Not for a
/// server at this host's own, a loopback or the unspecified address: the kernel sends those
/// through `lo` even from a socket bound to eth0, and loopback passes (a DNS blocklist answers
/// 0.0.0.0 for STUN servers: every round read as a hole). Not for an interface the rules in
/// force trust as a tunnel (their patterns may differ from the classification of a change the
/// kernel refused).
std::vector<const probes::ProbeResult*> unrefused(const probes::Report& r, const std::vector<IpAddress>& locals,
                                                  const firewall::Policy& rules) {
  auto trusted = [&](const std::string& ifname) {
    return std::any_of(rules.tunnels.begin(), rules.tunnels.end(), [&](const IfnamePattern& t) { return t.matches(ifname); });
  };
  std::vector<const probes::ProbeResult*> out;
  for (const auto& p : r.probes)
    if (p.sent && !p.routed && !p.address_bound && p.cls != InterfaceClass::tunnel && p.cls != InterfaceClass::loopback &&
        p.server_address && !std::holds_alternative<probes::Reflexive>(p.outcome) && !local_address(p.server_address->address, locals) &&
        !trusted(p.interface) &&
        firewall::refuses_outside_tunnel(rules, p.transport, p.server_address->address, p.server_address->port))
      out.push_back(&p);
  return out;
}

/// The routed TCP probe (a page's own socket) made its connection through an uplink (the source
/// address the kernel chose is a physical interface's) but got no STUN answer: the server listens
/// for TLS only, or speaks something else. The handshake alone shows the page's way out - unless
/// the server is this host itself (a local service on eth0's address, a blocklist answering with
/// it), behind a bridge of its own (a container: class other, no uplink), or on the LAN that the
/// rules in force let through with allow_lan (the user's choice, not a way around the tunnel).
bool connected_outside(const probes::ProbeResult& p, const std::vector<IpAddress>& locals, const firewall::Policy* rules) {
  if (!p.routed || p.transport != Transport::tcp || !p.sent || !p.arrival_class || *p.arrival_class != InterfaceClass::physical ||
      std::holds_alternative<probes::Reflexive>(p.outcome) || !p.server_address)
    return false;
  const IpAddress& to = p.server_address->address;
  return !local_address(to, locals) && !(rules && firewall::lan_allows(*rules, to));
}

LeakFinding connected_finding(const probes::ProbeResult& p) {
  LeakFinding l{"routed via " + printable_ifname(p.arrival_interface), std::string(to_string(p.family)), "", p.server, true, ""};
  l.connected_only = true;
  return l;
}

}  // namespace

ProbeOutcome to_outcome(const probes::Report& r, const firewall::Policy* rules) {
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
  const auto locals = host_addresses(r);
  const auto holes = rules ? unrefused(r, locals, *rules) : std::vector<const probes::ProbeResult*>{};
  std::vector<const probes::ProbeResult*> connected;
  for (const auto& p : r.probes)
    if (connected_outside(p, locals, rules)) connected.push_back(&p);
  o.verdict = r.verdict == probes::Verdict::leak || !holes.empty() || !connected.empty() ? ProbeVerdict::leak
              : tunnel_answered && starved == 0                   ? ProbeVerdict::ok
                                                                  : ProbeVerdict::unverified;
  o.verdict_text = o.verdict == ProbeVerdict::unverified ? "unverified"
                   : o.verdict == ProbeVerdict::leak     ? "leak"
                                                         : std::string(probes::to_string(r.verdict));
  o.summary = r.summary();
  // Says first what the round's verdict rests on; the prober's own "ok; " (no leak, as it saw it)
  // would read as a claim beside it ("ok; 2 probes (2 failed) in 3 ms").
  auto lead_with = [&](const std::string& what) {
    if (o.summary.rfind("ok; ", 0) == 0) o.summary.erase(0, 4);
    o.summary = what + "; " + o.summary;
  };
  if (!connected.empty()) {
    const auto& c = *connected.front();
    lead_with("a web page's TCP connection to " + c.server + " was made outside the tunnel (routed via " +
              printable_ifname(c.arrival_interface) + ", no STUN answer)");
  }
  if (!holes.empty()) {
    const auto& h = *holes.front();
    lead_with(std::to_string(holes.size()) + (holes.size() == 1 ? " request" : " requests") +
              " left outside the tunnel although the block refuses them (first: " + printable_ifname(h.interface) + " " +
              std::string(to_string(h.family)) + " toward " + h.server + "): the block does not hold");
  }
  // Why a round without a leak proves nothing, in words that fit what happened: no probe got as
  // far as a server (every one failed here: no name resolved, no socket), no tunnel was there to
  // probe, or the tunnel was probed and did not answer. ("The tunnel did not answer" on a machine
  // with no VPN, whose every probe failed on DNS, misled a reviewer.)
  std::string why;
  if (o.verdict == ProbeVerdict::unverified) {
    const bool none_sent = !r.probes.empty() && std::all_of(r.probes.begin(), r.probes.end(), [](const probes::ProbeResult& p) {
      return std::holds_alternative<probes::LocalFailure>(p.outcome);
    });
    const bool tunnel_probed = std::any_of(r.probes.begin(), r.probes.end(), [](const probes::ProbeResult& p) {
      return !p.routed && !p.address_bound && p.cls == InterfaceClass::tunnel;
    });
    if (tunnel_answered) why = std::to_string(starved) + (starved == 1 ? " probe" : " probes") + " could not be made (" + starved_why +
                               "): the paths they stood for are not known";
    else if (none_sent) why = "no probe reached a server: " + probes::str(r.probes.front().outcome);
    else if (!tunnel_probed) why = "no tunnel to probe: no VPN exit seen";
    else why = "the tunnel did not answer: no VPN exit seen";
    lead_with(why);
  }
  for (const auto* h : holes)
    o.leaks.push_back({printable_ifname(h->interface), std::string(to_string(h->family)), "", h->server, false, "", true});
  for (const auto* c : connected) o.leaks.push_back(connected_finding(*c));
  // `routed` for the daemon: a page's own socket (routed, or bound by address as browsers bind).
  for (const auto& l : r.leaks)
    o.leaks.push_back({l.routed ? "routed via " + l.interface : l.address_bound ? l.interface + " by address" : l.interface,
                       std::string(to_string(l.family)), l.hop ? std::string() : l.reflexive.str(), l.server,
                       l.routed || l.address_bound, l.hop ? l.hop->str() : std::string()});
  for (Family f : {Family::v4, Family::v6}) {
    bool answered = false, refused = false;
    // A page's sockets: the routed ones must answer through the tunnel; none of them, nor of the
    // address-bound ones (which may time out in a full tunnel), may be refused by the firewall
    // or leak. (No route at all - a container's bridge address with nowhere to go, ENETUNREACH -
    // is no way out: it held a family escalated for good.)
    for (const auto& p : r.probes) {
      if ((!p.routed && !p.address_bound) || p.family != f) continue;
      if (p.routed && std::holds_alternative<probes::Reflexive>(p.outcome)) answered = true;
      if (const auto* b = std::get_if<probes::Blocked>(&p.outcome); b && (probes::refused_by_firewall(b->error) || b->error == ECONNREFUSED))
        refused = true;
      if (const auto* l = std::get_if<probes::LocalFailure>(&p.outcome); l && l->error == ECONNREFUSED) refused = true;
    }
    const bool leaked = std::any_of(r.leaks.begin(), r.leaks.end(),
                                    [&](const probes::Leak& l) { return (l.routed || l.address_bound) && l.family == f; }) ||
                        std::any_of(connected.begin(), connected.end(), [&](const probes::ProbeResult* c) { return c->family == f; });
    if (answered && !refused && !leaked) o.routed_into_tunnel.push_back(f);
  }
  // The report as everyone reads it (ProbeNow, LastProbe, GetStatus): headed by the round's
  // verdict; the prober's own ("ok": nothing leaked, answered or not) beside it where it differs.
  auto j = probes::to_json(r);
  head_report(j, o.verdict_text);
  if (!why.empty()) j["unverified_because"] = why;
  j["summary"] = o.summary;  // the round's, as its verdict: not the prober's "ok; ..." under a leak or unverified
  // Each such probe marked where people read the round (leakguardctl probe): on its line in its
  // interface's group, the group's verdict leak.
  auto mark = [&](const std::string& group, const probes::ProbeResult& p, const char* field, const nlohmann::json& value) {
    for (auto& g : j["interfaces"])
      if (g["name"] == group)
        for (auto& res : g["results"])
          if (res["server"] == p.server && res["family"] == std::string(to_string(p.family)) && res.value("sent", false) &&
              res["reflexive"].is_null()) {
            res["leak"] = true;
            res[field] = value;
            g["verdict"] = "leak";
          }
  };
  for (const auto* h : holes) mark(h->interface, *h, "unrefused", true);
  for (const auto* c : connected) mark("route", *c, "connected_outside", "routed via " + printable_ifname(c->arrival_interface));
  o.json = json_text(j);
  return o;
}

std::optional<LeakFinding> page_path_out(const probes::ProbeResult& p, const std::vector<IpAddress>& locals,
                                         const firewall::Policy* rules) {
  if (connected_outside(p, locals, rules)) return connected_finding(p);
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
                             std::function<bool()> strict, std::function<std::vector<Endpoint>()> endpoints,
                             std::function<std::optional<firewall::Policy>()> rules)
    : model_(std::move(model)),
      is_tunnel_(std::move(is_tunnel)),
      settings_(std::move(settings)),
      strict_(std::move(strict)),
      endpoints_(std::move(endpoints)),
      rules_(std::move(rules)),
      prober_(std::make_unique<probes::Prober>(io)) {}

StunProbePort::~StunProbePort() = default;

void StunProbePort::start(std::function<void(ProbeOutcome)> done, std::function<void(const LeakFinding&)> path_out) {
  // The interfaces as the watcher sees them now, classified with the tunnels as declared now.
  auto plan = probes::plan_for(settings_(), probes::interfaces_from(model_(), is_tunnel_));
  plan.report.strict = strict_();
  probes::add_endpoint_hop_targets(plan, endpoints_());
  // The rules the round's requests met: those in force at its start (for a finding as it comes),
  // and, for the round's verdict, only if still so at its end.
  auto before = std::make_shared<const std::optional<firewall::Policy>>(rules_ ? rules_() : std::nullopt);
  std::vector<IpAddress> locals;
  for (const auto& i : plan.interfaces) locals.insert(locals.end(), i.addresses.begin(), i.addresses.end());
  plan.on_result = [before, locals = std::move(locals), path_out = std::move(path_out)](const probes::ProbeResult& p) {
    if (auto l = page_path_out(p, locals, *before ? &**before : nullptr); l && path_out) path_out(*l);
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
  prober_->start(std::move(plan), [this, before, done = std::move(done)](probes::Report r) {
    const auto after = rules_ ? rules_() : std::nullopt;
    done(to_outcome(r, *before && after && **before == *after ? &*after : nullptr));
  });
}

}  // namespace leakguard::daemon
