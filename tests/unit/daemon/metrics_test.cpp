// The metrics renderer (daemon/metrics.hpp) from a real Controller's status with fake ports, the
// text checked by Prometheus' own promtool; the atomic file writer (daemon/metrics_file.hpp); and
// the example alert rules of docs/metrics.md checked (and unit-tested) by promtool too.
#include <doctest/doctest.h>
#include <net/if.h>  // before linux/if.h (Asio's headers bring it in: daemon/metrics_file.hpp)
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/rtnetlink.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/controller.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_file.hpp"

using namespace leakguard;
using namespace leakguard::daemon;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

netwatch::NetModel network(bool wg_up) {
  auto link = [](std::uint32_t index, const char* name, std::uint16_t type, std::uint32_t flags) {
    netwatch::Link l;
    l.index = IfIndex{index};
    l.name = name;
    l.type = type;
    l.flags = flags;
    return l;
  };
  netwatch::NetModel m;
  m.apply(netwatch::Added<netwatch::Link>{link(1, "lo", ARPHRD_LOOPBACK, IFF_UP | IFF_RUNNING | IFF_LOOPBACK)});
  m.apply(netwatch::Added<netwatch::Link>{link(2, "eth0", ARPHRD_ETHER, IFF_UP | IFF_RUNNING)});
  if (wg_up) m.apply(netwatch::Added<netwatch::Link>{link(3, "wg0", ARPHRD_NONE, IFF_UP | IFF_RUNNING | IFF_POINTOPOINT)});
  return m;
}

// The firewall's status as NftFirewallPort::status() gives it: totals ("all") and per interface.
struct FakeFirewall : FirewallPort {
  json counters = json::array();
  json blocked = "nothing blocked";
  Result<void> apply(const Desired&) override { return {}; }
  Result<void> remove() override { return {}; }
  json status() const override { return {{"installed", true}, {"blocked", blocked}, {"counters", counters}}; }
};

struct FakeProbe : ProbePort {
  std::function<void(ProbeOutcome)> pending;
  void start(std::function<void(ProbeOutcome)> done, std::function<void(const LeakFinding&)>) override {
    pending = std::move(done);
  }
  void finish(ProbeVerdict v) {
    REQUIRE(pending);
    ProbeOutcome o;
    o.verdict = v;
    o.verdict_text = v == ProbeVerdict::leak ? "leak" : v == ProbeVerdict::ok ? "ok" : "unverified";
    o.summary = o.verdict_text;
    if (v == ProbeVerdict::leak) o.leaks.push_back({"eth0", "ipv4", "192.0.2.10:4000", "203.0.113.3:3478", true, ""});
    o.json = R"({"verdict":")" + o.verdict_text + R"("})";
    std::exchange(pending, {})(o);
  }
};

struct Quiet : Notifications {
  void state_changed(State, State, const std::string&) override {}
  void leak(const LeakFinding&) override {}
  void probe_completed(const ProbeOutcome&) override {}
  void table_tampered(const std::string&, const std::string&, bool) override {}
  void probe_due(TimePoint) override {}
  void retry_due(TimePoint) override {}
  void declaration_changed(const std::optional<TunnelDeclaration>&) override {}
  void settings_changed(const RuntimeSettings&) override {}
  void info(const std::string&) override {}
  void error(const std::string&) override {}
};

config::Config base_config() {
  auto c = config::defaults();
  c.tunnel_interfaces = {IfnamePattern{"wg*"}};
  c.endpoints = {*Endpoint::parse("198.51.100.1:51820")};
  return c;
}

struct World {
  FakeFirewall fw;
  FakeProbe probe;
  Quiet out;
  TimePoint now{};
  Controller c{base_config(), fw, probe, out, [] { return Result<config::Config>(base_config()); }, [this] { return now; }};
  json status() const { return json::parse(c.status_json()); }
  std::string metrics(double now_unix = 1'700'000'000.0) const { return render_metrics(status(), now_unix); }
};

// name{labels} -> value, for every sample; and name -> type.
struct Parsed {
  std::map<std::string, std::string> samples;
  std::map<std::string, std::string> types, help;
};
Parsed parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# TYPE ")) {
      const auto rest = line.substr(7);
      p.types[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
    } else if (line.starts_with("# HELP ")) {
      const auto rest = line.substr(7);
      p.help[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
    } else if (!line.empty()) {
      const auto sp = line.rfind(' ');
      p.samples[line.substr(0, sp)] = line.substr(sp + 1);
    }
  }
  return p;
}

