#pragma once
// The daemon's application layer: configuration + what VPN clients declared + the network as the
// watcher last published it + the state machine, with effects carried out through three small
// ports (firewall, probe, notifications). It decides — whether the tunnel is up, what the LAN is,
// when the next probe round is due — and the adapters and main.cpp only carry out. It is the
// Control behind D-Bus. Single-threaded: every call comes from the daemon's one io_context.
// Pure: no Asio, sdbus or libmnl; time comes from an injected clock, so the schedule is tested on
// virtual time.
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attribution/flows.hpp"
#include "common/iface.hpp"
#include "common/ip.hpp"
#include "config/config.hpp"
#include "daemon/control.hpp"
#include "daemon/state_machine.hpp"
#include "netwatch/model.hpp"

namespace leakguard::daemon {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

/// What the firewall must enforce now: the config, overridden by D-Bus calls and declarations.
struct Desired {
  Mode mode = Mode::udp;
  bool allow_lan = false;
  std::vector<IfnamePattern> tunnels;  ///< configured patterns plus the declared interface
  std::vector<Endpoint> endpoints;     ///< configured plus declared
  std::optional<FwMark> fwmark;
  std::optional<std::uint32_t> endpoint_uid = 0;  ///< without a mark: whose sockets reach the endpoints
  /// The emergency block: everything but loopback dropped, the fields above ignored.
  bool emergency = false;
  /// In udp policy: families held as in strict because a probe round found a web page's path out
  /// of the tunnel in them (probe.on_exposure: escalate); sorted, each once.
  std::vector<Family> escalated;
  /// Blocked packets that leave are logged to this nfnetlink_log group (attribution); none: not.
  std::optional<std::uint16_t> log_group;
  bool operator==(const Desired&) const = default;
  std::string str() const;
};

/// What the firewall enforces when no configuration can be (a broken or missing file, or rules
/// the kernel refuses, with no table of ours in place): everything but loopback dropped, in all
/// three chains, both families.
Desired emergency_block();

/// What was set at run time that a restart (a crash, `systemctl restart`, an upgrade) must not
/// lose: a policy or allow_lan set over D-Bus (until the next reload) and the families held strict
/// by probe.on_exposure escalate (until a round lets them go). A daemon that forgot them came back
/// weaker than it left: `udp` after an admin's `strict`, a page's TCP out of an escalated family
/// until the first round. Kept in the runtime directory beside the tunnel declaration.
struct RuntimeSettings {
  std::optional<Mode> policy;
  std::optional<bool> allow_lan;
  std::vector<Family> escalated;  ///< sorted, each once
  bool operator==(const RuntimeSettings&) const = default;
  /// "policy strict (set at run time), IPv6 escalated to strict (...)", for the log.
  std::string str() const;
};

/// What stands between the machine and the network while armed.
enum class Protection {
  none,        ///< nothing of ours is installed
  configured,  ///< the rules of the configuration (and D-Bus changes) as last applied
  emergency,   ///< the emergency block (see emergency_block())
  kept,        ///< our table as a previous run left it, untouched (the configuration could not be used)
};
std::string_view to_string(Protection p);

/// What the daemon's own probes are called among blocked senders.
inline constexpr std::string_view kOwnProbeApp = "leakguardd (probe)";

/// How often the declared WireGuard tunnel's peers are read (follow_peers_of()): the longest a
/// roaming client's packets to its server's new address meet the block.
inline constexpr std::chrono::milliseconds kPeerPoll{1000};

/// Retrying a failed installation: the first retry after 1 s, each next one after twice the wait
/// before, never more than 60 s apart; a success starts over.
inline constexpr std::chrono::milliseconds kRetryFirst{1000};
inline constexpr std::chrono::milliseconds kRetryCap{60000};

/// What a configuration asks of the firewall, before any D-Bus override or declaration: the one
/// translation, used by the running daemon and by --print-ruleset alike.
Desired desired_from(const config::Config& c);

/// What `allow_lan` opens besides link-local: the ranges the configuration lists
/// (allow_lan_ranges), and the on-link subnets of the physical interfaces (global and site scope)
/// as far as they lie inside the private ranges (common/lan.hpp) — a network may hand out any
/// prefix, and 52.1.2.3/8 must not open 52.0.0.0/8. Never a tunnel's, never wider than the
/// firewall accepts.
std::vector<Prefix> lan_subnets(const netwatch::NetModel& m, const netwatch::Classifier& c,
                                const std::vector<Prefix>& listed = {});

/// The addresses of the tunnel interfaces (not link-local, which is scoped to its own link): a
/// packet for one of them that comes in through another interface is a LAN peer routing the
/// tunnel's address (CVE-2019-14899), and is dropped.
std::vector<IpAddress> tunnel_addresses(const netwatch::NetModel& m, const netwatch::Classifier& c);

/// The IPv4 on-link subnets of the physical interfaces (all of them, at most /8 wide): where a
/// DHCP client may reach its server by unicast (renewals). Broadcast is always allowed.
std::vector<Prefix> dhcp_subnets(const netwatch::NetModel& m, const netwatch::Classifier& c);

/// What the network itself puts into the rules, read from the network model on every change and
/// installed as set element updates (never a rule change).
struct NetworkSets {
  std::vector<Prefix> lan;                  ///< what allow_lan opens (lan_subnets())
  std::vector<IpAddress> tunnel_addresses;  ///< the tunnels' own addresses (tunnel_addresses())
  std::vector<Prefix> dhcp;                 ///< where DHCP servers may be reached by unicast (dhcp_subnets())
  /// What did not fit the firewall's limits (firewall::Limits) and was left out, one line per
  /// set ("" when everything fit). Each set is cut on its own: a network with more on-link
  /// subnets than the LAN set holds never holds back the tunnel's addresses.
  std::string overflow;
  bool operator==(const NetworkSets&) const = default;
};
NetworkSets network_sets(const netwatch::NetModel& m, const netwatch::Classifier& c,
                         const std::vector<Prefix>& listed_lan = {});

/// Whether some tunnel interface is up and carrying traffic, and which.
struct TunnelLink {
  bool up = false;
  std::string which;  ///< its name, printable ("" if none)
  bool operator==(const TunnelLink&) const = default;
  /// "wg0 up", "no tunnel interface up".
  std::string str() const { return up ? which + " up" : "no tunnel interface up"; }
};
TunnelLink tunnel_link(const netwatch::NetModel& m, const netwatch::Classifier& c);

/// One leak a probe found: what a web page would have learned.
struct LeakFinding {
  /// `reflexive` is what a STUN server saw; empty for a hop probe's finding, where `hop` is the
  /// router that answered and `server` the hop probe's target.
  std::string interface, family, reflexive, server;
  /// Found by a socket that follows the routes, as a web page's does (not one bound to a device).
  bool routed = false;
  std::string hop;
  /// A request of a probe bound to `interface` left although the block refuses it (no server
  /// need answer: the kernel took it where the rules should have refused it).
  bool unrefused = false;
  /// A page's (routed) TCP connection to `server` was made through `interface` ("routed via
  /// eth0"), but no STUN answer came: the handshake alone shows the way out (reflexive empty).
  bool connected_only = false;
};

/// A finished probe round, as the daemon needs it (the probes library has the full report).
struct ProbeOutcome {
  ProbeVerdict verdict = ProbeVerdict::none;
  std::string verdict_text;  ///< "ok", "leak", "exposed-host"
  std::string summary;       ///< one line
  std::vector<LeakFinding> leaks;
  /// Families whose routed probes (a web page's sockets) show the way out going into the tunnel:
  /// at least one answered through it, none leaked, none was refused (by a packet filter, or a
  /// TCP reset: the escalated block's answer). What lets an escalated family go.
  std::vector<Family> routed_into_tunnel;
  std::string json;          ///< the whole report
};

/// A probe report (its JSON) headed by the round's `verdict`, as everyone reads it (ProbeNow,
/// LastProbe, GetStatus); the prober's own verdict kept beside it as "report_verdict" where it
/// differs ("ok": nothing leaked, answered or not).
void head_report(nlohmann::json& report, const std::string& verdict);

/// What the daemon counted since it started, for metrics (status_json()'s "counters";
/// docs/metrics.md). Only ever grows, but for the last round's figures.
struct Counts {
  std::uint64_t rounds_ok = 0, rounds_unverified = 0, rounds_leak = 0, rounds_none = 0;  ///< probe rounds by verdict
  std::uint64_t tamper_events = 0;  ///< foreign changes to our table (restored or not)
  std::uint64_t rules_applied = 0, rules_failed = 0;  ///< installs of the configured rules
  std::optional<TimePoint> round_start;     ///< of the round under way, or the last
  std::optional<TimePoint> last_round_end;  ///< when the last round ended
  Clock::duration last_round_took{};        ///< how long it took
};

class FirewallPort {
 public:
  virtual ~FirewallPort() = default;
  /// Installs or atomically replaces our table for `d`.
  virtual Result<void> apply(const Desired& d) = 0;
  /// Removes our table.
  virtual Result<void> remove() = 0;
  /// Would apply(d) accept `d`? Checked before a change is taken on, so a refused change leaves
  /// everything as it was (the rules, the state, what was declared).
  virtual Result<void> check(const Desired& d) const {
    (void)d;
    return {};
  }
  /// The network's part of the rules (LAN, the tunnels' addresses, DHCP subnets), before the
  /// first apply and on every change: keep the sets in step (set elements only, no rule change).
  virtual void set_network(const NetworkSets& sets) { (void)sets; }
  /// What GetStatus shows of the firewall (ownership, counters, last error).
  virtual nlohmann::json status() const { return nullptr; }
  /// If our table is in the kernel (left by a previous run), keeps it exactly as it is — taking
  /// ownership where the kernel allows, never changing a rule — and says true; false if there is
  /// none. An error if the firewall cannot even be read.
  virtual Result<bool> keep_existing_table() { return false; }
};

class ProbePort {
 public:
  virtual ~ProbePort() = default;
  /// Starts a round; `done` runs on the loop when it ends. Never called while one is running.
  /// `path_out` may run on the loop before that, once for each probe that has already shown a web
  /// page's own (routed) socket getting out through a non-tunnel interface - a leak whatever the
  /// rest of the round shows - so that acting on it need not wait for the round's slowest server.
  virtual void start(std::function<void(ProbeOutcome)> done, std::function<void(const LeakFinding&)> path_out) = 0;
};

/// Where the Controller's decisions go out: the log, D-Bus signals, the service manager's status,
/// and the probe timer.
class Notifications {
 public:
  virtual ~Notifications() = default;
  virtual void state_changed(State from, State to, const std::string& reason) = 0;
  virtual void leak(const LeakFinding& l) = 0;
  virtual void probe_completed(const ProbeOutcome& o) = 0;
  /// Another process changed our table (`by`: "nft[1234]", `what` it did); `restored`: the table
  /// is as it should be again.
  virtual void table_tampered(const std::string& by, const std::string& what, bool restored) = 0;
  /// The next scheduled probe round is due at `at`: call Controller::probe_timer() then. Replaces
  /// any earlier time.
  virtual void probe_due(TimePoint at) = 0;
  /// A failed installation is to be tried again at `at`: call Controller::retry_timer() then.
  /// Replaces any earlier time.
  virtual void retry_due(TimePoint at) = 0;
  /// What a VPN client declared changed (nullopt: cleared): keep it for a restarted daemon.
  virtual void declaration_changed(const std::optional<TunnelDeclaration>& t) = 0;
  /// What was set at run time changed: keep it for a restarted daemon.
  virtual void settings_changed(const RuntimeSettings& s) = 0;
  virtual void info(const std::string& line) = 0;
  virtual void error(const std::string& line) = 0;
};

class Controller final : public Control {
 public:
  /// `cfg`: the configuration as read at start, or why it could not be read (then the daemon
  /// fails closed: see start()). `reload_config` re-reads the configuration file (for Reload,
  /// SIGHUP and the retries); `clock` says the time.
  Controller(Result<config::Config> cfg, FirewallPort& fw, ProbePort& probe, Notifications& out,
             std::function<Result<config::Config>()> reload_config, std::function<TimePoint()> clock = Clock::now);

