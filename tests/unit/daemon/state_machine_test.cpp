// The state machine, table-tested: each row is an event, the state after it, and the actions.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "daemon/state_machine.hpp"

using namespace leakguard::daemon;

namespace {
struct Step {
  Event event;
  State after;
  std::vector<std::string> actions;  // describe() of each action, in order
};

void play(StateMachine& m, const std::vector<Step>& steps) {
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    CAPTURE(i);
    CAPTURE(describe(s.event));
    auto actions = m.handle(s.event);
    std::vector<std::string> got;
    for (const auto& a : actions) got.push_back(describe(a));
    CHECK(m.state() == s.after);
    CHECK(got == s.actions);
  }
}

const SetArmed arm_by_config{true, "config"};
}  // namespace

TEST_CASE("start armed, tunnel comes up, probe proves it: off -> blocking -> secured") {
  StateMachine m;
  CHECK(m.state() == State::off);
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {ProbeDone{ProbeVerdict::ok, "no reflexive address via eth0"}, State::blocking, {}},
              {TunnelState{true, "wg0"}, State::blocking, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, "exit 203.0.113.66 via wg0"}, State::secured,
               {"state blocking -> secured: probe ok: exit 203.0.113.66 via wg0"}},
          });
}

TEST_CASE("armed again after a disarm: secured only once a round has judged the rules, not on the verdict from before") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {TunnelState{true, "wg0"}, State::blocking, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, "exit 203.0.113.66 via wg0"}, State::secured,
               {"state blocking -> secured: probe ok: exit 203.0.113.66 via wg0"}},
              {SetArmed{false, "uid 0"}, State::off,
               {"remove rules", "start probe (disarmed)", "state secured -> off: disarm (by uid 0)"}},
              {SetArmed{true, "uid 0"}, State::off, {"apply rules", "start probe (armed)"}},
              // Before: "off -> secured: rules applied", on the round from before the disarm.
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {ProbeDone{ProbeVerdict::ok, "exit 203.0.113.66 via wg0"}, State::secured,
               {"state blocking -> secured: probe ok: exit 203.0.113.66 via wg0"}},
          });
}

TEST_CASE("a retry of rules that failed while armed keeps a leak seen meanwhile: no flapping to error and back") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesFailed{"Operation not supported"}, State::error, {"state off -> error: rules failed: Operation not supported"}},
              {ProbeDone{ProbeVerdict::leak, "203.0.113.2 via eth0"}, State::leaking,
               {"LEAK: 203.0.113.2 via eth0", "state error -> leaking: probe leak: 203.0.113.2 via eth0"}},
              {SetArmed{true, "retry"}, State::leaking, {"apply rules", "start probe (armed)"}},
              {RulesFailed{"Operation not supported"}, State::leaking, {}},
          });
}

TEST_CASE("silence is not proof: a tunnel that did not answer is unverified, never secured") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {TunnelState{true, "tun0"}, State::blocking, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::unverified, "the tunnel did not answer"}, State::unverified,
               {"state blocking -> unverified: probe unverified: the tunnel did not answer"}},
              {ProbeDone{ProbeVerdict::ok, "exit 203.0.113.66 via tun0"}, State::secured,
               {"state unverified -> secured: probe ok: exit 203.0.113.66 via tun0"}},
              {ProbeDone{ProbeVerdict::unverified, "silent"}, State::unverified,
               {"state secured -> unverified: probe unverified: silent"}},
              {ProbeDone{ProbeVerdict::leak, "203.0.113.2 via eth0"}, State::leaking,
               {"LEAK: 203.0.113.2 via eth0", "state unverified -> leaking: probe leak: 203.0.113.2 via eth0"}},
              {ProbeDone{ProbeVerdict::unverified, "silent"}, State::unverified,
               {"state leaking -> unverified: probe unverified: silent"}},
              // Without a tunnel there is nothing to verify: blocking; back up, it is proven anew.
              {TunnelState{false, "tun0"}, State::blocking, {"start probe (tunnel down)", "state unverified -> blocking: tunnel down: tun0"}},
              {TunnelState{true, "tun0"}, State::blocking, {"start probe (tunnel up)"}},
          });
}