struct Run {
  int status = -1;
  std::string output;
};
Run sh(const std::string& command) {
  Run r;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(f);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  const int st = ::pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char t[] = "/tmp/lgt-metrics-XXXXXX";
    REQUIRE(::mkdtemp(t));
    path = t;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// promtool's verdict on a text: exit status 0 and nothing said, or the test fails (promtool is
// a test dependency: scripts/deps.sh installs Debian's prometheus package).
void promtool_accepts(const std::string& text) {
  TempDir d;
  const auto f = d.path / "leakguard.prom";
  std::ofstream(f) << text;
  const Run r = sh("promtool check metrics < " + f.string());
  INFO("promtool check metrics said: " << r.output);
  INFO(text);
  REQUIRE_MESSAGE(r.status != 127, "promtool is missing: install Debian's prometheus package (scripts/deps.sh)");
  CHECK(r.status == 0);
  CHECK(r.output.empty());
}

const std::vector<std::pair<std::string, std::string>> kFamilies = {
    {"leakguard_up", "gauge"},
    {"leakguard_state", "gauge"},
    {"leakguard_armed", "gauge"},
    {"leakguard_policy", "gauge"},
    {"leakguard_escalated", "gauge"},
    {"leakguard_protection", "gauge"},
    {"leakguard_tunnel_up", "gauge"},
    {"leakguard_config_error", "gauge"},
    {"leakguard_blocked_packets_total", "counter"},
    {"leakguard_blocked_bytes_total", "counter"},
    {"leakguard_interface_blocked_packets_total", "counter"},
    {"leakguard_blocked_app_packets_total", "counter"},
    {"leakguard_probe_rounds_total", "counter"},
    {"leakguard_leaks_total", "counter"},
    {"leakguard_last_probe_timestamp_seconds", "gauge"},
    {"leakguard_last_probe_duration_seconds", "gauge"},
    {"leakguard_tamper_events_total", "counter"},
    {"leakguard_rules_applied_total", "counter"},
    {"leakguard_rules_failed_total", "counter"},
};

json counters_fixture() {
  return json::array({
      {{"kind", "udp"}, {"direction", "out"}, {"scope", "all"}, {"packets", 42}, {"bytes", 3360}},
      {{"kind", "udp"}, {"direction", "out"}, {"scope", "eth0"}, {"family", "ipv4"}, {"packets", 40}, {"bytes", 3200}},
      {{"kind", "udp"}, {"direction", "out"}, {"scope", "wlan0"}, {"family", "ipv6"}, {"packets", 2}, {"bytes", 160}},
      {{"kind", "dns"}, {"direction", "out"}, {"scope", "all"}, {"packets", 3}, {"bytes", 180}},
      {{"kind", "tcp"}, {"direction", "in"}, {"scope", "all"}, {"packets", 0}, {"bytes", 0}},
  });
}

}  // namespace

TEST_CASE("every metric is there with its HELP and TYPE, before anything happened and after") {
  World w;
  for (const auto& text : {render_metrics(json::object(), 0), w.metrics()}) {
    const Parsed p = parse(text);
    for (const auto& family : kFamilies) {
      const std::string& name = family.first;
      const std::string& type = family.second;
      CAPTURE(name);
      CHECK(p.types.count(name) == 1);
      CHECK(p.types.at(name) == type);
      CHECK_FALSE(p.help.at(name).empty());
    }
    CHECK(p.types.size() == kFamilies.size());
    for (const auto& [name, type] : p.types)
      if (type == "counter") CHECK(name.ends_with("_total"));
    CHECK(p.samples.at("leakguard_up") == "1");
    // Every state and policy is listed, whichever is current.
    for (const char* s : {"off", "blocking", "unverified", "secured", "leaking", "error"})
      CHECK(p.samples.count(std::string("leakguard_state{state=\"") + s + "\"}") == 1);
    CHECK(p.samples.count("leakguard_policy{policy=\"udp\"}") == 1);
    CHECK(p.samples.count("leakguard_policy{policy=\"strict\"}") == 1);
  }
  // Nothing yet: no round, so no time.
  const Parsed before = parse(w.metrics());
  CHECK(before.samples.at("leakguard_last_probe_timestamp_seconds") == "0");
  CHECK(before.samples.at("leakguard_state{state=\"off\"}") == "1");
  CHECK(before.samples.at("leakguard_armed") == "0");
}

