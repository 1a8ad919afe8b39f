#include <doctest/doctest.h>

#include "daemon/control.hpp"
#include "firewall/policy.hpp"

using namespace leakguard;
using namespace leakguard::daemon;

namespace {
Caller caller(uid_t uid, std::vector<gid_t> groups = {}, pid_t pid = 0) {
  Caller c;
  c.uid = uid;
  c.groups = std::move(groups);
  c.pid = pid;
  return c;
}
}  // namespace

TEST_CASE("who may control: root, or a member of the control group (the bus lists every group, the primary one too)") {
  CHECK(may_control(caller(0), std::nullopt));
  CHECK_FALSE(may_control(caller(1000, {1000}), std::nullopt));
  CHECK_FALSE(may_control(caller(1000, {1000, 27, 100}), 990));
  CHECK(may_control(caller(1000, {990}), 990));
  CHECK(may_control(caller(1000, {1000, 27, 990}), 990));
  CHECK(caller(1000, {}, 42).str() == "uid 1000, pid 42");
}

TEST_CASE("tunnel declarations are checked argument by argument") {
  auto ok = check_tunnel("wg0", {"198.51.100.1:51820/udp", "[2001:db8::1]:51820"}, 51820);
  REQUIRE(ok);
  CHECK(ok->interface == "wg0");
  CHECK(ok->endpoints.size() == 2);
  REQUIRE(ok->fwmark);
  CHECK(ok->fwmark->value == 51820);
  CHECK_FALSE(check_tunnel("wg0", {"198.51.100.1:51820"}, 0)->fwmark);

  auto bad_if = check_tunnel("wg/0", {"198.51.100.1:51820"}, 0);
  REQUIRE_FALSE(bad_if);
  CHECK(bad_if.error().step == "interface");
  CHECK(check_tunnel("", {"198.51.100.1:51820"}, 0).error().step == "interface");
  CHECK(check_tunnel("a-very-long-interface", {"198.51.100.1:51820"}, 0).error().step == "interface");
  // A declared name is literal: "e*" would otherwise become a wildcard that makes eth0 the tunnel.
  for (const char* wildcard : {"e*", "eth*", "w*g", "*"}) {
    CAPTURE(wildcard);
    auto w = check_tunnel(wildcard, {"198.51.100.1:51820"}, 0);
    REQUIRE_FALSE(w);
    CHECK(w.error().step == "interface");
    CHECK(w.error().message.find("literally") != std::string::npos);
  }

  auto bad_ep = check_tunnel("wg0", {"198.51.100.1:51820", "198.51.100.1"}, 0);
  REQUIRE_FALSE(bad_ep);
  CHECK(bad_ep.error().step == "endpoints");
  CHECK(bad_ep.error().message.find("198.51.100.1") != std::string::npos);
  CHECK(check_tunnel("wg0", {}, 0).error().step == "endpoints");
  CHECK(check_tunnel("wg0", {"198.51.100.1:51820", "198.51.100.1:51820/udp"}, 0).error().message.find("twice") !=
        std::string::npos);

  std::vector<std::string> many;
  for (int i = 0; i < 10'000; ++i) many.push_back("198.51.100." + std::to_string(i % 250 + 1) + ":" + std::to_string(1000 + i));
  auto too_many = check_tunnel("wg0", many, 0);
  REQUIRE_FALSE(too_many);
  CHECK(too_many.error().message.find("at most 1024") != std::string::npos);
}

TEST_CASE("a declaration is limited by the firewall's own endpoint limit, not a second number") {
  const std::size_t max = firewall::Limits{}.max_endpoints;
  std::vector<std::string> eps;
  for (std::size_t i = 0; i < max; ++i) eps.push_back("198.51.100.1:" + std::to_string(1000 + i));
  auto at_limit = check_tunnel("wg0", eps, 0);
  REQUIRE(at_limit);
  // What the daemon accepts, the firewall accepts.
  firewall::Policy p;
  p.endpoints = at_limit->endpoints;
  CHECK(firewall::validate(p));
  eps.push_back("198.51.100.2:1");
  auto over = check_tunnel("wg0", eps, 0);
  REQUIRE_FALSE(over);
  CHECK(over.error().message.find("at most " + std::to_string(max)) != std::string::npos);
}

TEST_CASE("what a user outside the control group may read: protected or not, never the VPN or an address") {
  const auto full = nlohmann::json::parse(R"({
    "state": "leaking", "reason": "probe leak: leak: 203.0.113.2 seen by 203.0.113.3:3478/udp through eth0; tunnel exit 203.0.113.66",
    "armed": true, "policy": "udp", "allow_lan": false, "tunnel_up": true, "leak_count": 2,
    "tunnel": {"patterns": ["wg*"], "declared": "wg0"}, "endpoints": ["198.51.100.1:51820/udp"], "fwmark": 51820,
    "rules_error": "198.51.100.1 refused", "network": {"links": [{"name": "eth0"}]},
    "last_probe": {"verdict": "leak", "tunnel_exits": {"ipv4": ["203.0.113.66"]}, "leaks": [{"reflexive": "203.0.113.2"}]},
    "firewall": {"installed": true, "owner": true, "blocked": "blocked 3 UDP packets", "lan_subnets": ["10.0.0.0/24"],
                 "tunnel_addresses": ["100.64.0.2"], "counters": []}})");
  const auto p = public_status(full);
  const std::string text = p.dump();
  for (const char* secret : {"203.0.113.2", "203.0.113.66", "198.51.100.1", "100.64.0.2", "10.0.0.0", "51820", "eth0"}) {
    CAPTURE(secret);
    CHECK(text.find(secret) == std::string::npos);
  }
  CHECK(p["state"] == "leaking");
  CHECK(p["reason"] == "probe leak");
  CHECK(p["leak_count"] == 2);
  CHECK(p["last_probe"]["verdict"] == "leak");
  CHECK(p["firewall"]["installed"] == true);
  CHECK(p["firewall"]["blocked"] == "blocked 3 UDP packets");
  CHECK(p.contains("redacted"));
  // Reasons without a probe's findings stay as they are.
  CHECK(public_reason("tunnel down: no tunnel interface up") == "tunnel down: no tunnel interface up");
  CHECK(public_reason("probe ok: ok; tunnel exit 203.0.113.66") == "probe ok");
  CHECK(public_reason("LEAK: 203.0.113.2 via eth0") == "LEAK");
}