  /// What a VPN client declared before this daemon (re)started (kept in the runtime directory,
  /// read and checked by the caller): taken as declared, for the first install. Before start().
  void restore_tunnel(const TunnelDeclaration& t);
  /// What was set at run time before this daemon (re)started (kept in the runtime directory, read
  /// and checked by the caller): in force from the first install, but never weaker than the file
  /// (a policy or allow_lan that would undo the file's own is dropped: said in the return value,
  /// "" if nothing was). Before start().
  std::string restore_settings(const RuntimeSettings& s);
  /// What is set at run time now (what settings_changed() last handed out).
  RuntimeSettings runtime_settings() const;
  /// Where keeping the declaration or the settings for a restart last failed ("" when it worked):
  /// shown in the status, for a state directory that is read-only, full or gone.
  void set_keep_error(std::string why) { keep_error_ = std::move(why); }

  /// Takes the network as dumped (the LAN set is known before the first install), arms per
  /// configuration (installing the rules first), probes, and says whether a tunnel is up. Once.
  /// Fails closed: without a usable configuration, or if the rules cannot be installed, our table
  /// left by a previous run is kept as it is, else the emergency block is installed; the state is
  /// `error` and installation is retried with backoff (retry_due). An error only if not even the
  /// emergency block could be put in place: the daemon must not go on (nor say READY).
  Result<void> start(const netwatch::NetModel& network);
  /// Input from the network watcher (after each coalesced change): re-reads tunnel state and LAN
  /// subnets, probes.
  void network_changed(const netwatch::NetModel& network, const std::string& summary);
  /// Input from the table guard: `by` changed our table (`what`); `restored`: it is back.
  void table_tampered(const std::string& by, const std::string& what, bool restored);
  /// The probe timer fired: starts the scheduled round if it is due (else says when it will be).
  void probe_timer();
  /// The retry timer fired: if the retry is due, re-reads the configuration (when it was not
  /// usable) and installs the rules again; a failure schedules the next retry, twice as late.
  void retry_timer();
  /// When the next retry is due (none: nothing to retry).
  std::optional<TimePoint> next_retry_due() const { return retry_due_; }
  /// What protects the machine now.
  Protection protection() const { return protection_; }
  /// A clean stop: keeps or removes the rules as configured; returns what it did, for the log.
  std::string stop();

