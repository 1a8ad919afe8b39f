// The Controller with fake ports: what it asks of the firewall and the prober, what it reports,
// and how it answers the control surface. No root, no network.
#include <doctest/doctest.h>
#include <algorithm>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/rtnetlink.h>

#include <nlohmann/json.hpp>

#include "daemon/controller.hpp"
#include "firewall/policy.hpp"

using namespace leakguard;
using namespace leakguard::daemon;
using namespace std::chrono_literals;

namespace {

// A machine with eth0 (192.0.2.10/24, the default route) and, if `wg0` says so, a tunnel wg0
// that is up and running, up but not running, or absent.
enum class Wg { absent, up, down };
netwatch::NetModel network(Wg wg = Wg::absent, const char* tunnel_name = "wg0") {
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
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{2}, *Prefix::parse("192.0.2.10/24"), RT_SCOPE_UNIVERSE, 0}});
  netwatch::Route def;
  def.dst = *Prefix::parse("0.0.0.0/0");
  def.oif = IfIndex{2};
  m.apply(netwatch::Added<netwatch::Route>{def});
  if (wg != Wg::absent)
    m.apply(netwatch::Added<netwatch::Link>{
        link(3, tunnel_name, ARPHRD_NONE, wg == Wg::up ? IFF_UP | IFF_RUNNING | IFF_POINTOPOINT : IFF_POINTOPOINT)});
  return m;
}

struct FakeFirewall : FirewallPort {
  std::vector<std::string> calls;
  std::vector<Prefix> lan;
  bool fail_next = false;
  bool fail_always = false;  // no CAP_NET_ADMIN: nothing can be installed, nor read
  bool present = false;      // our table is in the kernel (left by a previous run)
  Result<void> apply(const Desired& d) override {
    calls.push_back("apply " + d.str());
    if (fail_always) return fail("check nf_tables", "permission denied: changing nftables needs CAP_NET_ADMIN", 1);
    if (std::exchange(fail_next, false)) return fail("commit batch", "Operation not supported", 95);
    present = true;
    return {};
  }
  Result<bool> keep_existing_table() override {
    calls.push_back("keep our table?");
    if (fail_always) return fail("check nf_tables", "permission denied: changing nftables needs CAP_NET_ADMIN", 1);
    return present;
  }
  Result<void> remove() override {
    calls.push_back("remove");
    present = false;
    return {};
  }
  NetworkSets net;
  void set_network(const NetworkSets& sets) override { net = sets; }
  // Refuses any policy naming this tunnel (stands in for the firewall's own validation).
  std::string refuse_tunnel;
  std::optional<Endpoint> refuse_endpoint;  // ... and any naming this endpoint
  Result<void> check(const Desired& d) const override {
    for (const auto& t : d.tunnels)
      if (!refuse_tunnel.empty() && t.text == refuse_tunnel) return fail("validate policy", "tunnels: refused " + t.text);
    for (const auto& e : d.endpoints)
      if (refuse_endpoint && e == *refuse_endpoint) return fail("validate policy", "endpoints: refused " + e.str());
    return {};
  }
};

struct FakeProbe : ProbePort {
  int started = 0;
  std::function<void(ProbeOutcome)> pending;
  std::function<void(const LeakFinding&)> path_out;  // the round's early findings, until it ends
  void start(std::function<void(ProbeOutcome)> done, std::function<void(const LeakFinding&)> early) override {
    REQUIRE_FALSE(pending);  // never two rounds at once
    ++started;
    pending = std::move(done);
    path_out = std::move(early);
  }
  void finish(ProbeVerdict v, std::vector<LeakFinding> leaks = {}, std::vector<Family> routed_into_tunnel = {}) {
    REQUIRE(pending);
    ProbeOutcome o;
    o.verdict = v;
    o.routed_into_tunnel = std::move(routed_into_tunnel);
    o.verdict_text = v == ProbeVerdict::leak ? "leak" : v == ProbeVerdict::unverified ? "unverified" : "ok";
    o.summary = v == ProbeVerdict::leak ? "reflexive address via eth0" : "no leak";
    o.leaks = std::move(leaks);
    o.json = R"({"verdict":")" + o.verdict_text + R"("})";
    std::exchange(pending, {})(o);
  }
};

struct Recorder : Notifications {
  std::vector<std::string> lines;
  void state_changed(State f, State t, const std::string& r) override {
    lines.push_back("state " + std::string(to_string(f)) + "->" + std::string(to_string(t)) + " (" + r + ")");
  }
  void leak(const LeakFinding& l) override { lines.push_back("LEAK " + l.interface + " " + l.family + " " + l.reflexive); }
  void probe_completed(const ProbeOutcome& o) override { lines.push_back("probe " + o.verdict_text); }
  void table_tampered(const std::string& by, const std::string& what, bool restored) override {
    lines.push_back("tampered by " + by + ": " + what + (restored ? ", restored" : ", NOT restored"));
  }
  std::optional<TimePoint> due;  // the probe timer as main.cpp would arm it
  void probe_due(TimePoint at) override { due = at; }
  std::optional<TimePoint> retry;  // the retry timer as main.cpp would arm it
  void retry_due(TimePoint at) override { retry = at; }
  std::vector<std::optional<TunnelDeclaration>> declarations;  // as main.cpp would keep them
  void declaration_changed(const std::optional<TunnelDeclaration>& t) override { declarations.push_back(t); }
  std::vector<RuntimeSettings> settings;  // as main.cpp would keep them
  void settings_changed(const RuntimeSettings& s) override { settings.push_back(s); }
  std::vector<std::string> infos;  // info lines, apart: most tests look only at the rest
  void info(const std::string& l) override { infos.push_back(l); }
  void error(const std::string& l) override { lines.push_back("error " + l); }
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
  Recorder out;
  Result<config::Config> next_config = base_config();
  int reads = 0;  // how often the configuration was read again
  TimePoint now{};  // virtual time
  Controller c;
  explicit World(Result<config::Config> cfg = base_config())
      : c(std::move(cfg), fw, probe, out,
          [this] {
            ++reads;
            return next_config;
          },
          [this] { return now; }) {}
  /// Lets time pass and fires the probe and retry timers if they were armed for then, as
  /// main.cpp's would.
  void advance(std::chrono::milliseconds d) {
    now += d;
    if (out.due && *out.due <= now) {
      out.due.reset();
      c.probe_timer();
    }
    if (out.retry && *out.retry <= now) {
      out.retry.reset();
      c.retry_timer();
    }
  }
};

const Error kTypo{"load config", "/etc/leakguard/leakguard.yaml:3:9: policy: 'strct' is not one of: strict, udp"};
}  // namespace

netwatch::NetModel full_tunnel(bool native_ipv6);

TEST_CASE("start armed: rules first, then a probe. A tunnel and a clean probe mean secured") {
  World w;
  w.c.start(network());
  CHECK(w.fw.calls == std::vector<std::string>{"apply policy=udp allow_lan=no tunnels=[wg*] endpoints=[198.51.100.1:51820/udp]"});
  CHECK(w.c.machine().state() == State::blocking);
  CHECK(w.probe.started == 1);
  w.probe.finish(ProbeVerdict::ok);
  w.c.network_changed(network(Wg::up), "wg0 added");
  CHECK(w.probe.started == 2);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.c.machine().state() == State::secured);
  // wg0 is up, but the default route still goes via eth0 (a VPN that carries only some routes, or
  // wg-quick between its link and its routes): a page's TCP there would reach a TURN server with the
  // ISP's address, whether or not a probe server answers; IPv4 is held as strict at once, and the
  // round says where IPv4 leaves.
  CHECK(w.fw.calls.back().find("escalated=IPv4") != std::string::npos);
  CHECK(w.out.lines == std::vector<std::string>{"state off->blocking (rules applied)", "probe ok", "probe ok",
                                                "state blocking->secured (probe ok: no leak; IPv4 leaves via eth0, not the tunnel)"});
  bool said = false;  // said, but not as an alarm: wg-quick shows this for a moment on every connect
  for (const auto& l : w.out.infos)
    said = said || l == "escalated IPv4 to strict: the routing sends some of this host's traffic around the tunnel (the default "
                        "route via eth0)";
  CHECK(said);
  // Its routes arrive: IPv4 back to udp policy once a round shows IPv4 going into the tunnel (a round
  // ended while it did not: held until then, as a probe's finding is).
  w.c.network_changed(full_tunnel(false), "routes");
  CHECK(w.fw.calls.back().find("escalated=IPv4") != std::string::npos);
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4, Family::v6});
  CHECK(w.fw.calls.back().find("escalated") == std::string::npos);
}

// wg0 carries the IPv4 default route (eth0's is gone); IPv6's goes natively via eth0, or through
// wg0 too.
netwatch::NetModel full_tunnel(bool native_ipv6) {
  auto m = network(Wg::up);
  netwatch::Route eth0_default, via_wg0;
  eth0_default.dst = via_wg0.dst = *Prefix::parse("0.0.0.0/0");
  eth0_default.oif = IfIndex{2};
  via_wg0.oif = IfIndex{3};
  m.apply(netwatch::Removed<netwatch::Route>{eth0_default});
  m.apply(netwatch::Added<netwatch::Route>{via_wg0});
  netwatch::Route v6;
  v6.family = Family::v6;
  v6.dst = *Prefix::parse("::/0");
  v6.oif = IfIndex{native_ipv6 ? 2u : 3u};
  m.apply(netwatch::Added<netwatch::Route>{v6});
  return m;
}

TEST_CASE("a round says which family's traffic does not go into the tunnel") {
  World tunnelled;
  tunnelled.c.start(full_tunnel(false));
  tunnelled.probe.finish(ProbeVerdict::ok);
  CHECK(tunnelled.out.lines.back() == "state blocking->secured (probe ok: no leak)");
  World native;
  native.c.start(full_tunnel(true));
  native.probe.finish(ProbeVerdict::ok);
  CHECK(native.out.lines.back() == "state blocking->secured (probe ok: no leak; IPv6 leaves via eth0, not the tunnel)");
}

