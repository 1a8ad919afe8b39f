// The control surface end to end: leakguardd in the lab's host namespace, on a private system bus
// that runs systemd/org.leakguard.Daemon1.conf; every method, property and signal through
// leakguardctl and busctl; authorization as root, nobody and a control-group member; the real
// wg-quick hook; bad input; and the bus going away and coming back.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
namespace lab = leakguard::lab;
using leakguard::e2e::eventually;
using leakguard::e2e::read_file;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;
using As = Rig::As;

namespace {
bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("every method, property and signal through leakguardctl and busctl") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});  // a leak is waiting: disarming shows it
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string signals = rig.dir + "/monitor.log";
  lab::Process monitor("", {LEAKGUARDCTL_DIR "/leakguardctl", "monitor", "--json"}, signals);
  // The monitor is listening once it shows a signal: ask for probes until one arrives.
  REQUIRE(eventually([&] { return rig.ctl({"probe"}).status == 0 && has(read_file(signals), "ProbeCompleted"); }, 10s));

  // leakguardctl, command by command.
  auto st = rig.ctl({"status"});
  CHECK(st.status == 0);
  CHECK(has(st.out, "secured"));
  CHECK(has(st.out, "exit:      203.0.113.66"));
  auto probe = rig.ctl({"probe"});
  CHECK(probe.status == 0);
  CHECK(has(probe.out, "ok"));
  CHECK(rig.ctl({"policy", "strict"}).status == 0);
  CHECK(rig.status()["policy"] == "strict");
  CHECK(has(rig.table(), "comment \"tcp-out\""));  // strict: TCP (and all IP) rejected too
  CHECK(rig.ctl({"policy", "udp"}).status == 0);
  CHECK(!has(rig.table(), "comment \"tcp-out\""));
  CHECK(rig.ctl({"allow-lan", "on"}).status == 0);
  CHECK(rig.status()["allow_lan"] == true);
  CHECK(rig.ctl({"allow-lan", "off"}).status == 0);
  CHECK(rig.ctl({"tunnel", "set", "wg0", "--endpoint", "198.51.100.1:51820/udp", "--fwmark", "51820"}).status == 0);
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  // One VPN at a time: wg0 is declared and there, so another VPN's claim is refused (exit 7) and
  // changes nothing; wg0's own claim (its hook's second step) is taken.
  auto busy = rig.ctl({"tunnel", "set", "--exclusive", "tun5", "--endpoint", "198.51.100.5:1194/udp"});
  CHECK(busy.status == 7);
  CHECK_MESSAGE(has(busy.out, "one VPN at a time: tunnel wg0 is declared"), busy.out);
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  CHECK(rig.ctl({"tunnel", "set", "--exclusive", "wg0", "--endpoint", "198.51.100.1:51820/udp", "--fwmark", "51820"}).status == 0);
  auto other = rig.ctl({"tunnel", "clear", "tun5"});  // another VPN going down leaves wg0 alone
  CHECK(other.status == 0);
  CHECK(has(other.out, "tunnel tun5 is not the declared one; nothing to clear"));
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  CHECK(rig.ctl({"tunnel", "clear", "wg0"}).status == 0);
  CHECK(rig.status()["tunnel"]["declared"].is_null());
  auto nothing = rig.ctl({"tunnel", "clear"});  // nothing declared: said so, not "cleared"
  CHECK(nothing.status == 0);
  CHECK(has(nothing.out, "no tunnel was declared; nothing to clear"));
  CHECK(rig.ctl({"reload"}).status == 0);
  CHECK(rig.ctl({"disarm"}).status == 0);
  CHECK_MESSAGE(!has(rig.table(), "table inet leakguard"), rig.output());
  // Disarmed, the split route leaks; the daemon's probe says so, and status exits 1.
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  CHECK(rig.ctl({"status"}).status == 1);
  CHECK(rig.ctl({"arm"}).status == 0);
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // busctl: each property and method.
  const std::vector<std::string> obj{"org.leakguard.Daemon1", "/org/leakguard/Daemon1", "org.leakguard.Daemon1"};
  auto prop = [&](const std::string& name) {
    std::vector<std::string> a{"get-property"};
    a.insert(a.end(), obj.begin(), obj.end());
    a.push_back(name);
    return rig.busctl(a);
  };
  CHECK(prop("State").out == "s \"secured\"\n");
  CHECK(prop("Policy").out == "s \"udp\"\n");
  CHECK(prop("Armed").out == "b true\n");
  CHECK(prop("TunnelInterface").out == "s \"\"\n");
  CHECK(prop("Endpoints").out == "as 1 \"198.51.100.1:51820/udp\"\n");  // the configured one
  CHECK(has(prop("LastProbe").out, "verdict"));
  CHECK(has(prop("LeakCount").out, "t "));
  CHECK(prop("LeakCount").out != "t 0\n");  // the leak while disarmed was counted
  auto call = [&](std::vector<std::string> rest) {
    std::vector<std::string> a{"call"};
    a.insert(a.end(), obj.begin(), obj.end());
    a.insert(a.end(), rest.begin(), rest.end());
    return rig.busctl(a);
  };
  CHECK(call({"SetTunnel", "sasu", "wg0", "1", "198.51.100.1:51820/udp", "51820"}).status == 0);
  CHECK(prop("TunnelInterface").out == "s \"wg0\"\n");
  CHECK(prop("Endpoints").out == "as 1 \"198.51.100.1:51820/udp\"\n");
  CHECK(call({"ClearTunnel"}).status == 0);
  CHECK(call({"SetAllowLan", "b", "true"}).status == 0);
  CHECK(call({"SetAllowLan", "b", "false"}).status == 0);
  CHECK(call({"SetPolicy", "s", "strict"}).status == 0);
  CHECK(prop("Policy").out == "s \"strict\"\n");
  CHECK(call({"SetPolicy", "s", "udp"}).status == 0);
  CHECK(call({"Disarm"}).status == 0);
  CHECK(prop("Armed").out == "b false\n");
  CHECK(call({"Arm"}).status == 0);
  CHECK(call({"Reload"}).status == 0);
  auto now = call({"ProbeNow"});
  CHECK(now.status == 0);
  CHECK(has(now.out, "ss \"ok\""));
  CHECK(has(call({"GetStatus"}).out, "\\\"state\\\""));
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // The monitor saw the signals (TableTampered needs a foreign change the kernel lets through:
  // with the owner flag it refuses them; table_tamper_test.cpp covers both).
  monitor.stop();
  const std::string seen = read_file(signals);
  CHECK(has(seen, "StateChanged"));
  CHECK(has(seen, "LeakDetected"));
  CHECK(has(seen, "203.0.113.2"));
  CHECK(has(seen, "ProbeCompleted"));
}

