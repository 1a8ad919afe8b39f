// The real OpenVPN (Debian's openvpn) drives leakguard (issue 16, item 2): a server in the lab's
// VPN-provider namespace (UDP 1194 and TCP 443; certificates made here with openssl), the client
// on the user's machine with the shipped hook — `--pre-start` before OpenVPN starts (as an
// ExecStartPre= of openvpn-client@.service runs it), `up` and `down` as its scripts, OpenVPN's
// own `mark` — and leakguardd blocking from the start.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/rig/openvpn.hpp"
#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
using leakguard::e2e::eventually;
using leakguard::e2e::OpenvpnProvider;
using leakguard::e2e::read_all;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;
namespace lab = leakguard::lab;

namespace {

const std::string kHook = OpenvpnProvider::hook();

/// The path of OpenVPN's down-root plugin (its directory is the architecture's).
std::string down_root_plugin() {
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib")) {
    const auto p = e.path() / "openvpn/plugins/openvpn-plugin-down-root.so";
    if (std::filesystem::exists(p)) return p.string();
  }
  return "";
}

struct Case {
  const char* name;
  const char* proto;  // OpenVPN's
  int port;
  bool drop_privileges;  // user nobody / group nogroup, and `down` through the down-root plugin
};

/// leakguardd blocking in the lab (no WireGuard tunnel, tun* no tunnel by configuration, no
/// endpoint configured: only the hook lets OpenVPN through), and the provider's OpenVPN servers.
/// `strict`: everything is blocked outside the tunnel, TCP too (the policy udp lets TCP out).
struct Lab {
  Rig rig;
  std::unique_ptr<OpenvpnProvider> provider;
  explicit Lab(const std::string& policy = "udp")
      : rig(RigOptions{.lab = {.tunnel = false}, .armed = true, .policy = policy, .interval = "60s", .tunnel_patterns = "[wg*]", .endpoint = false}) {
    rig.start();
    REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
    provider = std::make_unique<OpenvpnProvider>(rig);
  }
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

/// `conf` with every `from` replaced by `to`.
void rewrite(const std::string& conf, const std::string& from, const std::string& to) {
  std::string text = read_all(conf);
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) text.replace(at, from.size(), to);
  std::ofstream(conf) << text;
}

/// `--pre-start`, then OpenVPN with `conf` (its output in `log`) until it is connected and
/// leakguard says `secured`.
std::unique_ptr<lab::Process> connect(Lab& world, const std::string& conf, const std::string& log) {
  const auto pre = world.provider->pre_start(conf);
  REQUIRE_MESSAGE(pre.status == 0, pre.out);
  auto client = world.provider->start_client(conf, log);
  REQUIRE_MESSAGE(eventually([&] { return count(read_all(log), "Initialization Sequence Completed") == 1; }, 20s), read_all(log));
  REQUIRE_MESSAGE(world.rig.wait_state("secured", 20s), world.rig.output());
  return client;
}

/// SIGTERM: OpenVPN exits, and its down clears the declaration.
void exits_and_clears(const Rig& rig, lab::Process& client) {
  CHECK(client.stop(SIGTERM) == 0);
  CHECK(eventually([&] { return rig.status()["tunnel"]["declared"].is_null(); }, 10s));
}

}  // namespace

TEST_CASE("the real OpenVPN connects through the block, declared before it starts: secured, and down clears it") {
  Lab world;
  Rig& rig = world.rig;
  const OpenvpnProvider& vpn = *world.provider;
  const std::string plugin = down_root_plugin();
  REQUIRE_MESSAGE(!plugin.empty(), "OpenVPN's down-root plugin is not installed");
  for (const Case& c : {Case{"udp", "udp", 1194, false}, Case{"tcp", "tcp-client", 443, false},
                        Case{"udp, privileges dropped", "udp", 1194, true}}) {
    const std::string name = c.name;
    CAPTURE(name);
    const std::string conf = vpn.client_config(
        "proto " + std::string(c.proto) + "\nremote 198.51.100.1 " + std::to_string(c.port) + "\n",
        c.drop_privileges ? "user nobody\ngroup nogroup\nplugin " + plugin + " \"" + kHook + " --down\"\n"  // down as root, after the drop
                          : "down " + kHook + "\n");
    // Before OpenVPN starts (ExecStartPre=): its TLS handshake must not meet the block.
    const auto pre = vpn.pre_start(conf);
    REQUIRE_MESSAGE(pre.status == 0, pre.out);
    auto st = rig.status();
    CHECK(st["tunnel"]["declared"] == "tun0");
    CHECK(st["endpoints"] == nlohmann::json::array({"198.51.100.1:" + std::to_string(c.port) + "/" +
                                                    (std::string(c.proto) == "udp" ? "udp" : "tcp")}));
    CHECK(st["fwmark"] == 51820);

    const std::string log = rig.dir + "/client.log";
    auto client = vpn.start_client(conf, log);
    INFO(read_all(log));
    REQUIRE_MESSAGE(eventually([&] { return read_all(log).find("Initialization Sequence Completed") != std::string::npos; }, 20s),
                    read_all(log));
    REQUIRE_MESSAGE(rig.wait_state("secured", 20s), rig.output());
    st = rig.status();
    CHECK(st["tunnel"]["declared"] == "tun0");  // up declared what OpenVPN connected to
    CHECK(st["fwmark"] == 51820);
    CHECK(rig.witness("203.0.113.3") == "203.0.113.66");  // through the tunnel: the VPN's exit

    // Disconnect: `down` (or the down-root plugin, as root after the drop) clears the declaration.
    CHECK(client->stop(SIGTERM) == 0);
    CHECK_MESSAGE(eventually([&] { return rig.status()["tunnel"]["declared"].is_null(); }, 10s), read_all(log));
    REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
    CHECK(rig.witness("203.0.113.3") == "");  // out of eth0 now: stopped (the control: the exit above)
  }
}

