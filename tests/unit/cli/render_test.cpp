// leakguardctl's rendering and error mapping, without a bus.
#include <doctest/doctest.h>

#include "cli/control_client.hpp"

using namespace leakguard::cli;

namespace {
// Shaped like the daemon's GetStatus (see daemon/controller.cpp and probes/report.cpp's to_json).
const char* const kStatus = R"json({
  "state": "secured", "armed": true, "policy": "udp", "allow_lan": false,
  "reason": "probe ok: ok; tunnel exit 203.0.113.66; 6 probes (4 blocked, 2 reflexive) in 10 ms",
  "tunnel_up": true, "tunnel": {"patterns": ["wg*"], "declared": "wg0"},
  "endpoints": ["198.51.100.1:51820/udp"], "fwmark": 51820, "leak_count": 0, "rules_error": null,
  "firewall": {"installed": true, "owner": true, "ownership": "owner+persist",
               "blocked": "blocked 42 UDP packets towards the internet via eth0", "error": null},
  "network": {"links": [{"name": "lo", "class": "loopback", "up": true, "addresses": []},
                        {"name": "eth0", "class": "physical", "up": true, "addresses": [
                           {"address": "192.0.2.10", "prefix": 24, "scope": "global"},
                           {"address": "fe80::1", "prefix": 64, "scope": "link"}]}],
              "egress": {"ipv4": "wg0", "ipv6": null}},
  "last_probe": {"verdict": "ok", "summary": "ok; tunnel exit 203.0.113.66; 3 probes (2 blocked, 1 reflexive) in 10 ms",
                 "tunnel_exits": {"ipv4": ["203.0.113.66"], "ipv6": []},
                 "interfaces": [
                   {"name": "eth0", "class": "physical", "verdict": "ok", "results": [
                     {"family": "ipv4", "server": "203.0.113.3:3478/udp", "outcome": "blocked",
                      "detail": "blocked (EPERM: refused by the packet filter)", "reflexive": null}]},
                   {"name": "wg0", "class": "tunnel", "verdict": "ok", "results": [
                     {"family": "ipv4", "server": "203.0.113.3:3478/udp", "outcome": "reflexive",
                      "detail": "reflexive 203.0.113.66:40001 after 1 ms (1 attempt)", "reflexive": "203.0.113.66"}]},
                   {"name": "route", "class": "route", "verdict": "ok", "results": [
                     {"family": "ipv4", "server": "203.0.113.3:3478/udp", "outcome": "blocked",
                      "detail": "blocked (EPERM: refused by the packet filter)", "reflexive": null}]}],
                 "reflexive": [{"address": "203.0.113.66", "port": 40001, "interface": "wg0", "family": "ipv4",
                                "server": "203.0.113.3:3478/udp", "rtt_ms": 1, "leak": false}]}
})json";