// full_tunnel(false) with the kernel's rules and, if given, one that sends some traffic to table
// 100, whose default route is eth0 (`ip rule add uidrange 1000-1000 lookup 100`: a user kept out
// of the VPN).
netwatch::NetModel around_tunnel(std::optional<netwatch::Rule> side) {
  auto m = full_tunnel(false);
  auto rule = [](std::uint32_t prio, std::uint32_t table) {
    netwatch::Rule r;
    r.priority = prio;
    r.table = table;
    return r;
  };
  m.apply(netwatch::Added<netwatch::Rule>{rule(0, 255)});
  m.apply(netwatch::Added<netwatch::Rule>{rule(32766, 254)});
  netwatch::Route via_eth0;
  via_eth0.dst = *Prefix::parse("0.0.0.0/0");
  via_eth0.oif = IfIndex{2};
  via_eth0.table = 100;
  m.apply(netwatch::Added<netwatch::Route>{via_eth0});
  if (side) {
    side->priority = 100;
    side->table = 100;
    m.apply(netwatch::Added<netwatch::Rule>{*side});
  }
  return m;
}

netwatch::Rule user_rule() {
  netwatch::Rule r;
  r.uid_range = std::pair<std::uint32_t, std::uint32_t>{1000, 1000};
  return r;
}

TEST_CASE("on_exposure escalate: a routing rule that sends some users around the tunnel closes their way, from the first rules") {
  // The control: the same network without the rule is secured, nothing escalated.
  World plain;
  plain.c.start(around_tunnel(std::nullopt));
  plain.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  CHECK(plain.c.desired().escalated.empty());
  CHECK(plain.out.lines.back() == "state blocking->secured (probe ok: no leak)");
  // With it, the very first rules hold IPv4 as strict (at start and when arming: no round waited
  // for, no window for that user's TCP); the daemon's own probe could not see that way anyway.
  World w;
  w.c.start(around_tunnel(user_rule()));
  REQUIRE_FALSE(w.fw.calls.empty());
  CHECK(w.fw.calls.front().find("escalated=IPv4") != std::string::npos);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  CHECK(w.c.machine().state() == State::secured);
  const auto st = nlohmann::json::parse(w.c.status_json());
  CHECK(st["escalated"] == nlohmann::json::array({"ipv4"}));
  CHECK(st["escalated_by_routing"] == nlohmann::json::array({"ipv4"}));
  CHECK(st["network"]["side_egress"]["ipv4"] == nlohmann::json::parse(R"([{"interface":"eth0","selector":"uidrange 1000-1000"}])"));
  // Disarmed and armed again: the rules written when arming hold it too.
  REQUIRE(w.c.disarm("uid 0"));
  REQUIRE(w.c.arm("uid 0"));
  CHECK(w.fw.calls.back().find("escalated=IPv4") != std::string::npos);
  // The rule gone: IPv4 back to udp policy at once, said so; a rule added while running: escalated at once.
  w.c.network_changed(around_tunnel(std::nullopt), "rule removed");
  CHECK(w.c.desired().escalated.empty());
  CHECK(w.fw.calls.back().find("escalated") == std::string::npos);
  w.c.network_changed(around_tunnel(user_rule()), "rule added");
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v4});
  bool said = false;
  for (const auto& l : w.out.lines)
    said = said || l == "error escalated IPv4 to strict: the routing sends some of this host's traffic around the tunnel "
                        "(uidrange 1000-1000 via eth0)";
  CHECK(said);
}

TEST_CASE("the tunnel down in udp policy: a page's TCP getting out makes the state leaking at the first answer, not the round's end") {
  const LeakFinding tcp4{"routed via eth0", "ipv4", "203.0.113.2:40000", "203.0.113.3:3478/tcp", true, ""};
  World w;
  w.c.start(network());  // no tunnel
  REQUIRE(w.probe.pending);
  REQUIRE(w.probe.path_out);
  CHECK(w.c.machine().state() == State::blocking);
  w.probe.path_out(tcp4);  // the round is still running (a silent server holds it)
  CHECK(w.c.machine().state() == State::leaking);
  CHECK(w.out.lines.back().find("state blocking->leaking (probe leak: 203.0.113.2:40000 seen by 203.0.113.3:3478/tcp") == 0);
  const auto rules = w.fw.calls.size();
  w.probe.finish(ProbeVerdict::leak, {tcp4});
  CHECK(w.c.machine().state() == State::leaking);
  CHECK(w.fw.calls.size() == rules);  // udp policy with the tunnel down: nothing to escalate
  // The control: a device-bound finding is no page's path, and strict lets nothing out to find.
  World d;
  d.c.start(network());
  d.probe.path_out(LeakFinding{"eth0", "ipv4", "203.0.113.2:40000", "203.0.113.3:3478/tcp", false, ""});
  CHECK(d.c.machine().state() == State::blocking);
}

TEST_CASE("on_exposure escalate: a family whose default route is not the tunnel is held strict from the very first rules") {
  // An IPv4-only VPN on a network with IPv6: a page's TURN over TCP/IPv6 reaches its server with the
  // ISP's address whether or not a probe server of that family answers (one that is down, or none
  // listed): the routing table is the evidence, before any round.
  World w;
  w.c.start(full_tunnel(true));
  REQUIRE_FALSE(w.fw.calls.empty());
  CHECK(w.fw.calls.front().find("escalated=IPv6") != std::string::npos);
  CHECK(nlohmann::json::parse(w.c.status_json())["escalated_by_routing"] == nlohmann::json::array({"ipv6"}));
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});  // IPv6's TCP server silent: nothing found, still held
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  CHECK(w.c.machine().state() == State::secured);
  // No window when the rules are written again for udp policy: arming, a policy back to udp, a reload.
  REQUIRE(w.c.disarm("uid 0"));
  REQUIRE(w.c.arm("uid 0"));
  CHECK(w.fw.calls.back().find("escalated=IPv6") != std::string::npos);
  REQUIRE(w.c.set_policy(Mode::strict, "uid 0"));
  REQUIRE(w.c.set_policy(Mode::udp, "uid 0"));
  CHECK(w.fw.calls.back().find("policy=udp") != std::string::npos);
  CHECK(w.fw.calls.back().find("escalated=IPv6") != std::string::npos);
  REQUIRE(w.c.reload("uid 0"));
  CHECK(w.fw.calls.back().find("escalated=IPv6") != std::string::npos);
  // Rounds have ended with IPv6's default route outside the tunnel: IPv6 is held as a probe's
  // finding is. The tunnel going down does not open it (udp policy would let a page's TCP out
  // there, as it did once the routing's reason went), and the state stays blocking.
  auto down = full_tunnel(true);
  auto wg0 = *down.link("wg0");
  wg0.flags = IFF_UP | IFF_POINTOPOINT;
  down.apply(netwatch::Added<netwatch::Link>{wg0});
  w.c.network_changed(down, "wg0 down");
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  CHECK(w.c.machine().state() == State::blocking);
  for (const auto& l : w.out.infos) CHECK(l.find("back to the configured policy") == std::string::npos);
  while (w.probe.pending) w.probe.finish(ProbeVerdict::ok);
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});  // nothing shows IPv6 in a tunnel
  w.c.network_changed(full_tunnel(true), "wg0 up");
  CHECK(w.fw.calls.back().find("escalated=IPv6") != std::string::npos);
  while (w.probe.pending) w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  // IPv6 goes into the tunnel: let go by the round that shows it there, with the routing agreeing.
  w.c.network_changed(full_tunnel(false), "route");
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4, Family::v6});
  CHECK(w.c.desired().escalated.empty());
  CHECK(w.fw.calls.back().find("escalated") == std::string::npos);
  REQUIRE_FALSE(w.out.settings.empty());
  CHECK(w.out.settings.back() == RuntimeSettings{});  // the latch was kept for a restart, and its end too

  SUBCASE("wg-quick's moment between its link and its routes holds nothing once the routes are there") {
    World q;
    q.c.start(network());  // no tunnel yet
    while (q.probe.pending) q.probe.finish(ProbeVerdict::ok);
    q.c.network_changed(network(Wg::up), "wg0 up, no routes yet");
    CHECK(q.fw.calls.back().find("escalated=IPv4") != std::string::npos);  // at once, while it lasts
    for (const auto& l : q.out.lines) CHECK(l.find("escalated") == std::string::npos);  // not an alarm: info
    q.c.network_changed(full_tunnel(false), "routes");  // before the round ends
    while (q.probe.pending) q.probe.finish(ProbeVerdict::ok, {}, {Family::v4, Family::v6});
    CHECK(q.c.desired().escalated.empty());
    // The tunnel goes down: udp policy lets TCP out, nothing was latched.
    auto gone = network();
    q.c.network_changed(gone, "wg0 deleted");
    CHECK(q.c.desired().escalated.empty());
    CHECK(q.fw.calls.back().find("escalated") == std::string::npos);
  }
  SUBCASE("alert closes nothing, and a clean round is not secured") {
    auto cfg = base_config();
    cfg.probe.on_exposure = config::OnExposure::alert;
    World a(cfg);
    a.c.start(full_tunnel(true));
    CHECK(a.c.desired().escalated.empty());
    a.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
    a.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
    CHECK(a.c.machine().state() == State::unverified);
    CHECK(nlohmann::json::parse(a.c.status_json())["reason"].get<std::string>().find(
              "the routing sends some IPv6 traffic around the tunnel (the default route via eth0)") != std::string::npos);
  }
}