TEST_CASE("nobody may read but not change, a control-group member may") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string table = rig.table();
  auto st = rig.ctl({"status"}, As::nobody);
  CHECK(st.status == 0);
  CHECK(has(st.out, "secured"));
  // Protected or not, yes; the VPN's endpoint and the exit address, no (root sees both).
  CHECK(has(st.out, "for root and group leakguard only"));
  CHECK_FALSE(has(st.out, "198.51.100.1"));
  CHECK(has(rig.ctl({"status"}).out, "198.51.100.1"));
  const std::vector<std::vector<std::string>> changes{
      {"arm"}, {"disarm"}, {"policy", "strict"}, {"allow-lan", "on"}, {"reload"},
      {"tunnel", "set", "wg0", "--endpoint", "198.51.100.1:51820/udp"}, {"tunnel", "clear"}};
  for (const auto& c : changes) {
    CAPTURE(c.front());
    auto r = rig.ctl(c, As::nobody);
    CHECK(r.status == 4);
    CHECK(has(r.out, "access denied"));
  }
  auto b = rig.busctl({"call", "org.leakguard.Daemon1", "/org/leakguard/Daemon1", "org.leakguard.Daemon1", "Disarm"},
                      As::nobody);
  CHECK(b.status != 0);
  CHECK(has(b.out, "Access denied"));
  CHECK(rig.state() == "secured");
  CHECK(rig.status()["policy"] == "udp");
  CHECK(rig.table() == table);
  // A member of the control group (the stand-in for "leakguard") may.
  CHECK(rig.ctl({"policy", "strict"}, As::member).status == 0);
  CHECK(rig.status()["policy"] == "strict");
  // Per-interface counters name interfaces: root's status has them (its probe's STUN requests out
  // of eth0 were blocked there), nobody's has the totals only, in text and JSON.
  REQUIRE(rig.ctl({"probe"}).status == 0);
  REQUIRE(eventually([&] { return has(rig.ctl({"status"}).out, "by interface, since the table was made: eth0 "); }, 5s));
  const auto root_json = rig.status();
  CHECK(has(root_json["firewall"].value("blocked", ""), "via eth0"));
  const auto mine = rig.ctl({"status"}, As::nobody);
  CHECK(has(mine.out, "  counters:  blocked "));
  CHECK_FALSE(has(mine.out, "eth0"));
  CHECK_FALSE(has(mine.out, "wg0"));
  const auto mine_json = nlohmann::json::parse(rig.ctl({"status", "--json"}, As::nobody).out, nullptr, false);
  REQUIRE(mine_json.is_object());
  INFO(mine_json.dump());
  CHECK(has(mine_json["firewall"].value("blocked", ""), "blocked "));
  CHECK_FALSE(has(mine_json["firewall"].value("blocked", ""), "via"));
  CHECK_FALSE(has(mine_json.dump(), "eth0"));
  CHECK_FALSE(mine_json["firewall"].contains("counters"));
}