// The same machine disarmed: the route's answer came back through eth0, a leak.
nlohmann::json leaking() {
  auto j = nlohmann::json::parse(kStatus);
  j["state"] = "leaking";
  j["reason"] = "probe leak: leak: 203.0.113.2 seen by 203.0.113.3:3478/udp through eth0 (+1 more); tunnel exit "
                "203.0.113.66; 3 probes (3 reflexive) in 3 ms";
  auto& route = j["last_probe"]["interfaces"][2];
  route["verdict"] = "leak";
  route["results"][0] = {{"family", "ipv4"}, {"server", "203.0.113.3:3478/udp"}, {"outcome", "reflexive"},
                         {"detail", "reflexive 203.0.113.2:47022 after 1 ms (1 attempt)"}, {"reflexive", "203.0.113.2"}};
  j["last_probe"]["verdict"] = "leak";
  j["last_probe"]["reflexive"].push_back({{"address", "203.0.113.2"}, {"port", 47022}, {"interface", "route via eth0"},
                                          {"family", "ipv4"}, {"server", "203.0.113.3:3478/udp"}, {"leak", true}});
  return j;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("status for people: state, tunnel, exit address, table ownership, counters") {
  const auto out = render_status(nlohmann::json::parse(kStatus), Style{});
  CHECK(has(out, "leakguard: secured"));
  CHECK(has(out, "exit:      203.0.113.66"));
  CHECK(has(out, "endpoints: 198.51.100.1:51820/udp"));
  CHECK(has(out, "owned (the kernel refuses others' changes)"));
  CHECK(has(out, "  eth0 (physical, up): 192.0.2.10/24\n"));
  CHECK(!has(out, "  lo "));
  // Up without a carrier (a tun no process holds: the tunnel line says down) is not plain "up".
  auto nc = nlohmann::json::parse(kStatus);
  nc["network"]["links"][1]["running"] = false;
  CHECK(has(render_status(nc, Style{}), "  eth0 (physical, up, no carrier): 192.0.2.10/24\n"));
  CHECK(has(out, "traffic leaves via: ipv4 wg0, ipv6 nothing"));
  CHECK(!has(out, "\x1b["));  // plain when not on a terminal
  CHECK(has(render_status(nlohmann::json::parse(kStatus), Style{true}), "\x1b[1;32msecured"));
}

TEST_CASE("status: without a mark it says whose sockets reach the endpoints") {
  auto j = nlohmann::json::parse(kStatus);
  j["endpoint_uid"] = 0;
  CHECK(has(render_status(j, Style{}), "  fwmark:    51820\n"));
  CHECK(!has(render_status(j, Style{}), "  for:"));
  j["fwmark"] = nullptr;
  CHECK(has(render_status(j, Style{}), "  for:       sockets of uid 0 and the kernel's (no fwmark)\n"));
  j["endpoint_uid"] = nullptr;
  CHECK(has(render_status(j, Style{}), "  for:       every local user (endpoint_uid: any)\n"));
  j["endpoints"] = nlohmann::json::array();
  CHECK(!has(render_status(j, Style{}), "  for:"));
}

TEST_CASE("status: the probe's verdict is said once, and the header keeps to why") {
  const auto out = render_status(nlohmann::json::parse(kStatus), Style{});
  // Not "(probe ok: ok; tunnel exit ...; 6 probes ... in 10 ms)": exit and probes have lines of their own.
  CHECK(has(out, "leakguard: secured  (probe ok)\n"));
  CHECK(has(render_status(leaking(), Style{}),
            "leakguard: leaking  (probe leak: 203.0.113.2 seen by 203.0.113.3:3478/udp through eth0 (+1 more))\n"));
  auto other = nlohmann::json::parse(kStatus);
  other["reason"] = "tunnel down: wg0";
  CHECK(has(render_status(other, Style{}), "(tunnel down: wg0)\n"));
}

TEST_CASE("status: the counters line does not say blocked twice") {
  const auto out = render_status(nlohmann::json::parse(kStatus), Style{});
  CHECK(has(out, "  counters:  blocked 42 UDP packets towards the internet via eth0\n"));
  CHECK(!has(out, "blocked:   blocked"));
}

TEST_CASE("status: the exit address of a tunnel that is down now is said to be the last round's") {
  auto j = nlohmann::json::parse(kStatus);
  CHECK(has(render_status(j, Style{}), "  exit:      203.0.113.66\n"));
  j["tunnel_up"] = false;
  CHECK(has(render_status(j, Style{}), "  exit:      203.0.113.66 (last round's; the tunnel is down now)\n"));
}

TEST_CASE("status: the tunnel line says up or down first, then which interfaces count") {
  CHECK(has(render_status(nlohmann::json::parse(kStatus), Style{}), "  tunnel:    up (configured: wg*; declared: wg0)\n"));
  auto j = nlohmann::json::parse(kStatus);
  j["tunnel_up"] = false;
  j["tunnel"]["declared"] = nullptr;
  const auto out = render_status(j, Style{});
  CHECK(has(out, "  tunnel:    down (configured: wg*; declared: none)\n"));
  CHECK(!has(out, "none declared (patterns"));
}

TEST_CASE("the probe report: the routed probe is named once, its leak marked, nothing listed twice") {
  const auto ok = render_probe(nlohmann::json::parse(kStatus)["last_probe"], Style{});
  CHECK(ok == "verdict: ok\n"
              "  eth0 (physical): ok\n"
              "    ipv4 203.0.113.3:3478/udp: blocked (EPERM: refused by the packet filter)\n"
              "  wg0 (tunnel): ok\n"
              "    ipv4 203.0.113.3:3478/udp: reflexive 203.0.113.66\n"
              "  as routed (no interface bound): ok\n"
              "    ipv4 203.0.113.3:3478/udp: blocked (EPERM: refused by the packet filter)\n");
  const auto leak = render_probe(leaking()["last_probe"], Style{});
  CHECK(has(leak, "  as routed (no interface bound): leak\n"
                  "    ipv4 203.0.113.3:3478/udp: reflexive 203.0.113.2, came in through eth0  <- LEAK\n"));
  CHECK(has(leak, "    ipv4 203.0.113.3:3478/udp: reflexive 203.0.113.66\n"));  // the tunnel's: no leak
  CHECK(!has(leak, "route (route)"));
  CHECK(!has(leak, "via route via"));
  // The status shows the same lines under "last probe:".
  CHECK(has(render_status(leaking(), Style{}), "last probe: leak\n  eth0 (physical): ok\n"));
}

TEST_CASE("status: a family escalated because of the routing rules says so") {
  auto j = nlohmann::json::parse(kStatus);
  j["escalated"] = {"ipv4", "ipv6"};
  j["escalated_by_routing"] = {"ipv4"};
  const auto out = render_status(j, Style{});
  CHECK(has(out, "  policy:    udp, IPv6 escalated to strict (a web page's path out was found), IPv4 escalated to strict (the "
                 "routing sends some traffic around the tunnel)\n"));
}

TEST_CASE("status: a policy set at run time says so, and a change that a restart would not know is warned of") {
  auto j = nlohmann::json::parse(kStatus);
  CHECK_FALSE(has(render_status(j, Style{}), "set at run time"));  // the control: nothing set
  CHECK_FALSE(has(render_status(j, Style{}), "restart:"));
  j["policy"] = "strict";
  j["set_at_runtime"] = {{"policy", "strict"}, {"allow_lan", nullptr}};
  j["not_kept"] = "cannot keep the tunnel declaration for a restart: keep declaration: /run/leakguard/tunnel.json.new: Read-only file system";
  const auto out = render_status(j, Style{});
  CHECK(has(out, "  policy:    strict (policy set at run time, until a reload)\n"));
  CHECK(has(out, "  restart:   a restarted daemon would not know the last change (cannot keep the tunnel declaration for a restart: "));
  CHECK_FALSE(has(out, "reload:"));
  j["reload_error"] = "/etc/leakguard/leakguard.yaml:5:6: alow_lan: unknown setting";
  CHECK(has(render_status(j, Style{}), "  reload:    refused, the running configuration stays (/etc/leakguard/leakguard.yaml:5:6: "));
}

TEST_CASE("status: without a usable configuration no interface is said to be configured as the tunnel") {
  auto j = nlohmann::json::parse(kStatus);
  j["config_error"] = "/etc/leakguard/leakguard.yaml:1:9: policy: 'stict' is not one of: strict, udp";
  j["tunnel"]["patterns"] = nlohmann::json::array();
  const auto out = render_status(j, Style{});
  CHECK(has(out, "(no usable configuration: no interface is trusted as the tunnel; declared: "));
  CHECK_FALSE(has(out, "configured: "));
}

TEST_CASE("status: an escalated family is said on the policy line") {
  auto j = nlohmann::json::parse(kStatus);
  j["escalated"] = {"ipv6"};
  CHECK(has(render_status(j, Style{}), "  policy:    udp, IPv6 escalated to strict (a web page's path out was found)\n"));
  j["escalated"] = nlohmann::json::array();
  CHECK(has(render_status(j, Style{}), "  policy:    udp\n"));
}

TEST_CASE("the probe report: an exposure is marked as one, not as a leak") {
  auto j = nlohmann::json::parse(kStatus)["last_probe"];
  auto& eth0 = j["interfaces"][0];
  eth0["verdict"] = "exposure";
  eth0["results"][0] = {{"family", "ipv4"}, {"server", "203.0.113.3:3478/tcp"}, {"outcome", "reflexive"},
                        {"detail", "reflexive 203.0.113.2:47022 after 1 ms (1 attempt)"}, {"reflexive", "203.0.113.2"}};
  j["reflexive"].push_back({{"address", "203.0.113.2"}, {"port", 47022}, {"interface", "eth0"}, {"family", "ipv4"},
                            {"server", "203.0.113.3:3478/tcp"}, {"leak", false}, {"exposure", true}});
  const auto out = render_probe(j, Style{});
  CHECK(has(out, "  eth0 (physical): exposure\n"
                 "    ipv4 203.0.113.3:3478/tcp: reflexive 203.0.113.2  <- exposure (any local process, not a web page; strict closes it)\n"));
  CHECK(!has(out, "LEAK"));
}

TEST_CASE("monitor lines: the verdict once, the leak's route named once, who saw the address") {
  CHECK(render_signal("StateChanged",
                      {"blocking", "secured", "probe ok: ok; tunnel exit 203.0.113.66; 6 probes (4 blocked, 2 reflexive) in 11 ms"},
                      Style{}) == "state blocking -> secured: probe ok; tunnel exit 203.0.113.66; 6 probes (4 blocked, 2 reflexive) in 11 ms");
  CHECK(render_signal("StateChanged", {"secured", "blocking", "tunnel down: wg0"}, Style{}) ==
        "state secured -> blocking: tunnel down: wg0");
  CHECK(render_signal("LeakDetected", {"eth0", "ipv4", "203.0.113.2:45543", "203.0.113.3:3478/udp"}, Style{}) ==
        "LEAK via eth0 (ipv4): 203.0.113.2:45543 seen by 203.0.113.3:3478/udp");
  CHECK(render_signal("LeakDetected", {"routed via eth0", "ipv6", "[2001:db8:2::10]:45929", "[2001:db8:3::3]:3478/udp"},
                      Style{}) == "LEAK via eth0 (ipv6, routed): [2001:db8:2::10]:45929 seen by [2001:db8:3::3]:3478/udp");
  // A hop probe's leak: a router answered, no server saw an address.
  CHECK(render_signal("LeakDetected", {"eth0", "ipv4", "", "hop 192.0.2.1 toward endpoint 198.51.100.1:51820/udp"}, Style{}) ==
        "LEAK via eth0 (ipv4): router 192.0.2.1 answered a datagram sent toward endpoint 198.51.100.1:51820/udp outside the tunnel");
  // A page's TCP connection made outside the tunnel to a server that does not speak STUN.
  CHECK(render_signal("LeakDetected", {"routed via eth0", "ipv6", "", "connected to [2001:db8:3::3]:443/tcp outside the tunnel"},
                      Style{}) == "LEAK via eth0 (ipv6, routed): connected to [2001:db8:3::3]:443/tcp outside the tunnel");
  // A request the block should have refused left the device: no server need have answered.
  CHECK(render_signal("LeakDetected", {"eth0", "ipv4", "", "sent toward 203.0.113.3:3478/udp, not refused by the block"}, Style{}) ==
        "LEAK via eth0 (ipv4): a request sent toward 203.0.113.3:3478/udp left outside the tunnel: the block did not refuse it");
  CHECK(render_signal("ProbeCompleted", {"ok"}, Style{}) == "probe: ok");
  CHECK(render_signal("TableTampered", {"nft (pid 7)"}, Style{}) == "table changed by nft (pid 7)");
}

TEST_CASE("the daemon's reason: a probe verdict said twice is said once") {
  CHECK(reason_text("probe ok: ok", false) == "probe ok");
  CHECK(reason_text("probe ok: ok; tunnel exit 203.0.113.66", false) == "probe ok; tunnel exit 203.0.113.66");
  CHECK(reason_text("probe ok: ok; tunnel exit 203.0.113.66", true) == "probe ok");
  CHECK(reason_text("probe leak: leak: 203.0.113.2 seen by X; 6 probes", true) == "probe leak: 203.0.113.2 seen by X");
  // Not a repetition: another verdict in the summary, and reasons that are no probe's.
  CHECK(reason_text("probe ok: exposed-host: 192.0.2.10 on eth0 is readable by pages", false) ==
        "probe ok: exposed-host: 192.0.2.10 on eth0 is readable by pages");
  CHECK(reason_text("probe ok: okay", false) == "probe ok: okay");
  CHECK(reason_text("rules applied", true) == "rules applied");
  CHECK(reason_text("rules failed: a; b", true) == "rules failed: a; b");
}

TEST_CASE("what tunnel set and policy print: the declaration itself, the policy's meaning") {
  CHECK(tunnel_declared("wg0", {"198.51.100.1:51820/udp"}, 51820) ==
        "tunnel wg0 declared, endpoint 198.51.100.1:51820/udp, fwmark 51820\n");
  CHECK(tunnel_declared("wg0", {"198.51.100.1:51820/udp", "[2001:db8::1]:51820/udp"}, 0) ==
        "tunnel wg0 declared, endpoints 198.51.100.1:51820/udp, [2001:db8::1]:51820/udp\n");
  CHECK(tunnel_declared("tun0", {}, 0) == "tunnel tun0 declared, no endpoint\n");
  CHECK(policy_set("strict") == "policy strict: all IP outside the tunnel is blocked\n");
  CHECK(policy_set("udp") == "policy udp: UDP outside the tunnel is blocked\n");
}

TEST_CASE("a table without the owner flag and a firewall error are shown") {
  auto j = nlohmann::json::parse(kStatus);
  j["firewall"]["owner"] = false;
  j["firewall"]["ownership"] = "kernel lacks NFT_TABLE_F_PERSIST";
  j["firewall"]["error"] = "table guard: no permission";
  const auto out = render_status(j, Style{});
  CHECK(has(out, "guarded, kernel lacks NFT_TABLE_F_PERSIST"));
  CHECK(has(out, "firewall: table guard: no permission"));
}

TEST_CASE("status while a previous run's table is kept: in force, and the policy is that table's") {
  auto j = nlohmann::json::parse(kStatus);
  j["state"] = "error";
  j["protection"] = "kept";
  j["firewall"]["installed"] = false;  // this run installed nothing: the table is the last run's
  const auto out = render_status(j, Style{});
  CHECK(has(out, "  table:     inet leakguard, kept as the previous run left it (in force, untouched)\n"));
  CHECK(has(out, "  policy:    the kept table's (this run has no usable configuration)\n"));
  CHECK(!has(out, "not installed"));
  CHECK(!has(out, "policy:    udp"));
  // This run does not know the kept table's endpoints or tunnels: never "none" (that table still
  // lets the VPN's endpoint and tunnel through; a reviewer read "endpoints: none" as false).
  j["config_error"] = "/etc/leakguard/leakguard.yaml:8:9: policy: 'bogus' is not one of: strict, udp";
  const auto with_error = render_status(j, Style{});
  CHECK(has(with_error, "  endpoints: the kept table's (nft list set inet leakguard endpoints4, endpoints6)\n"));
  CHECK(has(with_error, "the kept table's tunnels, as the previous run wrote them"));
  CHECK(!has(with_error, "endpoints: none"));
  CHECK(!has(with_error, "no interface is trusted"));
}

TEST_CASE("status in the emergency block: not called strict, no endpoints allowed") {
  auto j = nlohmann::json::parse(kStatus);
  j["state"] = "error";
  j["protection"] = "emergency";
  j["policy"] = "strict";
  const auto out = render_status(j, Style{});
  CHECK(has(out, "  policy:    the emergency block (everything but loopback; no endpoint, DHCP or LAN)\n"));
  CHECK(has(out, "  endpoints: none allowed (the emergency block)\n"));
  CHECK(!has(out, "policy:    strict"));
}

TEST_CASE("D-Bus errors map to distinct exit statuses") {
  CHECK(from_dbus_error("org.leakguard.Daemon1.Error.TunnelBusy", "one VPN at a time: tunnel wg0 is declared").exit == kBusy);
  CHECK(from_dbus_error("org.freedesktop.DBus.Error.AccessDenied", "x").exit == kAccessDenied);
  CHECK(from_dbus_error("org.freedesktop.DBus.Error.ServiceUnknown", "x").exit == kNotRunning);
  CHECK(from_dbus_error("org.freedesktop.DBus.Error.InvalidArgs", "interface: bad").exit == kInvalid);
  CHECK(from_dbus_error("org.leakguard.Daemon1.Error.Failed", "apply rules").exit == kFailed);
  CHECK(has(from_dbus_error("org.freedesktop.DBus.Error.InvalidArgs", "interface: bad").err, "interface: bad"));
  // Bus activation refused by systemd: a disabled unit (no activation alias), a masked one.
  const auto disabled = from_dbus_error("org.freedesktop.systemd1.NoSuchUnit", "Unit dbus-org.leakguard.Daemon1.service not found.");
  CHECK(disabled.exit == kNotRunning);
  CHECK(has(disabled.err, "the bus could not start it (Unit dbus-org.leakguard.Daemon1.service not found; see"));
  CHECK(from_dbus_error("org.freedesktop.systemd1.UnitMasked", "Unit leakguard.service is masked.").exit == kNotRunning);
}

TEST_CASE("blocked recently: who, whose, where to, how often - and for others only how much") {
  const auto b = nlohmann::json::parse(R"({"packets": 14, "evicted": 0, "apps": [],
    "flows": [
      {"app": "chromium", "process": "chromium", "pid": 4242, "unit": "app-org.chromium.Chromium-4242.scope",
       "uid": 1000, "user": "alice", "gone": false, "destination": "203.0.113.3:3478/udp", "protocol": "udp",
       "interface": "eth0", "rule": "udp-out", "packets": 12, "first_seen": "2026-12-02T01:00:00Z", "last_seen": "2026-12-02T01:00:05Z"},
      {"app": "uid 4006", "process": null, "pid": null, "unit": null, "uid": 4006, "user": null, "gone": true,
       "destination": "203.0.113.3:40006/udp", "protocol": "udp", "interface": "eth0", "rule": "udp-out", "packets": 1,
       "first_seen": "2026-12-02T01:00:01Z", "last_seen": "2026-12-02T01:00:01Z",
       "note": "the reset that refused it closed the socket before it could be looked up"}]})");
  const auto out = render_blocked(b, Style{}, 5);
  CHECK(has(out, "  chromium (alice, pid 4242, app-org.chromium.Chromium-4242.scope) -> 203.0.113.3:3478/udp via eth0: 12 packets, last 2026-12-02T01:00:05Z\n"));
  CHECK(has(out, "  uid 4006 (uid 4006, process gone) -> 203.0.113.3:40006/udp via eth0: 1 packet, last 2026-12-02T01:00:01Z\n"));
  CHECK(has(out, "    the reset that refused it"));
  CHECK(has(render_blocked(b, Style{}, 1), "... 1 more: leakguardctl blocked"));
  CHECK(render_blocked(nlohmann::json::parse(R"({"packets": 0, "flows": []})"), Style{}, 5) == "  nothing logged yet\n");
  CHECK(has(render_blocked(nlohmann::json::parse(R"({"packets": 7})"), Style{}, 5), "7 blocked packets logged"));
  // In the status, under its own heading.
  auto j = nlohmann::json::parse(kStatus);
  j["blocked"] = b;
  CHECK(has(render_status(j, Style{}), "blocked recently (logged, at most 100 a second per rule):\n  chromium ("));
}