TEST_CASE("tunnel loss goes to blocking at once, without touching the rules") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {TunnelState{true, "wg0"}, State::blocking, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, ""}, State::secured, {"state blocking -> secured: probe ok"}},
              {TunnelState{false, "wg0"}, State::blocking,
               {"start probe (tunnel down)", "state secured -> blocking: tunnel down: wg0"}},
              // It comes back: secured again only after a fresh probe.
              {TunnelState{true, "wg0"}, State::blocking, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, ""}, State::secured, {"state blocking -> secured: probe ok"}},
          });
}

TEST_CASE("a leak is loud in every state, and clears only with a clean probe") {
  StateMachine m;
  play(m, {
              // Started disarmed: a probe still runs, and a leak is a leak.
              {NetworkChanged{"eth0 up"}, State::off, {"start probe (network changed: eth0 up)"}},
              {ProbeDone{ProbeVerdict::leak, "203.0.113.2 via eth0"}, State::leaking,
               {"LEAK: 203.0.113.2 via eth0", "state off -> leaking: probe leak: 203.0.113.2 via eth0"}},
              // Armed: what the round saw without the rules says nothing of them. Until the
              // firewall answers nothing new is claimed; then the round that arming started
              // judges them (a leak that stays is loud again).
              {arm_by_config, State::leaking, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state leaking -> blocking: rules applied"}},
              {ProbeDone{ProbeVerdict::leak, "203.0.113.2 via eth0"}, State::leaking,
               {"LEAK: 203.0.113.2 via eth0", "state blocking -> leaking: probe leak: 203.0.113.2 via eth0"}},
              {ProbeDone{ProbeVerdict::leak, "203.0.113.2 via eth0"}, State::leaking, {"LEAK: 203.0.113.2 via eth0"}},
              {ProbeDone{ProbeVerdict::ok, ""}, State::blocking, {"state leaking -> blocking: probe ok"}},
          });
}

TEST_CASE("disarm removes the rules, and arm again installs them") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {SetArmed{false, "uid 0"}, State::off,
               {"remove rules", "start probe (disarmed)", "state blocking -> off: disarm (by uid 0)"}},
              {SetArmed{false, "uid 0"}, State::off, {}},  // idempotent
              {RulesApplied{}, State::off, {}},            // the removal's answer changes nothing
              {SetArmed{true, "uid 0"}, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {SetArmed{true, "uid 0"}, State::blocking, {}},  // already armed and installed
          });
}

TEST_CASE("rules that cannot be installed mean error, and arming again retries") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesFailed{"nf_tables not available"}, State::error,
               {"state off -> error: rules failed: nf_tables not available"}},
              {TunnelState{true, "wg0"}, State::error, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, ""}, State::error, {}},
              {SetArmed{true, "uid 0"}, State::error, {"apply rules", "start probe (armed)"}},
              // The clean probe above ran while the rules were not in: it counts for nothing.
              {RulesApplied{}, State::blocking, {"state error -> blocking: rules applied"}},
              {ProbeDone{ProbeVerdict::ok, ""}, State::secured, {"state blocking -> secured: probe ok"}},
          });
}

TEST_CASE("tampering: repaired is fine, unrepaired is a leak until the rules are back") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {TableTampered{"nft (pid 42)", true}, State::blocking, {"start probe (table changed by nft (pid 42))"}},
              {TableTampered{"nft (pid 43)", false}, State::leaking,
               {"start probe (table changed by nft (pid 43))",
                "state blocking -> leaking: table changed by nft (pid 43), NOT restored"}},
              {PolicyChanged{"re-assert"}, State::leaking, {"apply rules", "start probe (policy changed: re-assert)"}},
              {RulesApplied{}, State::blocking, {"state leaking -> blocking: rules applied"}},
          });
}