TEST_CASE("what a leak reveals reaches root and the group, not other users") {
  Rig rig(RigOptions{.lab = {.split_stun = true}, .armed = false});  // the probe finds a leak
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  const std::string mine = rig.dir + "/nobody.log", roots = rig.dir + "/root.log";
  lab::Process nobody("", {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", LEAKGUARDCTL_DIR "/leakguardctl",
                           "monitor", "--json"}, mine);
  lab::Process root("", {LEAKGUARDCTL_DIR "/leakguardctl", "monitor", "--json"}, roots);
  // Both listen once each has shown a signal everyone may receive: ask for rounds until then.
  REQUIRE(eventually([&] {
    return rig.ctl({"probe"}).status >= 0 && has(read_file(mine), "ProbeCompleted") && has(read_file(roots), "LeakDetected");
  }, 15s));
  // A transition into leaking while both listen: armed (the leak closed), disarmed again (the
  // next round finds it). StateChanged reaches everyone.
  REQUIRE(rig.ctl({"arm"}).status == 0);
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  REQUIRE_MESSAGE(rig.wait_state("leaking"), rig.output());
  REQUIRE(eventually([&] { return has(read_file(mine), "\"leaking\""); }, 10s));
  INFO(read_file(mine));
  CHECK_FALSE(has(read_file(mine), "LeakDetected"));
  CHECK_FALSE(has(read_file(mine), "203.0.113.2"));  // the leaked ISP address
  CHECK(has(read_file(roots), "203.0.113.2"));
  // GetStatus as nobody: leaking, and nothing of what leaked.
  auto st = rig.ctl({"status", "--json"}, As::nobody);
  CHECK(has(st.out, "leaking"));
  CHECK_FALSE(has(st.out, "203.0.113.2"));
}

TEST_CASE("the real wg-quick hook declares the tunnel on PostUp and clears it on PreDown") {
  // wg0 is no tunnel by configuration here: only the hook makes it one.
  Rig rig(RigOptions{.lab = {}, .armed = true, .interval = "60s", .tunnel_patterns = "[tun*]", .endpoint = false});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
  auto hook = [&](const std::string& action) { return rig.wg_quick_hook(action); };
  auto up = hook("up");
  INFO(up.out);
  REQUIRE(up.status == 0);
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:51820/udp"}));
  CHECK(rig.status()["fwmark"] == 51820);
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(hook("down").status == 0);
  CHECK(rig.status()["tunnel"]["declared"].is_null());
  CHECK_MESSAGE(rig.wait_state("blocking"), rig.output());
}