TEST_CASE("a routing rule that no web page's TCP can take (sport 22, ipproto udp, system users) is shown, never escalated") {
  for (auto side : {[] { netwatch::Rule r; r.sport = std::pair<std::uint16_t, std::uint16_t>{22, 22}; return r; }(),
                    [] { netwatch::Rule r; r.ip_proto = 17; return r; }(),
                    [] { netwatch::Rule r; r.uid_range = std::pair<std::uint32_t, std::uint32_t>{0, 999}; return r; }()}) {
    CAPTURE(side.selector_text());
    World w;
    w.c.start(around_tunnel(side));
    w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
    CHECK(w.c.desired().escalated.empty());  // a server's SSH is not locked out
    CHECK(w.c.machine().state() == State::secured);
    const auto st = nlohmann::json::parse(w.c.status_json());
    CHECK(st["network"]["side_egress"]["ipv4"].size() == 1);  // shown in status, and said in the round's summary
    CHECK(st["reason"].get<std::string>().find("some IPv4 traffic (" + side.selector_text() + " via eth0) is routed around the tunnel") !=
          std::string::npos);
  }
}

TEST_CASE("on_exposure alert: a routing rule that sends some users around the tunnel is not secured") {
  World w([] {
    auto c = base_config();
    c.probe.on_exposure = config::OnExposure::alert;
    return c;
  }());
  w.c.start(around_tunnel(user_rule()));
  CHECK(w.c.desired().escalated.empty());  // alert closes nothing
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  CHECK(w.c.machine().state() == State::unverified);
  CHECK(w.out.lines.back().find("the routing sends some IPv4 traffic around the tunnel (") !=
        std::string::npos);
  // The report says why, for leakguardctl probe (it fell back to "the tunnel did not answer").
  const auto last = nlohmann::json::parse(w.c.status_json())["last_probe"];
  CHECK(last["verdict"] == "unverified");
  CHECK(last.value("unverified_because", "").find("the routing sends some IPv4 traffic around the tunnel (") == 0);
}

TEST_CASE("on_exposure escalate: a page's path out holds its family as strict until its route goes into the tunnel") {
  const LeakFinding tcp6{"routed via eth0", "ipv6", "[2001:db8:2::10]:40000", "[2001:db8:3::3]:3478/tcp", true, ""};
  World w;
  // The routing table sends IPv6 into the tunnel (as far as it shows); a round finds a page's way
  // out anyway (a route it does not model: the probe is the evidence).
  w.c.start(full_tunnel(false));
  w.probe.finish(ProbeVerdict::ok);
  REQUIRE(w.c.machine().state() == State::secured);
  CHECK(w.fw.calls.back().find("escalated") == std::string::npos);
  // A round finds a page's own socket getting out over IPv6 (TCP: udp policy lets it).
  w.c.probe_now([](std::string, std::string) {});
  const int rounds = w.probe.started;
  w.probe.finish(ProbeVerdict::leak, {tcp6});
  CHECK(w.fw.calls.back().find("policy=udp") != std::string::npos);
  CHECK(w.fw.calls.back().find("escalated=IPv6") != std::string::npos);
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  CHECK(w.c.machine().state() == State::leaking);
  CHECK(w.out.lines.back().find("escalated IPv6 to strict") != std::string::npos);
  CHECK(nlohmann::json::parse(w.c.status_json())["escalated"] == nlohmann::json::array({"ipv6"}));
  // A round right after shows it closed (IPv6's routed probes refused now; IPv4's through the tunnel).
  CHECK(w.probe.started == rounds + 1);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  CHECK(w.c.machine().state() == State::secured);
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});  // held: no round showed the way out in the tunnel
  // Rounds that still see IPv6 refused keep it: no flapping back and forth.
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  // A route of IPv6's own for the server via eth0 beside a default route into the tunnel (a split
  // route): the network says "into the tunnel", the round still sees IPv6 refused - kept.
  w.c.network_changed(full_tunnel(false), "route changed");
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  w.c.network_changed(full_tunnel(true), "route changed");
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
  // A round whose probes went through the tunnel while the network, as last reported, still sends
  // IPv6 via eth0 (a route that flipped there and back within the watcher's debounce) keeps it too.
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4, Family::v6});
  CHECK(w.c.desired().escalated == std::vector<Family>{Family::v6});
  // IPv6 now goes into the tunnel: the round that shows it lets IPv6 go back to udp policy.
  w.c.network_changed(full_tunnel(false), "route changed");
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::ok, {}, {Family::v4, Family::v6});
  CHECK(w.c.desired().escalated.empty());
  CHECK(w.fw.calls.back().find("escalated") == std::string::npos);

  SUBCASE("the first answer escalates, not the round's end (a silent server may hold that for its timeout)") {
    World e;
    e.c.start(full_tunnel(false));
    REQUIRE(e.probe.path_out);
    const int before = e.probe.started;
    e.probe.path_out(tcp6);  // the round is still running
    CHECK(e.c.desired().escalated == std::vector<Family>{Family::v6});
    CHECK(e.fw.calls.back().find("escalated=IPv6") != std::string::npos);
    CHECK(e.out.lines.back().find("escalated IPv6 to strict") != std::string::npos);
    CHECK(e.out.lines.back().find("the round goes on") != std::string::npos);
    const auto calls = e.fw.calls.size();
    e.probe.path_out(tcp6);  // the same family again (another server): nothing more to do
    CHECK(e.fw.calls.size() == calls);
    // The round ends with the leak: the family stays escalated, its summary says what was done,
    // and the round that shows it closed follows.
    e.probe.finish(ProbeVerdict::leak, {tcp6});
    CHECK(e.c.machine().state() == State::leaking);
    CHECK(e.c.desired().escalated == std::vector<Family>{Family::v6});
    CHECK(nlohmann::json::parse(e.c.status_json())["reason"].get<std::string>().find("escalated IPv6 to strict") !=
          std::string::npos);
    CHECK(e.probe.started == before + 1);
    e.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
    CHECK(e.c.machine().state() == State::secured);
    // Not for a device-bound finding, not with on_exposure alert.
    World d;
    d.c.start(full_tunnel(false));
    d.probe.path_out(LeakFinding{"eth0", "ipv6", "[2001:db8:2::10]:40000", "[2001:db8:3::3]:3478/tcp", false, ""});
    CHECK(d.c.desired().escalated.empty());
    auto cfg = base_config();
    cfg.probe.on_exposure = config::OnExposure::alert;
    World a(cfg);
    a.c.start(full_tunnel(true));
    a.probe.path_out(tcp6);
    CHECK(a.c.desired().escalated.empty());
  }
  SUBCASE("alert only reports: leaking, nothing escalated") {
    auto cfg = base_config();
    cfg.probe.on_exposure = config::OnExposure::alert;
    World a(cfg);
    a.c.start(full_tunnel(true));
    a.probe.finish(ProbeVerdict::leak, {tcp6});
    CHECK(a.c.machine().state() == State::leaking);
    CHECK(a.c.desired().escalated.empty());
    CHECK(a.fw.calls.back().find("escalated") == std::string::npos);
  }
  SUBCASE("a reload to alert lets an escalated family go at the next round's end: alert closes nothing") {
    World r;
    r.c.start(full_tunnel(false));
    r.probe.finish(ProbeVerdict::leak, {tcp6});
    REQUIRE(r.c.desired().escalated == std::vector<Family>{Family::v6});
    r.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
    REQUIRE(r.c.desired().escalated == std::vector<Family>{Family::v6});  // the control: held under escalate
    r.next_config->probe.on_exposure = config::OnExposure::alert;
    REQUIRE(r.c.reload("uid 0"));
    r.c.probe_now([](std::string, std::string) {});
    r.probe.finish(ProbeVerdict::ok, {}, {Family::v4});
    CHECK(r.c.desired().escalated.empty());
    CHECK(std::any_of(r.out.infos.begin(), r.out.infos.end(), [](const std::string& l) {
      return l.find("IPv6 back to the configured policy: probe.on_exposure is alert") != std::string::npos;
    }));
    CHECK(r.fw.calls.back().find("escalated") == std::string::npos);
  }
  SUBCASE("a device-bound socket's leak is not a page's path: nothing escalated") {
    World d;
    d.c.start(full_tunnel(false));
    d.probe.finish(ProbeVerdict::leak, {{"eth0", "ipv4", "203.0.113.2:4000", "203.0.113.3:3478", false, ""}});
    CHECK(d.c.desired().escalated.empty());
  }
  SUBCASE("in strict there is nothing to escalate") {
    auto cfg = base_config();
    cfg.policy = Mode::strict;
    World st(cfg);
    st.c.start(full_tunnel(true));
    st.probe.finish(ProbeVerdict::leak, {tcp6});
    CHECK(st.c.desired().escalated.empty());
    CHECK(st.fw.calls.back().find("escalated") == std::string::npos);
  }
}

TEST_CASE("the configuration becomes the firewall's Desired in one place, overrides and declarations on top") {
  auto cfg = base_config();
  cfg.policy = Mode::strict;
  cfg.allow_lan = true;
  cfg.fwmark = FwMark{51820};
  const Desired d = desired_from(cfg);
  CHECK(d.str() == "policy=strict allow_lan=yes tunnels=[wg*] endpoints=[198.51.100.1:51820/udp] fwmark=51820");
  World w(cfg);
  CHECK(w.c.desired() == d);  // what --print-ruleset prints is what the daemon installs
  REQUIRE(w.c.set_policy(Mode::udp, "uid 0"));
  CHECK(w.c.desired().mode == Mode::udp);
  CHECK(desired_from(w.c.config()) == d);  // the override is not the configuration
}