TEST_CASE("policy changes re-apply while armed and only probe while disarmed") {
  StateMachine m;
  play(m, {
              {PolicyChanged{"tunnel wg0 declared"}, State::off, {"start probe (policy changed: tunnel wg0 declared)"}},
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {PolicyChanged{"allow_lan on"}, State::blocking, {"apply rules", "start probe (policy changed: allow_lan on)"}},
              {ProbeTimer{}, State::blocking, {"start probe (scheduled)"}},
          });
  CHECK(m.reason() == "rules applied");
}

TEST_CASE("a configuration that cannot be used means error, sticky until a good one's rules are installed") {
  StateMachine m;
  play(m, {
              {ConfigFailed{"/etc/leakguard/leakguard.yaml:1:1: colour: unknown setting"}, State::error,
               {"state off -> error: configuration not usable: /etc/leakguard/leakguard.yaml:1:1: colour: unknown setting"}},
              // Whatever else happens, nothing moves it: not a confirmed install (the emergency
              // block's), not a tunnel, not a clean probe, not a repaired table.
              {RulesApplied{}, State::error, {}},
              {TunnelState{true, "wg0"}, State::error, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, "no leak"}, State::error, {}},
              {TableTampered{"nft[1]", true}, State::error, {"start probe (table changed by nft[1])"}},
              // A good file: still error until its own rules are in.
              {ConfigLoaded{"retry"}, State::error, {}},
              {ProbeDone{ProbeVerdict::ok, "no leak"}, State::error, {}},
              {SetArmed{true, "configuration"}, State::error, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state error -> blocking: rules applied"}},
              {ProbeDone{ProbeVerdict::ok, "no leak"}, State::secured, {"state blocking -> secured: probe ok: no leak"}},
          });
  CHECK(m.armed());
  CHECK(m.config_error().empty());
}

TEST_CASE("a failed install stays error against a clean probe - and such a probe does not count once the rules are in") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesFailed{"permission denied"}, State::error, {"state off -> error: rules failed: permission denied"}},
              {TunnelState{true, "wg0"}, State::error, {"start probe (tunnel up)"}},
              {ProbeDone{ProbeVerdict::ok, "no leak"}, State::error, {}},
              {TableTampered{"nft[1]", true}, State::error, {"start probe (table changed by nft[1])"}},
              {ProbeDone{ProbeVerdict::ok, "no leak"}, State::error, {}},
          });
  CHECK(m.rules_error() == "permission denied");
  // The retry installs them: the clean rounds that ran while they were not in count for nothing,
  // so `secured` waits for a round under the rules.
  play(m, {
              {SetArmed{true, "retry"}, State::error, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state error -> blocking: rules applied"}},
              {ProbeDone{ProbeVerdict::ok, "no leak"}, State::secured, {"state blocking -> secured: probe ok: no leak"}},
          });
}

TEST_CASE("the reason follows the newest round and the tunnel's own change while the state stays - said once") {
  StateMachine m;
  play(m, {
              {arm_by_config, State::off, {"apply rules", "start probe (armed)"}},
              {RulesApplied{}, State::blocking, {"state off -> blocking: rules applied"}},
              {TunnelState{true, "wg0"}, State::blocking, {"start probe (tunnel up)"}},
          });
  // Blocking still (no round has proven the tunnel), but not "rules applied" any more.
  CHECK(m.reason() == "tunnel up: wg0, not proven yet (a probe round is under way)");
  play(m, {
              {ProbeDone{ProbeVerdict::ok, "ok; TCP via eth0 reaches 203.0.113.3:3478/tcp outside the tunnel"}, State::secured,
               {"state blocking -> secured: probe ok: TCP via eth0 reaches 203.0.113.3:3478/tcp outside the tunnel"}},
              {PolicyChanged{"strict"}, State::secured, {"apply rules", "start probe (policy changed: strict)"}},
              {RulesApplied{}, State::secured, {}},
              {ProbeDone{ProbeVerdict::ok, "exit 203.0.113.66 via wg0; TCP via eth0 refused"}, State::secured, {}},
          });
  CHECK(m.reason() == "probe ok: exit 203.0.113.66 via wg0; TCP via eth0 refused");
}