TEST_CASE("the real wg-quick: up through the block (PreUp, PostUp) to secured, down to blocking, up again") {
  // No tunnel yet, wg0 is no tunnel by configuration, and no endpoint is configured: only the
  // hooks wg-quick runs let the VPN through.
  Rig rig(RigOptions{.lab = {.tunnel = false}, .armed = true, .interval = "60s", .tunnel_patterns = "[tun*]", .endpoint = false});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
  const std::string conf = rig.wg_quick_config(Rig::WgHooks::pre_up_down);
  bool up = false;
  struct Down {  // wg-quick down even when a check below fails (the lab's end would also stop it)
    const Rig& rig;
    const std::string& conf;
    bool& up;
    ~Down() {
      if (up) (void)rig.wg_quick("down", conf);
    }
  } down_at_end{rig, conf, up};
  for (int round = 1; round <= 2; ++round) {
    CAPTURE(round);
    const auto r = rig.wg_quick("up", conf);
    INFO(r.out);
    REQUIRE(r.status == 0);
    up = true;
    // PreUp declared the configuration's endpoint (wg0 not yet there), PostUp what WireGuard
    // uses, with the mark wg-quick chose.
    CHECK(r.out.find("hooks/wg-quick pre-up wg0") != std::string::npos);
    const auto st = rig.status();
    CHECK(st["tunnel"]["declared"] == "wg0");
    CHECK(st["endpoints"] == nlohmann::json::array({"198.51.100.1:51820/udp"}));
    CHECK(st["fwmark"] == 51820);
    REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
    // No leak on the way: the round PreUp's declaration started was planned before wg0 existed,
    // and its routed probe's answer came back through wg0 (a false LEAK on every connect, before).
    CHECK_MESSAGE(rig.status()["leak_count"] == 0, rig.output());
    // What a STUN client on the machine sees: the VPN's exit.
    CHECK(rig.witness("203.0.113.3") == "203.0.113.66");
    const auto d = rig.wg_quick("down", conf);
    INFO(d.out);
    REQUIRE(d.status == 0);
    up = false;
    CHECK(rig.status()["tunnel"]["declared"].is_null());
    REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
    // Without the tunnel the same STUN request goes out of eth0 and is stopped (the control is
    // the exit seen above, through the same client and server).
    CHECK(rig.witness("203.0.113.3") == "");
  }
  // Without leakguardd the hooks fail, and wg-quick takes wg0 away again: the VPN does not come
  // up behind the kill switch's back (the block stays: on_stop keep).
  rig.daemon().stop(SIGTERM);
  const auto r = rig.wg_quick("up", conf);
  INFO(r.out);
  CHECK(r.status != 0);
  CHECK(r.out.find("leakguardd is not running") != std::string::npos);
  CHECK(rig.net.run("host", {"ip", "link", "show", "wg0"}).status != 0);
}