TEST_CASE("desktop notifications: which signals become which notification") {
  using S = std::vector<std::string>;
  auto n = notification_for("StateChanged", S{"secured", "blocking", "tunnel down: no tunnel interface up"}, "secured");
  REQUIRE(n);
  CHECK(n->summary == "VPN down: blocked");
  CHECK(n->state);
  CHECK(n->urgency == 1);
  n = notification_for("StateChanged", S{"secured", "leaking", "probe leak"}, "secured");
  REQUIRE(n);
  CHECK(n->urgency == 2);
  // Back to secured: said once after trouble, not at every start.
  CHECK(notification_for("StateChanged", S{"blocking", "secured", "probe ok"}, "blocking"));
  CHECK_FALSE(notification_for("StateChanged", S{"off", "secured", "probe ok"}, "off"));
  n = notification_for("LeakDetected", S{"eth0", "ipv4", "203.0.113.2:4242", "203.0.113.3:3478/udp"}, "");
  REQUIRE(n);
  CHECK(n->summary == "Leak detected via eth0");
  CHECK(n->body == "ipv4 address 203.0.113.2:4242 seen by 203.0.113.3:3478/udp");
  n = notification_for("Blocked", S{"chromium", "alice", "203.0.113.3:3478/udp", "eth0", "12"}, "");
  REQUIRE(n);
  CHECK(n->summary == "chromium tried to reach 203.0.113.3:3478 outside the VPN (blocked)");
  CHECK(n->body == "12 packets via eth0, alice");
  CHECK_FALSE(notification_for("Blocked", S{"leakguardd (probe)", "root", "203.0.113.3:3478/udp", "eth0", "4"}, ""));
  CHECK_FALSE(notification_for("ProbeCompleted", S{"ok"}, ""));
  CHECK(notification_for("TableTampered", S{"nft[42]"}, "")->body.find("nft[42]") != std::string::npos);
}