TEST_CASE("a leak is counted, reported with its details, and shown in status") {
  World w;
  w.c.start(network());
  w.probe.finish(ProbeVerdict::leak, {{"eth0", "ipv4", "203.0.113.2", "203.0.113.3:3478", false, ""}});
  CHECK(w.c.machine().state() == State::leaking);
  CHECK(w.out.lines[1] == "LEAK eth0 ipv4 203.0.113.2");
  auto s = w.c.snapshot();
  CHECK(s.leak_count == 1);
  CHECK(s.state == "leaking");
  auto j = nlohmann::json::parse(w.c.status_json());
  CHECK(j["state"] == "leaking");
  CHECK(j["last_probe"]["verdict"] == "leak");
  CHECK(j["leak_count"] == 1);
}

TEST_CASE("declared tunnels and runtime settings change the rules, once each") {
  World w;
  w.c.start(network());
  w.probe.finish(ProbeVerdict::ok);
  auto t = check_tunnel("tun7", {"[2001:db8::1]:1194/udp"}, 42);
  REQUIRE(t);
  REQUIRE(w.c.set_tunnel(*t, "uid 0", Claim::replace));
  CHECK(w.c.is_tunnel("tun7"));
  CHECK(w.c.is_tunnel("wg3"));
  CHECK_FALSE(w.c.is_tunnel("eth0"));
  // Status says which names are the configuration's, and the declared one apart from them.
  const auto st = nlohmann::json::parse(w.c.status_json());
  CHECK(st["tunnel"]["patterns"] == nlohmann::json::array({"wg*"}));
  CHECK(st["tunnel"]["declared"] == "tun7");
  REQUIRE(w.c.set_tunnel(*t, "uid 0", Claim::replace));  // same declaration: nothing to do
  REQUIRE(w.c.set_allow_lan(true, "uid 0"));
  REQUIRE(w.c.set_policy(Mode::strict, "uid 0"));
  REQUIRE(w.c.clear_tunnel("uid 0", std::nullopt));
  CHECK(w.fw.calls == std::vector<std::string>{
                          "apply policy=udp allow_lan=no tunnels=[wg*] endpoints=[198.51.100.1:51820/udp]",
                          "apply policy=udp allow_lan=no tunnels=[wg*,tun7] endpoints=[198.51.100.1:51820/udp,[2001:db8::1]:1194/udp] fwmark=42",
                          "apply policy=udp allow_lan=yes tunnels=[wg*,tun7] endpoints=[198.51.100.1:51820/udp,[2001:db8::1]:1194/udp] fwmark=42",
                          "apply policy=strict allow_lan=yes tunnels=[wg*,tun7] endpoints=[198.51.100.1:51820/udp,[2001:db8::1]:1194/udp] fwmark=42",
                          "apply policy=strict allow_lan=yes tunnels=[wg*] endpoints=[198.51.100.1:51820/udp]",
                      });
  CHECK(w.c.snapshot().policy == "strict");
}

TEST_CASE("one VPN at a time: a claim is refused while another declared interface is there, released only by its own") {
  World w;
  w.c.start(network(Wg::up, "wg1"));  // wg1 exists (another VPN's interface); tun7 does not
  w.probe.finish(ProbeVerdict::ok);
  auto wg1 = check_tunnel("wg1", {"198.51.100.7:51820/udp"}, 0);
  auto tun7 = check_tunnel("tun7", {"[2001:db8::1]:1194/udp"}, 42);
  auto tun = check_tunnel("tun", {"198.51.100.8:1194/udp"}, 0);  // a placeholder, declared ahead
  REQUIRE((wg1 && tun7 && tun));
  REQUIRE(w.c.set_tunnel(*wg1, "uid 0", Claim::unless_other_live));  // nothing declared: taken
  const auto applies = w.fw.calls.size();
  auto busy = w.c.set_tunnel(*tun7, "uid 0", Claim::unless_other_live);
  REQUIRE_FALSE(busy);
  CHECK(busy.error().step == kTunnelBusy);
  CHECK(busy.error().message.find("tunnel wg1 is declared") != std::string::npos);
  CHECK(w.fw.calls.size() == applies);  // the rules untouched
  CHECK(w.c.snapshot().tunnel_interface == "wg1");
  // The same VPN again (its `up` after its pre-up) is no other VPN.
  auto wg1_again = check_tunnel("wg1", {"198.51.100.7:51820/udp", "198.51.100.9:51820/udp"}, 0);
  REQUIRE(w.c.set_tunnel(*wg1_again, "uid 0", Claim::unless_other_live));
  // Releasing someone else's tunnel does nothing; its own does.
  auto other = w.c.clear_tunnel("uid 0", std::string("tun7"));
  REQUIRE(other);
  CHECK_FALSE(*other);
  CHECK(w.c.snapshot().tunnel_interface == "wg1");
  // SetTunnel replaces whatever is there (the administrator's word).
  REQUIRE(w.c.set_tunnel(*tun, "uid 0", Claim::replace));
  // A declaration whose interface is not there (a placeholder, or a VPN gone without a word)
  // does not hold a claim back.
  REQUIRE(w.c.set_tunnel(*tun7, "uid 0", Claim::unless_other_live));
  CHECK(w.c.snapshot().tunnel_interface == "tun7");
  auto own = w.c.clear_tunnel("uid 0", std::string("tun7"));
  REQUIRE(own);
  CHECK(*own);
  CHECK(w.c.snapshot().tunnel_interface.empty());
  auto none = w.c.clear_tunnel("uid 0", std::nullopt);
  REQUIRE(none);
  CHECK_FALSE(*none);  // nothing was declared
  // A declaration ahead of any VPN (NetworkManager's placeholder) never replaces another VPN's,
  // not even one whose interface is not there now; nothing declared, or itself: taken.
  REQUIRE(w.c.set_tunnel(*tun7, "uid 0", Claim::unless_other_live));  // tun7: not there
  auto ahead = w.c.set_tunnel(*tun, "uid 0", Claim::ahead);
  REQUIRE_FALSE(ahead);
  CHECK(ahead.error().step == kTunnelBusy);
  CHECK(w.c.snapshot().tunnel_interface == "tun7");
  REQUIRE(w.c.clear_tunnel("uid 0", std::nullopt));
  REQUIRE(w.c.set_tunnel(*tun, "uid 0", Claim::ahead));
  REQUIRE(w.c.set_tunnel(*tun, "uid 0", Claim::ahead));  // again (profiles may have changed)
  CHECK(w.c.snapshot().tunnel_interface == "tun");
}

TEST_CASE("a declaration is handed out to be kept, and one kept from before a restart is in the first rules") {
  World w;
  w.c.start(network());
  w.probe.finish(ProbeVerdict::ok);
  auto t = check_tunnel("tun7", {"[2001:db8::1]:1194/udp"}, 42);
  REQUIRE(t);
  REQUIRE(w.c.set_tunnel(*t, "uid 0", Claim::replace));
  REQUIRE(w.out.declarations.size() == 1);
  CHECK(w.out.declarations.back() == *t);
  // One the firewall refuses is not kept (nor taken).
  w.fw.refuse_tunnel = "tun8";
  auto bad = check_tunnel("tun8", {"198.51.100.9:1194/udp"}, 0);
  REQUIRE(bad);
  CHECK_FALSE(w.c.set_tunnel(*bad, "uid 0", Claim::replace));
  CHECK(w.out.declarations.size() == 1);
  REQUIRE(w.c.clear_tunnel("uid 0", std::nullopt));
  REQUIRE(w.out.declarations.size() == 2);
  CHECK_FALSE(w.out.declarations.back().has_value());
  REQUIRE(w.c.clear_tunnel("uid 0", std::nullopt));  // nothing declared: nothing to keep
  CHECK(w.out.declarations.size() == 2);

  // A restarted daemon: the kept declaration is part of the very first install.
  World again;
  again.c.restore_tunnel(*t);
  again.c.start(network());
  REQUIRE_FALSE(again.fw.calls.empty());
  CHECK(again.fw.calls.front() ==
        "apply policy=udp allow_lan=no tunnels=[wg*,tun7] endpoints=[198.51.100.1:51820/udp,[2001:db8::1]:1194/udp] fwmark=42");
  CHECK(again.c.is_tunnel("tun7"));
  CHECK(again.out.declarations.empty());  // restoring is not a change to keep
}

