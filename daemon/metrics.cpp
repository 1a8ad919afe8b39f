#include "daemon/metrics.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <tuple>
#include <utility>
#include <vector>

#include "common/mode.hpp"
#include "daemon/controller.hpp"
#include "daemon/state_machine.hpp"

namespace leakguard::daemon {

namespace {

using json = nlohmann::json;

/// The member at `path` (objects all the way), or null.
const json* at(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object()) return nullptr;
    auto it = p->find(k);
    if (it == p->end()) return nullptr;
    p = &*it;
  }
  return p;
}

std::uint64_t count(const json* j) {
  if (!j) return 0;
  if (j->is_number_unsigned()) return j->get<std::uint64_t>();
  if (j->is_number_integer()) return static_cast<std::uint64_t>(std::max<std::int64_t>(0, j->get<std::int64_t>()));
  return 0;
}

std::string text(const json* j) { return j && j->is_string() ? j->get<std::string>() : std::string(); }

std::string seconds(double s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

// One metric family: HELP and TYPE, then its samples.
class Out {
 public:
  void family(const std::string& name, const char* type, const std::string& help) {
    s_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, const std::vector<std::pair<const char*, std::string>>& labels,
              const std::string& value) {
    s_ += name;
    if (!labels.empty()) {
      s_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        s_ += (first ? "" : ",") + std::string(k) + "=\"" + escape_label_value(v) + "\"";
        first = false;
      }
      s_ += '}';
    }
    s_ += " " + value + "\n";
  }
  void sample(const std::string& name, const std::vector<std::pair<const char*, std::string>>& labels, std::uint64_t v) {
    sample(name, labels, std::to_string(v));
  }
  std::string take() { return std::move(s_); }

 private:
  std::string s_;
};

struct App {
  std::string app, unit;
  std::uint64_t packets = 0;
};

/// The per-application figures, wherever the status has them ("blocked": {"apps": [...]}, at the
/// top or in "firewall"), summed per (app, unit): several uids may run one app.
std::vector<App> apps_of(const json& status) {
  const json* list = at(status, {"blocked", "apps"});
  if (!list || !list->is_array()) list = at(status, {"firewall", "blocked", "apps"});
  std::vector<App> out;
  if (!list || !list->is_array()) return out;
  for (const auto& a : *list) {
    if (!a.is_object()) continue;
    App x{text(at(a, {"app"})), text(at(a, {"unit"})), count(at(a, {"packets"}))};
    auto it = std::find_if(out.begin(), out.end(), [&](const App& y) { return y.app == x.app && y.unit == x.unit; });
    if (it == out.end()) out.push_back(std::move(x));
    else it->packets += x.packets;
  }
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const std::size_t n = v.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == '\\') out += "\\\\";
      else if (c == '"') out += "\\\"";
      else if (c == '\n') out += "\\n";
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, no surrogates, at most U+10FFFF) is copied.
    std::size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    bool ok = len != 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
    if (ok && len == 4) ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
    if (!ok) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
      continue;
    }
    out.append(v.substr(i, len));
    i += len;
  }
  return out;
}