namespace {
// A round the tunnel did not answer, as the daemon reports it: nothing leaked (the prober's own
// verdict "ok"), no exit seen, so the round's verdict is unverified.
nlohmann::json unanswered() {
  auto r = nlohmann::json::parse(kStatus)["last_probe"];
  r["verdict"] = "unverified";
  r["report_verdict"] = "ok";
  r["tunnel_exits"] = {{"ipv4", nlohmann::json::array()}, {"ipv6", nlohmann::json::array()}};
  r["interfaces"][1]["results"][0] = {{"family", "ipv4"}, {"server", "203.0.113.3:3478/udp"}, {"outcome", "timeout"},
                                      {"detail", "timeout (3 attempts)"}, {"reflexive", nullptr}};
  r["reflexive"] = nlohmann::json::array();
  return r;
}
}  // namespace

TEST_CASE("probe: the round's verdict, not the prober's - unverified exits 6 and says why") {
  const auto report = unanswered().dump();
  auto o = probe_answer("unverified", report, false, Style{});
  CHECK(o.exit == kUnverified);
  CHECK(o.exit == 6);
  CHECK(o.out.starts_with("verdict: unverified (the tunnel did not answer: no VPN exit seen; no leak found either)\n"));
  CHECK(!has(o.out, "verdict: ok"));
  auto j = nlohmann::json::parse(probe_answer("unverified", report, true, Style{}).out);
  CHECK(j["verdict"] == "unverified");
  CHECK(j["report_verdict"] == "ok");
  CHECK(probe_answer("unverified", report, true, Style{}).exit == 6);
  // The controls: a round the tunnel answered, and a leak.
  const auto ok = probe_answer("ok", nlohmann::json::parse(kStatus)["last_probe"].dump(), false, Style{});
  CHECK(ok.exit == kOk);
  CHECK(ok.out.starts_with("verdict: ok\n"));
  CHECK(!nlohmann::json::parse(probe_answer("ok", nlohmann::json::parse(kStatus)["last_probe"].dump(), true, Style{}).out)
             .contains("report_verdict"));
  CHECK(probe_answer("leak", leaking()["last_probe"].dump(), false, Style{}).exit == kLeak);
  // The status's last probe says the same as the state.
  auto s = nlohmann::json::parse(kStatus);
  s["state"] = "unverified";
  s["last_probe"] = unanswered();
  CHECK(has(render_status(s, Style{}), "last probe: unverified (the tunnel did not answer"));
}