  /// When the next scheduled probe round is due: `probe.interval` after the last round ended,
  /// whatever started that one (the timer, a network change, ProbeNow, a policy change). None while
  /// a round runs: its end decides.
  std::optional<TimePoint> next_probe_due() const;
  /// The interface whose WireGuard peers the declaration follows: the declared tunnel (none while
  /// nothing is declared; configured tunnels and endpoints are the user's own and stay as
  /// written). The daemon reads that device's peers every kPeerPoll and calls peers_seen().
  std::optional<std::string> follow_peers_of() const;
  /// Where the declared tunnel's WireGuard peers send to now, read from the device. When that
  /// differs from the declared endpoints, the declaration follows: the peers' endpoints in, the
  /// old ones out, in one change of the rules, kept for a restart. So a client whose server moved
  /// (`wg set wg0 peer K endpoint A:P`, an app switching servers) gets through to the new address,
  /// and the old one is closed. A declared TCP endpoint stays (WireGuard has none). Nothing
  /// changes for another interface, an empty list (no peer has an endpoint yet: keep what was
  /// declared), or the very list the firewall refused last time (said once, not every poll).
  void peers_seen(const std::string& interface, const std::vector<Endpoint>& endpoints);
  /// A packet our rules blocked on its way out (logged by the kernel) and its sender, as the
  /// daemon found it: counted per application and destination for status (bounded).
  /// `own`: the daemon sent it itself - one of its probe sockets (their ports are known:
  /// probes/own_ports.hpp; they are closed as soon as a send is refused, before any lookup), or
  /// the lookup of a probe server's name - named "leakguardd (probe)", which no desktop is told of.
  void blocked(const attribution::LoggedPacket& p, attribution::Sender s, attribution::SystemTime now, bool own = false);
  /// For the Blocked signal: what was blocked since the last call (attribution::BlockedFlows).
  /// The daemon's own probes are left out (they are counted in status, not signalled).
  std::vector<attribution::BlockedFlows::Change> blocked_changes(std::size_t max) {
    return blocked_.take_changes(max, kOwnProbeApp);
  }
  bool blocked_pending() const { return blocked_.pending(); }
  /// Is `ifname` a tunnel (configured pattern or declared)?
  bool is_tunnel(const std::string& ifname) const;
  /// The tunnels (configured and declared) as the network model's classifier.
  netwatch::Classifier classifier() const { return {desired_.tunnels}; }
  const Desired& desired() const { return desired_; }
  const StateMachine& machine() const { return machine_; }
  const config::Config& config() const { return config_; }
  const Counts& counts() const { return counts_; }