TEST_CASE("what is set at run time is handed out to be kept, and a restarted daemon is no weaker than it was") {
  const LeakFinding tcp6{"routed via eth0", "ipv6", "[2001:db8:2::10]:40000", "[2001:db8:3::3]:3478/tcp", true, ""};
  World w;
  w.c.start(full_tunnel(false));
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.out.settings.empty());  // nothing set at run time yet
  // An escalation (a page's TCP out over IPv6) is a setting of its own: until a round lets it go.
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::leak, {tcp6});
  REQUIRE(w.out.settings.size() == 1);
  CHECK(w.out.settings.back() == RuntimeSettings{std::nullopt, std::nullopt, {Family::v6}});
  REQUIRE(w.c.set_allow_lan(true, "uid 0"));
  CHECK(w.out.settings.back() == RuntimeSettings{std::nullopt, true, {Family::v6}});
  REQUIRE(w.c.set_policy(Mode::strict, "uid 0"));
  // In strict there is nothing to escalate: the family is let go with the rest.
  CHECK(w.out.settings.back().policy == Mode::strict);
  const auto n = w.out.settings.size();
  REQUIRE(w.c.set_policy(Mode::strict, "uid 0"));  // no change: nothing new to keep
  CHECK(w.out.settings.size() == n);
  CHECK(nlohmann::json::parse(w.c.status_json())["set_at_runtime"] == nlohmann::json{{"policy", "strict"}, {"allow_lan", true}});

  SUBCASE("a restart: the kept policy and escalation are in the very first rules") {
    World again;
    again.c.restore_settings(RuntimeSettings{Mode::strict, std::nullopt, {}});
    again.c.start(full_tunnel(true));
    REQUIRE_FALSE(again.fw.calls.empty());
    CHECK(again.fw.calls.front().find("policy=strict") != std::string::npos);
    CHECK(again.out.settings.empty());  // restoring is not a change to keep
    World esc;
    esc.c.restore_settings(RuntimeSettings{std::nullopt, std::nullopt, {Family::v6}});
    esc.c.start(full_tunnel(false));  // IPv6's default route goes into the tunnel now
    REQUIRE_FALSE(esc.fw.calls.empty());
    CHECK(esc.fw.calls.front().find("escalated=IPv6") != std::string::npos);
    // Let go only as before: by a round that shows IPv6's way out in the tunnel, with the network agreeing.
    esc.probe.finish(ProbeVerdict::ok, {}, {Family::v4, Family::v6});
    CHECK(esc.c.desired().escalated.empty());
    REQUIRE_FALSE(esc.out.settings.empty());
    CHECK(esc.out.settings.back() == RuntimeSettings{});
  }
  SUBCASE("never weaker than the file as it is now: a udp or LAN set at run time over a file that says otherwise") {
    auto strict = base_config();
    strict.policy = Mode::strict;
    World edited(strict);
    CHECK(edited.c.restore_settings(RuntimeSettings{Mode::udp, true, {}}) ==
          "policy udp (the file says strict), allow_lan on (the file says off)");
    edited.c.start(full_tunnel(false));
    CHECK(edited.fw.calls.front().find("policy=strict allow_lan=no") != std::string::npos);
    World same;  // the control: the file says udp, the kept strict stands
    CHECK(same.c.restore_settings(RuntimeSettings{Mode::strict, false, {}}).empty());
    same.c.start(full_tunnel(false));
    CHECK(same.fw.calls.front().find("policy=strict") != std::string::npos);
  }
  SUBCASE("a broken file fixed: what was set at run time ends, and the kept settings say so") {
    World broken(tl::unexpected(Error{"load config", "/etc/leakguard/leakguard.yaml:1:9: policy: 'stict'"}));
    broken.c.restore_settings(RuntimeSettings{Mode::strict, std::nullopt, {}});
    broken.c.start(full_tunnel(false));
    broken.next_config = base_config();
    REQUIRE(broken.c.reload("SIGHUP"));
    REQUIRE_FALSE(broken.out.settings.empty());
    CHECK(broken.out.settings.back() == RuntimeSettings{});
  }
  SUBCASE("a reload ends what was set at run time; a failure to keep it is shown") {
    REQUIRE(w.c.reload("uid 0"));
    CHECK(w.out.settings.back().policy == std::nullopt);
    CHECK(w.out.settings.back().allow_lan == std::nullopt);
    CHECK(nlohmann::json::parse(w.c.status_json())["not_kept"].is_null());
    w.c.set_keep_error("cannot keep what was set at run time for a restart: EROFS");
    CHECK(nlohmann::json::parse(w.c.status_json())["not_kept"] == "cannot keep what was set at run time for a restart: EROFS");
  }
}

TEST_CASE("the declaration follows the declared WireGuard tunnel's peers: the new endpoint in, the old out") {
  World w;
  w.c.start(network());
  w.probe.finish(ProbeVerdict::ok);
  CHECK_FALSE(w.c.follow_peers_of());  // nothing declared: configured tunnels are not followed
  auto ep = [](const char* text) { return *Endpoint::parse(text); };
  auto t = check_tunnel("wg1", {"198.51.100.7:51820/udp", "198.51.100.8:443/tcp"}, 51820);
  REQUIRE(t);
  REQUIRE(w.c.set_tunnel(*t, "uid 0", Claim::replace));
  CHECK(w.c.follow_peers_of() == "wg1");
  const auto calls = w.fw.calls.size();
  const auto kept = w.out.declarations.size();
  // The device sends where it was declared to: nothing to do. Nor for another interface, or a
  // device whose peers have no endpoint (yet).
  w.c.peers_seen("wg1", {ep("198.51.100.7:51820")});
  w.c.peers_seen("wg0", {ep("198.51.100.9:51820")});
  w.c.peers_seen("wg1", {});
  CHECK(w.fw.calls.size() == calls);
  CHECK(w.out.declarations.size() == kept);
  // Roamed (wg set wg1 peer K endpoint ...): the new address in, the old out, in one change; the
  // TCP endpoint and the mark stay; the new declaration is kept for a restart.
  w.c.peers_seen("wg1", {ep("[2001:db8::7]:51820")});
  REQUIRE(w.fw.calls.size() == calls + 1);
  CHECK(w.fw.calls.back() ==
        "apply policy=udp allow_lan=no tunnels=[wg*,wg1] endpoints=[198.51.100.1:51820/udp,198.51.100.8:443/tcp,[2001:db8::7]:51820/udp] fwmark=51820");
  REQUIRE(w.out.declarations.size() == kept + 1);
  REQUIRE(w.out.declarations.back().has_value());
  CHECK(w.out.declarations.back()->endpoints == std::vector<Endpoint>{ep("198.51.100.8:443/tcp"), ep("[2001:db8::7]:51820")});
  CHECK(w.out.declarations.back()->fwmark == t->fwmark);
  // Two peers: both.
  w.c.peers_seen("wg1", {ep("198.51.100.7:51820"), ep("[2001:db8::7]:51820")});
  REQUIRE(w.fw.calls.size() == calls + 2);
  CHECK(w.c.snapshot().endpoints ==
        std::vector<std::string>{"198.51.100.1:51820/udp", "198.51.100.7:51820/udp", "198.51.100.8:443/tcp", "[2001:db8::7]:51820/udp"});
  // Endpoints the firewall refuses: nothing changes, said once, not at every poll; said again
  // after the device went back to something that could be declared.
  w.fw.refuse_endpoint = ep("198.51.100.66:51820");
  auto errors = [&] { return std::count_if(w.out.lines.begin(), w.out.lines.end(), [](const std::string& l) { return l.starts_with("error "); }); };
  const auto errors_before = errors();
  w.c.peers_seen("wg1", {ep("198.51.100.66:51820")});
  w.c.peers_seen("wg1", {ep("198.51.100.66:51820")});
  CHECK(errors() == errors_before + 1);
  CHECK(w.fw.calls.size() == calls + 2);
  w.c.peers_seen("wg1", {ep("198.51.100.7:51820"), ep("[2001:db8::7]:51820")});  // as declared
  w.c.peers_seen("wg1", {ep("198.51.100.66:51820")});
  CHECK(errors() == errors_before + 2);
  // Cleared: nothing to follow, and what a device says changes nothing.
  REQUIRE(w.c.clear_tunnel("uid 0", std::nullopt));
  CHECK_FALSE(w.c.follow_peers_of());
  const auto after_clear = w.fw.calls.size();
  w.c.peers_seen("wg1", {ep("198.51.100.5:51820")});
  CHECK(w.fw.calls.size() == after_clear);
}

TEST_CASE("a kept declaration waits behind the emergency block of a broken configuration") {
  auto t = check_tunnel("tun7", {"[2001:db8::1]:1194/udp"}, 0);
  REQUIRE(t);
  World w(fail("parse", "leakguard.yaml:1:1: policy: bad"));
  w.c.restore_tunnel(*t);
  w.c.start(network());
  CHECK(w.fw.calls == std::vector<std::string>{"keep our table?", "apply emergency block (everything but loopback dropped)"});
  // Once the file is fixed, the declaration is part of the rules.
  w.next_config = base_config();
  REQUIRE(w.c.reload("uid 0"));
  CHECK(w.fw.calls.back() == "apply policy=udp allow_lan=no tunnels=[wg*,tun7] endpoints=[198.51.100.1:51820/udp,[2001:db8::1]:1194/udp]");
}

TEST_CASE("a foreign change to our table is signalled with who made it, and one not restored means leaking") {
  World w;
  w.c.start(network());
  w.probe.finish(ProbeVerdict::ok);
  w.out.lines.clear();
  w.c.table_tampered("nft[4242]", "table deleted (repaired in 300 us)", true);
  CHECK(w.out.lines == std::vector<std::string>{"tampered by nft[4242]: table deleted (repaired in 300 us), restored"});
  CHECK(w.c.machine().state() == State::blocking);
  CHECK(w.probe.started == 2);  // and the probe checks again
  w.probe.finish(ProbeVerdict::ok);
  w.out.lines.clear();
  w.c.table_tampered("nft[4243]", "1 rule(s) added to chain output", false);
  CHECK(w.out.lines == std::vector<std::string>{
                           "tampered by nft[4243]: 1 rule(s) added to chain output, NOT restored",
                           "state blocking->leaking (table changed by nft[4243], NOT restored)"});
}

TEST_CASE("rules that cannot be installed: error state, and the caller hears why") {
  World w;
  w.fw.fail_next = true;
  w.c.start(network());
  CHECK(w.c.machine().state() == State::error);
  CHECK(w.out.lines[0].starts_with("error cannot install the rules: commit batch: Operation not supported"));
  auto again = w.c.arm("uid 0");  // retry succeeds
  CHECK(again);
  CHECK(w.c.machine().state() == State::blocking);
  w.fw.fail_next = true;
  auto lan = w.c.set_allow_lan(true, "uid 0");
  REQUIRE_FALSE(lan);
  CHECK(lan.error().message.find("Operation not supported") != std::string::npos);
}