TEST_CASE("the real OpenVPN fails over to its next remote through the block, and a restart keeps it declared") {
  Lab world;
  Rig& rig = world.rig;
  const OpenvpnProvider& vpn = *world.provider;
  // The first server refuses (nothing listens on TCP 4443): OpenVPN goes on to the next remote.
  const std::string conf =
      vpn.client_config("remote 198.51.100.1 4443 tcp-client\nremote 198.51.100.1 1194 udp\n", "down " + kHook + "\n");
  const auto pre = vpn.pre_start(conf);
  REQUIRE_MESSAGE(pre.status == 0, pre.out);
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:4443/tcp", "198.51.100.1:1194/udp"}));
  const std::string log = rig.dir + "/client.log";
  auto client = vpn.start_client(conf, log);
  INFO(read_all(log));
  REQUIRE_MESSAGE(eventually([&] { return count(read_all(log), "Initialization Sequence Completed") == 1; }, 20s), read_all(log));
  REQUIRE_MESSAGE(rig.wait_state("secured", 20s), rig.output());
  // up declared the server it connected to first, and kept the configuration's others (OpenVPN
  // passes the configuration's path as `config`).
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:1194/udp", "198.51.100.1:4443/tcp"}));
  // A restart (SIGUSR1, as after a network change): down says why, the declaration stays, and
  // OpenVPN reconnects through the block.
  REQUIRE(::kill(client->pid(), SIGUSR1) == 0);
  REQUIRE_MESSAGE(eventually([&] { return count(read_all(log), "Initialization Sequence Completed") == 2; }, 20s), read_all(log));
  CHECK(read_all(log).find("OpenVPN restarts (sigusr1): tun0 stays declared") != std::string::npos);
  CHECK(rig.status()["tunnel"]["declared"] == "tun0");
  CHECK_MESSAGE(rig.wait_state("secured", 20s), rig.output());
  CHECK(rig.witness("203.0.113.3") == "203.0.113.66");
  exits_and_clears(rig, *client);
}

TEST_CASE("the real OpenVPN with a hex mark: OpenVPN marks nothing, so no fwmark is declared and it connects") {
  // OpenVPN reads `mark` with atoi(): "0xca6c" is 0, its packets carry no mark. Declared with the
  // mark 51820, the endpoint would let none of them through (EHOSTUNREACH, for good).
  Lab world;
  Rig& rig = world.rig;
  const OpenvpnProvider& vpn = *world.provider;
  const std::string conf = vpn.client_config("proto udp\nremote 198.51.100.1 1194\n", "down " + kHook + "\n");
  rewrite(conf, "mark 51820", "mark 0xca6c");  // the configuration's and the up hook's
  const auto pre = vpn.pre_start(conf);
  REQUIRE_MESSAGE(pre.status == 0, pre.out);
  CHECK(pre.out.find("OpenVPN reads 'mark 0xca6c'") != std::string::npos);
  CHECK(rig.status()["fwmark"].is_null());
  const std::string log = rig.dir + "/client.log";
  auto client = vpn.start_client(conf, log);
  INFO(read_all(log));
  REQUIRE_MESSAGE(eventually([&] { return read_all(log).find("Initialization Sequence Completed") != std::string::npos; }, 20s),
                  read_all(log));
  REQUIRE_MESSAGE(rig.wait_state("secured", 20s), rig.output());
  CHECK(rig.status()["tunnel"]["declared"] == "tun0");
  CHECK(rig.status()["fwmark"].is_null());  // up (--mark 0xca6c) read it as OpenVPN does too
  CHECK(client->stop(SIGTERM) == 0);
}