  // Control (D-Bus):
  Result<void> arm(const std::string& by) override;
  Result<void> disarm(const std::string& by) override;
  Result<void> set_tunnel(const TunnelDeclaration& t, const std::string& by, Claim claim) override;
  /// How a claim asks whether the declared tunnel's interface exists: the kernel, now (the daemon:
  /// if_nametoindex), where the network model may lag behind a deletion by its debounce. Unset:
  /// the model.
  void set_link_exists(std::function<bool(const std::string&)> f) { link_exists_ = std::move(f); }
  Result<bool> clear_tunnel(const std::string& by, const std::optional<std::string>& only_if) override;
  Result<void> set_allow_lan(bool allow, const std::string& by) override;
  Result<void> set_policy(Mode policy, const std::string& by) override;
  Result<void> reload(const std::string& by) override;
  Result<void> probe_now(std::function<void(std::string, std::string)> done) override;
  std::string status_json() const override;
  Snapshot snapshot() const override;

 private:
  void feed(const Event& e);
  void run(const Action& a);
  void start_probe(const std::string& reason);
  void probe_finished(ProbeOutcome o);
  void escalate(ProbeOutcome& o);
  /// probe.on_exposure escalate, on a page's path out shown while the round is still running.
  void escalate_now(const LeakFinding& l);
  /// Whether a page's path out may be escalated now: on_exposure escalate, armed, the tunnel up,
  /// udp policy, no emergency block.
  bool escalation_allowed() const;
  /// "uidrange 1000-1000 via eth0": rules that send some of this host's traffic to a table whose
  /// way to the internet is not a tunnel; `pages_only`: only those a web page's TCP can take.
  std::string routed_around(Family f, const netwatch::Classifier& c, bool pages_only) const;
  /// Every way around the tunnel the routing gives a web page's TCP in family `f` while a tunnel is
  /// up: the default route, if not into the tunnel, and routed_around(pages_only); "" if none.
  std::string ways_around(Family f, const netwatch::Classifier& c) const;
  /// The link the family's default route leaves by while a tunnel is up, if it is not a tunnel.
  const netwatch::Link* default_around(Family f, const netwatch::Classifier& c) const;
  /// The families the routing sends partly around the tunnel, to be held as strict
  /// (probe.on_exposure: escalate); `c`: which interfaces are tunnels.
  std::vector<Family> routing_escalation(const netwatch::Classifier& c) const;
  void release_escalation(const std::vector<Family>& into_tunnel);
  /// Holds in escalated_ each family whose default route leaves outside an up tunnel (see the .cpp).
  void latch_default_route_escalation();
  /// Says what the rules' escalated families gained or lost against `was` for the routing's reasons.
  void say_escalation(const std::vector<Family>& was);
  /// Hands what is set at run time to Notifications::settings_changed() if it changed.
  void note_settings();
  /// Starts the scheduled round if it is due, else tells Notifications when it will be.
  void reschedule();
  /// Re-reads tunnel state and LAN subnets from the network as last published (after it changed,
  /// or after a change of which interfaces are tunnels). `network_event`: probe even if the tunnel
  /// state stays as it was.
  void observe(const std::string& why, bool network_event);
  /// The network's sets to the firewall, cut to its limits (said in the log when they do not fit).
  void update_network_sets();
  Result<void> recompute(const std::string& what);
  /// Runs `mutate`, then recompute(); if the firewall would refuse the result, undoes `mutate`.
  /// Then the network is observed again: which interfaces are tunnels may have changed.
  template <typename F>
  Result<void> change(F mutate, const std::string& what);
  Desired compute() const;
  /// Nothing of ours is in place while armed: keep our table if the kernel has one, else install
  /// the emergency block. `why` goes into the log line.
  void fail_closed(const std::string& why);
  void schedule_retry();
  /// Tries again now: re-reads a configuration that was not usable, re-applies failed rules.
  void retry(const std::string& by);
  /// Refuses changes while the configuration is not usable (only a good file may end that).
  Result<void> usable() const;

