#pragma once
// The daemon's state machine: events in, actions out. Pure — no I/O, no clock, no Asio — so every
// transition is table-tested. States as in docs/design.md: off, blocking, secured, leaking, error.
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace leakguard::daemon {

enum class State { off, blocking, unverified, secured, leaking, error };
std::string_view to_string(State s);

/// What the last probe round concluded (see probes/): nothing yet; no leak and the tunnel answered
/// with its exit (positive evidence); no leak found but the tunnel did not answer (no evidence:
/// silence is not proof); or a leak.
enum class ProbeVerdict { none, ok, unverified, leak };

// ---- events (inputs) ----
/// The administrator (config at start, or D-Bus/CLI) arms or disarms the kill switch.
struct SetArmed { bool armed; std::string by; };
/// Configuration or declared tunnel/endpoints changed in a way that changes the ruleset.
struct PolicyChanged { std::string what; };
/// The firewall adapter finished applying (or removing) the rules.
struct RulesApplied {};
struct RulesFailed { std::string error; };
/// The network model says whether some tunnel interface is up (after a coalesced change).
struct TunnelState { bool up; std::string which; };
/// Any coalesced network change (links, addresses, routes): worth a probe.
struct NetworkChanged { std::string summary; };
/// The probe interval elapsed.
struct ProbeTimer {};
/// A probe round finished.
struct ProbeDone { ProbeVerdict verdict; std::string summary; };
/// Someone changed our table; `restored` says whether the guard put it back.
struct TableTampered { std::string by; bool restored; };
/// The configuration could not be read (`error`: file:line:col and what). Fail closed: armed,
/// `error` until a good configuration is loaded and its rules are installed (the Controller puts
/// the emergency block, or the table a previous run left, in place meanwhile).
struct ConfigFailed { std::string error; };
/// A good configuration was read after ConfigFailed; `error` stays until its rules are applied.
struct ConfigLoaded { std::string by; };

using Event = std::variant<SetArmed, PolicyChanged, RulesApplied, RulesFailed, TunnelState, NetworkChanged, ProbeTimer,
                           ProbeDone, TableTampered, ConfigFailed, ConfigLoaded>;

// ---- actions (outputs) ----
struct ApplyRules {};   ///< install/replace the ruleset for the current policy
struct RemoveRules {};  ///< take our table away (disarm)
struct StartProbe { std::string reason; };
/// The state changed; `reason` is the one-line why.
struct StateChanged { State from; State to; std::string reason; };
/// A probe found a leak: the alarm (error-level log, D-Bus signal).
struct LeakAlarm { std::string summary; };

using Action = std::variant<ApplyRules, RemoveRules, StartProbe, StateChanged, LeakAlarm>;

/// One line describing an event / action, for the log.
std::string describe(const Event& e);
std::string describe(const Action& a);

class StateMachine {
 public:
  /// Starts in `off` with nothing installed; feed SetArmed from the config first.
  StateMachine() = default;

  std::vector<Action> handle(const Event& e);

  State state() const { return state_; }
  bool armed() const { return armed_; }
  bool tunnel_up() const { return tunnel_up_; }
  ProbeVerdict last_probe() const { return probe_; }
  /// The reason of the last transition (one line).
  const std::string& reason() const { return reason_; }
  /// Why the configuration could not be read ("" if it was).
  const std::string& config_error() const { return config_error_; }
  /// Why the rules could not be installed, the last time they were tried ("" if they were).
  const std::string& rules_error() const { return rules_error_; }

 private:
  State derive() const;
  void transition(std::vector<Action>& out, std::string reason);

  State state_ = State::off;
  bool armed_ = false;
  bool rules_ok_ = false;         // the current policy is installed
  std::string config_error_;      // the configuration could not be read: error until it is
  std::string rules_error_;       // the last failure to install, if any
  bool table_lost_ = false;       // tampering the guard could not repair
  bool tunnel_up_ = false;
  ProbeVerdict probe_ = ProbeVerdict::none;
  std::string reason_ = "starting";
};

}  // namespace leakguard::daemon