TEST_CASE("WireGuard roaming: wg set moves the declaration to the new endpoint and closes the old one, nothing leaves meanwhile") {
  // The real wg-quick (PreUp/PostUp hooks) brings up wgr0 (its own name: no other test's wg0
  // socket in /run/wireguard); then the user, or a VPN app switching servers, points the peer at
  // the provider's second address. WireGuard says nothing about it; the daemon reads the peers.
  Rig rig(RigOptions{.lab = {.tunnel = false, .split_stun = true}, .armed = true, .interval = "60s", .tunnel_patterns = "[tun*]", .endpoint = false});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
  // The provider answers on 198.51.100.2 too (wireguard-go listens on every address and replies
  // from the one it was reached at).
  REQUIRE(rig.net.run("vpn", {"ip", "addr", "add", "198.51.100.2/32", "dev", "lo"}).status == 0);
  REQUIRE(rig.net.run("inet", {"ip", "route", "add", "198.51.100.2/32", "via", "203.0.113.66"}).status == 0);
  // What reaches the provider's two addresses, and what reaches the STUN server from the ISP's
  // address (sent outside the tunnel), counted where they arrive.
  const std::string count = R"(table inet lgt_roam {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    ip daddr 198.51.100.1 udp dport 51820 counter comment "old"
    ip daddr 198.51.100.2 udp dport 51820 counter comment "new"
    ip saddr 203.0.113.2 ip daddr 203.0.113.3 counter comment "out"
  }
})";
  { std::ofstream(rig.dir + "/count.nft") << count; }
  REQUIRE(rig.net.run("inet", {"nft", "-f", rig.dir + "/count.nft"}).status == 0);
  auto counted = [&](const std::string& which) -> long {
    const auto t = rig.net.run("inet", {"nft", "list", "table", "inet", "lgt_roam"}).out;
    const auto at = t.find("comment \"" + which + "\"");
    const auto p = t.rfind("packets ", at);
    return at == std::string::npos || p == std::string::npos ? -1 : std::stol(t.substr(p + 8));
  };
  const std::string conf = rig.wg_quick_config(Rig::WgHooks::pre_up_down, "wgr0");
  bool up = false;
  struct Down {
    const Rig& rig;
    const std::string& conf;
    bool& up;
    ~Down() {
      if (up) (void)rig.wg_quick("down", conf);
    }
  } down_at_end{rig, conf, up};
  const auto r = rig.wg_quick("up", conf);
  INFO(r.out);
  REQUIRE(r.status == 0);
  up = true;
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:51820/udp"}));
  auto through_tunnel = [&] { return rig.net.run("host", {"ping", "-c1", "-W1", "-q", "-I", "wgr0", "100.64.0.1"}).status == 0; };
  REQUIRE(through_tunnel());

  // Datagrams toward the STUN server via eth0 all along (outside the tunnel: the kill switch's job).
  const std::string stop = rig.dir + "/sender.stop";
  lab::Process sender(rig.net.ns("host"),
                      {"python3", "-c",
                       "import os, socket, sys, time\n"
                       "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                       "while not os.path.exists(sys.argv[1]):\n"
                       "    try: s.sendto(b'roam', ('203.0.113.3', 40000))\n"
                       "    except OSError: pass\n"
                       "    time.sleep(0.005)\n",
                       stop},
                      rig.dir + "/sender.log");
  const long old_before = counted("old"), new_before = counted("new");
  REQUIRE(old_before > 0);  // the tunnel's own packets so far
  CHECK(new_before == 0);

  // Roam.
  const auto t0 = std::chrono::steady_clock::now();
  std::string server_key;
  std::getline(std::ifstream(rig.net.var("STATE") + "/server.pub"), server_key);
  auto set = lab::run({lab::lab_script(), "exec", "--id", rig.net.id(), "host", "wg", "set", "wgr0", "peer", server_key,
                       "endpoint", "198.51.100.2:51820"});
  INFO(set.out);
  REQUIRE(set.status == 0);
  // The declaration follows within a poll: the new address in, the old one out.
  REQUIRE_MESSAGE(eventually([&] { return rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.2:51820/udp"}); }, 5s),
                  rig.output());
  const std::string table = rig.table();
  CHECK(has(table, "198.51.100.2"));
  CHECK_FALSE(has(table, "198.51.100.1 "));
  CHECK_FALSE(has(table, "198.51.100.1,"));
  CHECK_MESSAGE(has(rig.output(), "its WireGuard peers now send to 198.51.100.2:51820/udp (declared: 198.51.100.1:51820/udp)"), rig.output());
  // And the tunnel carries traffic again, through the new address.
  REQUIRE(eventually(through_tunnel, 10s));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("wg set -> the tunnel answers through the new endpoint: " << took.count() << " ms (the peers are read every 1 s)");
  CHECK(counted("new") > 0);
  const long old_after = counted("old");
  CHECK(rig.status()["tunnel"]["declared"] == "wgr0");
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // Nothing new reaches the old address once the tunnel has moved (keepalives went to the new one).
  CHECK(eventually([&] { return counted("new") > 2; }, 10s));
  CHECK(counted("old") == old_after);
  // Nothing of the sender left outside the tunnel at any time; the control: disarmed, it does.
  CHECK(counted("out") == 0);
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  CHECK(eventually([&] { return counted("out") > 0; }, 5s));
  { std::ofstream(stop) << ""; }
  sender.stop(SIGTERM);
}

TEST_CASE("bad D-Bus input gets an error reply and changes nothing") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string table = rig.table();
  const auto before = rig.status();
  auto call = [&](std::vector<std::string> rest) {
    std::vector<std::string> a{"call", "org.leakguard.Daemon1", "/org/leakguard/Daemon1", "org.leakguard.Daemon1"};
    a.insert(a.end(), rest.begin(), rest.end());
    return rig.busctl(a);
  };
  std::vector<std::string> many{"SetTunnel", "sasu", "wg0", "10000"};
  for (int i = 0; i < 10000; ++i) many.push_back("198.51." + std::to_string(100 + i / 60000) + "." + std::to_string(i % 250) + ":" + std::to_string(1000 + i));
  many.push_back("0");
  struct Case {
    const char* what;
    std::vector<std::string> args;
    const char* reply;
  };
  const Case cases[] = {
      {"10,000 endpoints", many, "endpoints"},
      {"interface with a slash", {"SetTunnel", "sasu", "a/b", "1", "198.51.100.1:51820", "0"}, "interface"},
      {"interface too long", {"SetTunnel", "sasu", "wg0123456789abcdef", "1", "198.51.100.1:51820", "0"}, "interface"},
      {"interface with a space", {"SetTunnel", "sasu", "wg 0", "1", "198.51.100.1:51820", "0"}, "interface"},
      {"a wildcard for a name: eth0 would be the tunnel", {"SetTunnel", "sasu", "e*", "1", "198.51.100.1:51820", "0"}, "literally"},
      {"escaped bytes in a name", {"SetTunnel", "sasu", "wg\\x80", "1", "198.51.100.1:51820", "0"}, "interface"},
      {"malformed endpoint", {"SetTunnel", "sasu", "wg0", "1", "198.51.100.1:99999", "0"}, "endpoints"},
      {"unknown policy", {"SetPolicy", "s", "loose"}, "policy"},
      {"wrong signature", {"SetPolicy", "b", "true"}, ""},
      {"wrong signature, tunnel", {"SetTunnel", "s", "wg0"}, ""},
      {"no such method", {"Explode"}, ""},
  };
  for (const auto& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    auto r = call(c.args);
    CAPTURE(r.out);
    CHECK(r.status != 0);
    CHECK(has(r.out, c.reply));
  }
  CHECK(rig.daemon().running());
  auto after = rig.status();
  INFO(rig.output());
  CHECK(after["state"] == before["state"]);
  CHECK(after["endpoints"] == before["endpoints"]);
  CHECK(after["policy"] == before["policy"]);
  CHECK(rig.table() == table);
  // The control: a good call through the same path does change the rules.
  CHECK(call({"SetPolicy", "s", "strict"}).status == 0);
  CHECK(rig.status()["policy"] == "strict");
  CHECK(rig.table() != table);
}