TEST_CASE("reload: a broken file is refused and nothing changes, a good one applies") {
  World w;
  w.c.start(network());
  const std::string kTypoReload = "/etc/leakguard/leakguard.yaml:3:9: policy: 'strct' is not one of: strict, udp";
  w.next_config = tl::unexpected(Error{"load config", kTypoReload});
  auto bad = w.c.reload("SIGHUP");
  REQUIRE_FALSE(bad);
  CHECK(w.fw.calls.size() == 1);
  CHECK(w.c.config() == base_config());
  CHECK(w.out.lines.back().find("3:9: policy") != std::string::npos);
  CHECK(nlohmann::json::parse(w.c.status_json())["reload_error"] == kTypoReload);

  auto next = base_config();
  next.policy = Mode::strict;
  w.next_config = next;
  REQUIRE(w.c.reload("SIGHUP"));
  CHECK(w.fw.calls.size() == 2);
  CHECK(w.fw.calls.back().starts_with("apply policy=strict"));
  CHECK(nlohmann::json::parse(w.c.status_json())["reload_error"].is_null());  // a good reload ends it

  SUBCASE("new probe servers alone: the verdict in force is the old servers', a round asks the new ones") {
    World p;
    p.c.start(full_tunnel(false));
    while (p.probe.pending) p.probe.finish(ProbeVerdict::ok);
    REQUIRE(p.c.machine().state() == State::secured);
    REQUIRE_FALSE(p.probe.pending);
    // The control: the same file again starts nothing.
    p.next_config = base_config();
    REQUIRE(p.c.reload("SIGHUP"));
    CHECK_FALSE(p.probe.pending);
    auto servers = base_config();
    servers.probe.servers = {config::StunServer{"203.0.113.99", 3478, Transport::udp}};
    p.next_config = servers;
    const int before = p.probe.started;
    REQUIRE(p.c.reload("SIGHUP"));
    CHECK(p.probe.started == before + 1);
    CHECK(p.probe.pending);
  }
}

TEST_CASE("probe triggers during a round coalesce into one more round") {
  World w;
  w.c.start(network());
  CHECK(w.probe.started == 1);
  w.c.network_changed(network(), "address added");
  w.c.probe_timer();
  w.c.network_changed(network(), "route changed");
  CHECK(w.probe.started == 1);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.probe.started == 2);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.probe.started == 2);
  CHECK_FALSE(w.probe.pending);
}

TEST_CASE("ProbeNow is answered by a round that started after the call") {
  World w;
  w.c.start(network());  // round 1 running
  std::string got;
  w.c.probe_now([&](std::string v, std::string) { got = v; });
  w.probe.finish(ProbeVerdict::leak);  // round 1 ends: not ours
  CHECK(got.empty());
  CHECK(w.probe.started == 2);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(got == "ok");
  // When idle, a round starts at once.
  w.c.probe_now([&](std::string v, std::string) { got = v; });
  CHECK(w.probe.started == 3);
  w.probe.finish(ProbeVerdict::leak);
  CHECK(got == "leak");
}

TEST_CASE("stop keeps the block by default, removes it when configured, and disarmed means nothing to do") {
  {
    World w;
    w.c.start(network());
    CHECK(w.c.stop() == "stopping; the block stays in place (on_stop: keep)");
    CHECK(w.fw.calls.size() == 1);
  }
  {
    auto cfg = base_config();
    cfg.on_stop = config::OnStop::remove;
    World w(cfg);
    w.c.start(network());
    CHECK(w.c.stop() == "stopping; rules removed (on_stop: remove)");
    CHECK(w.fw.calls.back() == "remove");
  }
  {
    auto cfg = base_config();
    cfg.armed = false;
    World w(cfg);
    w.c.start(network());
    CHECK(w.fw.calls.empty());
    CHECK(w.probe.started == 1);  // disarmed still probes: a leak is a leak
    CHECK(w.c.stop() == "stopping (disarmed, no rules to keep)");
  }
}

TEST_CASE("disarmed, the same leak round after round is said once (counted every time), armed every time") {
  auto cfg = base_config();
  cfg.armed = false;
  World w(cfg);
  w.c.start(network());
  auto leak = [](const char* reflexive) {
    return LeakFinding{"routed via eth0", "ipv4", reflexive, "203.0.113.3:3478/udp", true, ""};
  };
  auto said = [&] { return std::count_if(w.out.lines.begin(), w.out.lines.end(), [](const std::string& l) { return l.starts_with("LEAK "); }); };
  w.probe.finish(ProbeVerdict::leak, {leak("203.0.113.2:40001")});
  CHECK(said() == 1);
  for (const char* r : {"203.0.113.2:40002", "203.0.113.2:40003"}) {  // the next rounds: another port
    w.c.probe_now([](std::string, std::string) {});
    w.probe.finish(ProbeVerdict::leak, {leak(r)});
  }
  CHECK(said() == 1);
  CHECK(w.c.snapshot().leak_count == 3);
  CHECK(w.c.machine().state() == State::leaking);
  // Another address is news; so is the first one again after a round without it.
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::leak, {leak("[2001:db8:2::10]:40004")});
  CHECK(said() == 2);
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::ok);
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::leak, {leak("203.0.113.2:40005")});
  CHECK(said() == 3);
  // Armed, a leak is said every round: it is the alarm.
  REQUIRE(w.c.arm("uid 0"));
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::leak, {leak("203.0.113.2:40006")});
  w.c.probe_now([](std::string, std::string) {});
  w.probe.finish(ProbeVerdict::leak, {leak("203.0.113.2:40007")});
  CHECK(said() == 5);
}

TEST_CASE("a change the firewall would refuse is rolled back: rules, state and declaration stay") {
  World w;
  w.c.start(network());
  w.probe.finish(ProbeVerdict::ok);
  w.c.network_changed(network(Wg::up), "wg0 added");
  w.probe.finish(ProbeVerdict::ok);
  REQUIRE(w.c.machine().state() == State::secured);
  const auto calls = w.fw.calls;
  const auto before = w.c.desired();
  w.fw.refuse_tunnel = "tun9";
  TunnelDeclaration t{"tun9", {*Endpoint::parse("198.51.100.9:1194")}, std::nullopt};
  auto r = w.c.set_tunnel(t, "test", Claim::replace);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "tunnels: refused tun9");
  CHECK(w.fw.calls == calls);  // nothing applied
  CHECK(w.c.desired() == before);
  CHECK(w.c.snapshot().tunnel_interface.empty());
  CHECK(w.c.machine().state() == State::secured);
  // A reload into a refused configuration is refused the same way.
  auto refused = base_config();
  refused.tunnel_interfaces.push_back(IfnamePattern{"tun9"});
  w.next_config = refused;
  CHECK_FALSE(w.c.reload("test"));
  CHECK(w.c.config() == base_config());
  CHECK(w.fw.calls == calls);
}

TEST_CASE("the controller decides from the network model whether a tunnel is up, and what the LAN is") {
  World w;
  w.c.start(full_tunnel(false));
  CHECK(w.c.machine().tunnel_up());
  // eth0's subnet, 192.0.2.0/24, is no private range: no LAN (the LAN's own test is below).
  CHECK(w.fw.net.lan.empty());
  w.probe.finish(ProbeVerdict::ok);  // round 1 (armed) ends; round 2 (tunnel up) starts
  w.probe.finish(ProbeVerdict::ok);
  REQUIRE(w.c.machine().state() == State::secured);
  // Up but not running (wg-quick down halfway) is not up: blocking at once, no rule change.
  const auto applied = w.fw.calls.size();
  auto wg_down = full_tunnel(false);
  auto wg0 = *wg_down.link("wg0");
  wg0.flags = IFF_UP | IFF_POINTOPOINT;
  wg_down.apply(netwatch::Added<netwatch::Link>{wg0});
  w.c.network_changed(wg_down, "wg0 down");
  CHECK(w.c.machine().state() == State::blocking);
  CHECK(w.out.lines.back() == "state secured->blocking (tunnel down: no tunnel interface up)");
  CHECK(w.fw.calls.size() == applied);
  w.probe.finish(ProbeVerdict::ok);

  // An interface no pattern names is no tunnel, until a VPN client declares it: then it is up at
  // once, without waiting for the network's next change.
  w.c.network_changed(network(Wg::up, "tun7"), "tun7 added");
  w.probe.finish(ProbeVerdict::ok);
  CHECK_FALSE(w.c.machine().tunnel_up());
  auto t = check_tunnel("tun7", {"198.51.100.7:1194"}, 0);
  REQUIRE(t);
  REQUIRE(w.c.set_tunnel(*t, "uid 0", Claim::replace));
  CHECK(w.c.machine().tunnel_up());
  CHECK(nlohmann::json::parse(w.c.status_json())["network"]["links"].size() == 3);  // GetStatus shows the network
  REQUIRE(w.c.clear_tunnel("uid 0", std::nullopt));
  CHECK_FALSE(w.c.machine().tunnel_up());
}

TEST_CASE("the probe schedule on virtual time: interval, network-change rounds, ProbeNow, reload") {
  auto cfg = base_config();
  cfg.probe.interval = 1h;
  World w(cfg);
  w.c.start(network());  // round 1: armed
  CHECK_FALSE(w.c.next_probe_due());  // a round is running: its end decides
  w.advance(2s);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.c.next_probe_due() == w.now + 1h);
  CHECK(w.out.due == w.now + 1h);

  // The interval: nothing before it, a round when it has passed.
  w.advance(59min);
  CHECK(w.probe.started == 1);
  w.advance(1min);
  CHECK(w.probe.started == 2);
  w.probe.finish(ProbeVerdict::ok);

  // A round for a network change counts as a round: the next scheduled one is an interval after it.
  w.advance(30min);
  w.c.network_changed(network(), "address added");
  CHECK(w.probe.started == 3);
  w.advance(1s);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.out.due == w.now + 1h);
  w.advance(31min);  // a fixed period would have probed here
  CHECK(w.probe.started == 3);

  // ProbeNow too.
  std::string verdict;
  w.c.probe_now([&](std::string v, std::string) { verdict = v; });
  CHECK(w.probe.started == 4);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(verdict == "ok");
  CHECK(w.out.due == w.now + 1h);

  // A reload from 1h to 10s takes effect at once: due 10 s after the last round, not in an hour.
  w.advance(5s);
  auto fast = base_config();
  fast.probe.interval = 10s;
  w.next_config = fast;
  REQUIRE(w.c.reload("SIGHUP"));
  CHECK(w.out.due == w.now + 5s);
  w.advance(5s);
  CHECK(w.probe.started == 5);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.out.due == w.now + 10s);

  // Back to 1h, then 20 s later to 10 s: overdue, so the round runs at once.
  w.next_config = cfg;
  REQUIRE(w.c.reload("SIGHUP"));
  CHECK(w.out.due == w.now + 1h);
  w.advance(20s);
  CHECK(w.probe.started == 5);
  w.next_config = fast;
  REQUIRE(w.c.reload("SIGHUP"));
  CHECK(w.probe.started == 6);
  CHECK_FALSE(w.c.next_probe_due());

  // A timer that fires early (armed for a time since moved later) starts nothing.
  w.probe.finish(ProbeVerdict::ok);
  w.c.probe_timer();
  CHECK(w.probe.started == 6);
  CHECK(w.out.due == w.now + 10s);
}

