// leakguardctl's rendering and error mapping, without a bus.
#include <doctest/doctest.h>

#include "cli/control_client.hpp"

using namespace leakguard::cli;

namespace {
const char* const kStatus = R"({
  "state": "secured", "reason": "probe ok", "armed": true, "policy": "udp", "allow_lan": false,
  "tunnel_up": true, "tunnel": {"patterns": ["wg*"], "declared": "wg0"},
  "endpoints": ["198.51.100.1:51820/udp"], "fwmark": 51820, "leak_count": 0, "rules_error": null,
  "firewall": {"installed": true, "owner": true, "ownership": "owner+persist",
               "blocked": "blocked 42 UDP packets towards the internet via eth0", "error": null},
  "network": {"links": [{"name": "lo", "class": "loopback", "up": true, "addresses": []},
                        {"name": "eth0", "class": "physical", "up": true, "addresses": [
                           {"address": "192.0.2.10", "prefix": 24, "scope": "global"},
                           {"address": "fe80::1", "prefix": 64, "scope": "link"}]}],
              "egress": {"ipv4": "wg0", "ipv6": null}},
  "last_probe": {"verdict": "ok", "summary": "ok", "tunnel_exits": {"ipv4": ["203.0.113.66"], "ipv6": []},
                 "interfaces": [], "reflexive": []}
})";
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("status for people: state, tunnel, exit address, table ownership, counters") {
  const auto out = render_status(nlohmann::json::parse(kStatus), Style{});
  CHECK(has(out, "leakguard: secured"));
  CHECK(has(out, "tunnel:    wg0 (patterns: wg*), up"));
  CHECK(has(out, "exit:      203.0.113.66"));
  CHECK(has(out, "endpoints: 198.51.100.1:51820/udp"));
  CHECK(has(out, "owned (the kernel refuses others' changes)"));
  CHECK(has(out, "blocked:   blocked 42 UDP packets towards the internet via eth0"));
  CHECK(has(out, "  eth0 (physical, up): 192.0.2.10/24\n"));
  CHECK(!has(out, "  lo "));
  CHECK(has(out, "traffic leaves via: ipv4 wg0, ipv6 nothing"));
  CHECK(!has(out, "\x1b["));  // plain when not on a terminal
  CHECK(has(render_status(nlohmann::json::parse(kStatus), Style{true}), "\x1b[1;32msecured"));
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