TEST_CASE("the bus goes away and comes back: enforcement never stops, the name comes back") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  rig.bus.restart();  // SIGKILL, like a crash, and a new bus on the same address
  CHECK(rig.witness("203.0.113.3") == "");  // still blocked meanwhile
  // The name comes back on the new bus (asked through the bus: root's leakguardctl would take the
  // private socket).
  auto on_bus = [&] {
    return rig.busctl({"get-property", "org.leakguard.Daemon1", "/org/leakguard/Daemon1", "org.leakguard.Daemon1", "State"}).out;
  };
  CHECK_MESSAGE(eventually([&] { return on_bus() == "s \"secured\"\n"; }, 10s), rig.output());
  CHECK(rig.daemon().running());
  CHECK(rig.ctl({"policy", "strict"}).status == 0);  // and it can be steered again
  // The control for "still blocked": disarmed, the same witness gets the ISP address.
  CHECK(rig.ctl({"disarm"}).status == 0);
  CHECK(eventually([&] { return rig.witness("203.0.113.3") == "203.0.113.2"; }, 10s));
}

// Root's way in that a flood on the system bus cannot slow (issue 14, finding 1): the private
// socket in the runtime directory, peer-to-peer D-Bus without dbus-daemon.
TEST_CASE("root's private socket: every command without the bus, others hung up on, a stale socket replaced") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  REQUIRE(eventually([&] { return rig.ctl_without_bus({"status"}).status == 0; }, 10s));

  // The socket is the daemon's user's alone (0600), in a 0700 directory.
  struct stat st{};
  REQUIRE(::stat(rig.private_socket.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);

  // Without any bus, root still reads and steers everything; the control: the same command
  // through the bus alone (no private socket) is what fails when there is no bus.
  auto st_out = rig.ctl_without_bus({"status"});
  CHECK(has(st_out.out, "secured"));
  CHECK(has(st_out.out, "198.51.100.1"));  // root's full status
  CHECK(rig.ctl_without_bus({"policy", "strict"}).status == 0);
  CHECK(has(rig.table(), "comment \"tcp-out\""));
  CHECK(rig.ctl_without_bus({"policy", "udp"}).status == 0);
  CHECK(rig.ctl_without_bus({"tunnel", "set", "wg0", "--endpoint", "198.51.100.1:51820/udp", "--fwmark", "51820"}).status == 0);
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  CHECK(rig.ctl_without_bus({"tunnel", "set", "--exclusive", "tun5", "--endpoint", "198.51.100.5:1194/udp"}).status == 7);
  CHECK(rig.ctl_without_bus({"tunnel", "clear", "wg1"}).out.find("not the declared one") != std::string::npos);
  CHECK(rig.ctl_without_bus({"tunnel", "clear", "wg0"}).status == 0);
  CHECK(rig.status()["tunnel"]["declared"].is_null());
  auto probe = rig.ctl_without_bus({"probe"});
  CHECK(probe.status == 0);
  CHECK(has(probe.out, "ok"));
  // The daemon's refusals keep their names: a bad argument is exit 2, as through the bus.
  auto bad = rig.ctl_without_bus({"tunnel", "set", "e*", "--endpoint", "198.51.100.1:51820/udp"});
  CHECK(bad.status == 2);
  CHECK(has(bad.out, "refused the arguments"));
  setenv("LEAKGUARD_PRIVATE_SOCKET", "", 1);  // never the private socket: the bus alone, and it is out of reach
  auto no_bus = rig.ctl_without_bus({"status"});
  CHECK(no_bus.status == 3);
  // The daemon runs; what is missing is the bus, and that is what is said.
  CHECK(has(no_bus.out, "cannot reach the system bus (" + rig.dir + "/no-bus: "));
  CHECK_FALSE(has(no_bus.out, "not running"));
  setenv("LEAKGUARD_PRIVATE_SOCKET", rig.private_socket.c_str(), 1);

  // Someone who may not control who reaches the socket anyway (the modes opened up here) is hung
  // up on; leakguardctl falls back to the bus, which is out of reach: "not running".
  REQUIRE(::chmod(rig.state_dir.c_str(), 0755) == 0);
  REQUIRE(::chmod(rig.private_socket.c_str(), 0666) == 0);
  auto nobody = rig.ctl_without_bus({"disarm"}, As::nobody);
  CHECK(nobody.status == 3);
  CHECK(eventually([&] { return has(rig.output(), "private socket: hung up on uid 65534"); }, 5s));
  CHECK(rig.status()["armed"] == true);
  REQUIRE(::chmod(rig.state_dir.c_str(), 0700) == 0);

  // A daemon that is stopped (or stuck) lets the kernel accept the connection into its backlog, and
  // nothing answers: said so after a few seconds (sd-bus alone waited 90 s, then the bus 25 s more,
  // and a VPN hook with them), not looked for on the bus. The control: answered again once it runs.
  REQUIRE(::kill(rig.daemon().pid(), SIGSTOP) == 0);
  auto stopped = rig.ctl({"status"});
  REQUIRE(::kill(rig.daemon().pid(), SIGCONT) == 0);
  CHECK(stopped.status == 3);
  CHECK_MESSAGE(has(stopped.out, "leakguardd is not answering (" + rig.private_socket + " accepted the connection"), stopped.out);
  CHECK(eventually([&] { return rig.ctl_without_bus({"status"}).status == 0; }, 10s));

  // kill -9 leaves the socket behind: nobody answers it, and leakguardctl goes to the bus (the
  // control: with the bus, the answer is "not running", not a hang or a crash). A new daemon
  // replaces it.
  rig.daemon().stop(SIGKILL, false);
  REQUIRE(eventually([&] { return !rig.daemon().running(); }, 10s));
  REQUIRE(::stat(rig.private_socket.c_str(), &st) == 0);
  CHECK(rig.ctl({"status"}).status == 3);
  rig.start();
  CHECK_MESSAGE(eventually([&] { return rig.ctl_without_bus({"status"}).status == 0; }, 15s), rig.output());
  // And a clean stop takes it away.
  rig.daemon().stop(SIGTERM, false);
  REQUIRE(eventually([&] { return !rig.daemon().running(); }, 10s));
  CHECK(::stat(rig.private_socket.c_str(), &st) != 0);
}

