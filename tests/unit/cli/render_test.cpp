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
  CHECK(has(out, "guarded (kernel lacks NFT_TABLE_F_PERSIST)"));
  CHECK(has(out, "firewall: table guard: no permission"));
}

TEST_CASE("D-Bus errors map to distinct exit statuses") {
  CHECK(from_dbus_error("org.freedesktop.DBus.Error.AccessDenied", "x").exit == kAccessDenied);
  CHECK(from_dbus_error("org.freedesktop.DBus.Error.ServiceUnknown", "x").exit == kNotRunning);
  CHECK(from_dbus_error("org.freedesktop.DBus.Error.InvalidArgs", "interface: bad").exit == kInvalid);
  CHECK(from_dbus_error("org.leakguard.Daemon1.Error.Failed", "apply rules").exit == kFailed);
  CHECK(has(from_dbus_error("org.freedesktop.DBus.Error.InvalidArgs", "interface: bad").err, "interface: bad"));
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
