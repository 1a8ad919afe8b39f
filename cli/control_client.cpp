#include "cli/control_client.hpp"

#include <sdbus-c++/sdbus-c++.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>

#include "common/json_text.hpp"
#include "cli/daemon_link.hpp"

namespace leakguard::cli {
namespace {

constexpr const char* kName = "org.leakguard.Daemon1";

std::string sgr(bool on, const char* code, const std::string& s) {
  return on ? std::string("\x1b[") + code + "m" + s + "\x1b[0m" : s;
}

// Runs one call against the daemon, turning D-Bus errors into leakguardctl's exit statuses.
template <typename F>
Outcome with_daemon(F f) {
  try {
    if (auto d = connect_private(private_socket_path())) return f(*d);
    return f(*connect_bus());
  } catch (const sdbus::Error& e) {
    return from_dbus_error(e.getName(), e.getMessage());
  }
}

std::string state_word(const std::string& state, const Style& st) {
  if (state == "secured") return st.good(state);
  if (state == "leaking" || state == "error") return st.bad(state);
  if (state == "blocking" || state == "unverified") return st.warn(state);
  return state;
}

std::string text(const nlohmann::json& j, const char* key, const std::string& fallback = "-") {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  return j[key].is_string() ? j[key].get<std::string>() : json_text(j[key]);
}

std::string joined(const nlohmann::json& list, const std::string& none) {
  std::string s;
  if (list.is_array())
    for (const auto& x : list)
      if (x.is_string()) s += (s.empty() ? "" : ", ") + x.get<std::string>();
  return s.empty() ? none : s;
}

// The reflexive entry of a probe report that belongs to one result line: same address, server and
// family, from the same interface ("route" lists its entries as "route via IF").
const nlohmann::json* reflexive_entry(const nlohmann::json& report, const std::string& group, const nlohmann::json& res) {
  if (!report.contains("reflexive") || !report["reflexive"].is_array()) return nullptr;
  for (const auto& x : report["reflexive"]) {
    const std::string itf = text(x, "interface");
    if (text(x, "address") == text(res, "reflexive") && text(x, "server") == text(res, "server") &&
        text(x, "family") == text(res, "family") && (itf == group || (group == "route" && itf.starts_with("route"))))
      return &x;
  }
  return nullptr;
}

}  // namespace

std::string reason_text(const std::string& reason, bool brief) {
  std::string r = reason;
  if (!r.starts_with("probe ")) return r;
  // "probe ok: ok; ..." / "probe leak: leak: ADDR seen by ...": the probe's summary opens with
  // the verdict the state machine has just named.
  const auto colon = r.find(": ", 6);
  if (colon != std::string::npos) {
    const std::string verdict = r.substr(6, colon - 6);
    const std::string rest = r.substr(colon + 2);
    if (rest.starts_with(verdict) && (rest.size() == verdict.size() || rest[verdict.size()] == ':' || rest[verdict.size()] == ';'))
      r = "probe " + verdict + rest.substr(verdict.size());
  }
  // The rest ("; tunnel exit ...; 6 probes ... in 2 ms") has lines of its own in the status.
  return brief ? r.substr(0, r.find(';')) : r;
}

std::string Style::bold(const std::string& s) const { return sgr(color, "1", s); }
std::string Style::good(const std::string& s) const { return sgr(color, "1;32", s); }
std::string Style::bad(const std::string& s) const { return sgr(color, "1;31", s); }
std::string Style::warn(const std::string& s) const { return sgr(color, "1;33", s); }
std::string Style::dim(const std::string& s) const { return sgr(color, "2", s); }

Outcome from_dbus_error(const std::string& name, const std::string& message) {
  const std::string detail = message.empty() ? name : message;
  if (name == "org.freedesktop.DBus.Error.AccessDenied")
    return {kAccessDenied, "", "leakguardctl: access denied: this needs root or membership in group leakguard"};
  if (name == "org.freedesktop.DBus.Error.InvalidArgs")
    return {kInvalid, "", "leakguardctl: the daemon refused the arguments: " + detail};
  if (name == "org.leakguard.Daemon1.Error.Failed") return {kFailed, "", "leakguardctl: failed: " + detail};
  if (name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NameHasNoOwner" ||
      name == "org.freedesktop.DBus.Error.NoReply" || name == "org.freedesktop.DBus.Error.Disconnected" ||
      name == "org.freedesktop.DBus.Error.FileNotFound" || name == "org.freedesktop.DBus.Error.NoServer" ||
      name.starts_with("org.sdbuscpp.Error"))
    return {kNotRunning, "", "leakguardctl: leakguardd is not running (no " + std::string(kName) + " on the system bus)"};
  return {kFailed, "", "leakguardctl: " + name + ": " + detail};
}

std::string render_probe(const nlohmann::json& r, const Style& st) {
  std::string out;
  const std::string verdict = text(r, "verdict");
  out += "verdict: " + (verdict == "ok" ? st.good(verdict) : verdict == "-" ? verdict : st.bad(verdict)) + "\n";
  if (!r.contains("interfaces") || !r["interfaces"].is_array()) return out;
  // One block per interface, one line per probe. The probe that follows the routing table has no
  // interface of its own: it is named for what it is, and says where its answer came in.
  for (const auto& i : r["interfaces"]) {
    const std::string name = text(i, "name");
    out += "  " + (name == "route" ? st.bold("as routed") + " (no interface bound)" : st.bold(name) + " (" + text(i, "class") + ")");
    if (i.contains("verdict")) out += ": " + text(i, "verdict");
    out += "\n";
    if (!i.contains("results") || !i["results"].is_array()) continue;
    for (const auto& res : i["results"]) {
      out += "    " + text(res, "family") + " " + text(res, "server") + ": ";
      if (res.contains("reflexive") && !res["reflexive"].is_null()) {
        const auto* x = reflexive_entry(r, name, res);
        const bool leak = x && x->value("leak", false);
        out += "reflexive " + (leak ? st.bad(text(res, "reflexive")) : text(res, "reflexive"));
        if (x && name == "route" && text(*x, "interface").starts_with("route via "))
          out += ", came in through " + text(*x, "interface").substr(10);
        if (leak) out += "  " + st.bad("<- LEAK");
        else if (x && x->value("exposure", false)) out += "  " + st.warn("<- exposure (any local process, not a web page; strict closes it)");
      } else {
        out += text(res, "detail", text(res, "outcome"));
        // A hop probe answered from beyond this machine (probes/hops.hpp).
        if (res.value("leak", false)) out += "  " + st.bad("<- LEAK");
      }
      out += "\n";
    }
  }
  return out;
}

std::string render_blocked(const nlohmann::json& b, const Style& st, std::size_t top) {
  std::string out;
  if (!b.is_object()) return out;
  const auto packets = b.value("packets", std::uint64_t{0});
  if (!b.contains("flows")) {
    // Outside the control group: how much, not whose.
    return "  " + std::to_string(packets) + " blocked packets logged " + st.dim("(who and where: root and group leakguard only)") + "\n";
  }
  if (b["flows"].empty()) return "  nothing logged yet\n";
  std::size_t n = 0;
  for (const auto& f : b["flows"]) {
    if (n++ == top) break;
    std::string who = text(f, "app");
    std::string detail;
    if (f.contains("uid") && f["uid"].is_number())
      detail = f.contains("user") && f["user"].is_string() ? text(f, "user") : "uid " + f["uid"].dump();
    if (f.contains("pid") && f["pid"].is_number()) detail += (detail.empty() ? "" : ", ") + std::string("pid ") + f["pid"].dump();
    if (f.contains("unit") && f["unit"].is_string() && text(f, "unit") != who) detail += (detail.empty() ? "" : ", ") + text(f, "unit");
    if (f.value("gone", false)) detail += (detail.empty() ? "" : ", ") + std::string("process gone");
    out += "  " + st.bold(who) + (detail.empty() ? "" : " (" + detail + ")") + " -> " + text(f, "destination") +
           (text(f, "interface").empty() ? "" : " via " + text(f, "interface")) + ": " + f["packets"].dump() + " packet" +
           (f["packets"] == 1 ? "" : "s") + ", last " + text(f, "last_seen") + "\n";
    if (f.contains("note") && f["note"].is_string()) out += "    " + st.dim(text(f, "note")) + "\n";
  }
  if (b["flows"].size() > top) out += "  " + st.dim("... " + std::to_string(b["flows"].size() - top) + " more: leakguardctl blocked") + "\n";
  return out;
}

std::string render_status(const nlohmann::json& s, const Style& st) {
  std::string out;
  const std::string state = text(s, "state");
  out += st.bold("leakguard") + ": " + state_word(state, st);
  if (s.contains("reason") && s["reason"].is_string()) out += st.dim("  (" + reason_text(text(s, "reason"), true) + ")");
  out += "\n";
  out += "  armed:     " + std::string(s.value("armed", false) ? "yes" : "no") + "\n";
  out += "  policy:    " + text(s, "policy") + (s.value("allow_lan", false) ? " + LAN allowed" : "");
  // probe.on_exposure escalate: families held as strict because a page's path out was found.
  std::string escalated;
  if (s.contains("escalated") && s["escalated"].is_array())
    for (const auto& f : s["escalated"])
      if (f.is_string()) escalated += (escalated.empty() ? "" : " and ") + std::string(f == "ipv4" ? "IPv4" : "IPv6");
  if (!escalated.empty()) out += st.warn(", " + escalated + " escalated to strict (a web page's path out was found)");
  out += "\n";
  // Up or down first; then which interfaces count as the tunnel: by the configuration's names,
  // and the one a VPN client declared.
  std::string tunnel = s.value("tunnel_up", false) ? "up" : "down";
  if (s.contains("tunnel") && s["tunnel"].is_object()) {
    const auto& t = s["tunnel"];
    tunnel += " (configured: " + joined(t.value("patterns", nlohmann::json::array()), "none") +
              "; declared: " + text(t, "declared", "none") + ")";
  }
  out += "  tunnel:    " + tunnel + "\n";
  // The tunnel's exit address: what the last probe's STUN server saw through the tunnel.
  if (s.contains("last_probe") && s["last_probe"].is_object() && s["last_probe"].contains("tunnel_exits")) {
    std::string exits;
    for (const char* f : {"ipv4", "ipv6"})
      for (const auto& a : s["last_probe"]["tunnel_exits"].value(f, nlohmann::json::array()))
        if (a.is_string()) exits += (exits.empty() ? "" : ", ") + a.get<std::string>();
    if (!exits.empty()) out += "  exit:      " + exits + "\n";
  }
  // Callers outside the control group get no endpoints, addresses or probe details (the daemon
  // says so in "redacted"): say that instead of "none".
  if (s.contains("redacted") && !s.contains("endpoints"))
    out += "  details:   " + st.dim("for root and group leakguard only (endpoints, addresses, probe results)") + "\n";
  else
    out += "  endpoints: " + joined(s.value("endpoints", nlohmann::json::array()), "none") + "\n";
  if (s.contains("fwmark") && !s["fwmark"].is_null()) {
    out += "  fwmark:    " + text(s, "fwmark") + "\n";
  } else if (s.contains("endpoint_uid") && s.contains("endpoints") && !s["endpoints"].empty()) {
    // Without a mark, whose sockets may reach the endpoints outside the tunnel.
    out += "  for:       " +
           (s["endpoint_uid"].is_number() ? "sockets of uid " + s["endpoint_uid"].dump() + " and the kernel's (no fwmark)"
                                          : std::string("every local user (endpoint_uid: any)")) + "\n";
  }
  if (s.contains("firewall") && s["firewall"].is_object()) {
    const auto& fw = s["firewall"];
    out += "  table:     inet leakguard";
    if (!fw.value("installed", false)) out += ", not installed";
    else if (fw.value("owner", false)) out += ", owned (the kernel refuses others' changes), guarded";
    else out += ", guarded (" + text(fw, "ownership", "no owner flag") + ")";
    out += "\n";
    // The firewall's summary is a sentence of its own ("blocked 8 UDP packets ..."; "nothing blocked").
    if (fw.contains("blocked") && fw["blocked"].is_string()) out += "  counters:  " + fw["blocked"].get<std::string>() + "\n";
    if (fw.contains("error") && fw["error"].is_string()) out += "  " + st.warn("firewall: " + fw["error"].get<std::string>()) + "\n";
  }
  if (s.contains("rules_error") && !s["rules_error"].is_null()) out += "  " + st.bad("rules: " + text(s, "rules_error")) + "\n";
  // Failing closed (no usable configuration, or rules the kernel refused): what stands instead.
  if (s.contains("config_error") && s["config_error"].is_string())
    out += "  " + st.bad("configuration: " + text(s, "config_error") + " (fix the file, then leakguardctl reload)") + "\n";
  if (text(s, "protection") == "emergency") out += "  " + st.bad("emergency block: everything but loopback dropped") + "\n";
  if (text(s, "protection") == "kept") out += "  " + st.bad("kept: the table the previous run left, as it was") + "\n";
  out += "  leaks:     " + std::to_string(s.value("leak_count", std::uint64_t{0})) + " found since start\n";
  // The network as the daemon sees it: what a page could enumerate, and where traffic leaves.
  if (s.contains("network") && s["network"].is_object() && s["network"].contains("links")) {
    const auto& n = s["network"];
    out += "network:\n";
    for (const auto& l : n["links"]) {
      if (text(l, "class") == "loopback") continue;
      std::string addrs;
      for (const auto& a : l.value("addresses", nlohmann::json::array()))
        if (text(a, "scope") != "link") addrs += (addrs.empty() ? "" : ", ") + text(a, "address") + "/" + text(a, "prefix");
      out += "  " + text(l, "name") + " (" + text(l, "class") + ", " + (l.value("up", false) ? "up" : "down") + ")" +
             (addrs.empty() ? "" : ": " + addrs) + "\n";
    }
    if (n.contains("egress") && n["egress"].is_object())
      out += "  traffic leaves via: ipv4 " + text(n["egress"], "ipv4", "nothing") + ", ipv6 " +
             text(n["egress"], "ipv6", "nothing") + "\n";
  }
  if (s.contains("blocked") && s["blocked"].is_object()) out += "blocked recently (logged, at most 100 a second per rule):\n" + render_blocked(s["blocked"], st, 5);
  if (s.contains("last_probe") && !s["last_probe"].is_null()) {
    out += "last probe: ";
    std::string probe = render_probe(s["last_probe"], st);
    out += probe.substr(probe.find(':') + 2);
  } else {
    out += "last probe: none yet\n";
  }
  return out;
}

std::string render_signal(const std::string& name, const std::vector<std::string>& a, const Style& st) {
  auto arg = [&](std::size_t i) { return i < a.size() ? a[i] : std::string("?"); };
  if (name == "StateChanged") return "state " + arg(0) + " -> " + state_word(arg(1), st) + ": " + reason_text(arg(2), false);
  if (name == "LeakDetected") {
    // The daemon names the probe that follows the routing table "routed via IF".
    const std::string via = arg(0).starts_with("routed via ") ? arg(0).substr(11) + " (" + arg(1) + ", routed)"
                                                               : arg(0) + " (" + arg(1) + ")";
    return st.bad("LEAK") + " via " + via + ": " + st.bad(arg(2)) + " seen by " + arg(3);
  }
  if (name == "ProbeCompleted") return "probe: " + (arg(0) == "ok" ? st.good(arg(0)) : st.bad(arg(0)));
  if (name == "TableTampered") return st.warn("table changed") + " by " + arg(0);
  if (name == "Blocked")
    return st.warn("blocked") + " " + st.bold(arg(0)) + (arg(1).empty() ? "" : " (" + arg(1) + ")") + " -> " + arg(2) +
           (arg(3).empty() ? "" : " via " + arg(3)) + ": " + arg(4) + " packet" + (arg(4) == "1" ? "" : "s");
  std::string s = name;
  for (const auto& x : a) s += " " + x;
  return s;
}

std::string tunnel_declared(const std::string& interface, const std::vector<std::string>& endpoints, std::uint32_t fwmark) {
  std::string s = "tunnel " + interface + " declared";
  if (endpoints.empty()) s += ", no endpoint";
  else s += std::string(endpoints.size() == 1 ? ", endpoint " : ", endpoints ") + joined(endpoints, "");
  if (fwmark != 0) s += ", fwmark " + std::to_string(fwmark);
  return s + "\n";
}

std::string policy_set(const std::string& policy) {
  if (policy == "strict") return "policy strict: all IP outside the tunnel is blocked\n";
  if (policy == "udp") return "policy udp: UDP outside the tunnel is blocked\n";
  return "policy " + policy + "\n";
}

Outcome status(bool json, const Style& st) {
  return with_daemon([&](Daemon& p) -> Outcome {
    const std::string raw = p.GetStatus();
    auto j = nlohmann::json::parse(raw, nullptr, false);
    if (j.is_discarded()) return {kFailed, "", "leakguardctl: the daemon sent a status that is not JSON"};
    const int code = j.value("state", "") == "leaking" ? kLeak : kOk;
    return {code, json ? json_text(j, 2) + "\n" : render_status(j, st), ""};
  });
}

Outcome blocked(bool json, const Style& st) {
  return with_daemon([&](Daemon& p) -> Outcome {
    auto j = nlohmann::json::parse(p.GetStatus(), nullptr, false);
    if (j.is_discarded()) return {kFailed, "", "leakguardctl: the daemon sent a status that is not JSON"};
    const nlohmann::json b = j.contains("blocked") ? j["blocked"] : nlohmann::json::object();
    if (json) return {kOk, json_text(b, 2) + "\n", ""};
    return {kOk, "blocked outside the tunnel, by application and destination (most recent first):\n" + render_blocked(b, st, 1000), ""};
  });
}

Outcome probe(bool json, const Style& st) {
  return with_daemon([&](Daemon& p) -> Outcome {
    auto [verdict, report] = p.ProbeNow();
    auto j = nlohmann::json::parse(report, nullptr, false);
    const int code = verdict == "leak" ? kLeak : kOk;
    if (json) return {code, (j.is_discarded() ? report : json_text(j, 2)) + "\n", ""};
    return {code, j.is_discarded() ? "verdict: " + verdict + "\n" : render_probe(j, st), ""};
  });
}

Outcome arm() {
  return with_daemon([](Daemon& p) -> Outcome {
    p.Arm();
    return {kOk, "armed: the kill switch is on\n", ""};
  });
}

Outcome disarm() {
  return with_daemon([](Daemon& p) -> Outcome {
    p.Disarm();
    return {kOk, "disarmed: the kill switch is off\n", ""};
  });
}

Outcome tunnel_set(const std::string& interface, const std::vector<std::string>& endpoints, std::uint32_t fwmark) {
  return with_daemon([&](Daemon& p) -> Outcome {
    p.SetTunnel(interface, endpoints, fwmark);
    return {kOk, tunnel_declared(interface, endpoints, fwmark), ""};
  });
}

Outcome tunnel_clear(const std::optional<std::string>& only_if) {
  return with_daemon([&](Daemon& p) -> Outcome {
    if (only_if) {
      const std::string declared = p.TunnelInterface();
      if (declared != *only_if) return {kOk, "tunnel " + *only_if + " is not the declared one; nothing to clear\n", ""};
    }
    p.ClearTunnel();
    return {kOk, "tunnel declaration cleared\n", ""};
  });
}

Outcome allow_lan(bool on) {
  return with_daemon([&](Daemon& p) -> Outcome {
    p.SetAllowLan(on);
    return {kOk, std::string("LAN traffic ") + (on ? "allowed" : "blocked") + " outside the tunnel\n", ""};
  });
}

Outcome policy(const std::string& pol) {
  return with_daemon([&](Daemon& p) -> Outcome {
    p.SetPolicy(pol);
    return {kOk, policy_set(pol), ""};
  });
}

Outcome reload() {
  return with_daemon([](Daemon& p) -> Outcome {
    p.Reload();
    return {kOk, "configuration reloaded\n", ""};
  });
}

std::optional<Notification> notification_for(const std::string& name, const std::vector<std::string>& a,
                                             const std::string& previous) {
  auto arg = [&](std::size_t i) { return i < a.size() ? a[i] : std::string(); };
  if (name == "StateChanged") {
    const std::string to = arg(1), why = reason_text(arg(2), false);
    if (to == "blocking") return Notification{"VPN down: blocked", "leakguard blocks what would leave outside the VPN. " + why, 1, "state", true};
    if (to == "leaking") return Notification{"Leak: traffic gets out outside the VPN", why, 2, "state", true};
    if (to == "error") return Notification{"leakguard: error", why, 2, "state", true};
    if (to == "unverified") return Notification{"VPN not verified", why, 1, "state", true};
    if (to == "secured" && (previous == "blocking" || previous == "leaking" || previous == "error" || previous == "unverified"))
      return Notification{"VPN protected", "leakguard's probe saw only the VPN's exit. " + why, 0, "state", true};
    return std::nullopt;
  }
  if (name == "LeakDetected") {
    const std::string via = arg(0).starts_with("routed via ") ? arg(0).substr(11) : arg(0);
    return Notification{"Leak detected via " + via,
                        arg(2).empty() ? arg(3) : arg(1) + " address " + arg(2) + " seen by " + arg(3), 2, "leak " + via, false};
  }
  if (name == "TableTampered")
    return Notification{"leakguard's firewall was changed", "by " + arg(0) + " (restored where the kernel let it)", 1, "tamper", false};
  if (name == "Blocked") {
    if (arg(0) == "leakguardd (probe)") return std::nullopt;  // the kill switch checking itself
    std::string dest = arg(2);
    if (const auto slash = dest.rfind('/'); slash != std::string::npos) dest.resize(slash);
    return Notification{arg(0) + " tried to reach " + dest + " outside the VPN (blocked)",
                        arg(4) + " packet" + (arg(4) == "1" ? "" : "s") + (arg(3).empty() ? "" : " via " + arg(3)) +
                            (arg(1).empty() ? "" : ", " + arg(1)),
                        0, "blocked " + arg(0) + " " + arg(2), false};
  }
  return std::nullopt;
}

int monitor(bool json, const Style& st) {
  try {
    follow_signals([&](const std::string& name, const std::vector<std::string>& args) {
      if (json) std::cout << json_text(nlohmann::json{{"signal", name}, {"args", args}}) << std::endl;
      else std::cout << render_signal(name, args, st) << std::endl;
    });
  } catch (const sdbus::Error& e) {
    auto o = from_dbus_error(e.getName(), e.getMessage());
    std::cerr << o.err << "\n";
    return o.exit;
  }
  return kOk;
}

int monitor_notify(bool json, const Style& st) {
  std::unique_ptr<sdbus::IConnection> session;
  try {
    session = sdbus::createSessionBusConnection();
  } catch (const sdbus::Error& e) {
    std::cerr << "leakguardctl: no session bus for desktop notifications: " << e.getMessage() << "\n";
    return kFailed;
  }
  auto notifications = sdbus::createProxy(*session, "org.freedesktop.Notifications", "/org/freedesktop/Notifications");
  std::map<std::string, std::uint32_t> ids;  // a key's last notification, replaced by the next
  std::map<std::string, std::chrono::steady_clock::time_point> told;  // Blocked: once a minute per app and destination
  std::string state;
  try {
    follow_signals([&](const std::string& name, const std::vector<std::string>& args) {
      if (json) std::cout << json_text(nlohmann::json{{"signal", name}, {"args", args}}) << std::endl;
      else std::cout << render_signal(name, args, st) << std::endl;
      const auto n = notification_for(name, args, state);
      if (name == "StateChanged" && args.size() > 1) state = args[1];
      if (!n) return;
      const auto now = std::chrono::steady_clock::now();
      if (name == "Blocked") {
        if (auto it = told.find(n->key); it != told.end() && now - it->second < std::chrono::minutes(1)) return;
        if (told.size() > 1024) told.clear();
        told[n->key] = now;
      }
      std::map<std::string, sdbus::Variant> hints{{"urgency", sdbus::Variant(n->urgency)}};
      std::uint32_t id = 0;
      try {
        notifications->callMethod("Notify")
            .onInterface("org.freedesktop.Notifications")
            .withArguments(std::string("leakguard"), ids[n->key], std::string("network-vpn"), n->summary, n->body,
                           std::vector<std::string>{}, hints, std::int32_t{-1})
            .storeResultsTo(id);
        ids[n->key] = id;
      } catch (const sdbus::Error& e) {
        std::cerr << "leakguardctl: notification not shown: " << e.getMessage() << "\n";
      }
    });
  } catch (const sdbus::Error& e) {
    auto o = from_dbus_error(e.getName(), e.getMessage());
    std::cerr << o.err << "\n";
    return o.exit;
  }
  return kOk;
}

}  // namespace leakguard::cli
