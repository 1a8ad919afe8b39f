#include "cli/control_client.hpp"

#include <sdbus-c++/sdbus-c++.h>

#include <algorithm>
#include <cctype>
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

// Whether the kill switch is armed now (after a change was taken), nullopt if the daemon does not
// say: the change itself is done either way.
std::optional<bool> armed_now(Daemon& p) {
  try {
    auto j = nlohmann::json::parse(p.GetStatus(), nullptr, false);
    if (j.is_object() && j.contains("armed") && j["armed"].is_boolean()) return j["armed"].get<bool>();
  } catch (const sdbus::Error&) {
  }
  return std::nullopt;
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

// A probe's outcome as the report words it, but for a TCP probe that timed out before it sent
// anything: "timeout (0 attempts)" means the connection was never made.
std::string result_detail(const nlohmann::json& res) {
  const std::string detail = text(res, "detail", text(res, "outcome"));
  if (text(res, "outcome") == "timeout" && text(res, "server").ends_with("/tcp") && detail == "timeout (0 attempts)")
    return "timeout: no TCP connection (no STUN request sent)";
  return detail;
}

// "chromium (alice, pid 42)"; an application named with brackets of its own ("leakguardd
// (probe)") takes the detail inside them: "leakguardd (probe, uid 0)".
std::string with_detail(const std::string& who, const std::string& detail) {
  if (detail.empty()) return who;
  if (who.ends_with(")") && who.find(" (") != std::string::npos) return who.substr(0, who.size() - 1) + ", " + detail + ")";
  return who + " (" + detail + ")";
}

// Interfaces that are the tunnel now: the declared one, the configured names, what the network
// classifies as a tunnel. Nothing is blocked via them; a set counted them before they were one.
bool is_tunnel(const std::string& itf, const nlohmann::json& s) {
  if (s.contains("tunnel") && s["tunnel"].is_object()) {
    const auto& t = s["tunnel"];
    if (text(t, "declared", "") == itf) return true;
    for (const auto& p : t.value("patterns", nlohmann::json::array())) {
      if (!p.is_string()) continue;
      const std::string pat = p.get<std::string>();
      if (pat.ends_with("*") ? itf.starts_with(pat.substr(0, pat.size() - 1)) : itf == pat) return true;
    }
  }
  if (s.contains("network") && s["network"].is_object() && s["network"].contains("links"))
    for (const auto& l : s["network"]["links"])
      if (text(l, "name") == itf && text(l, "class") == "tunnel") return true;
  return false;
}

bool is_gone(const std::string& itf, const nlohmann::json& s) {
  if (!s.contains("network") || !s["network"].is_object() || !s["network"].contains("links") ||
      !s["network"]["links"].is_array())
    return false;  // not known (callers outside the control group): not said
  for (const auto& l : s["network"]["links"])
    if (text(l, "name") == itf) return false;
  return true;
}

std::string direction_word(const std::string& d) { return d == "in" ? "incoming " : d == "fwd" ? "forwarded " : ""; }

// The firewall's counters (status.firewall.counters) come from two places that count different
// spans: the rules' totals (reset whenever the rules are rewritten) and the counting sets' per
// interface (kept across rule changes and daemon restarts, until the table is made anew). One line
// each, saying which; per interface without the tunnel, interfaces that no longer exist marked.
std::string counters_lines(const nlohmann::json& counters, const nlohmann::json& s) {
  std::string totals;
  for (const auto& c : counters) {
    if (!c.is_object() || text(c, "scope") != "all" || c.value("packets", std::uint64_t{0}) == 0) continue;
    const std::string kind = text(c, "kind");
    std::string what = kind == "tunaddr"    ? "to the tunnel's address"
                       : kind == "icmperr"  ? "ICMP errors about no flow of ours"
                       : kind == "endpoint" ? "to the endpoint from other users"
                                            : kind;
    if (kind == "udp" || kind == "tcp" || kind == "ip" || kind == "dns")
      for (auto& ch : what) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    totals += (totals.empty() ? "" : ", ") + direction_word(text(c, "direction")) + what + " " + json_text(c["packets"]);
  }
  std::string out = "  counters:  " + (totals.empty() ? std::string("nothing blocked") : "blocked " + totals + " packets") +
                    " since the rules were last written\n";
  std::vector<std::pair<std::string, std::uint64_t>> per_if;  // "eth0", "eth1 incoming" -> packets
  for (const auto& c : counters) {
    if (!c.is_object() || text(c, "scope") == "all" || c.value("packets", std::uint64_t{0}) == 0) continue;
    const std::string itf = text(c, "scope");
    if (is_tunnel(itf, s)) continue;
    const std::string dir = text(c, "direction");
    const std::string label = itf + (dir == "in" ? " incoming" : dir == "fwd" ? " forwarded" : "");
    auto it = std::find_if(per_if.begin(), per_if.end(), [&](const auto& x) { return x.first == label; });
    if (it == per_if.end()) per_if.emplace_back(label, c.value("packets", std::uint64_t{0}));
    else it->second += c.value("packets", std::uint64_t{0});
  }
  std::stable_sort(per_if.begin(), per_if.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (per_if.empty()) return out;
  std::string list;
  for (const auto& [label, n] : per_if)
    list += (list.empty() ? "" : ", ") + label + " " + std::to_string(n) + (is_gone(label.substr(0, label.find(' ')), s) ? " (gone)" : "");
  return out + "             by interface, since the table was made: " + list + "\n";
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

namespace {
// What a stopped daemon leaves: with on_stop: keep (the default) its table stays in the kernel,
// nothing defends it, and nothing here can lift it.
constexpr const char* kBlockStays =
    "\nleakguardctl: if it stopped with on_stop: keep (the default), its block stays in place: nft delete table inet leakguard "
    "lifts it, as root";
}  // namespace

Outcome from_dbus_error(const std::string& name, const std::string& message) {
  const std::string detail = message.empty() ? name : message;
  if (name == "org.freedesktop.DBus.Error.AccessDenied")
    return {kAccessDenied, "", "leakguardctl: access denied: this needs root or membership in group leakguard"};
  if (name == "org.freedesktop.DBus.Error.InvalidArgs")
    return {kInvalid, "", "leakguardctl: the daemon refused the arguments: " + detail};
  if (name == "org.leakguard.Daemon1.Error.Failed") return {kFailed, "", "leakguardctl: failed: " + detail};
  if (name == "org.leakguard.Daemon1.Error.TunnelBusy") return {kBusy, "", "leakguardctl: not declared: " + detail};
  if (name == kNoBusError) return {kNotRunning, "", "leakguardctl: cannot reach the system bus (" + detail + ")"};
  if (name == kNotAnsweringError) return {kNotRunning, "", "leakguardctl: leakguardd is not answering (" + detail + ")"};
  if (name == "org.freedesktop.DBus.Error.Timeout")
    return {kNotRunning, "", "leakguardctl: leakguardd did not answer in time (" + detail + ")"};
  if (name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NameHasNoOwner" ||
      name == "org.freedesktop.DBus.Error.NoReply" || name == "org.freedesktop.DBus.Error.Disconnected" ||
      name == "org.freedesktop.DBus.Error.FileNotFound" || name == "org.freedesktop.DBus.Error.NoServer" ||
      name.starts_with("org.sdbuscpp.Error"))
    return {kNotRunning, "", "leakguardctl: leakguardd is not running (no " + std::string(kName) + " on the system bus)" + kBlockStays};
  // The bus tried to start it and systemd said no: the unit is disabled (its activation alias
  // is gone), masked, or failed to start.
  if (name.starts_with("org.freedesktop.systemd1.") || name.starts_with("org.freedesktop.DBus.Error.Spawn."))
    return {kNotRunning, "", "leakguardctl: leakguardd is not running, and the bus could not start it (" +
                                 (detail.ends_with('.') ? detail.substr(0, detail.size() - 1) : detail) +
                                 "; see systemctl status leakguard)" + kBlockStays};
  return {kFailed, "", "leakguardctl: " + name + ": " + detail};
}

std::string render_probe(const nlohmann::json& r, const Style& st) {
  std::string out;
  const std::string verdict = text(r, "verdict");
  out += "verdict: " +
         (verdict == "ok"           ? st.good(verdict)
          : verdict == "-"          ? verdict
          : verdict == "unverified" ? st.warn(verdict) + " (" +
                                          (r.contains("unverified_because") ? text(r, "unverified_because")
                                                                            : std::string("the tunnel did not answer: no VPN exit seen")) +
                                          "; no leak found either)"
                                    : st.bad(verdict)) +
         "\n";
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
        out += result_detail(res);
        // A hop probe answered from beyond this machine (probes/hops.hpp), or a request the block
        // should have refused left the device.
        if (res.value("unrefused", false)) out += "  " + st.bad("<- LEAK: sent, not refused by the block");
        else if (res.contains("connected_outside"))
          out += "  " + st.bad("<- LEAK: connected outside the tunnel (" + text(res, "connected_outside") + ")");
        else if (res.value("leak", false)) out += "  " + st.bad("<- LEAK");
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
    out += "  " + st.bold(with_detail(who, detail)) + " -> " + text(f, "destination") +
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
  // Kept: the table a previous run left enforces what that run's configuration said; this run has
  // none (its policy field is only the default's).
  const bool kept = text(s, "protection") == "kept";
  const bool emergency = text(s, "protection") == "emergency";
  if (kept) out += "  policy:    the kept table's (this run has no usable configuration)";
  else if (emergency) out += "  policy:    the emergency block (everything but loopback; no endpoint, DHCP or LAN)";
  else out += "  policy:    " + text(s, "policy") + (s.value("allow_lan", false) ? " + LAN allowed" : "");
  // Set with `leakguardctl policy` / `allow-lan`: until the next reload, across restarts.
  if (!kept && !emergency && s.contains("set_at_runtime") && s["set_at_runtime"].is_object()) {
    const auto& r = s["set_at_runtime"];
    std::string which;
    if (r.contains("policy") && r["policy"].is_string()) which = "policy";
    if (r.contains("allow_lan") && r["allow_lan"].is_boolean()) which += (which.empty() ? "" : " and ") + std::string("LAN");
    if (!which.empty()) out += st.dim(" (" + which + " set at run time, until a reload)");
  }
  // probe.on_exposure escalate: families held as strict because a page's path out was found.
  // Why: a probe found a web page's way out, or the routing rules send some traffic around the
  // tunnel (escalated_by_routing).
  std::string by_probe, by_routing;
  auto listed = [&](const char* key, const nlohmann::json& f) {
    if (!s.contains(key) || !s[key].is_array()) return false;
    for (const auto& x : s[key])
      if (x == f) return true;
    return false;
  };
  if (s.contains("escalated") && s["escalated"].is_array())
    for (const auto& f : s["escalated"])
      if (f.is_string()) {
        auto& to = listed("escalated_by_routing", f) ? by_routing : by_probe;
        to += (to.empty() ? "" : " and ") + std::string(f == "ipv4" ? "IPv4" : "IPv6");
      }
  if (!by_probe.empty()) out += st.warn(", " + by_probe + " escalated to strict (a web page's path out was found)");
  if (!by_routing.empty())
    out += st.warn(", " + by_routing + " escalated to strict (the routing sends some traffic around the tunnel)");
  out += "\n";
  // Up or down first; then which interfaces count as the tunnel: by the configuration's names,
  // and the one a VPN client declared.
  std::string tunnel = s.value("tunnel_up", false) ? "up" : "down";
  if (s.contains("tunnel") && s["tunnel"].is_object()) {
    const auto& t = s["tunnel"];
    if (kept)  // the kept table trusts what the previous run's configuration named: not known here
      tunnel += " (the kept table's tunnels, as the previous run wrote them: nft list table inet leakguard; declared: " +
                text(t, "declared", "none") + ")";
    else if (s.contains("config_error") && s["config_error"].is_string())
      tunnel += " (no usable configuration: no interface is trusted as the tunnel; declared: " + text(t, "declared", "none") + ")";
    else
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
    // Seen by the last round: with the tunnel down (or another declared since) it is history.
    if (!exits.empty())
      out += "  exit:      " + exits + (s.value("tunnel_up", false) ? "" : st.dim(" (last round's; the tunnel is down now)")) + "\n";
  }
  // Callers outside the control group get no endpoints, addresses or probe details (the daemon
  // says so in "redacted"): say that instead of "none".
  if (s.contains("redacted") && !s.contains("endpoints"))
    out += "  details:   " + st.dim("for root and group leakguard only (endpoints, addresses, probe results)") + "\n";
  else if (kept)  // the previous run's endpoints are in the kept table, not in this run's knowledge
    out += "  endpoints: the kept table's (nft list set inet leakguard endpoints4, endpoints6)\n";
  else if (emergency)
    out += "  endpoints: none allowed (the emergency block)\n";
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
    if (kept) out += ", kept as the previous run left it (in force, untouched)";
    else if (!fw.value("installed", false)) out += ", not installed";
    else if (fw.value("owner", false)) out += ", owned (the kernel refuses others' changes), guarded";
    else out += ", guarded, " + text(fw, "ownership", "no owner flag");
    out += "\n";
    // The firewall's summary is a sentence of its own ("blocked 8 UDP packets ..."; "nothing blocked").
    if (fw.contains("counters") && fw["counters"].is_array()) out += counters_lines(fw["counters"], s);
    else if (fw.contains("blocked") && fw["blocked"].is_string()) out += "  counters:  " + fw["blocked"].get<std::string>() + "\n";
    if (fw.contains("error") && fw["error"].is_string()) out += "  " + st.warn("firewall: " + fw["error"].get<std::string>()) + "\n";
  }
  if (s.contains("rules_error") && !s["rules_error"].is_null()) out += "  " + st.bad("rules: " + text(s, "rules_error")) + "\n";
  // Failing closed (no usable configuration, or rules the kernel refused): what stands instead.
  if (s.contains("config_error") && s["config_error"].is_string())
    out += "  " + st.bad("configuration: " + text(s, "config_error") + " (fix the file, then leakguardctl reload)") + "\n";
  if (text(s, "protection") == "emergency") out += "  " + st.bad("emergency block: everything but loopback dropped") + "\n";
  if (text(s, "protection") == "kept") out += "  " + st.bad("kept: the table the previous run left, as it was") + "\n";
  if (s.contains("reload_error") && s["reload_error"].is_string())
    out += "  " + st.warn("reload:    refused, the running configuration stays (" + text(s, "reload_error") +
                          "); a restart would read the same file") + "\n";
  if (s.contains("not_kept") && s["not_kept"].is_string())
    out += "  " + st.warn("restart:   a restarted daemon would not know the last change (" + text(s, "not_kept") + ")") + "\n";
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
      out += "  " + text(l, "name") + " (" + text(l, "class") + ", " + (!l.value("up", false) ? "down" : l.value("running", true) ? "up" : "up, no carrier") + ")" +
             (addrs.empty() ? "" : ": " + addrs) + "\n";
    }
    if (n.contains("egress") && n["egress"].is_object()) {
      // Where some users', protocols' or ports' traffic goes instead (policy routing by selector).
      auto side = [&](const char* f) {
        std::string parts;
        if (n.contains("side_egress") && n["side_egress"].is_object() && n["side_egress"].contains(f) && n["side_egress"][f].is_array())
          for (const auto& x : n["side_egress"][f])
            parts += "; " + text(x, "selector") + ": " + text(x, "interface", "nothing");
        return parts.empty() ? parts : st.warn(" (" + parts.substr(2) + ")");
      };
      out += "  traffic leaves via: ipv4 " + text(n["egress"], "ipv4", "nothing") + side("ipv4") + ", ipv6 " +
             text(n["egress"], "ipv6", "nothing") + side("ipv6") + "\n";
    }
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
    // A hop probe's leak: no server saw an address, a router answered ("hop 192.0.2.1 toward X").
    if (arg(2).empty() && arg(3).starts_with("hop ")) {
      const std::string rest = arg(3).substr(4);
      const auto sp = rest.find(' ');
      return st.bad("LEAK") + " via " + via + ": router " + rest.substr(0, sp) + " answered a datagram sent" +
             (sp == std::string::npos ? std::string() : rest.substr(sp)) + " outside the tunnel";
    }
    // A page's TCP connection made outside the tunnel, no STUN answer ("connected to X outside ...").
    if (arg(2).empty() && arg(3).starts_with("connected to ")) return st.bad("LEAK") + " via " + via + ": " + arg(3);
    // A request the block should have refused left the device ("sent toward X, not refused ...").
    if (arg(2).empty() && arg(3).starts_with("sent toward "))
      return st.bad("LEAK") + " via " + via + ": a request " + arg(3).substr(0, arg(3).find(',')) +
             " left outside the tunnel: the block did not refuse it";
    return st.bad("LEAK") + " via " + via + ": " + st.bad(arg(2)) + " seen by " + arg(3);
  }
  if (name == "ProbeCompleted") return "probe: " + (arg(0) == "ok" ? st.good(arg(0)) : st.bad(arg(0)));
  if (name == "TableTampered") return st.warn("table changed") + " by " + arg(0);
  if (name == "Blocked")
    return st.warn("blocked") + " " + st.bold(with_detail(arg(0), arg(1))) + " -> " + arg(2) +
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

namespace {
// Disarmed, there is no table: a setting waits for the next arm.
const char* const kWhenArmed = ": the kill switch is disarmed (no rules installed); it takes effect when armed (leakguardctl arm)\n";
}  // namespace

std::string policy_set(const std::string& policy, std::optional<bool> armed) {
  if (armed == false) return "policy " + policy + " kept" + kWhenArmed;
  if (policy == "strict") return "policy strict: all IP outside the tunnel is blocked\n";
  if (policy == "udp") return "policy udp: UDP outside the tunnel is blocked\n";
  return "policy " + policy + "\n";
}

std::string allow_lan_set(bool on, std::optional<bool> armed) {
  if (armed == false) return std::string("allow-lan ") + (on ? "on" : "off") + " kept" + kWhenArmed;
  return std::string("LAN traffic ") + (on ? "allowed" : "blocked") + " outside the tunnel\n";
}

Outcome probe_answer(const std::string& verdict, const std::string& report, bool json, const Style& st) {
  auto j = nlohmann::json::parse(report, nullptr, false);
  // A daemon without a usable configuration answers with the reason instead of a report (older
  // daemons; newer ones refuse the call with Error.Failed): nothing was probed.
  if (j.is_object() && j.contains("error") && !j.contains("verdict"))
    return {kFailed, json ? json_text(j, 2) + "\n" : "", "leakguardctl: no probe round: " + text(j, "error")};
  const int code = verdict == "leak" ? kLeak : verdict == "unverified" ? kUnverified : kOk;
  if (j.is_discarded()) return {code, json ? report + "\n" : "verdict: " + verdict + "\n", ""};
  // The report comes headed by the round's verdict (daemon/probe_port.cpp), the prober's own as
  // report_verdict where it differs.
  if (json) return {code, json_text(j, 2) + "\n", ""};
  return {code, render_probe(j, st), ""};
}

nlohmann::json signal_json(const std::string& name, const std::vector<std::string>& args) {
  nlohmann::json a = args;
  // Blocked's packet count is a D-Bus `t`: a number, as every other reader of the signal sees it.
  if (name == "Blocked" && args.size() > 4 && !args[4].empty() &&
      args[4].find_first_not_of("0123456789") == std::string::npos)
    a[4] = std::stoull(args[4]);
  return {{"signal", name}, {"args", a}};
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
    return probe_answer(verdict, report, json, st);
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

Outcome tunnel_set(const std::string& interface, const std::vector<std::string>& endpoints, std::uint32_t fwmark,
                   bool exclusive, bool ahead) {
  return with_daemon([&](Daemon& p) -> Outcome {
    if (exclusive || ahead) p.ClaimTunnel(interface, endpoints, fwmark, ahead);
    else p.SetTunnel(interface, endpoints, fwmark);
    return {kOk, tunnel_declared(interface, endpoints, fwmark), ""};
  });
}

Outcome tunnel_clear(const std::optional<std::string>& only_if) {
  return with_daemon([&](Daemon& p) -> Outcome {
    if (!only_if) {
      // What was declared, for the message (the clearing itself does not depend on it).
      auto j = nlohmann::json::parse(p.GetStatus(), nullptr, false);
      const bool none = j.is_object() && j.contains("tunnel") && j["tunnel"].is_object() && j["tunnel"].contains("declared") &&
                        j["tunnel"]["declared"].is_null();
      p.ClearTunnel();
      return {kOk, none ? "no tunnel was declared; nothing to clear\n" : "tunnel declaration cleared\n", ""};
    }
    if (!p.ReleaseTunnel(*only_if)) return {kOk, "tunnel " + *only_if + " is not the declared one; nothing to clear\n", ""};
    return {kOk, "tunnel " + *only_if + " cleared\n", ""};
  });
}

Outcome allow_lan(bool on) {
  return with_daemon([&](Daemon& p) -> Outcome {
    p.SetAllowLan(on);
    return {kOk, allow_lan_set(on, armed_now(p)), ""};
  });
}

Outcome policy(const std::string& pol) {
  return with_daemon([&](Daemon& p) -> Outcome {
    p.SetPolicy(pol);
    return {kOk, policy_set(pol, armed_now(p)), ""};
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

std::string render_watch(const WatchEvent& e, const Style& st) {
  switch (e.kind) {
    case WatchEvent::daemon_absent:
      return st.bad("leakguardd is not running") + " (no " + std::string(kName) + " on the system bus): protection not verified";
    case WatchEvent::daemon_stopped: return st.bad("leakguardd stopped") + ": protection not verified";
    case WatchEvent::daemon_back: return "leakguardd is back" + (e.detail.empty() ? std::string() : ": " + state_word(e.detail, st));
    case WatchEvent::bus_lost:
      return st.warn("lost the system bus") + " (" + e.detail + "): cannot watch leakguardd; reconnecting";
    case WatchEvent::bus_back: return "system bus is back";
  }
  return "";
}

nlohmann::json watch_json(const WatchEvent& e) {
  switch (e.kind) {
    case WatchEvent::daemon_absent: return {{"event", "daemon-absent"}};
    case WatchEvent::daemon_stopped: return {{"event", "daemon-stopped"}};
    case WatchEvent::daemon_back:
      return {{"event", "daemon-back"}, {"state", e.detail.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.detail)}};
    case WatchEvent::bus_lost: return {{"event", "bus-lost"}, {"error", e.detail}};
    case WatchEvent::bus_back: return {{"event", "bus-back"}};
  }
  return nlohmann::json::object();
}

std::optional<Notification> notification_for(const WatchEvent& e) {
  switch (e.kind) {
    case WatchEvent::daemon_absent:
      return Notification{"leakguardd is not running: protection not verified",
                          "Nothing checks the kill switch now; its rules may or may not be in place.", 2, "state", true};
    case WatchEvent::daemon_stopped:
      return Notification{"leakguardd stopped: protection not verified",
                          "Nothing checks the kill switch now; its rules may or may not be in place.", 2, "state", true};
    case WatchEvent::daemon_back:
      return Notification{"leakguardd is back" + (e.detail.empty() ? std::string() : ": " + e.detail), "",
                          std::uint8_t(e.detail == "leaking" || e.detail == "error" ? 2 : 0), "state", true};
    case WatchEvent::bus_lost:
      return Notification{"leakguard: system bus lost", "Cannot watch leakguardd until it is back (" + e.detail + ")", 1,
                          "bus", false};
    case WatchEvent::bus_back: return std::nullopt;
  }
  return std::nullopt;
}

namespace {

// Shows notifications through org.freedesktop.Notifications on the session bus.
class Desktop {
 public:
  explicit Desktop(sdbus::IConnection& session)
      : notifications_(sdbus::createProxy(session, "org.freedesktop.Notifications", "/org/freedesktop/Notifications")) {}

  void show(const Notification& n, bool rate_limited) {
    const auto now = std::chrono::steady_clock::now();
    if (rate_limited) {  // Blocked: once a minute per app and destination
      if (auto it = told_.find(n.key); it != told_.end() && now - it->second < std::chrono::minutes(1)) return;
      if (told_.size() > 1024) told_.clear();
      told_[n.key] = now;
    }
    std::map<std::string, sdbus::Variant> hints{{"urgency", sdbus::Variant(n.urgency)}};
    std::uint32_t id = 0;
    try {
      notifications_->callMethod("Notify")
          .onInterface("org.freedesktop.Notifications")
          .withArguments(std::string("leakguard"), ids_[n.key], std::string("network-vpn"), n.summary, n.body,
                         std::vector<std::string>{}, hints, std::int32_t{-1})
          .storeResultsTo(id);
      ids_[n.key] = id;
    } catch (const sdbus::Error& e) {
      std::cerr << "leakguardctl: notification not shown: " << e.getMessage() << "\n";
    }
  }

 private:
  std::unique_ptr<sdbus::IProxy> notifications_;
  std::map<std::string, std::uint32_t> ids_;  // a key's last notification, replaced by the next
  std::map<std::string, std::chrono::steady_clock::time_point> told_;
};

int run_monitor(bool json, const Style& st, Desktop* desktop) {
  std::string state;  // the last state seen, for notification_for
  auto print = [&](const std::string& line, const nlohmann::json& j) {
    if (json) std::cout << json_text(j) << std::endl;
    else std::cout << line << std::endl;
  };
  try {
    follow_signals(
        [&](const std::string& name, const std::vector<std::string>& args) {
          print(render_signal(name, args, st), signal_json(name, args));
          const auto n = notification_for(name, args, state);
          if (name == "StateChanged" && args.size() > 1) state = args[1];
          if (desktop && n) desktop->show(*n, name == "Blocked");
        },
        [&](const WatchEvent& e) {
          print(render_watch(e, st), watch_json(e));
          if (e.kind == WatchEvent::daemon_back) state = e.detail;
          else if (e.kind != WatchEvent::bus_back) state.clear();
          const auto n = notification_for(e);
          if (desktop && n) desktop->show(*n, false);
        });
  } catch (const sdbus::Error& e) {
    auto o = from_dbus_error(e.getName(), e.getMessage());
    std::cerr << o.err << "\n";
    return o.exit;
  }
  return kOk;
}

}  // namespace

int monitor(bool json, const Style& st) { return run_monitor(json, st, nullptr); }

int monitor_notify(bool json, const Style& st) {
  std::unique_ptr<sdbus::IConnection> session;
  try {
    session = sdbus::createSessionBusConnection();
  } catch (const sdbus::Error& e) {
    std::cerr << "leakguardctl: no session bus for desktop notifications: " << e.getMessage() << "\n";
    return kFailed;
  }
  Desktop desktop(*session);
  return run_monitor(json, st, &desktop);
}

}  // namespace leakguard::cli