TEST_CASE("probe in state error: the reason on stderr and exit 5, with --json too") {
  const std::string refused = R"({"error":"configuration: not usable (/etc/leakguard/leakguard.yaml:3:1: bad): fix the file and reload"})";
  auto o = probe_answer("none", refused, false, Style{});
  CHECK(o.exit == kFailed);
  CHECK(o.out.empty());
  CHECK(has(o.err, "no probe round: configuration: not usable"));
  auto j = probe_answer("none", refused, true, Style{});
  CHECK(j.exit == kFailed);
  CHECK(has(j.out, "\"error\""));
  // A daemon that refuses the call (Error.Failed) gets the same status.
  CHECK(from_dbus_error("org.leakguard.Daemon1.Error.Failed", "configuration: not usable").exit == 5);
}

TEST_CASE("policy and allow-lan while disarmed: kept, in effect once armed") {
  CHECK(policy_set("strict", false) ==
        "policy strict kept: the kill switch is disarmed (no rules installed); it takes effect when armed (leakguardctl arm)\n");
  CHECK(allow_lan_set(true, false) ==
        "allow-lan on kept: the kill switch is disarmed (no rules installed); it takes effect when armed (leakguardctl arm)\n");
  CHECK(!has(policy_set("udp", false), "is blocked"));
  // Armed (or not known): what the rules do now.
  CHECK(policy_set("strict", true) == "policy strict: all IP outside the tunnel is blocked\n");
  CHECK(policy_set("udp", std::nullopt) == "policy udp: UDP outside the tunnel is blocked\n");
  CHECK(allow_lan_set(false, true) == "LAN traffic blocked outside the tunnel\n");
}