TEST_CASE("what the CLI says is what happened: an unverified round, settings while disarmed") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // Disarmed there is no table: a policy or LAN setting is kept for the next arm, and said so.
  REQUIRE(rig.ctl({"disarm"}).status == 0);
  auto pol = rig.ctl({"policy", "strict"});
  CHECK(pol.status == 0);
  CHECK(has(pol.out, "policy strict kept: the kill switch is disarmed (no rules installed); it takes effect when armed"));
  CHECK_FALSE(has(pol.out, "is blocked"));
  auto lan = rig.ctl({"allow-lan", "on"});
  CHECK(lan.status == 0);
  CHECK(has(lan.out, "allow-lan on kept: the kill switch is disarmed"));
  CHECK(rig.table().empty());
  // Armed, the kept policy is what the rules do, and the same command says what they block.
  REQUIRE(rig.ctl({"arm"}).status == 0);
  CHECK(has(rig.table(), "comment \"tcp-out\""));
  CHECK(has(rig.ctl({"policy", "strict"}).out, "policy strict: all IP outside the tunnel is blocked"));
  REQUIRE(rig.ctl({"allow-lan", "off"}).status == 0);
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // The control: a round the tunnel answers is ok, exit 0.
  auto ok = rig.ctl({"probe"});
  CHECK(ok.status == 0);
  CHECK(ok.out.starts_with("verdict: ok\n"));
  // The VPN server's end of the tunnel goes down: the host's wg0 is still up, nothing leaks, and
  // nothing answers through the tunnel. The round is unverified, and probe says so (exit 6).
  REQUIRE(rig.net.run("vpn", {"ip", "link", "set", "wg0", "down"}).status == 0);
  auto un = rig.ctl({"probe"});
  INFO(un.out);
  CHECK(un.status == 6);
  CHECK(un.out.starts_with("verdict: unverified (the tunnel did not answer: no VPN exit seen"));
  CHECK_FALSE(has(un.out, "verdict: ok"));
  auto j = nlohmann::json::parse(rig.ctl({"probe", "--json"}).out, nullptr, false);
  CHECK(j.value("verdict", "") == "unverified");
  CHECK(j.value("report_verdict", "") == "ok");
  CHECK(rig.state() == "unverified");
  CHECK(has(rig.ctl({"status"}).out, "last probe: unverified"));
}

