#include "common/overloaded.hpp"
#include "daemon/state_machine.hpp"

namespace leakguard::daemon {
namespace {

std::string_view verdict_text(ProbeVerdict v) {
  switch (v) {
    case ProbeVerdict::none: return "none";
    case ProbeVerdict::ok: return "ok";
    case ProbeVerdict::unverified: return "unverified";
    case ProbeVerdict::leak: return "leak";
  }
  return "?";
}
}  // namespace

std::string_view to_string(State s) {
  switch (s) {
    case State::off: return "off";
    case State::blocking: return "blocking";
    case State::unverified: return "unverified";
    case State::secured: return "secured";
    case State::leaking: return "leaking";
    case State::error: return "error";
  }
  return "?";
}

std::string describe(const Event& e) {
  return std::visit(
      overloaded{
          [](const SetArmed& x) { return std::string(x.armed ? "arm" : "disarm") + " (by " + x.by + ")"; },
          [](const PolicyChanged& x) { return "policy changed: " + x.what; },
          [](const RulesApplied&) { return std::string("rules applied"); },
          [](const RulesFailed& x) { return "rules failed: " + x.error; },
          [](const TunnelState& x) {
            return std::string("tunnel ") + (x.up ? "up" : "down") + (x.which.empty() ? "" : ": " + x.which) +
                   (x.up ? ", not proven yet (a probe round is under way)" : "");
          },
          [](const NetworkChanged& x) { return "network changed: " + x.summary; },
          [](const ProbeTimer&) { return std::string("probe interval elapsed"); },
          [](const ProbeDone& x) {
            // The round's summary begins with its own verdict ("ok; tunnel exit ..."): said once.
            const std::string v(verdict_text(x.verdict));
            std::string_view rest = x.summary;
            if (rest == v) rest = {};
            else if (rest.starts_with(v + "; ") || rest.starts_with(v + ": ")) rest.remove_prefix(v.size() + 2);
            return "probe " + v + (rest.empty() ? "" : ": " + std::string(rest));
          },
          [](const TableTampered& x) { return "table changed by " + x.by + (x.restored ? ", restored" : ", NOT restored"); },
          [](const ConfigFailed& x) { return "configuration not usable: " + x.error; },
          [](const ConfigLoaded& x) { return "configuration loaded (by " + x.by + ")"; },
      },
      e);
}

std::string describe(const Action& a) {
  return std::visit(
      overloaded{
          [](const ApplyRules&) { return std::string("apply rules"); },
          [](const RemoveRules&) { return std::string("remove rules"); },
          [](const StartProbe& x) { return "start probe (" + x.reason + ")"; },
          [](const StateChanged& x) {
            return "state " + std::string(to_string(x.from)) + " -> " + std::string(to_string(x.to)) + ": " + x.reason;
          },
          [](const LeakAlarm& x) { return "LEAK: " + x.summary; },
      },
      a);
}

State StateMachine::derive() const {
  // A leak seen by a probe outranks everything: what a web page could learn is the truth.
  if (probe_ == ProbeVerdict::leak) return State::leaking;
  // Without a usable configuration nothing is "fine", whatever a probe says: only a good file
  // whose rules are installed ends it.
  if (!config_error_.empty()) return State::error;
  if (!armed_) return State::off;
  if (!rules_error_.empty()) return State::error;
  if (table_lost_) return State::leaking;
  // Armed but the rules are not confirmed yet: claim nothing new until the firewall answers.
  if (!rules_ok_) return state_;
  if (tunnel_up_ && probe_ == ProbeVerdict::ok) return State::secured;
  // A tunnel is up and nothing leaked, but the tunnel did not answer: no evidence, no claim.
  if (tunnel_up_ && probe_ == ProbeVerdict::unverified) return State::unverified;
  return State::blocking;
}

void StateMachine::transition(std::vector<Action>& out, std::string reason) {
  const State next = derive();
  if (next == state_) return;
  out.push_back(StateChanged{state_, next, reason});
  state_ = next;
  reason_ = std::move(reason);
}

std::vector<Action> StateMachine::handle(const Event& e) {
  std::vector<Action> out;
  std::visit(overloaded{
                 [&](const SetArmed& x) {
                   if (x.armed) {
                     // Arming again while armed retries a failed install.
                     if (armed_ && rules_ok_) return;
                     // What a round saw without our rules (a leak, or nothing) says nothing of
                     // them: the round that arming starts proves them before "secured". (Not a
                     // retry of a failed install while armed: a leak seen then stays.)
                     if (!armed_) probe_ = ProbeVerdict::none;
                     armed_ = true;
                     rules_ok_ = false;
                     out.push_back(ApplyRules{});
                     out.push_back(StartProbe{"armed"});
                   } else {
                     if (!armed_) return;
                     armed_ = false;
                     rules_ok_ = false;
                     rules_error_.clear();
                     table_lost_ = false;
                     out.push_back(RemoveRules{});
                     out.push_back(StartProbe{"disarmed"});
                   }
                 },
                 [&](const PolicyChanged& x) {
                   if (armed_) out.push_back(ApplyRules{});
                   out.push_back(StartProbe{"policy changed: " + x.what});
                 },
                 [&](const RulesApplied&) {
                   if (!armed_) return;
                   rules_ok_ = true;
                   rules_error_.clear();
                   table_lost_ = false;
                 },
                 [&](const RulesFailed& x) {
                   if (!armed_) return;
                   rules_ok_ = false;
                   rules_error_ = x.error.empty() ? "unknown error" : x.error;
                 },
                 [&](const TunnelState& x) {
                   if (x.up == tunnel_up_) return;
                   tunnel_up_ = x.up;
                   // A tunnel that (re)appears must be proven again before we say "secured".
                   if (x.up && probe_ != ProbeVerdict::leak) probe_ = ProbeVerdict::none;
                   out.push_back(StartProbe{std::string("tunnel ") + (x.up ? "up" : "down")});
                 },
                 [&](const NetworkChanged& x) { out.push_back(StartProbe{"network changed: " + x.summary}); },
                 [&](const ProbeTimer&) { out.push_back(StartProbe{"scheduled"}); },
                 [&](const ProbeDone& x) {
                   probe_ = x.verdict;
                   // A clean round while the rules are not in (the emergency block, a kept or
                   // older table) proves nothing about the rules that will be: it never counts
                   // towards `secured`. A leak always counts.
                   if (probe_ != ProbeVerdict::leak && armed_ && (!rules_ok_ || !config_error_.empty() || !rules_error_.empty()))
                     probe_ = ProbeVerdict::none;
                   if (x.verdict == ProbeVerdict::leak) out.push_back(LeakAlarm{x.summary});
                 },
                 [&](const TableTampered& x) {
                   if (!armed_) return;
                   table_lost_ = !x.restored;
                   out.push_back(StartProbe{"table changed by " + x.by});
                 },
                 [&](const ConfigFailed& x) {
                   // Fail closed: armed, and no rules of a configuration count as installed.
                   config_error_ = x.error.empty() ? "unknown error" : x.error;
                   armed_ = true;
                   rules_ok_ = false;
                 },
                 [&](const ConfigLoaded&) {
                   // Still no rules of this configuration: derive() keeps the state until the
                   // firewall confirms them (RulesApplied) or the configuration disarms.
                   config_error_.clear();
                   rules_ok_ = false;
                 },
             },
             e);
  const State before = state_;
  transition(out, describe(e));
  // The state stays, but a probe round or the tunnel's own change is now the reason it holds:
  // the older words would describe what is no longer so (a TCP path a policy change has since
  // closed; "no tunnel interface up" while one is).
  if (state_ == before && (std::holds_alternative<ProbeDone>(e) || std::holds_alternative<TunnelState>(e)))
    reason_ = describe(e);
  return out;
}

}  // namespace leakguard::daemon