TEST_CASE("no system bus is not the same as no daemon") {
  auto o = from_dbus_error(kNoBusError, "/run/dbus/system_bus_socket: No such file or directory");
  CHECK(o.exit == kNotRunning);
  CHECK(o.err == "leakguardctl: cannot reach the system bus (/run/dbus/system_bus_socket: No such file or directory)");
  CHECK(!has(o.err, "not running"));
  CHECK(has(from_dbus_error("org.freedesktop.DBus.Error.ServiceUnknown", "x").err, "leakguardd is not running"));
  // ... and that a block it left stays (a reviewer disabled the service and found the machine
  // still blocked, with nothing saying so).
  CHECK(has(from_dbus_error("org.freedesktop.DBus.Error.ServiceUnknown", "x").err,
            "if it stopped with on_stop: keep (the default), its block stays in place: nft delete table inet leakguard lifts it"));
  CHECK(has(from_dbus_error("org.freedesktop.systemd1.NoSuchUnit", "Unit x not found.").err, "its block stays in place"));
}

TEST_CASE("monitor: the daemon's coming and going, and the bus's, for people, as JSON and as notifications") {
  using W = WatchEvent;
  CHECK(render_watch({W::daemon_stopped, ""}, Style{}) == "leakguardd stopped: protection not verified");
  CHECK(render_watch({W::daemon_back, "secured"}, Style{}) == "leakguardd is back: secured");
  CHECK(render_watch({W::daemon_absent, ""}, Style{}) ==
        "leakguardd is not running (no org.leakguard.Daemon1 on the system bus): protection not verified");
  CHECK(render_watch({W::bus_lost, "Connection reset"}, Style{}) ==
        "lost the system bus (Connection reset): cannot watch leakguardd; reconnecting");
  CHECK(render_watch({W::bus_back, ""}, Style{}) == "system bus is back");
  CHECK(watch_json({W::daemon_stopped, ""}) == nlohmann::json{{"event", "daemon-stopped"}});
  CHECK(watch_json({W::daemon_back, "blocking"}) == nlohmann::json{{"event", "daemon-back"}, {"state", "blocking"}});
  CHECK(watch_json({W::bus_lost, "x"}) == nlohmann::json{{"event", "bus-lost"}, {"error", "x"}});
  auto n = notification_for(W{W::daemon_stopped, ""});
  REQUIRE(n);
  CHECK(n->summary == "leakguardd stopped: protection not verified");
  CHECK(n->urgency == 2);
  CHECK(n->state);  // the state bubble: replaced when it is back
  n = notification_for(W{W::daemon_back, "secured"});
  REQUIRE(n);
  CHECK(n->summary == "leakguardd is back: secured");
  CHECK(n->key == "state");
  CHECK(notification_for(W{W::bus_lost, "x"}));
  CHECK_FALSE(notification_for(W{W::bus_back, ""}));
}