std::string render_metrics(const json& status, double now_unix) {
  Out o;
  o.family("leakguard_up", "gauge", "1 while leakguardd writes this file (see node_textfile_mtime_seconds for its age).");
  o.sample("leakguard_up", {}, 1);

  const std::string state = text(at(status, {"state"}));
  o.family("leakguard_state", "gauge", "The daemon's state: 1 for the current one, 0 for the others.");
  for (State s : {State::off, State::blocking, State::unverified, State::secured, State::leaking, State::error})
    o.sample("leakguard_state", {{"state", std::string(to_string(s))}}, state == to_string(s) ? 1 : 0);

  const json* armed = at(status, {"armed"});
  o.family("leakguard_armed", "gauge", "1 while the kill switch is armed.");
  o.sample("leakguard_armed", {}, armed && armed->is_boolean() && armed->get<bool>() ? 1 : 0);

  const std::string policy = text(at(status, {"policy"}));
  o.family("leakguard_policy", "gauge", "The policy in force (udp or strict): 1 for the current one.");
  for (auto name : kModeNames) o.sample("leakguard_policy", {{"policy", std::string(name)}}, policy == name ? 1 : 0);

  std::vector<std::string> escalated;
  if (const json* e = at(status, {"escalated"}); e && e->is_array())
    for (const auto& f : *e)
      if (f.is_string()) escalated.push_back(f.get<std::string>());
  o.family("leakguard_escalated", "gauge",
           "1 for a family held as in strict policy because a probe found a web page's way out (probe.on_exposure: escalate).");
  for (const char* f : {"ipv4", "ipv6"})
    o.sample("leakguard_escalated", {{"family", f}},
             std::find(escalated.begin(), escalated.end(), f) != escalated.end() ? 1 : 0);

  const std::string protection = text(at(status, {"protection"}));
  o.family("leakguard_protection", "gauge",
           "What stands between the machine and the network: 1 for the current one (emergency: the block of a broken configuration).");
  for (Protection p : {Protection::none, Protection::configured, Protection::emergency, Protection::kept})
    o.sample("leakguard_protection", {{"protection", std::string(to_string(p))}}, protection == to_string(p) ? 1 : 0);

  const json* tunnel_up = at(status, {"tunnel_up"});
  o.family("leakguard_tunnel_up", "gauge", "1 while a tunnel interface is up.");
  o.sample("leakguard_tunnel_up", {}, tunnel_up && tunnel_up->is_boolean() && tunnel_up->get<bool>() ? 1 : 0);

  const json* config_error = at(status, {"config_error"});
  o.family("leakguard_config_error", "gauge", "1 while the configuration file is not usable (the daemon fails closed).");
  o.sample("leakguard_config_error", {}, config_error && config_error->is_string() ? 1 : 0);

  // The firewall's drop/reject counters: per rule kind and direction, and per interface. They
  // start at 0 whenever the ruleset is replaced (a counter reset to Prometheus).
  std::vector<const json*> totals, per_interface;
  if (const json* cs = at(status, {"firewall", "counters"}); cs && cs->is_array())
    for (const auto& c : *cs) (text(at(c, {"scope"})) == "all" ? totals : per_interface).push_back(&c);
  o.family("leakguard_blocked_packets_total", "counter",
           "Packets the rules dropped or rejected, by kind (udp, tcp, ip, dns, tunaddr, icmperr, endpoint) and direction (out, in, fwd).");
  for (const json* c : totals)
    o.sample("leakguard_blocked_packets_total", {{"kind", text(at(*c, {"kind"}))}, {"direction", text(at(*c, {"direction"}))}},
             count(at(*c, {"packets"})));
  o.family("leakguard_blocked_bytes_total", "counter", "Bytes of the packets in leakguard_blocked_packets_total.");
  for (const json* c : totals)
    o.sample("leakguard_blocked_bytes_total", {{"kind", text(at(*c, {"kind"}))}, {"direction", text(at(*c, {"direction"}))}},
             count(at(*c, {"bytes"})));
  o.family("leakguard_interface_blocked_packets_total", "counter",
           "Packets the rules dropped or rejected, by interface, family (ipv4, ipv6), protocol (udp, tcp, ip) and direction "
           "(out, in, fwd).");
  for (const json* c : per_interface)
    o.sample("leakguard_interface_blocked_packets_total",
             {{"interface", text(at(*c, {"scope"}))}, {"family", text(at(*c, {"family"}))}, {"protocol", text(at(*c, {"kind"}))},
              {"direction", text(at(*c, {"direction"}))}},
             count(at(*c, {"packets"})));

  // Per application: the busiest kMetricsMaxApps, the rest as app="other" (bounded cardinality).
  std::vector<App> apps = apps_of(status);
  std::stable_sort(apps.begin(), apps.end(), [](const App& a, const App& b) {
    return std::tie(b.packets, a.app, a.unit) < std::tie(a.packets, b.app, b.unit);
  });
  std::vector<App> shown(apps.begin(), apps.begin() + static_cast<std::ptrdiff_t>(std::min(apps.size(), kMetricsMaxApps)));
  if (apps.size() > kMetricsMaxApps) {
    std::uint64_t rest = 0;
    for (std::size_t i = kMetricsMaxApps; i < apps.size(); ++i) rest += apps[i].packets;
    auto it = std::find_if(shown.begin(), shown.end(), [](const App& a) { return a.app == "other" && a.unit.empty(); });
    if (it == shown.end()) shown.push_back({"other", "", rest});
    else it->packets += rest;
  }
  o.family("leakguard_blocked_app_packets_total", "counter",
           "Blocked packets by the application (and systemd unit) that sent them: the busiest 20, the rest as app=\"other\".");
  for (const auto& a : shown) o.sample("leakguard_blocked_app_packets_total", {{"app", a.app}, {"unit", a.unit}}, a.packets);

  o.family("leakguard_probe_rounds_total", "counter", "Probe rounds finished, by verdict (ok, unverified, leak, none).");
  for (const char* v : {"ok", "unverified", "leak", "none"})
    o.sample("leakguard_probe_rounds_total", {{"verdict", v}}, count(at(status, {"counters", "probe_rounds", v})));

  o.family("leakguard_leaks_total", "counter", "Leaks the probe found (each finding of a leaking round).");
  o.sample("leakguard_leaks_total", {}, count(at(status, {"leak_count"})));

  const json* ago = at(status, {"counters", "last_probe_ago_ms"});
  const json* took = at(status, {"counters", "last_probe_duration_ms"});
  o.family("leakguard_last_probe_timestamp_seconds", "gauge", "When the last probe round ended (Unix time; 0: none yet).");
  o.sample("leakguard_last_probe_timestamp_seconds", {},
           ago && ago->is_number() ? seconds(now_unix - static_cast<double>(count(ago)) / 1000.0) : "0");
  o.family("leakguard_last_probe_duration_seconds", "gauge", "How long the last probe round took (0: none yet).");
  o.sample("leakguard_last_probe_duration_seconds", {},
           took && took->is_number() ? seconds(static_cast<double>(count(took)) / 1000.0) : "0");

  o.family("leakguard_tamper_events_total", "counter", "Changes another process made to table inet leakguard (restored or not).");
  o.sample("leakguard_tamper_events_total", {}, count(at(status, {"counters", "tamper_events"})));

  o.family("leakguard_rules_applied_total", "counter", "Installs of the configured rules that the kernel took.");
  o.sample("leakguard_rules_applied_total", {}, count(at(status, {"counters", "rules_applied"})));
  o.family("leakguard_rules_failed_total", "counter", "Installs of the configured rules that failed.");
  o.sample("leakguard_rules_failed_total", {}, count(at(status, {"counters", "rules_failed"})));
  return o.take();
}

}  // namespace leakguard::daemon
