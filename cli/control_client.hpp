#pragma once
// leakguardctl's side of the D-Bus API: the control and status commands, and how their results
// are shown. Rendering is pure (tested without a bus); the calls go through the generated proxy.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/daemon_link.hpp"

namespace leakguard::cli {

/// leakguardctl's exit statuses (documented in docs/leakguardctl.md).
enum Exit : int {
  kOk = 0,
  kLeak = 1,            ///< a probe found a leak / the state is leaking
  kInvalid = 2,         ///< bad arguments (ours or the daemon's verdict)
  kNotRunning = 3,      ///< no daemon on the bus
  kAccessDenied = 4,    ///< needs root or group leakguard
  kFailed = 5,          ///< the daemon could not do it (also: refused in state error)
  kUnverified = 6,      ///< not proven: no leak seen, but the tunnel did not answer (or nothing was probed)
  kBusy = 7,            ///< `tunnel set --exclusive`: another VPN's tunnel is declared and up
};

/// Text styling: ANSI colours on a terminal, plain when piped.
struct Style {
  bool color = false;
  std::string bold(const std::string& s) const;
  std::string good(const std::string& s) const;
  std::string bad(const std::string& s) const;
  std::string warn(const std::string& s) const;
  std::string dim(const std::string& s) const;
};

/// `leakguardctl status` for people: from GetStatus's JSON.
std::string render_status(const nlohmann::json& status, const Style& st);
/// The "blocked recently" lines from the status's "blocked" object: at most `top` flows.
std::string render_blocked(const nlohmann::json& blocked, const Style& st, std::size_t top);
/// One probe report (as the daemon gives it: headed by the round's verdict) for people; its first
/// line is that verdict, and why when it is `unverified`.
std::string render_probe(const nlohmann::json& report, const Style& st);
/// One signal, as `leakguardctl monitor` prints it.
std::string render_signal(const std::string& name, const std::vector<std::string>& args, const Style& st);
/// The daemon's reason for its state, without the probe verdict said twice; `brief`: only its
/// first part (what the status header shows).
std::string reason_text(const std::string& reason, bool brief);
/// What `tunnel set` and `policy` print once the daemon took the change.
std::string tunnel_declared(const std::string& interface, const std::vector<std::string>& endpoints, std::uint32_t fwmark);
/// `armed`: whether the kill switch is on now (nullopt: unknown); disarmed, the setting is kept
/// and takes effect when armed, and the line says so.
std::string policy_set(const std::string& policy, std::optional<bool> armed = true);
/// What `allow-lan on|off` prints once the daemon took the change.
std::string allow_lan_set(bool on, std::optional<bool> armed = true);

/// The result of one call: exit status and what to print (stdout), or an error line (stderr).
struct Outcome {
  int exit = kOk;
  std::string out;
  std::string err;
};

/// Maps a D-Bus error name to leakguardctl's exit status and a one-line message.
Outcome from_dbus_error(const std::string& name, const std::string& message);

/// `leakguardctl probe`'s answer from ProbeNow's verdict and report: the round's verdict (the
/// report is the prober's, whose own verdict says "ok" for a round the tunnel did not answer),
/// exit 1 for a leak, 6 for unverified, 5 for a report that is an error (a daemon without a usable
/// configuration).
Outcome probe_answer(const std::string& verdict, const std::string& report, bool json, const Style& st);
/// One signal as `monitor --json` prints it: {"signal": NAME, "args": [...]}, each argument with
/// its D-Bus type (Blocked's packet count, `t`, as a number).
nlohmann::json signal_json(const std::string& name, const std::vector<std::string>& args);

// The commands. Each talks to the daemon on the system bus.
Outcome status(bool json, const Style& st);
/// `leakguardctl blocked [--json]`: who sent what the block stopped (status["blocked"]).
Outcome blocked(bool json, const Style& st);
Outcome probe(bool json, const Style& st);
Outcome arm();
Outcome disarm();
/// Declares the tunnel; `exclusive`: unless another VPN's declared interface is there (ClaimTunnel,
/// exit 7); `ahead`: unless any other interface is declared (a declaration ahead of any VPN).
Outcome tunnel_set(const std::string& interface, const std::vector<std::string>& endpoints, std::uint32_t fwmark,
                   bool exclusive, bool ahead = false);
/// Clears the declaration; with `only_if`, only when that interface is the declared one (decided
/// by the daemon: ReleaseTunnel).
Outcome tunnel_clear(const std::optional<std::string>& only_if);
Outcome allow_lan(bool on);
Outcome policy(const std::string& p);
Outcome reload();
/// Follows the daemon's signals until interrupted; prints each as it comes, and when leakguardd
/// stops or comes back, or the bus is lost (then it keeps reconnecting).
int monitor(bool json, const Style& st);

/// A desktop notification a signal becomes (`leakguardctl monitor --notify`), or none.
struct Notification {
  std::string summary, body;
  std::uint8_t urgency = 1;  ///< 0 low, 1 normal, 2 critical (the spec's "urgency" hint)
  std::string key;           ///< notifications with the same key replace each other; Blocked's are rate-limited by it
  bool state = false;        ///< a state notification (one bubble, updated)
  bool operator==(const Notification&) const = default;
};
/// Pure: StateChanged to blocking/leaking/error/unverified (and back to secured after one of
/// those), LeakDetected, TableTampered and Blocked (not the daemon's own probes) become
/// notifications; ProbeCompleted and the rest do not. `previous_state` is the last state seen.
std::optional<Notification> notification_for(const std::string& name, const std::vector<std::string>& args,
                                             const std::string& previous_state);
/// What monitor prints when leakguardd or the bus comes or goes (WatchEvent), for people and as
/// JSON ({"event": "daemon-stopped"}, {"event": "daemon-back", "state": "secured"}, ...).
std::string render_watch(const WatchEvent& e, const Style& st);
nlohmann::json watch_json(const WatchEvent& e);
/// Pure: the daemon gone (stopped, or absent), back, and the bus lost become notifications (the
/// daemon's in the state bubble, which they replace); the bus back does not (what follows says
/// where the daemon is).
std::optional<Notification> notification_for(const WatchEvent& e);
/// `leakguardctl monitor --notify`: the signals as desktop notifications through
/// org.freedesktop.Notifications on the session bus (and printed as without --notify).
int monitor_notify(bool json, const Style& st);

}  // namespace leakguard::cli