TEST_CASE("counters: what each number covers - the tunnel is not a way out - gone interfaces marked") {
  auto j = nlohmann::json::parse(kStatus);
  j["firewall"]["blocked"] = "blocked 17 UDP packets towards the internet via eth0 (432), eth1 (233), wg0 (15)";
  j["firewall"]["counters"] = nlohmann::json::parse(R"([
    {"kind": "udp", "direction": "out", "scope": "all", "packets": 17, "bytes": 900},
    {"kind": "dns", "direction": "out", "scope": "all", "packets": 3, "bytes": 200},
    {"kind": "udp", "direction": "in", "scope": "all", "packets": 0, "bytes": 0},
    {"kind": "udp", "direction": "out", "scope": "eth0", "family": "ipv4", "packets": 400, "bytes": 1},
    {"kind": "udp", "direction": "out", "scope": "eth0", "family": "ipv6", "packets": 32, "bytes": 1},
    {"kind": "udp", "direction": "out", "scope": "eth1", "family": "ipv4", "packets": 233, "bytes": 1},
    {"kind": "udp", "direction": "out", "scope": "wg0", "family": "ipv4", "packets": 15, "bytes": 1}])");
  const auto out = render_status(j, Style{});
  CHECK(has(out, "  counters:  blocked UDP 17, DNS 3 packets since the rules were last written\n"));
  CHECK(has(out, "             by interface, since the table was made: eth0 432, eth1 233 (gone)\n"));
  CHECK(!has(out, "wg0 15"));
  CHECK(!has(out, "via eth0 (432)"));
  j["firewall"]["counters"] = nlohmann::json::array();
  CHECK(has(render_status(j, Style{}), "  counters:  nothing blocked since the rules were last written\n"));
}

