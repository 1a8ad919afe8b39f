#include "cli/candidates.hpp"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/iface.hpp"
#include "common/json_text.hpp"
#include "common/ip.hpp"
#include "config/config.hpp"
#include "probes/interfaces.hpp"
#include "probes/prober.hpp"
#include "probes/report.hpp"

namespace leakguard::cli {
namespace {

constexpr int kNoLeak = 0;
constexpr int kLeakFound = 1;
constexpr int kError = 2;
constexpr int kUnverified = 6;  // nothing was probed: no answer either way (leakguardctl's "not proven")

struct CandidatesOptions {
  std::vector<std::string> stun;
  std::vector<std::string> interfaces;
  std::vector<std::string> tunnels;
  std::string timeout;
  std::string config;
  bool only4 = false;
  bool only6 = false;
  bool no_route = false;
  int hops = -1;  // from the configuration
  bool json = false;
  bool ice = false;
  bool documentation_public = false;
};

int run_candidates(const CandidatesOptions& o, std::ostream& out, std::ostream& err) {
  auto bad = [&](const std::string& what) {
    err << "leakguardctl candidates: " << what << "\n";
    return kError;
  };

  // The configuration supplies what the command line leaves out: servers, tunnel names, timeout.
  config::Config cfg = config::defaults();
  const std::string default_path(config::kDefaultPath);
  if (!o.config.empty() || std::filesystem::exists(default_path)) {
    auto loaded = config::load(o.config.empty() ? default_path : o.config);
    if (!loaded) return bad(loaded.error().str());
    cfg = *loaded;
  }

  std::vector<config::StunServer> servers;
  for (const auto& s : o.stun) {
    auto hp = split_host_port(s);
    if (!hp) return bad("--stun " + s + ": " + hp.error().message);
    if (hp->host.empty()) return bad("--stun " + s + ": no host");
    servers.push_back({hp->host, hp->port, hp->transport});
  }
  if (servers.empty()) servers = cfg.probe.servers;
  if (servers.empty()) return bad("no STUN server: give --stun HOST:PORT or configure probe.servers");

  netwatch::Classifier classifier;
  for (const auto& t : o.tunnels) {
    auto p = IfnamePattern::parse(t);
    if (!p) return bad("--tunnel " + t + ": " + p.error().message);
    classifier.tunnels.push_back(*p);
  }
  if (o.tunnels.empty()) classifier.tunnels = cfg.tunnel_interfaces;

  auto interfaces = probes::current_interfaces(classifier);
  if (!interfaces) return bad("cannot read the interfaces: " + interfaces.error().str());
  for (const auto& name : o.interfaces) {
    bool known = false;
    for (const auto& i : *interfaces) known = known || i.name == name;
    if (!known) return bad("--interface " + name + ": no such interface (or it is down)");
  }

  probes::Plan plan = probes::plan_for(cfg.probe, std::move(*interfaces));
  plan.servers = std::move(servers);
  plan.only = o.interfaces;
  plan.routed = !o.no_route;
  if (o.hops > kMaxProbeHops) return bad("--hops " + std::to_string(o.hops) + ": at most " + std::to_string(kMaxProbeHops));
  if (o.hops >= 0) plan.hops = o.hops;
  probes::add_endpoint_hop_targets(plan, cfg.endpoints);
  plan.report.documentation_is_public = o.documentation_public;
  if (o.only4 && o.only6) return bad("-4 and -6 together: leave both out to probe both families");
  if (o.only4) plan.ipv6 = false;
  if (o.only6) plan.ipv4 = false;
  if (!o.timeout.empty()) {
    auto d = config::parse_duration(o.timeout);
    if (!d) return bad("--timeout " + o.timeout + ": " + d.error().message);
    if (d->count() <= 0) return bad("--timeout must be more than 0");
    plan.timeout = *d;
  }

  const probes::Report report = probes::probe(std::move(plan));

  // Nothing probed at all, or every probe failed before sending (e.g. no server's name resolved):
  // no answer either way, so the verdict is not the prober's "ok" (no leak seen) but unverified.
  const bool any_sent = std::any_of(report.probes.begin(), report.probes.end(), [](const probes::ProbeResult& p) {
    return !std::holds_alternative<probes::LocalFailure>(p.outcome);
  });
  const bool unverified = !any_sent && report.verdict != probes::Verdict::leak;

  if (o.json) {
    auto j = probes::to_json(report);
    if (unverified) {
      j["report_verdict"] = j["verdict"];
      j["verdict"] = "unverified";
    }
    if (o.ice) j["ice"] = probes::ice_candidates(report);
    out << json_text(j, 2) << "\n";
  } else if (o.ice) {
    for (const auto& line : probes::ice_candidates(report)) out << line << "\n";
  } else {
    std::string text = probes::to_text(report);
    if (unverified) text = "verdict: UNVERIFIED - no probe could be sent, nothing was tested" + text.substr(std::min(text.find('\n'), text.size()));
    out << text;
  }

  if (unverified) {
    err << "leakguardctl candidates: no probe could be sent (see the report)\n";
    return kUnverified;
  }
  return report.verdict == probes::Verdict::leak ? kLeakFound : kNoLeak;
}

}  // namespace

void add_candidates_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<CandidatesOptions>();
  auto* cmd = app.add_subcommand(
      "candidates", "Probe now, without the daemon: send STUN requests from every interface as a web page would "
                    "and show what the servers saw (exit 0 no leak, 1 leak, 2 error, 6 nothing could be probed)");
  cmd->add_option("--stun,-s", o->stun, "STUN server HOST:PORT[/udp|/tcp], IPv6 in brackets; repeatable "
                                         "(default: probe.servers from the configuration)");
  cmd->add_option("--interface,-i", o->interfaces, "Probe only through this interface; repeatable (host "
                                                   "candidates still list every interface)");
  cmd->add_option("--tunnel,-t", o->tunnels, "Interface name or prefix* that counts as the VPN tunnel; repeatable "
                                             "(default: tunnel.interfaces from the configuration, wg* tun*)");
  cmd->add_option("--timeout", o->timeout, "How long the round may take, e.g. 3s, 500ms (default: probe.timeout)");
  cmd->add_option("--config", o->config, "Configuration file (default: " + std::string(config::kDefaultPath) + " if present)");
  cmd->add_flag("-4", o->only4, "IPv4 only");
  cmd->add_flag("-6", o->only6, "IPv6 only");
  cmd->add_flag("--no-route", o->no_route, "Skip the probe that follows the routing table (per-interface probes only)");
  cmd->add_option("--hops", o->hops, "Hop probes: UDP with TTL 1..N out of each non-tunnel interface toward the servers and "
                                     "the configured endpoints, any answer a path out; 0: none (default: probe.hops, 3)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  cmd->add_flag("--ice", o->ice, "Print ICE candidate lines, as a browser's leak-test page shows them");
  cmd->add_flag("--documentation-public", o->documentation_public,
                "Count documentation addresses (192.0.2.0/24, 2001:db8::/32, ...) as public (test labs)");
  cmd->callback([o, &exit_code] { exit_code = run_candidates(*o, std::cout, std::cerr); });
}

}  // namespace leakguard::cli