  config::Config config_;
  FirewallPort& fw_;
  ProbePort& probe_;
  Notifications& out_;
  std::function<Result<config::Config>()> reload_config_;
  std::function<TimePoint()> clock_;
  StateMachine machine_;
  Desired desired_;
  netwatch::NetModel network_;
  std::optional<TunnelDeclaration> declared_;
  std::vector<Endpoint> peers_refused_;  // the endpoints peers_seen() last could not declare
  std::optional<Mode> mode_override_;
  std::vector<Family> escalated_;  // see Desired::escalated
  std::string round_escalation_;   // what escalate_now() did in the round under way, for its summary
  std::optional<bool> lan_override_;
  RuntimeSettings settings_said_;  // what settings_changed() last handed out (or restore_settings() took)
  std::string keep_error_;         // see set_keep_error()
  std::string reload_error_;       // why the last reload was refused ("" if it was not)
  bool probing_ = false;
  std::function<bool(const std::string&)> link_exists_;
  std::set<std::string> disarmed_leaks_said_;  // the leaks the last round said while disarmed
  std::uint64_t armed_changes_ = 0;        // times the kill switch was armed or disarmed
  std::uint64_t round_armed_changes_ = 0;  // ... when the running round began
  bool probe_again_ = false;  // a trigger arrived while a round ran: run one more after it
  std::string pending_reason_;
  std::optional<TimePoint> last_round_end_;
  std::vector<std::function<void(std::string, std::string)>> waiting_;       // ProbeNow: the running round
  std::vector<std::function<void(std::string, std::string)>> next_waiting_;  // ProbeNow: the round after it
  std::optional<ProbeOutcome> last_probe_;
  std::uint64_t leak_count_ = 0;
  std::string last_rules_error_;
  std::string start_config_error_;  // why the configuration given at start could not be used
  std::string network_overflow_;    // what of the network did not fit the firewall's sets (logged once)
  Protection protection_ = Protection::none;
  std::string block_error_;  // why not even the emergency block could be installed
  std::optional<TimePoint> retry_due_;
  std::chrono::milliseconds retry_delay_ = kRetryFirst;
  std::uint64_t applies_ = 0;  // ApplyRules carried out so far
  attribution::BlockedFlows blocked_;
  Counts counts_;
};

}  // namespace leakguard::daemon