TEST_CASE("small things: brackets once, a TCP probe that never connected, numbers as numbers, nested names") {
  CHECK(render_signal("Blocked", {"leakguardd (probe)", "uid 0", "203.0.113.3:3478/udp", "eth0", "4"}, Style{}) ==
        "blocked leakguardd (probe, uid 0) -> 203.0.113.3:3478/udp via eth0: 4 packets");
  CHECK(render_signal("Blocked", {"chromium", "alice", "203.0.113.3:3478/udp", "eth0", "1"}, Style{}) ==
        "blocked chromium (alice) -> 203.0.113.3:3478/udp via eth0: 1 packet");
  const auto b = nlohmann::json::parse(R"j({"packets": 4, "flows": [
      {"app": "leakguardd (probe)", "uid": 0, "user": null, "destination": "203.0.113.3:3478/udp", "interface": "eth0",
       "packets": 4, "last_seen": "2026-12-02T01:00:05Z"}]})j");
  CHECK(has(render_blocked(b, Style{}, 5), "  leakguardd (probe, uid 0) -> 203.0.113.3:3478/udp"));
  auto j = signal_json("Blocked", {"chromium", "alice", "203.0.113.3:3478/udp", "eth0", "2"});
  CHECK(j["args"][4] == 2);
  CHECK(j["args"][4].is_number());
  CHECK(j["args"][0] == "chromium");
  CHECK(signal_json("ProbeCompleted", {"ok"}) == nlohmann::json{{"signal", "ProbeCompleted"}, {"args", {"ok"}}});
  auto r = nlohmann::json::parse(kStatus)["last_probe"];
  r["interfaces"][0]["results"][0] = {{"family", "ipv4"}, {"server", "203.0.113.3:3478/tcp"}, {"outcome", "timeout"},
                                      {"detail", "timeout (0 attempts)"}, {"reflexive", nullptr}};
  const auto out = render_probe(r, Style{});
  CHECK(has(out, "    ipv4 203.0.113.3:3478/tcp: timeout: no TCP connection (no STUN request sent)\n"));
  CHECK(!has(out, "0 attempts"));
}