TEST_CASE("the LAN is the on-link subnets inside the private ranges, plus what the configuration lists") {
  netwatch::NetModel m = network(Wg::up);  // eth0 192.0.2.10/24 (documentation range: not private), wg0
  auto addr = [&](std::uint32_t index, const char* prefix, unsigned char scope = RT_SCOPE_UNIVERSE) {
    m.apply(netwatch::Added<netwatch::Address>{{IfIndex{index}, *Prefix::parse(prefix), scope, 0}});
  };
  addr(2, "10.1.2.3/24");          // a home LAN: as it is
  addr(2, "52.1.2.3/8");           // a hotspot's DHCP hands out a public /8 (TunnelCrack LocalNet): nothing
  addr(2, "10.200.0.5/7");         // wider than the private range: only its private part, 10.0.0.0/8
  addr(2, "172.0.0.1/8");          // the same: 172.16.0.0/12
  addr(2, "100.64.7.1/24");        // RFC 6598 (a carrier's): only if listed
  addr(2, "fd00:1::5/64");         // unique local: as it is
  addr(2, "2001:db8:2::10/64");    // global IPv6: not LAN
  addr(2, "192.168.1.7/32");       // a host address is no subnet
  addr(2, "192.168.9.1/24", RT_SCOPE_HOST);
  addr(3, "10.66.0.2/24");         // the tunnel's own subnet: never LAN
  const netwatch::Classifier c{{IfnamePattern{"wg0"}}};
  const auto lan = lan_subnets(m, c);
  auto has = [&](const std::vector<Prefix>& v, const char* p) {
    return std::find(v.begin(), v.end(), *Prefix::parse(p)) != v.end();
  };
  CHECK(lan == std::vector<Prefix>{*Prefix::parse("10.1.2.0/24"), *Prefix::parse("10.0.0.0/8"),
                                   *Prefix::parse("172.16.0.0/12"), *Prefix::parse("fd00:1::/64")});
  CHECK_FALSE(has(lan, "52.0.0.0/8"));
  CHECK_FALSE(has(lan, "10.66.0.0/24"));
  // Listed ranges come as they are (host bits cleared), the RFC 6598 one included; too wide never.
  const auto listed = lan_subnets(m, c, {*Prefix::parse("100.64.0.0/10"), *Prefix::parse("203.0.113.9/24"),
                                         *Prefix::parse("10.1.2.0/24")});
  CHECK(has(listed, "100.64.0.0/10"));
  CHECK(has(listed, "203.0.113.0/24"));
  CHECK(std::count(listed.begin(), listed.end(), *Prefix::parse("10.1.2.0/24")) == 1);
  CHECK_FALSE(has(listed, "52.0.0.0/8"));
  CHECK(lan_subnets(m, c, {*Prefix::parse("0.0.0.0/1")}) == lan);
}

TEST_CASE("allow_lan_ranges from the configuration reach the firewall, and a reload changes them at once") {
  World w;
  w.c.start(network(Wg::up));
  CHECK(w.fw.net.lan.empty());
  auto c = base_config();
  c.allow_lan_ranges = {*Prefix::parse("192.0.2.0/24")};
  w.next_config = c;
  REQUIRE(w.c.reload("test"));
  CHECK(w.fw.net.lan == std::vector<Prefix>{*Prefix::parse("192.0.2.0/24")});
}

// ---- failing closed (issue 14, finding 2) ----

TEST_CASE("a broken configuration at start: the emergency block first, error with the file's reason, nothing else") {
  World w{Result<config::Config>(tl::unexpected(kTypo))};
  w.next_config = tl::unexpected(kTypo);
  REQUIRE(w.c.start(network(Wg::up)));
  // Our table was looked for (none), then the block went in: everything but loopback dropped.
  CHECK(w.fw.calls == std::vector<std::string>{"keep our table?", "apply emergency block (everything but loopback dropped)"});
  CHECK(w.c.protection() == Protection::emergency);
  CHECK(w.c.machine().state() == State::error);
  CHECK(w.c.machine().reason().find("leakguard.yaml:3:9: policy") != std::string::npos);
  CHECK(w.out.lines.front().starts_with("error configuration not usable: /etc/leakguard/leakguard.yaml:3:9: policy"));
  auto j = nlohmann::json::parse(w.c.status_json());
  CHECK(j["state"] == "error");
  CHECK(j["config_error"] == kTypo.message);
  CHECK(j["protection"] == "emergency");
  CHECK(j["retry_in_ms"] == 1000);
  CHECK(j["tunnel"]["patterns"].empty());  // the defaults standing in are not "configured"
  // No tunnel is trusted, no probe runs (there are no servers to ask), and nothing may change
  // the block but a good file.
  CHECK_FALSE(w.c.is_tunnel("wg0"));
  CHECK(w.probe.started == 0);
  for (auto r : {w.c.disarm("uid 0"), w.c.arm("uid 0"), w.c.set_policy(Mode::udp, "uid 0"), w.c.set_allow_lan(true, "uid 0")}) {
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("3:9: policy") != std::string::npos);
  }
  bool answered = false;
  const auto refused = w.c.probe_now([&](std::string, std::string) { answered = true; });
  REQUIRE_FALSE(refused);  // refused at once with the reason, not left waiting
  CHECK(refused.error().message.find("3:9: policy") != std::string::npos);
  CHECK_FALSE(answered);
  CHECK(w.fw.calls.size() == 2);
  CHECK(w.c.stop() == "stopping; the block stays in place (on_stop: keep)");
}

TEST_CASE("a broken configuration with our table left by the previous run: the table is kept exactly as it is") {
  World w{Result<config::Config>(tl::unexpected(kTypo))};
  w.next_config = tl::unexpected(kTypo);
  w.fw.present = true;
  REQUIRE(w.c.start(network()));
  CHECK(w.fw.calls == std::vector<std::string>{"keep our table?"});  // nothing applied over it
  CHECK(w.c.protection() == Protection::kept);
  CHECK(w.c.machine().state() == State::error);
  CHECK(std::find(w.out.lines.begin(), w.out.lines.end(),
                  "error no usable configuration: table inet leakguard left by the previous run is kept as it is") !=
        w.out.lines.end());
  // Retries do not touch it either while the file stays broken.
  w.advance(1s);
  w.advance(2s);
  CHECK(w.reads == 2);
  CHECK(w.fw.calls == std::vector<std::string>{"keep our table?"});
  // A good file replaces it with its own rules (in place: the firewall adopts the orphan).
  w.next_config = base_config();
  w.advance(4s);
  CHECK(w.fw.calls.back() == "apply policy=udp allow_lan=no tunnels=[wg*] endpoints=[198.51.100.1:51820/udp]");
  CHECK(w.c.protection() == Protection::configured);
  CHECK(w.c.machine().state() == State::blocking);
}

TEST_CASE("retries re-read the file with backoff on virtual time: 1 s doubling to 60 s, a good file ends error") {
  World w{Result<config::Config>(tl::unexpected(kTypo))};
  w.next_config = tl::unexpected(kTypo);
  REQUIRE(w.c.start(network()));
  std::vector<long> waits;  // seconds from one retry to the next
  for (int i = 0; i < 9; ++i) {
    REQUIRE(w.c.next_retry_due());
    const auto wait = *w.c.next_retry_due() - w.now;
    waits.push_back(std::chrono::duration_cast<std::chrono::seconds>(wait).count());
    w.advance(std::chrono::duration_cast<std::chrono::milliseconds>(wait) - 1ms);
    CHECK(w.reads == i);  // not a moment early
    w.advance(1ms);
    CHECK(w.reads == i + 1);
    CHECK(w.c.machine().state() == State::error);
  }
  CHECK(waits == std::vector<long>{1, 2, 4, 8, 16, 32, 60, 60, 60});
  CHECK(w.fw.calls.size() == 2);  // the block stood all along: installed once, never re-applied
  // The file fixed: the next retry takes it, its rules replace the block, the state leaves error.
  auto fixed = base_config();
  fixed.policy = Mode::strict;
  w.next_config = fixed;
  w.advance(60s);
  CHECK(w.fw.calls.back() == "apply policy=strict allow_lan=no tunnels=[wg*] endpoints=[198.51.100.1:51820/udp]");
  CHECK(w.c.machine().state() == State::blocking);
  CHECK(w.c.config() == fixed);
  CHECK_FALSE(w.c.next_retry_due());
  CHECK(w.probe.started == 1);  // and now it proves itself
  auto j = nlohmann::json::parse(w.c.status_json());
  CHECK(j["config_error"].is_null());
  CHECK(j["protection"] == "configured");
}