TEST_CASE("the figures follow the controller: state, armed, policy, rounds by verdict, leaks, tampering, rule installs") {
  World w;
  w.fw.counters = counters_fixture();
  REQUIRE(w.c.start(network(true)));
  w.now += 1500ms;
  w.probe.finish(ProbeVerdict::ok);
  REQUIRE(w.c.machine().state() == State::secured);

  Parsed p = parse(w.metrics(1'700'000'000.0));
  CHECK(p.samples.at("leakguard_state{state=\"secured\"}") == "1");
  CHECK(p.samples.at("leakguard_state{state=\"blocking\"}") == "0");
  CHECK(p.samples.at("leakguard_armed") == "1");
  CHECK(p.samples.at("leakguard_tunnel_up") == "1");
  CHECK(p.samples.at("leakguard_policy{policy=\"udp\"}") == "1");
  CHECK(p.samples.at("leakguard_policy{policy=\"strict\"}") == "0");
  CHECK(p.samples.at("leakguard_protection{protection=\"configured\"}") == "1");
  CHECK(p.samples.at("leakguard_probe_rounds_total{verdict=\"ok\"}") == "1");
  CHECK(p.samples.at("leakguard_probe_rounds_total{verdict=\"leak\"}") == "0");
  CHECK(p.samples.at("leakguard_rules_applied_total") == "1");
  CHECK(p.samples.at("leakguard_last_probe_duration_seconds") == "1.500");
  CHECK(p.samples.at("leakguard_last_probe_timestamp_seconds") == "1700000000.000");
  CHECK(p.samples.at("leakguard_blocked_packets_total{kind=\"udp\",direction=\"out\"}") == "42");
  CHECK(p.samples.at("leakguard_blocked_bytes_total{kind=\"dns\",direction=\"out\"}") == "180");
  CHECK(p.samples.at("leakguard_interface_blocked_packets_total{interface=\"eth0\",family=\"ipv4\",protocol=\"udp\",direction=\"out\"}") ==
        "40");
  CHECK(p.samples.at("leakguard_interface_blocked_packets_total{interface=\"wlan0\",family=\"ipv6\",protocol=\"udp\",direction=\"out\"}") ==
        "2");
  CHECK(p.samples.count("leakguard_interface_blocked_packets_total{interface=\"all\",family=\"\",protocol=\"udp\",direction=\"out\"}") == 0);

  // Ten seconds later the round's time stays where it was.
  w.now += 10s;
  CHECK(parse(w.metrics(1'700'000'010.0)).samples.at("leakguard_last_probe_timestamp_seconds") == "1700000000.000");

  REQUIRE(w.c.set_policy(Mode::strict, "uid 0"));
  w.c.table_tampered("nft[4242]", "table deleted", true);
  w.probe.finish(ProbeVerdict::leak);
  p = parse(w.metrics());
  CHECK(p.samples.at("leakguard_policy{policy=\"strict\"}") == "1");
  CHECK(p.samples.at("leakguard_policy{policy=\"udp\"}") == "0");
  CHECK(p.samples.at("leakguard_state{state=\"leaking\"}") == "1");
  CHECK(p.samples.at("leakguard_probe_rounds_total{verdict=\"leak\"}") == "1");
  CHECK(p.samples.at("leakguard_leaks_total") == "1");
  CHECK(p.samples.at("leakguard_tamper_events_total") == "1");
  CHECK(p.samples.at("leakguard_rules_applied_total") == "2");

  // Disarmed, and a round that finds no leak (a leak outranks everything until then): off.
  REQUIRE(w.c.disarm("uid 0"));
  for (int i = 0; i < 3 && w.probe.pending; ++i) w.probe.finish(ProbeVerdict::ok);
  REQUIRE(w.c.machine().state() == State::off);
  p = parse(w.metrics());
  CHECK(p.samples.at("leakguard_state{state=\"off\"}") == "1");
  CHECK(p.samples.at("leakguard_armed") == "0");
}

TEST_CASE("the controller's counters never go down from one rendering to the next") {
  World w;
  REQUIRE(w.c.start(network(true)));
  std::map<std::string, double> last;
  const ProbeVerdict verdicts[] = {ProbeVerdict::ok, ProbeVerdict::unverified, ProbeVerdict::leak, ProbeVerdict::ok};
  for (int i = 0; i < 12; ++i) {
    if (w.probe.pending) w.probe.finish(verdicts[i % 4]);
    if (i % 3 == 0) w.c.table_tampered("nft[1]", "rule added", i % 2 == 0);
    if (i % 5 == 0) (void)w.c.set_policy(i % 2 ? Mode::udp : Mode::strict, "uid 0");
    w.now += 61s;
    w.c.probe_timer();  // the next scheduled round
    const Parsed p = parse(w.metrics());
    for (const auto& sample : p.samples) {
      const std::string& series = sample.first;
      const std::string& value = sample.second;
      const std::string family = series.substr(0, series.find('{'));
      if (p.types.at(family) != "counter") continue;
      const double v = std::stod(value);
      CAPTURE(series);
      if (last.count(series)) CHECK(v >= last[series]);
      last[series] = v;
    }
  }
  CHECK(last.at("leakguard_probe_rounds_total{verdict=\"ok\"}") >= 2);
  CHECK(last.at("leakguard_probe_rounds_total{verdict=\"unverified\"}") >= 1);
  CHECK(last.at("leakguard_tamper_events_total") == 4);
}

TEST_CASE("label values are escaped as the text format wants, and bytes that are not UTF-8 replaced") {
  CHECK(escape_label_value("eth0") == "eth0");
  CHECK(escape_label_value("a\"b") == "a\\\"b");
  CHECK(escape_label_value("a\\b") == "a\\\\b");
  CHECK(escape_label_value("a\nb") == "a\\nb");
  CHECK(escape_label_value("caf\xC3\xA9") == "caf\xC3\xA9");        // é, kept
  CHECK(escape_label_value("\xF0\x9F\x94\x92") == "\xF0\x9F\x94\x92");  // 🔒, kept
  CHECK(escape_label_value("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
  CHECK(escape_label_value("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // an overlong '/'
  CHECK(escape_label_value("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  CHECK(escape_label_value("\xE2\x82") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // cut short

  json status = {{"firewall",
                  {{"counters", json::array({{{"kind", "udp"}, {"direction", "out"}, {"scope", "we\"ird\\if\nx"}, {"packets", 1}}})}}},
                 {"blocked", {{"apps", json::array({{{"app", "my \"app\""}, {"unit", "a\\b.service"}, {"uid", 1000}, {"packets", 7}}})}}}};
  const std::string text = render_metrics(status, 0);
  CHECK(text.find("leakguard_interface_blocked_packets_total{interface=\"we\\\"ird\\\\if\\nx\",family=\"\",protocol=\"udp\",direction=\"out\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("leakguard_blocked_app_packets_total{app=\"my \\\"app\\\"\",unit=\"a\\\\b.service\"} 7\n") != std::string::npos);
  promtool_accepts(text);
}

TEST_CASE("applications: the busiest 20 by packets, the rest summed as other, one series per app and unit") {
  json apps = json::array();
  std::uint64_t rest = 0;
  for (int i = 1; i <= 30; ++i) {
    apps.push_back({{"app", "app" + std::to_string(i)}, {"unit", "u" + std::to_string(i) + ".service"}, {"uid", 1000}, {"packets", i * 10}, {"flows", 1}});
    if (i <= 10) rest += static_cast<std::uint64_t>(i) * 10;
  }
  // The same app and unit under another uid: one series, the sum.
  apps.push_back({{"app", "app30"}, {"unit", "u30.service"}, {"uid", 1001}, {"packets", 5}, {"flows", 1}});
  // A status where the firewall keeps them (its "blocked" an object) is read the same.
  for (const json& status : {json{{"blocked", {{"apps", apps}}}}, json{{"firewall", {{"blocked", {{"apps", apps}}}}}}}) {
    const Parsed p = parse(render_metrics(status, 0));
    std::vector<std::string> series;
    for (const auto& [s, v] : p.samples)
      if (s.starts_with("leakguard_blocked_app_packets_total{")) series.push_back(s);
    CHECK(series.size() == kMetricsMaxApps + 1);
    CHECK(p.samples.at("leakguard_blocked_app_packets_total{app=\"app30\",unit=\"u30.service\"}") == "305");
    CHECK(p.samples.at("leakguard_blocked_app_packets_total{app=\"app11\",unit=\"u11.service\"}") == "110");
    CHECK(p.samples.count("leakguard_blocked_app_packets_total{app=\"app10\",unit=\"u10.service\"}") == 0);
    CHECK(p.samples.at("leakguard_blocked_app_packets_total{app=\"other\",unit=\"\"}") == std::to_string(rest));
  }
  // 20 or fewer: no "other".
  json few = json::array({{{"app", "firefox-esr"}, {"unit", "app-firefox.scope"}, {"uid", 1000}, {"packets", 3}, {"flows", 1}}});
  const Parsed p = parse(render_metrics({{"blocked", {{"apps", few}}}}, 0));
  CHECK(p.samples.at("leakguard_blocked_app_packets_total{app=\"firefox-esr\",unit=\"app-firefox.scope\"}") == "3");
  CHECK(p.samples.count("leakguard_blocked_app_packets_total{app=\"other\",unit=\"\"}") == 0);
  // None at all, or not yet known to this daemon: the family is still declared.
  CHECK(parse(render_metrics({{"firewall", {{"blocked", "nothing blocked"}}}}, 0)).types.at("leakguard_blocked_app_packets_total") ==
        "counter");
}

TEST_CASE("promtool check metrics accepts what the daemon renders, from empty to busy") {
  promtool_accepts(render_metrics(json::object(), 0));
  World w;
  promtool_accepts(w.metrics());
  w.fw.counters = counters_fixture();
  json apps = json::array();
  for (int i = 0; i < 25; ++i)
    apps.push_back({{"app", "app" + std::to_string(i)}, {"unit", ""}, {"uid", i}, {"packets", i}, {"flows", 1}});
  w.fw.blocked = {{"apps", apps}};
  REQUIRE(w.c.start(network(false)));
  w.now += 250ms;
  w.probe.finish(ProbeVerdict::leak);
  w.c.table_tampered("nft[7]", "table deleted", false);
  promtool_accepts(w.metrics());
}

TEST_CASE("the metrics file is replaced atomically, readable by node_exporter's user, nothing left beside it") {
  TempDir d;
  const std::string f = (d.path / "leakguard.prom").string();
  const mode_t old = ::umask(077);  // as the unit's UMask=0077
  REQUIRE(write_file_atomically(f, "leakguard_up 1\n"));
  REQUIRE(write_file_atomically(f, "# TYPE leakguard_up gauge\nleakguard_up 1\n"));
  ::umask(old);
  std::ifstream in(f);
  std::stringstream got;
  got << in.rdbuf();
  CHECK(got.str() == "# TYPE leakguard_up gauge\nleakguard_up 1\n");
  struct stat st {};
  REQUIRE(::stat(f.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(d.path)) {
    CAPTURE(e.path().string());
    ++files;
  }
  CHECK(files == 1);

  auto missing = write_file_atomically((d.path / "nodir" / "leakguard.prom").string(), "x\n");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message.find("nodir") != std::string::npos);
  CHECK(missing.error().message.find("No such file or directory") != std::string::npos);
}

TEST_CASE("the example alert rules in docs/metrics.md pass promtool check rules and fire as documented") {
  std::ifstream doc(LEAKGUARD_SOURCE_DIR "/docs/metrics.md");
  REQUIRE(doc);
  std::stringstream s;
  s << doc.rdbuf();
  // The one ```yaml block after "## Alert rules", and the ```yaml block after "## Alert rules test".
  auto block = [&](const std::string& heading) {
    const std::string text = s.str();
    const auto h = text.find("\n" + heading + "\n");
    REQUIRE_MESSAGE(h != std::string::npos, heading);
    const auto start = text.find("```yaml\n", h);
    REQUIRE(start != std::string::npos);
    const auto end = text.find("\n```", start + 8);
    REQUIRE(end != std::string::npos);
    return text.substr(start + 8, end - start - 8 + 1);
  };
  TempDir d;
  std::ofstream(d.path / "leakguard-rules.yml") << block("## Alert rules");
  std::ofstream(d.path / "leakguard-rules-test.yml") << block("## Testing the rules");
  const Run check = sh("promtool check rules " + (d.path / "leakguard-rules.yml").string());
  INFO(check.output);
  REQUIRE_MESSAGE(check.status != 127, "promtool is missing: install Debian's prometheus package (scripts/deps.sh)");
  CHECK(check.status == 0);
  const Run test = sh("cd " + d.path.string() + " && promtool test rules leakguard-rules-test.yml");
  INFO(test.output);
  CHECK(test.status == 0);
}
