#include "daemon/controller.hpp"

#include <linux/rtnetlink.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "common/json_text.hpp"
#include "common/lan.hpp"
#include "common/overloaded.hpp"
#include "firewall/policy.hpp"

namespace leakguard::daemon {

namespace {
std::string families_text(const std::vector<Family>& fs) {
  std::string s;
  for (Family f : fs) s += (s.empty() ? "" : "+") + std::string(f == Family::v4 ? "IPv4" : "IPv6");
  return s;
}
}  // namespace

std::string Desired::str() const {
  if (emergency) return "emergency block (everything but loopback dropped)";
  std::string t, e;
  for (const auto& p : tunnels) t += (t.empty() ? "" : ",") + p.text;
  for (const auto& x : endpoints) e += (e.empty() ? "" : ",") + x.str();
  return "policy=" + std::string(to_string(mode)) + " allow_lan=" + (allow_lan ? "yes" : "no") + " tunnels=[" +
         t + "] endpoints=[" + e + "]" + (fwmark ? " fwmark=" + fwmark->str() : "") +
         (fwmark || endpoint_uid == 0u ? "" : " endpoint_uid=" + (endpoint_uid ? std::to_string(*endpoint_uid) : "any")) +
         (escalated.empty() ? "" : " escalated=" + families_text(escalated));
}

Desired desired_from(const config::Config& c) {
  Desired d;
  d.mode = c.policy;
  d.allow_lan = c.allow_lan;
  d.tunnels = c.tunnel_interfaces;
  d.endpoints = c.endpoints;
  d.fwmark = c.fwmark;
  d.endpoint_uid = c.endpoint_uid;
  if (c.attribution.enabled) d.log_group = c.attribution.nflog_group;
  return d;
}

namespace {

constexpr std::uint8_t kTcp = 6;

/// The addresses on the links of class `cls`, in the model's order.
std::vector<const netwatch::Address*> addresses_on(const netwatch::NetModel& m, const netwatch::Classifier& c,
                                                   InterfaceClass cls) {
  std::vector<const netwatch::Address*> out;
  for (const auto& a : m.addresses())
    if (const netwatch::Link* l = m.link(a.index); l && m.classify(*l, c) == cls) out.push_back(&a);
  return out;
}

template <typename T>
void add_once(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

/// A configuration error as the log and status say it: the file's own message (file:line:col).
std::string config_error_text(const Error& e) { return e.message.empty() ? e.str() : e.message; }

}  // namespace

std::vector<IpAddress> tunnel_addresses(const netwatch::NetModel& m, const netwatch::Classifier& c) {
  std::vector<IpAddress> out;
  for (const auto* a : addresses_on(m, c, InterfaceClass::tunnel)) {
    const IpAddress& x = a->prefix.address;
    if (!x.is_link_local() && !x.is_loopback() && !x.is_multicast() && !x.is_unspecified()) add_once(out, x);
  }
  return out;
}

std::vector<Prefix> dhcp_subnets(const netwatch::NetModel& m, const netwatch::Classifier& c) {
  std::vector<Prefix> out;
  for (const auto* a : addresses_on(m, c, InterfaceClass::physical)) {
    if (a->prefix.address.family != Family::v4 || a->scope != RT_SCOPE_UNIVERSE) continue;
    if (a->prefix.length == 32 || !lan_sized(a->prefix)) continue;  // no subnet, or no link's
    add_once(out, a->prefix.network());
  }
  return out;
}

namespace {

/// Keeps the first `max` of `v` (the configuration's own LAN ranges come first in lan_subnets());
/// says what was left out.
template <typename T>
void clamp(std::vector<T>& v, std::size_t max, std::string_view what, std::string_view meaning, std::string& overflow) {
  if (v.size() <= max) return;
  if (!overflow.empty()) overflow += "; ";
  overflow += std::string(what) + ": " + std::to_string(v.size()) + ", only the first " + std::to_string(max) + " kept (" +
              std::string(meaning) + ")";
  v.resize(max);
}

}  // namespace

NetworkSets network_sets(const netwatch::NetModel& m, const netwatch::Classifier& c, const std::vector<Prefix>& listed_lan) {
  NetworkSets s{lan_subnets(m, c, listed_lan), tunnel_addresses(m, c), dhcp_subnets(m, c), {}};
  const firewall::Limits limits;
  // Cut to what the firewall takes, each set on its own: one oversized set must not make the
  // firewall refuse the update of all three (the tunnel's new address unprotected because a
  // network handed out 300 subnets).
  clamp(s.lan, limits.max_lan_subnets, "on-link LAN subnets", "allow_lan opens no more", s.overflow);
  clamp(s.tunnel_addresses, limits.max_tunnel_addresses, "tunnel addresses",
        "packets for the others through a physical interface are not dropped early", s.overflow);
  clamp(s.dhcp, limits.max_lan_subnets, "DHCP subnets", "a renewal to the others goes by broadcast", s.overflow);
  return s;
}

Desired emergency_block() {
  Desired d;
  d.mode = Mode::strict;
  d.emergency = true;
  return d;
}

std::string_view to_string(Protection p) {
  switch (p) {
    case Protection::none: return "none";
    case Protection::configured: return "configured";
    case Protection::emergency: return "emergency";
    case Protection::kept: return "kept";
  }
  return "?";
}

std::vector<Prefix> lan_subnets(const netwatch::NetModel& m, const netwatch::Classifier& c,
                                const std::vector<Prefix>& listed) {
  std::vector<Prefix> out;
  auto add = [&](const Prefix& p) {
    // Wider than /8 (IPv4) or /16 (IPv6) would open most of the internet: the firewall refuses
    // such subnets, so they are never offered (the configuration refuses them in its list).
    if (lan_sized(p)) add_once(out, p);
  };
  for (const auto& p : listed) add(p.network());
  for (const auto* a : addresses_on(m, c, InterfaceClass::physical)) {
    // Link-local is allowed by its own rule; host-scope and full-length prefixes are no subnet.
    if (a->scope != RT_SCOPE_UNIVERSE && a->scope != RT_SCOPE_SITE) continue;
    if (a->prefix.length == (a->prefix.address.family == Family::v4 ? 32 : 128)) continue;
    // Only the part inside the private ranges: the network decides what is on-link, not what
    // is local.
    for (const auto& range : private_ranges())
      if (auto part = intersect(a->prefix, range)) add(*part);
  }
  return out;
}

TunnelLink tunnel_link(const netwatch::NetModel& m, const netwatch::Classifier& c) {
  for (const auto& [i, l] : m.links())
    if (c.is_tunnel(l.name) && l.up() && l.running()) return {true, printable_ifname(l.name)};
  return {};
}

Controller::Controller(Result<config::Config> cfg, FirewallPort& fw, ProbePort& probe, Notifications& out,
                       std::function<Result<config::Config>()> reload_config, std::function<TimePoint()> clock)
    : config_(cfg ? std::move(*cfg) : config::defaults()),
      fw_(fw),
      probe_(probe),
      out_(out),
      reload_config_(std::move(reload_config)),
      clock_(std::move(clock)) {
  if (!cfg) {
    // The defaults only stand in for what nobody reads while the configuration is not usable:
    // no tunnel is trusted and the firewall gets the emergency block, never the defaults' rules.
    start_config_error_ = config_error_text(cfg.error());
    desired_ = emergency_block();
  } else {
    desired_ = compute();
  }
}

Desired Controller::compute() const {
  Desired d = desired_from(config_);
  if (mode_override_) d.mode = *mode_override_;
  if (lan_override_) d.allow_lan = *lan_override_;
  if (declared_) {
    if (std::none_of(d.tunnels.begin(), d.tunnels.end(), [&](const IfnamePattern& p) { return p.text == declared_->interface; }))
      d.tunnels.push_back(IfnamePattern{declared_->interface});
    // Configured first, then the declared ones not configured, each once (a set: both lists
    // may hold a thousand).
    std::set<Endpoint> listed(d.endpoints.begin(), d.endpoints.end());
    for (const auto& e : declared_->endpoints)
      if (listed.insert(e).second) d.endpoints.push_back(e);
    if (declared_->fwmark) d.fwmark = declared_->fwmark;
  }
  if (d.mode == Mode::udp) {
    // Found by probes, and shown by the routing table itself (rules that send some users',
    // protocols' or ports' traffic around the tunnel): the latter is in the very rules written,
    // at start and when arming too, not only once a round has ended.
    d.escalated = escalated_;
    for (Family f : routing_escalation(netwatch::Classifier{d.tunnels}))
      if (std::find(d.escalated.begin(), d.escalated.end(), f) == d.escalated.end()) d.escalated.push_back(f);
    std::sort(d.escalated.begin(), d.escalated.end());
  }
  return d;
}

void head_report(nlohmann::json& report, const std::string& verdict) {
  if (!report.is_object() || report.value("verdict", "") == verdict) return;
  if (!report.contains("report_verdict")) report["report_verdict"] = report.contains("verdict") ? report["verdict"] : nlohmann::json(nullptr);
  report["verdict"] = verdict;
}

std::vector<Family> Controller::routing_escalation(const netwatch::Classifier& c) const {
  std::vector<Family> out;
  if (config_.probe.on_exposure != config::OnExposure::escalate) return out;
  for (Family f : {Family::v4, Family::v6})
    if (!ways_around(f, c).empty()) out.push_back(f);
  return out;
}

bool Controller::is_tunnel(const std::string& ifname) const { return classifier().is_tunnel(ifname); }

void Controller::feed(const Event& e) {
  const bool was_armed = machine_.armed();
  auto actions = machine_.handle(e);
  if (machine_.armed() != was_armed) ++armed_changes_;
  for (const auto& a : actions) run(a);
}

void Controller::run(const Action& a) {
  std::visit(overloaded{
                 [&](const ApplyRules&) {
                   ++applies_;
                   auto r = fw_.apply(desired_);
                   ++(r ? counts_.rules_applied : counts_.rules_failed);
                   if (r) {
                     last_rules_error_.clear();
                     protection_ = Protection::configured;
                     retry_due_.reset();
                     retry_delay_ = kRetryFirst;
                     out_.info("rules applied: " + desired_.str());
                     feed(RulesApplied{});
                   } else {
                     last_rules_error_ = r.error().str();
                     out_.error("cannot install the rules: " + last_rules_error_);
                     feed(RulesFailed{last_rules_error_});
                     // The kernel took nothing of this batch: what stood before still stands. If
                     // that was nothing, fail closed now; either way, try again later.
                     if (protection_ == Protection::none) fail_closed("the rules could not be installed");
                     schedule_retry();
                   }
                 },
                 [&](const RemoveRules&) {
                   retry_due_.reset();  // disarmed: nothing to retry
                   retry_delay_ = kRetryFirst;
                   if (auto r = fw_.remove(); !r) {
                     out_.error("cannot remove the rules: " + r.error().str());
                   } else {
                     protection_ = Protection::none;
                     out_.info("rules removed");
                   }
                 },
                 [&](const StartProbe& p) { start_probe(p.reason); },
                 [&](const StateChanged& s) { out_.state_changed(s.from, s.to, s.reason); },
                 [&](const LeakAlarm&) {},  // each finding was already reported with its details
             },
             a);
}

Result<void> Controller::start(const netwatch::NetModel& network) {
  network_ = network;
  if (start_config_error_.empty()) desired_ = compute();  // with the network (routing escalation)
  // Before the first install: it is complete.
  update_network_sets();
  if (!start_config_error_.empty()) {
    out_.error("configuration not usable: " + start_config_error_ +
               " (failing closed; fix the file, then SIGHUP or leakguardctl reload)");
    feed(ConfigFailed{start_config_error_});
    fail_closed("no usable configuration");
    schedule_retry();
  } else {
    out_.info("configuration: " + config_.str());
    if (config_.armed) feed(SetArmed{true, "configuration"});  // a failure fails closed (run())
    else start_probe("start (disarmed by configuration)");
  }
  observe("start", false);  // after the rules: a tunnel found up starts no probe before them
  if (machine_.armed() && protection_ == Protection::none)
    return fail("start", "cannot install even the emergency block: " + block_error_);
  return {};
}

void Controller::fail_closed(const std::string& why) {
  // Our table from a previous run (kept by the kernel's persist flag, or left by a daemon that was
  // stopped) is the last good configuration's: it stays exactly as it is, never weakened to the
  // emergency block nor replaced by anything else until a good configuration is applied.
  auto kept = fw_.keep_existing_table();
  if (kept && *kept) {
    protection_ = Protection::kept;
    out_.error(why + ": table inet leakguard left by the previous run is kept as it is");
    return;
  }
  // Not readable, or not ours to take (another live process owns it): the emergency block's
  // install says the rest (it fails too if the firewall cannot be reached at all).
  // (Not necessarily a previous run's: another leakguardd may hold it, or none is there.)
  if (!kept) out_.error("cannot take over table inet leakguard: " + kept.error().str());
  auto r = fw_.apply(emergency_block());
  if (r) {
    protection_ = Protection::emergency;
    out_.error(why + ": emergency block in place (everything but loopback dropped)");
    return;
  }
  protection_ = Protection::none;
  block_error_ = r.error().str();
  out_.error("cannot install even the emergency block: " + block_error_);
}

void Controller::schedule_retry() {
  retry_due_ = clock_() + retry_delay_;
  retry_delay_ = std::min(retry_delay_ * 2, kRetryCap);
  out_.retry_due(*retry_due_);
}

void Controller::retry_timer() {
  if (!retry_due_) return;
  if (clock_() < *retry_due_) {
    out_.retry_due(*retry_due_);  // woken early: wait for the rest
    return;
  }
  retry_due_.reset();
  retry("retry");
}

void Controller::retry(const std::string& by) {
  if (!machine_.config_error().empty()) {
    auto c = reload_config_();
    if (!c) {
      const std::string why = config_error_text(c.error());
      out_.error("configuration still not usable (" + by + "): " + why);
      if (protection_ == Protection::none) fail_closed("no usable configuration");
      if (!retry_due_) schedule_retry();
      return;
    }
    retry_due_.reset();
    config_ = std::move(*c);
    mode_override_.reset();
    lan_override_.reset();
    desired_ = compute();
    note_settings();
    out_.info("configuration loaded (" + by + "): " + config_.str());
    feed(ConfigLoaded{by});
    // Per the file now: its rules replace the block in place (a failure retries with backoff),
    // or, if it says so, disarmed.
    feed(SetArmed{config_.armed, "configuration"});
    observe(by, false);
    return;
  }
  if (machine_.armed() && !machine_.rules_error().empty()) {
    retry_due_.reset();
    feed(SetArmed{true, by});  // arming again while armed retries the install
  }
}

Result<void> Controller::usable() const {
  if (machine_.config_error().empty()) return {};
  return fail("configuration", "not usable (" + machine_.config_error() +
                                   "): fix the file and reload; until then only the block stands");
}

void Controller::network_changed(const netwatch::NetModel& network, const std::string& summary) {
  const auto before = routing_escalation(classifier());
  network_ = network;
  const auto after = routing_escalation(classifier());
  if (after != before && machine_.config_error().empty()) {
    const auto was = desired_.escalated;
    if (recompute("the routing changed")) say_escalation(was);
  }
  observe(summary, true);
}

// Says which families the rules now hold strict, or no longer, for a reason other than a probe's
// finding (escalate() says those): the routing - a default route, a rule for some users.
void Controller::say_escalation(const std::vector<Family>& was) {
  if (desired_.mode != Mode::udp) return;  // strict holds everything: nothing to say per family
  std::vector<Family> added, dropped;
  for (Family f : desired_.escalated)
    if (std::find(was.begin(), was.end(), f) == was.end()) added.push_back(f);
  for (Family f : was)
    if (std::find(desired_.escalated.begin(), desired_.escalated.end(), f) == desired_.escalated.end()) dropped.push_back(f);
  std::string around, what;
  bool rules = false;  // a policy rule, not only a default route: some users' traffic really goes around
  for (Family f : added) {
    around += (around.empty() ? "" : ", ") + ways_around(f, classifier());
    rules = rules || !routed_around(f, classifier(), true).empty();
  }
  if (!added.empty())
    what = "escalated " + families_text(added) + " to strict: the routing sends some of this host's traffic around the tunnel (" +
           around + ")";
  if (!dropped.empty())
    what += (what.empty() ? "" : "; ") + families_text(dropped) + " back to the configured policy: " +
            (tunnel_link(network_, classifier()).up ? "the routing sends no traffic around the tunnel any more"
                                                    : "no tunnel is up (udp policy lets TCP out while the tunnel is down)");
  // A default route alone is what wg-quick shows between its link and its routes on every connect:
  // not an alarm. A rule that sends some users around the tunnel is.
  if (!what.empty()) (rules ? out_.error(what) : out_.info(what));
}

// A family escalated because its default route leaves outside a tunnel that is up, still so when a
// round ends, is then held as a probe's finding is (escalated_): the tunnel going down does not
// open it again (udp policy would let a page's TCP out there; the daemon held it strict before,
// once a round had found the path), and only a round that shows its way out in the tunnel lets it
// go (release_escalation).
void Controller::latch_default_route_escalation() {
  if (!escalation_allowed()) return;
  for (Family f : {Family::v4, Family::v6})
    if (default_around(f, classifier()) && std::find(escalated_.begin(), escalated_.end(), f) == escalated_.end())
      escalated_.push_back(f);  // the rules hold it already (compute()): nothing to apply
  std::sort(escalated_.begin(), escalated_.end());
}

void Controller::note_settings() {
  if (auto now = runtime_settings(); now != settings_said_) {
    settings_said_ = now;
    out_.settings_changed(now);
  }
}

void Controller::observe(const std::string& why, bool network_event) {
  update_network_sets();
  const TunnelLink t = tunnel_link(network_, classifier());
  if (t.up != machine_.tunnel_up()) feed(TunnelState{t.up, t.str()});
  else if (network_event) feed(NetworkChanged{why});
}

void Controller::update_network_sets() {
  NetworkSets sets = network_sets(network_, classifier(), config_.allow_lan_ranges);
  // Said once when it starts, changes or ends, not on every network event.
  if (sets.overflow != network_overflow_) {
    if (!sets.overflow.empty()) out_.error("the network is larger than the firewall's sets: " + sets.overflow);
    else out_.info("the network fits the firewall's sets again");
    network_overflow_ = sets.overflow;
  }
  fw_.set_network(sets);
}

void Controller::start_probe(const std::string& reason) {
  // Without a usable configuration there are no probe servers to ask, and nothing a probe could
  // say would change the state: the block, not a verdict, is what protects now.
  if (!machine_.config_error().empty()) return;
  if (probing_) {
    // One round at a time; whatever arrives meanwhile is covered by one more round after it.
    probe_again_ = true;
    pending_reason_ = reason;
    return;
  }
  probing_ = true;
  round_armed_changes_ = armed_changes_;
  counts_.round_start = clock_();
  probe_.start([this](ProbeOutcome o) { probe_finished(std::move(o)); },
               [this](const LeakFinding& l) { escalate_now(l); });
}

void Controller::probe_finished(ProbeOutcome o) {
  probing_ = false;
  last_round_end_ = clock_();
  counts_.last_round_end = last_round_end_;
  counts_.last_round_took = counts_.round_start ? *last_round_end_ - *counts_.round_start : Clock::duration{};
  if (o.verdict == ProbeVerdict::leak) {
    leak_count_ += o.leaks.empty() ? 1 : o.leaks.size();
    // Disarmed, the same leak comes back every round (nothing blocks it, by the user's choice):
    // each is said once (journal, LeakDetected, the desktop), not every interval; counted always.
    std::set<std::string> now;
    for (const auto& l : o.leaks) {
      const auto seen = Endpoint::parse(l.reflexive);  // its address; the port changes every round
      const std::string address = seen ? seen->address.str() : l.reflexive;
      const std::string key = l.interface + "|" + l.family + "|" + address + "|" + l.server + "|" + l.hop;
      now.insert(key);
      if (machine_.armed() || !disarmed_leaks_said_.contains(key)) out_.leak(l);
    }
    disarmed_leaks_said_ = machine_.armed() ? std::set<std::string>{} : std::move(now);
  } else {
    disarmed_leaks_said_.clear();
  }
  if (round_armed_changes_ == armed_changes_) escalate(o);  // (else: not on rules that are gone)
  // Where a page's traffic leaves, per family (the route its default socket takes): a tunnel
  // that carries no default traffic for a family is said with every round, whatever the probe
  // saw. (The rules decide what may leave there; this says that it does not go into the tunnel.)
  if (machine_.tunnel_up() && o.verdict != ProbeVerdict::leak)
    for (Family f : {Family::v4, Family::v6}) {
      const netwatch::Link* l = network_.link(network_.egress(f));
      if (l && network_.classify(*l, classifier()) != InterfaceClass::tunnel)
        o.summary += std::string("; ") + (f == Family::v4 ? "IPv4" : "IPv6") + " leaves via " + printable_ifname(l->name) +
                     ", not the tunnel";
      if (const auto side = routed_around(f, classifier(), false); !side.empty())
        o.summary += std::string("; some ") + (f == Family::v4 ? "IPv4" : "IPv6") + " traffic (" + side + ") is routed around the tunnel";
    }
  // A way out for a page's TCP that the routing table shows and that is not closed (on_exposure
  // alert): what the round saw proves nothing of those pages' traffic. Not "secured".
  if (o.verdict == ProbeVerdict::ok && desired_.mode == Mode::udp && machine_.tunnel_up())
    for (Family f : {Family::v4, Family::v6})
      if (const auto around = ways_around(f, classifier());
          !around.empty() && std::find(desired_.escalated.begin(), desired_.escalated.end(), f) == desired_.escalated.end()) {
        o.verdict = ProbeVerdict::unverified;
        o.verdict_text = "unverified";
        const std::string why = std::string("the routing sends some ") + (f == Family::v4 ? "IPv4" : "IPv6") +
                                " traffic around the tunnel (" + around + "), and nothing closes it (probe.on_exposure: alert)";
        o.summary = why + "; " + o.summary;
        auto j = nlohmann::json::parse(o.json, nullptr, false);
        head_report(j, o.verdict_text);
        if (!j.is_discarded()) {
          j["unverified_because"] = why;  // (leakguardctl probe said "the tunnel did not answer")
          o.json = json_text(j);
        }
        break;
      }
  switch (o.verdict) {
    case ProbeVerdict::ok: ++counts_.rounds_ok; break;
    case ProbeVerdict::unverified: ++counts_.rounds_unverified; break;
    case ProbeVerdict::leak: ++counts_.rounds_leak; break;
    case ProbeVerdict::none: ++counts_.rounds_none; break;
  }
  last_probe_ = o;
  out_.probe_completed(o);
  auto callers = std::exchange(waiting_, {});
  // A round during which the kill switch was armed or disarmed tested rules that are no longer
  // there: reported (what it saw was so then), not judged; the round the change asked for (queued
  // behind this one) judges the rules as they are.
  if (round_armed_changes_ == armed_changes_ || !probe_again_) {
    feed(ProbeDone{o.verdict, o.summary});
  } else {
    round_escalation_.clear();
    out_.info("probe round not judged: the kill switch was armed or disarmed while it ran; another round follows");
  }
  for (auto& cb : callers) cb(o.verdict_text, o.json);
  if (probe_again_ && !probing_) {
    probe_again_ = false;
    waiting_ = std::exchange(next_waiting_, {});
    start_probe(pending_reason_);
  }
  reschedule();
}

// Rules that route some of this host's traffic - some users', protocols' or ports' - to a table
// whose way to the internet is not the tunnel (`ip rule add uidrange 1000-1000 lookup main`): "uidrange
// 1000-1000 via eth0", or "" if none. The daemon's own probe is not such traffic and cannot see it.
std::string Controller::routed_around(Family f, const netwatch::Classifier& c, bool pages_only) const {
  std::string s;
  for (const auto& side : network_.side_egresses(f)) {
    if (pages_only && !side.pages) continue;
    const netwatch::Link* l = network_.link(side.oif);
    if (l && network_.classify(*l, c) == InterfaceClass::tunnel) continue;
    s += (s.empty() ? "" : ", ") + side.selector + " via " + (l ? printable_ifname(l->name) : std::string("nothing"));
  }
  return s;
}

// Where the family's default route leaves while a tunnel is up, if not into a tunnel; else null.
const netwatch::Link* Controller::default_around(Family f, const netwatch::Classifier& c) const {
  if (!tunnel_link(network_, c).up) return nullptr;
  const netwatch::Link* l = network_.link(network_.egress(f));
  return l && network_.classify(*l, c) != InterfaceClass::tunnel ? l : nullptr;
}

// Every way a web page's TCP has around the tunnel that the routing shows while a tunnel is up: the
// family's own default route when it does not go into the tunnel (an IPv4-only VPN on a network
// with IPv6: a page's TURN over TCP reaches the server with the ISP address, whether or not a
// probe server of that family answers), and the rules that send some traffic elsewhere.
std::string Controller::ways_around(Family f, const netwatch::Classifier& c) const {
  std::string s;
  if (const netwatch::Link* l = default_around(f, c)) s = "the default route via " + printable_ifname(l->name);
  const std::string rules = routed_around(f, c, true);
  return s + (s.empty() || rules.empty() ? "" : ", ") + rules;
}

// probe.on_exposure: escalate. A round that found a web page's own (routed) socket getting out in
// udp policy while the tunnel is up (a family the tunnel does not carry) holds that family as
// strict does, and asks for a round right after to show the path closed; a family is let go when
// a later round shows the way out going into the tunnel (its routed probes answered through it,
// none refused: ProbeOutcome::routed_into_tunnel) and the network agrees (release_escalation).
// With the tunnel down, udp policy lets TCP out by its definition: not escalated.
void Controller::escalate(ProbeOutcome& o) {
  if (!round_escalation_.empty()) o.summary += "; " + std::exchange(round_escalation_, {});
  // At a round's end, not at every change: wg-quick shows "up, default via eth0" for a moment on
  // every connect, between its link and its routes, and that must not hold IPv4 for good.
  latch_default_route_escalation();
  note_settings();
  std::vector<Family> found;
  if (escalation_allowed() && o.verdict == ProbeVerdict::leak)
    for (const auto& l : o.leaks) {
      const Family f = l.family == "ipv6" ? Family::v6 : Family::v4;
      if (l.routed && std::find(escalated_.begin(), escalated_.end(), f) == escalated_.end() &&
          std::find(found.begin(), found.end(), f) == found.end())
        found.push_back(f);
    }
  if (!found.empty()) {
    auto next = escalated_;
    next.insert(next.end(), found.begin(), found.end());
    std::sort(next.begin(), next.end());
    const std::string what = "escalated " + families_text(found) + " to strict: a web page's path out of the tunnel answered";
    if (change([&] { escalated_ = next; }, what)) {
      out_.error(what + " (" + o.summary + ")");
      o.summary += "; " + what;
      probe_again_ = true;  // show it closed
      pending_reason_ = "escalation";
    }
    return;
  }
  release_escalation(o.routed_into_tunnel);
}

bool Controller::escalation_allowed() const {
  return config_.probe.on_exposure == config::OnExposure::escalate && machine_.armed() && machine_.tunnel_up() &&
         desired_.mode == Mode::udp && !desired_.emergency;
}

// The same as escalate() for one finding, as soon as a probe shows it: the round may still wait for
// a slow or silent server (up to its timeout), and the path should not stay open that long. The
// round's end sees the family escalated already and keeps it (its routed probes leaked); its
// summary says what was done.
namespace {
/// What a finding saw, for a log line: "203.0.113.2:4000 seen by SERVER", or for a finding without
/// an address what showed the way out.
std::string seen(const LeakFinding& l) {
  if (l.connected_only) return "a TCP connection to " + l.server + " made";
  if (l.unrefused) return "a request toward " + l.server + " not refused";
  return l.reflexive + " seen by " + l.server;
}
}  // namespace

void Controller::escalate_now(const LeakFinding& l) {
  // (Not in a round during which the kill switch was armed or disarmed: it tested other rules.)
  if (!probing_ || !l.routed || round_armed_changes_ != armed_changes_) return;
  // The tunnel is down and udp policy lets a page's TCP out: the round will end `leaking` (up to
  // its slowest server's timeout later), and `blocking` meanwhile would be a claim against the
  // evidence already in. Said now; the round's end reports the findings as always.
  if (machine_.armed() && !machine_.tunnel_up() && machine_.state() == State::blocking) {
    feed(ProbeDone{ProbeVerdict::leak, "leak: " + seen(l) + " through the " + l.interface +
                                           " (the round goes on)"});
    return;
  }
  if (!escalation_allowed()) return;
  const Family f = l.family == "ipv6" ? Family::v6 : Family::v4;
  if (std::find(escalated_.begin(), escalated_.end(), f) != escalated_.end()) return;
  auto next = escalated_;
  next.push_back(f);
  std::sort(next.begin(), next.end());
  const std::string what = "escalated " + families_text({f}) + " to strict: a web page's path out of the tunnel answered";
  if (change([&] { escalated_ = next; }, what)) {
    out_.error(what + " (" + l.interface + ": " + seen(l) + "; the round goes on)");
    round_escalation_ += (round_escalation_.empty() ? "" : "; ") + what;
    probe_again_ = true;  // show it closed
    pending_reason_ = "escalation";
  }
}

// Both must say so: the round's probes (the way out answered through the tunnel, none refused) and
// the network as last reported (the family's default route goes into the tunnel, or it has none).
// The probes alone could catch a route that flips back within the watcher's debounce: the network
// would then never change from where it was when the family was escalated, and no round would
// come to notice the path open again.
void Controller::release_escalation(const std::vector<Family>& into_tunnel) {
  if (escalated_.empty()) return;
  // (Under on_exposure: alert nothing is closed: a family escalated before a reload to alert, or
  // kept from before a restart, is let go at the next round's end.)
  const bool moot = desired_.mode != Mode::udp || !machine_.armed() || config_.probe.on_exposure != config::OnExposure::escalate;
  auto route_into_tunnel = [&](Family f) {
    const netwatch::Link* l = network_.link(network_.egress(f));
    return (!l || network_.classify(*l, classifier()) == InterfaceClass::tunnel) && routed_around(f, classifier(), true).empty();
  };
  std::vector<Family> keep, released;
  for (Family f : escalated_) {
    const bool shown = std::find(into_tunnel.begin(), into_tunnel.end(), f) != into_tunnel.end() && route_into_tunnel(f);
    (moot || shown ? released : keep).push_back(f);
  }
  if (released.empty()) return;
  const std::string what = families_text(released) + " back to the configured policy: " +
                           (moot ? (config_.probe.on_exposure != config::OnExposure::escalate ? "probe.on_exposure is alert"
                                                                                               : "nothing to escalate")
                                 : "a web page's way out goes into the tunnel again");
  if (change([&] { escalated_ = keep; }, what)) out_.info(what);
}

std::optional<TimePoint> Controller::next_probe_due() const {
  if (probing_ || !last_round_end_) return std::nullopt;
  return *last_round_end_ + config_.probe.interval;
}

void Controller::reschedule() {
  const auto due = next_probe_due();
  if (!due) return;  // a round is running: its end schedules the next
  if (clock_() >= *due) feed(ProbeTimer{});
  else out_.probe_due(*due);
}

Result<void> Controller::probe_now(std::function<void(std::string, std::string)> done) {
  if (auto u = usable(); !u) return u;
  // The answer must come from a round that starts after the call.
  if (probing_) {
    next_waiting_.push_back(std::move(done));
    probe_again_ = true;
    pending_reason_ = "requested over D-Bus";
    return {};
  }
  waiting_.push_back(std::move(done));
  start_probe("requested over D-Bus");
  return {};
}

void Controller::table_tampered(const std::string& by, const std::string& what, bool restored) {
  // Every foreign change is news (log, TableTampered on D-Bus), repaired or not; the state machine
  // decides what it means for the state.
  ++counts_.tamper_events;
  out_.table_tampered(by, what, restored);
  feed(TableTampered{by, restored});
}

void Controller::probe_timer() { reschedule(); }

std::string Controller::stop() {
  if (!machine_.armed()) return "stopping (disarmed, no rules to keep)";
  if (config_.on_stop == config::OnStop::remove) {
    if (auto r = fw_.remove(); !r) return "stopping; could not remove the rules: " + r.error().str();
    return "stopping; rules removed (on_stop: remove)";
  }
  return "stopping; the block stays in place (on_stop: keep)";
}

Result<void> Controller::recompute(const std::string& what) {
  Desired next = compute();
  if (next == desired_) return {};
  if (auto r = fw_.check(next); !r) return r;
  desired_ = std::move(next);
  feed(PolicyChanged{what});
  return {};
}

template <typename F>
Result<void> Controller::change(F mutate, const std::string& what) {
  auto saved = std::make_tuple(config_, declared_, mode_override_, lan_override_, escalated_);
  const auto was = desired_.escalated;
  mutate();
  if (auto r = recompute(what); !r) {
    std::tie(config_, declared_, mode_override_, lan_override_, escalated_) = std::move(saved);
    out_.error("refused (" + what + "): " + r.error().str());
    return r;
  }
  // A declaration, a policy or a reload can bring the routing's reasons in or out (a probe's own
  // escalations are said by escalate()).
  if (escalated_ == std::get<4>(saved)) say_escalation(was);
  note_settings();
  // A tunnel declared after it came up is up now, not at the network's next change.
  observe(what, false);
  return {};
}

namespace {
Result<void> applied(const StateMachine& m, const std::string& error) {
  if (m.armed() && m.state() == State::error) return fail("apply rules", error);
  return {};
}
}  // namespace

Result<void> Controller::arm(const std::string& by) {
  if (auto u = usable(); !u) return u;
  feed(SetArmed{true, by});
  return applied(machine_, last_rules_error_);
}

Result<void> Controller::disarm(const std::string& by) {
  if (auto u = usable(); !u) return u;
  feed(SetArmed{false, by});
  return {};
}

void Controller::restore_tunnel(const TunnelDeclaration& t) {
  declared_ = t;
  // Without a usable configuration the emergency block stands; the declaration counts once a
  // good configuration is applied.
  if (start_config_error_.empty()) desired_ = compute();
}

std::string Controller::restore_settings(const RuntimeSettings& s) {
  // Never weaker than the file as it is now (it may have been edited while no daemon ran: a
  // `policy udp` set at run time over a file that now says strict would undo the edit).
  std::string dropped;
  mode_override_ = s.policy;
  if (mode_override_ == Mode::udp && config_.policy == Mode::strict) {
    mode_override_.reset();
    dropped = "policy udp (the file says strict)";
  }
  lan_override_ = s.allow_lan;
  if (lan_override_ == true && !config_.allow_lan) {
    lan_override_.reset();
    dropped += (dropped.empty() ? "" : ", ") + std::string("allow_lan on (the file says off)");
  }
  escalated_ = s.escalated;
  std::sort(escalated_.begin(), escalated_.end());
  escalated_.erase(std::unique(escalated_.begin(), escalated_.end()), escalated_.end());
  settings_said_ = s;  // what the file holds: a dropped part is written away with the next change
  if (start_config_error_.empty()) desired_ = compute();
  return dropped;
}

RuntimeSettings Controller::runtime_settings() const { return {mode_override_, lan_override_, escalated_}; }

std::string RuntimeSettings::str() const {
  std::string s;
  if (policy) s = "policy " + std::string(to_string(*policy)) + " (set at run time)";
  if (allow_lan) s += (s.empty() ? "" : ", ") + std::string("allow_lan ") + (*allow_lan ? "on" : "off") + " (set at run time)";
  if (!escalated.empty())
    s += (s.empty() ? "" : ", ") + families_text(escalated) + " escalated to strict (until a round shows the way out in the tunnel)";
  return s.empty() ? "nothing" : s;
}

Result<void> Controller::set_tunnel(const TunnelDeclaration& t, const std::string& by, Claim claim) {
  if (auto u = usable(); !u) return u;
  // Another VPN's interface that is there is a VPN that is up: replacing its declaration would cut
  // it off. One whose interface is gone (its client stopped without a word, or declared ahead, as
  // a placeholder or before creating it) may be replaced.
  if (claim == Claim::unless_other_live && declared_ && declared_->interface != t.interface &&
      (link_exists_ ? link_exists_(declared_->interface) : network_.link(declared_->interface) != nullptr))
    return fail(kTunnelBusy, "tunnel " + printable_ifname(declared_->interface) +
                                 " is declared and its interface is there (another VPN is up); take it down first");
  // Declared ahead of any VPN (NetworkManager's placeholder): never over another VPN's declaration,
  // even one whose interface is not there now (declared before it is made, or between an
  // OpenVPN restart's close and reopen of its tun device).
  if (claim == Claim::ahead && declared_ && declared_->interface != t.interface)
    return fail(kTunnelBusy, "tunnel " + printable_ifname(declared_->interface) +
                                 " is declared (another VPN's); a declaration ahead never replaces it");
  const bool same = declared_ == t;
  if (auto r = change([&] { declared_ = t; }, "tunnel " + t.interface + " declared by " + by); !r) return r;
  if (!same) {
    std::string eps;
    for (const auto& e : t.endpoints) eps += (eps.empty() ? "" : ", ") + e.str();
    out_.info("tunnel " + printable_ifname(t.interface) + " declared by " + by + ": endpoints " + eps +
              (t.fwmark ? ", fwmark " + t.fwmark->str() : ""));
  }
  out_.declaration_changed(declared_);
  return applied(machine_, last_rules_error_);
}

void Controller::blocked(const attribution::LoggedPacket& p, attribution::Sender s, attribution::SystemTime now, bool own) {
  if (own) {
    s.process = std::string(kOwnProbeApp);
    s.gone = false;
    s.note = p.destination_port == 53 || p.destination_port == 853
                 ? "the daemon's own lookup of a probe server's name (DNS outside the tunnel is blocked)"
                 : "the daemon's own probe, sent outside the tunnel to check the block";
  } else if (s.gone && p.protocol == kTcp && s.cgroup.empty()) {
    // A connection attempt refused with a reset: the reset closes the socket at once (and its
    // cgroup was not remembered: attribution off in the rules, or a socket in the root cgroup).
    s.note = "the reset that refused it closed the socket before it could be looked up";
  }
  // The interface by name, as the network model knows it now (a forwarded packet's way out).
  std::string ifname;
  if (const auto* l = network_.link(IfIndex{p.outdev})) ifname = l->name;
  blocked_.add(p, s, ifname, now);
}

std::optional<std::string> Controller::follow_peers_of() const {
  if (!declared_) return std::nullopt;
  return declared_->interface;
}

void Controller::peers_seen(const std::string& interface, const std::vector<Endpoint>& endpoints) {
  if (!declared_ || declared_->interface != interface || endpoints.empty() || !usable()) return;
  auto sorted = [](std::vector<Endpoint> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  };
  std::vector<Endpoint> next = endpoints;
  std::string was;
  for (const auto& e : declared_->endpoints) {
    if (e.transport != Transport::udp) next.push_back(e);
    else was += (was.empty() ? "" : ", ") + e.str();
  }
  next = sorted(std::move(next));
  if (next == sorted(declared_->endpoints)) {
    peers_refused_.clear();
    return;
  }
  if (next == peers_refused_) return;
  std::string now;
  for (const auto& e : sorted(endpoints)) now += (now.empty() ? "" : ", ") + e.str();
  TunnelDeclaration t = *declared_;
  t.endpoints = next;
  const std::string what = "tunnel " + printable_ifname(interface) + ": its WireGuard peers now send to " + now +
                           " (declared: " + (was.empty() ? "none" : was) + ")";
  if (!change([&] { declared_ = t; }, what)) {  // change() said why
    peers_refused_ = std::move(next);
    return;
  }
  peers_refused_.clear();
  out_.info(what);  // no caller's call to log it: the log is where it shows
  out_.declaration_changed(declared_);
}

Result<bool> Controller::clear_tunnel(const std::string& by, const std::optional<std::string>& only_if) {
  // Another interface (every device NetworkManager takes down asks): nothing to do, in any state.
  if (!declared_ || (only_if && declared_->interface != *only_if)) return false;
  if (auto u = usable(); !u) return tl::unexpected(u.error());
  const std::string was = declared_->interface;
  if (auto r = change([&] { declared_.reset(); }, "tunnel cleared by " + by); !r) return tl::unexpected(r.error());
  out_.info("tunnel " + printable_ifname(was) + " cleared by " + by);
  out_.declaration_changed(declared_);
  if (auto r = applied(machine_, last_rules_error_); !r) return tl::unexpected(r.error());
  return true;
}

Result<void> Controller::set_allow_lan(bool allow, const std::string& by) {
  if (auto u = usable(); !u) return u;
  if (auto r = change([&] { lan_override_ = allow; }, std::string("allow_lan ") + (allow ? "on" : "off") + " by " + by); !r)
    return r;
  return applied(machine_, last_rules_error_);
}

Result<void> Controller::set_policy(Mode policy, const std::string& by) {
  if (auto u = usable(); !u) return u;
  if (auto r = change([&] { mode_override_ = policy; }, "policy " + std::string(to_string(policy)) + " by " + by); !r)
    return r;
  return applied(machine_, last_rules_error_);
}

Result<void> Controller::reload(const std::string& by) {
  if (!machine_.config_error().empty()) {
    // Not a refusal to keep the running configuration (there is none): a retry, now.
    retry("reload by " + by);
    if (auto u = usable(); !u) return u;
    return applied(machine_, last_rules_error_);
  }
  auto c = reload_config_();
  if (!c) {
    out_.error("reload refused, keeping the running configuration: " + c.error().message);
    reload_error_ = c.error().message;
    return tl::unexpected(c.error());
  }
  reload_error_.clear();
  // The file is the truth again; only what VPN clients declared at run time is kept.
  const std::uint64_t applies_before = applies_;
  // (Not the interval alone: that only moves the next round, from the last one.)
  const bool probe_changed = [&] {
    auto next = c->probe;
    next.interval = config_.probe.interval;
    return !(next == config_.probe);
  }();
  const bool was_probing = probing_;
  auto r = change(
      [&] {
        config_ = *c;
        mode_override_.reset();
        lan_override_.reset();
      },
      "configuration reloaded by " + by);
  if (!r) return r;
  out_.info("configuration reloaded by " + by + ": " + config_.str());
  // Rules that failed before are tried again at once, if the new file did not already.
  if (applies_ == applies_before && machine_.armed() && !machine_.rules_error().empty()) {
    retry_due_.reset();
    feed(SetArmed{true, "reload by " + by});
  }
  // New servers, families or timeout: the verdict in force was found with the old ones, and says
  // nothing of the new (a round the change itself started is that round already).
  if (probe_changed && (was_probing || !probing_)) start_probe("reload by " + by + ": probe settings changed");
  reschedule();  // a new probe.interval counts from the last round now, not after the old wait
  return applied(machine_, last_rules_error_);
}

Snapshot Controller::snapshot() const {
  Snapshot s;
  s.state = std::string(to_string(machine_.state()));
  s.policy = std::string(to_string(desired_.mode));
  s.armed = machine_.armed();
  s.tunnel_interface = declared_ ? declared_->interface : "";
  for (const auto& e : desired_.endpoints) s.endpoints.push_back(e.str());
  s.last_probe_json = last_probe_ ? last_probe_->json : "";
  s.leak_count = leak_count_;
  return s;
}

std::string Controller::status_json() const {
  nlohmann::json j;
  j["state"] = to_string(machine_.state());
  j["reason"] = machine_.reason();
  j["armed"] = machine_.armed();
  j["policy"] = to_string(desired_.mode);
  j["escalated"] = nlohmann::json::array();  // families held as in strict (probe.on_exposure: escalate)
  for (Family f : desired_.escalated) j["escalated"].push_back(f == Family::v4 ? "ipv4" : "ipv6");
  // ... of which because of the routing rules (the rest: a probe found a page's way out)
  j["escalated_by_routing"] = nlohmann::json::array();
  if (desired_.mode == Mode::udp)
    for (Family f : routing_escalation(classifier())) j["escalated_by_routing"].push_back(f == Family::v4 ? "ipv4" : "ipv6");
  j["allow_lan"] = desired_.allow_lan;
  // What D-Bus set over the file (until the next reload, kept across restarts): null where the
  // file's value stands.
  j["set_at_runtime"]["policy"] = mode_override_ ? nlohmann::json(to_string(*mode_override_)) : nlohmann::json(nullptr);
  j["set_at_runtime"]["allow_lan"] = lan_override_ ? nlohmann::json(*lan_override_) : nlohmann::json(nullptr);
  // Why the declaration or these settings would not survive a restart (the runtime directory is
  // read-only, full or gone), or null.
  j["not_kept"] = keep_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(keep_error_);
  j["tunnel_up"] = machine_.tunnel_up();
  auto& t = j["tunnel"];
  t["patterns"] = nlohmann::json::array();
  // The configuration's names ("configured:" in leakguardctl status); the declared one is beside them.
  // (Without a usable configuration there are none: the defaults standing in are nobody's words.)
  if (machine_.config_error().empty())
    for (const auto& p : config_.tunnel_interfaces) t["patterns"].push_back(p.text);
  t["declared"] = declared_ ? nlohmann::json(declared_->interface) : nlohmann::json(nullptr);
  j["endpoints"] = nlohmann::json::array();
  for (const auto& e : desired_.endpoints) j["endpoints"].push_back(e.str());
  j["fwmark"] = desired_.fwmark ? nlohmann::json(desired_.fwmark->value) : nlohmann::json(nullptr);
  // Whose sockets reach the endpoints outside the tunnel: the mark's, else one user's, else anyone's.
  j["endpoint_uid"] = desired_.endpoint_uid ? nlohmann::json(*desired_.endpoint_uid) : nlohmann::json(nullptr);
  j["leak_count"] = leak_count_;
  j["rules_error"] = last_rules_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_rules_error_);
  // A reload refused (the running configuration stays): the file on disk would put a restart
  // into error. Null once a reload succeeds.
  j["reload_error"] = reload_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(reload_error_);
  j["config_error"] = machine_.config_error().empty() ? nlohmann::json(nullptr) : nlohmann::json(machine_.config_error());
  j["protection"] = to_string(protection_);
  if (retry_due_)
    j["retry_in_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(*retry_due_ - clock_()).count();
  else
    j["retry_in_ms"] = nullptr;
  if (last_probe_) {
    auto parsed = nlohmann::json::parse(last_probe_->json, nullptr, false);
    j["last_probe"] = parsed.is_discarded() ? nlohmann::json(last_probe_->summary) : parsed;
  } else {
    j["last_probe"] = nullptr;
  }
  j["network"] = netwatch::to_json(network_, classifier());
  j["firewall"] = fw_.status();
  j["blocked"] = blocked_.to_json();
  // For metrics (docs/metrics.md): counts since start; times as how long ago (the clock is monotonic).
  auto& n = j["counters"];
  n["probe_rounds"] = {{"ok", counts_.rounds_ok},
                       {"unverified", counts_.rounds_unverified},
                       {"leak", counts_.rounds_leak},
                       {"none", counts_.rounds_none}};
  n["tamper_events"] = counts_.tamper_events;
  n["rules_applied"] = counts_.rules_applied;
  n["rules_failed"] = counts_.rules_failed;
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  n["last_probe_ago_ms"] = counts_.last_round_end ? nlohmann::json(ms(clock_() - *counts_.last_round_end)) : nlohmann::json(nullptr);
  n["last_probe_duration_ms"] = counts_.last_round_end ? nlohmann::json(ms(counts_.last_round_took)) : nlohmann::json(nullptr);
  return json_text(j);
}

}  // namespace leakguard::daemon