TEST_CASE("the real OpenVPN with <connection> blocks: each block's own proto and port declared, it connects to the first") {
  Lab world;
  Rig& rig = world.rig;
  const OpenvpnProvider& vpn = *world.provider;
  const std::string conf = vpn.client_config(
      "<connection>\nremote 198.51.100.1 1194\nproto udp\n</connection>\n"
      "<connection>\nremote 198.51.100.1 443\nproto tcp-client\n</connection>\n",
      "down " + kHook + "\n");
  const auto pre = vpn.pre_start(conf);
  REQUIRE_MESSAGE(pre.status == 0, pre.out);
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:1194/udp", "198.51.100.1:443/tcp"}));
  const std::string log = rig.dir + "/client.log";
  auto client = vpn.start_client(conf, log);
  INFO(read_all(log));
  // The first block, over UDP, at once (declared as TCP, its handshake would meet the block until
  // OpenVPN gave up on it).
  REQUIRE_MESSAGE(eventually([&] { return read_all(log).find("Initialization Sequence Completed") != std::string::npos; }, 10s),
                  read_all(log));
  CHECK(read_all(log).find("UDPv4 link remote: [AF_INET]198.51.100.1:1194") != std::string::npos);
  REQUIRE_MESSAGE(rig.wait_state("secured", 20s), rig.output());
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:1194/udp", "198.51.100.1:443/tcp"}));
  CHECK(client->stop(SIGTERM) == 0);
}

TEST_CASE("the real OpenVPN re-reads its configuration on SIGHUP: the edited remote is declared and it reconnects through the block") {
  Lab world("strict");  // the edited remote is TCP: blocked too
  Rig& rig = world.rig;
  const OpenvpnProvider& vpn = *world.provider;
  const std::string conf = vpn.client_config("remote 198.51.100.1 1194 udp\n", "down " + kHook + "\n");
  const std::string log = rig.dir + "/client.log";
  INFO(read_all(log));
  auto client = connect(world, conf, log);
  // The user moves the configuration to the provider's TCP server and sends SIGHUP: OpenVPN reads
  // it again and connects there; down declared its servers (before, the old remote stayed declared
  // and the new one's handshake met the block for good).
  rewrite(conf, "remote 198.51.100.1 1194 udp", "remote 198.51.100.1 443 tcp-client");
  REQUIRE(::kill(client->pid(), SIGHUP) == 0);
  REQUIRE_MESSAGE(eventually([&] { return count(read_all(log), "Initialization Sequence Completed") == 2; }, 20s), read_all(log));
  CHECK(read_all(log).find("OpenVPN restarts (sighup) and reads " + conf + " again: tun0 declared with its servers") != std::string::npos);
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:443/tcp"}));
  CHECK(rig.status()["tunnel"]["declared"] == "tun0");
  CHECK_MESSAGE(rig.wait_state("secured", 20s), rig.output());
  exits_and_clears(rig, *client);
}

TEST_CASE("the real OpenVPN with persist-tun: SIGUSR1 while the server is unreachable, then SIGTERM, clears the declaration") {
  // Without persist-tun OpenVPN closes tun0 on the restart (down runs: "stays declared") and,
  // never reconnected, runs nothing at the SIGTERM; with it tun0 stays and down runs at the exit.
  Lab world;
  Rig& rig = world.rig;
  const OpenvpnProvider& vpn = *world.provider;
  const std::string conf = vpn.client_config("remote 198.51.100.1 1194 udp\n", "persist-tun\ndown " + kHook + "\n");
  const std::string log = rig.dir + "/client.log";
  INFO(read_all(log));
  auto client = connect(world, conf, log);
  // The server goes out of reach (its packets dropped where it lives), and OpenVPN restarts.
  REQUIRE(rig.net.run("vpn", {"nft", "add table inet lgt_gone; add chain inet lgt_gone in { type filter hook input priority 0; }; "
                                     "add rule inet lgt_gone in udp dport 1194 drop"}).status == 0);
  REQUIRE(::kill(client->pid(), SIGUSR1) == 0);
  REQUIRE_MESSAGE(eventually([&] { return count(read_all(log), "SIGUSR1[hard,] received, process restarting") == 1; }, 10s), read_all(log));
  CHECK(rig.status()["tunnel"]["declared"] == "tun0");
  exits_and_clears(rig, *client);  // with persist-tun, down ran at the exit
}