TEST_CASE("probe while the daemon has no usable configuration: the reason, exit 5") {
  Rig rig;
  const std::string good = read_file(rig.config);
  std::ofstream(rig.config) << good << "alow_lan: true\n";  // a typo: state error, the emergency block
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("error"), rig.output());
  for (const bool json : {false, true}) {
    CAPTURE(json);
    auto r = rig.ctl(json ? std::vector<std::string>{"probe", "--json"} : std::vector<std::string>{"probe"});
    INFO(r.out);
    CHECK(r.status == 5);
    CHECK(has(r.out, "configuration"));
    CHECK(has(r.out, "not usable"));
    CHECK_FALSE(has(r.out, "verdict: -"));
  }
  // Through the bus too (not root's private socket), and nothing was probed.
  auto b = rig.busctl({"call", "org.leakguard.Daemon1", "/org/leakguard/Daemon1", "org.leakguard.Daemon1", "ProbeNow"});
  CHECK(b.status != 0);
  CHECK(has(b.out, "not usable"));
}

TEST_CASE("monitor follows the daemon's coming and going, and outlives the bus") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  const std::string events = rig.dir + "/monitor.json", lines = rig.dir + "/monitor.txt";
  lab::Process json("", {LEAKGUARDCTL_DIR "/leakguardctl", "monitor", "--json"}, events);
  lab::Process text("", {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", LEAKGUARDCTL_DIR "/leakguardctl",
                         "monitor"}, lines);
  REQUIRE(eventually([&] {
    return rig.ctl({"probe"}).status == 0 && has(read_file(events), "ProbeCompleted") && has(read_file(lines), "probe: ok");
  }, 15s));
  auto count = [](const std::string& s, const std::string& part) {
    std::size_t n = 0;
    for (auto at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
    return n;
  };
  auto seen = [&](const std::string& file, const std::string& part, std::size_t n) {
    return eventually([&] { return count(read_file(file), part) >= n; }, 15s);
  };

  // kill -9: nothing said goodbye; the bus says the name has no owner any more.
  rig.daemon().stop(SIGKILL, false);
  CHECK_MESSAGE(seen(events, "{\"event\":\"daemon-stopped\"}", 1), read_file(events));
  CHECK_MESSAGE(seen(lines, "leakguardd stopped: protection not verified", 1), read_file(lines));
  rig.start();
  CHECK_MESSAGE(seen(events, "{\"event\":\"daemon-back\",\"state\":", 1), read_file(events));
  CHECK_MESSAGE(seen(lines, "leakguardd is back: ", 1), read_file(lines));
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // SIGTERM (the block stays: on_stop keep), then back again.
  rig.daemon().stop(SIGTERM);
  CHECK_MESSAGE(seen(events, "\"daemon-stopped\"", 2), read_file(events));
  CHECK_MESSAGE(seen(lines, "leakguardd stopped: protection not verified", 2), read_file(lines));
  rig.start();
  CHECK_MESSAGE(seen(events, "\"daemon-back\"", 2), read_file(events));
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // The bus goes away for a while: monitor says so once, keeps trying, and is back with it.
  rig.bus.stop();
  CHECK_MESSAGE(seen(events, "\"bus-lost\"", 1), read_file(events));
  CHECK_MESSAGE(seen(lines, "lost the system bus (", 1), read_file(lines));
  std::this_thread::sleep_for(2s);  // several attempts fail meanwhile (not a condition to wait for: time is the point)
  CHECK(json.running());
  CHECK(text.running());
  CHECK(count(read_file(events), "\"bus-lost\"") == 1);
  rig.bus.restart();
  CHECK_MESSAGE(seen(events, "\"bus-back\"", 1), read_file(events));
  CHECK_MESSAGE(seen(events, "\"daemon-back\"", 3), read_file(events));
  CHECK_MESSAGE(seen(lines, "leakguardd is back: ", 3), read_file(lines));
  // And it follows the daemon's signals on the new bus.
  REQUIRE_MESSAGE(eventually([&] { return rig.busctl({"call", "org.leakguard.Daemon1", "/org/leakguard/Daemon1",
                                                       "org.leakguard.Daemon1", "ProbeNow"}).status == 0; }, 10s),
                  rig.output());
  CHECK_MESSAGE(seen(events, "ProbeCompleted", 2), read_file(events));
  CHECK(json.running());
  CHECK(text.running());
}