TEST_CASE("SIGHUP or Reload retries at once - and a file that says disarmed takes the block away") {
  World w{Result<config::Config>(tl::unexpected(kTypo))};
  w.next_config = tl::unexpected(kTypo);
  REQUIRE(w.c.start(network()));
  const auto due = w.c.next_retry_due();
  REQUIRE(due);
  auto still = w.c.reload("SIGHUP");
  REQUIRE_FALSE(still);
  CHECK(still.error().message.find("3:9: policy") != std::string::npos);
  CHECK(w.reads == 1);
  CHECK(w.c.next_retry_due() == due);  // the schedule goes on as it was
  CHECK(w.c.machine().state() == State::error);

  SUBCASE("armed") {
    w.next_config = base_config();
    REQUIRE(w.c.reload("uid 0"));  // no time has passed
    CHECK(w.reads == 2);
    CHECK(w.c.machine().state() == State::blocking);
    CHECK(w.fw.calls.back().starts_with("apply policy=udp"));
    CHECK_FALSE(w.c.next_retry_due());
    CHECK(w.c.set_policy(Mode::strict, "uid 0"));  // changes are taken again
  }
  SUBCASE("disarmed") {
    auto off = base_config();
    off.armed = false;
    w.next_config = off;
    REQUIRE(w.c.reload("SIGHUP"));
    CHECK(w.fw.calls.back() == "remove");
    CHECK(w.c.machine().state() == State::off);
    CHECK(w.c.protection() == Protection::none);
    CHECK_FALSE(w.c.next_retry_due());
  }
}

TEST_CASE("rules the kernel refuses at start: the emergency block, error sticky against a clean probe, retried with backoff") {
  World w;
  w.fw.fail_next = true;
  REQUIRE(w.c.start(full_tunnel(false)));
  CHECK(w.fw.calls == std::vector<std::string>{
                          "apply policy=udp allow_lan=no tunnels=[wg*] endpoints=[198.51.100.1:51820/udp]",
                          "keep our table?",
                          "apply emergency block (everything but loopback dropped)",
                      });
  CHECK(w.c.protection() == Protection::emergency);
  CHECK(w.c.machine().state() == State::error);
  // A probe that finds nothing (everything is blocked) does not make it look healthy.
  REQUIRE(w.probe.pending);
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.c.machine().state() == State::error);
  REQUIRE(w.c.next_retry_due());
  CHECK(*w.c.next_retry_due() - w.now == 1s);
  // The first retry fails again: the next comes twice as late; the block stays (not re-applied).
  w.fw.fail_next = true;
  w.advance(1s);
  CHECK(w.fw.calls.size() == 4);
  CHECK(*w.c.next_retry_due() - w.now == 2s);
  CHECK(w.c.machine().state() == State::error);
  w.advance(2s);  // this one works
  CHECK(w.fw.calls.size() == 5);
  CHECK(w.fw.calls.back().starts_with("apply policy=udp"));
  CHECK(w.c.protection() == Protection::configured);
  CHECK_FALSE(w.c.next_retry_due());
  CHECK(w.c.machine().state() == State::blocking);  // the tunnel still has to be proven
  w.probe.finish(ProbeVerdict::ok);
  CHECK(w.c.machine().state() == State::secured);
}

TEST_CASE("a change the kernel refuses while running keeps the rules in place and is retried with backoff") {
  World w;
  REQUIRE(w.c.start(network()));
  w.fw.fail_next = true;
  REQUIRE_FALSE(w.c.set_policy(Mode::strict, "uid 0"));
  CHECK(w.c.protection() == Protection::configured);  // the batch was refused whole: the old rules stand
  CHECK(w.fw.calls.size() == 2);                       // no emergency block over them
  CHECK(w.c.machine().state() == State::error);
  REQUIRE(w.c.next_retry_due());
  w.advance(1s);
  CHECK(w.fw.calls.size() == 3);
  CHECK(w.fw.calls.back().starts_with("apply policy=strict"));
  CHECK(w.c.machine().state() == State::blocking);
  CHECK_FALSE(w.c.next_retry_due());
}

TEST_CASE("rules the kernel refused are tried again at once on SIGHUP, even with the file unchanged") {
  World w;
  w.fw.fail_next = true;
  REQUIRE(w.c.start(network()));
  CHECK(w.fw.calls.size() == 3);  // the rules, the look for our table, the emergency block
  CHECK(w.c.machine().state() == State::error);
  REQUIRE(w.c.reload("SIGHUP"));  // the same file: no change of rules, but the failed apply is retried
  CHECK(w.fw.calls.size() == 4);
  CHECK(w.fw.calls.back().starts_with("apply policy=udp"));
  CHECK(w.c.machine().state() == State::blocking);
  CHECK(w.c.protection() == Protection::configured);
  CHECK_FALSE(w.c.next_retry_due());
}

TEST_CASE("not even the emergency block can be installed: start fails, saying so") {
  SUBCASE("broken configuration") {
    World w{Result<config::Config>(tl::unexpected(kTypo))};
    w.fw.fail_always = true;
    auto r = w.c.start(network());
    REQUIRE_FALSE(r);
    CHECK(r.error().message.starts_with("cannot install even the emergency block: check nf_tables: permission denied"));
    CHECK(w.c.protection() == Protection::none);
  }
  SUBCASE("good configuration") {
    World w;
    w.fw.fail_always = true;
    auto r = w.c.start(network());
    REQUIRE_FALSE(r);
    CHECK(r.error().message.starts_with("cannot install even the emergency block: check nf_tables: permission denied"));
  }
  SUBCASE("disarmed by the configuration: nothing to install, nothing failed") {
    auto off = base_config();
    off.armed = false;
    World w(off);
    w.fw.fail_always = true;
    CHECK(w.c.start(network()));
    CHECK(w.fw.calls.empty());
  }
}

TEST_CASE("the tunnel's own addresses reach the firewall, and follow the tunnel") {
  World w;
  netwatch::NetModel m = network(Wg::up);
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{3}, *Prefix::parse("100.64.0.2/24"), RT_SCOPE_UNIVERSE, 0}});
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{3}, *Prefix::parse("2001:db8:100::2/64"), RT_SCOPE_UNIVERSE, 0}});
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{3}, *Prefix::parse("fe80::2/64"), RT_SCOPE_LINK, 0}});
  const netwatch::Classifier c{{IfnamePattern{"wg0"}}};
  // Link-local is scoped to its own link; eth0's address is no tunnel's.
  CHECK(tunnel_addresses(m, c) == std::vector<IpAddress>{*IpAddress::parse("100.64.0.2"), *IpAddress::parse("2001:db8:100::2")});
  w.c.start(m);
  CHECK(w.fw.net.tunnel_addresses.size() == 2);
  // The tunnel gets another address: the set follows; the tunnel goes: the set empties.
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{3}, *Prefix::parse("100.64.0.3/24"), RT_SCOPE_UNIVERSE, 0}});
  w.c.network_changed(m, "address added");
  CHECK(w.fw.net.tunnel_addresses.size() == 3);
  w.c.network_changed(network(Wg::absent), "wg0 removed");
  CHECK(w.fw.net.tunnel_addresses.empty());
}

TEST_CASE("a network larger than the firewall's sets: each set cut on its own, said once - the tunnel's addresses still follow") {
  // 300 private /24s on eth0 (a hostile or huge network, with allow_lan or without): the LAN and
  // DHCP sets are cut to the firewall's limit, and the tunnel's new address still reaches the
  // firewall in the same update (it used to be refused with the rest, the whole update at once).
  World w;
  netwatch::NetModel m = network(Wg::up);
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{3}, *Prefix::parse("100.64.0.2/24"), RT_SCOPE_UNIVERSE, 0}});
  for (int i = 0; i < 300; ++i)
    m.apply(netwatch::Added<netwatch::Address>{
        {IfIndex{2}, *Prefix::parse("10." + std::to_string(200 + i / 256) + "." + std::to_string(i % 256) + ".1/24"), RT_SCOPE_UNIVERSE, 0}});
  // 300 private subnets for the LAN; with 192.0.2.0/24, 301 for DHCP.
  w.c.start(m);
  const firewall::Limits limits;
  CHECK(w.fw.net.dhcp.size() == limits.max_lan_subnets);
  CHECK(w.fw.net.lan.size() == limits.max_lan_subnets);
  CHECK(w.fw.net.overflow.find("on-link LAN subnets: 300, only the first 256 kept") != std::string::npos);
  CHECK(w.fw.net.overflow.find("DHCP subnets: 301, only the first 256 kept") != std::string::npos);
  auto said = [&] {
    return std::count_if(w.out.lines.begin(), w.out.lines.end(),
                         [](const std::string& l) { return l.find("larger than the firewall's sets") != std::string::npos; });
  };
  CHECK(said() == 1);
  m.apply(netwatch::Added<netwatch::Address>{{IfIndex{3}, *Prefix::parse("100.64.0.9/32"), RT_SCOPE_UNIVERSE, 0}});
  w.c.network_changed(m, "address added");
  CHECK(w.fw.net.tunnel_addresses ==
        std::vector<IpAddress>{*IpAddress::parse("100.64.0.2"), *IpAddress::parse("100.64.0.9")});
  CHECK(said() == 1);  // the same overflow is not said again
  // The network shrinks back: said once that it fits.
  w.c.network_changed(network(Wg::up), "addresses removed");
  CHECK(w.fw.net.overflow.empty());
  CHECK(std::count_if(w.out.infos.begin(), w.out.infos.end(),
                      [](const std::string& l) { return l.find("fits the firewall's sets again") != std::string::npos; }) == 1);
  // And the firewall takes what the controller hands it.
  const NetworkSets sets = network_sets(m, netwatch::Classifier{{IfnamePattern{"wg0"}}});
  firewall::Policy p;
  p.allow_lan = true;
  p.lan_subnets = sets.lan;
  p.dhcp_subnets = sets.dhcp;
  p.tunnel_addresses = sets.tunnel_addresses;
  CHECK(firewall::validate(p));
}
