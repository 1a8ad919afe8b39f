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

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
using leakguard::e2e::eventually;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;
namespace lab = leakguard::lab;

namespace {

const std::string kHook = LEAKGUARD_SOURCE_DIR "/systemd/hooks/openvpn";

/// A CA, a server and a client certificate (ECDSA P-256, a day), made with openssl in `dir`.
void make_pki(const std::string& dir) {
  lab::run({"mkdir", "-p", "-m", "0700", dir});
  auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    const auto r = lab::run(args);
    REQUIRE_MESSAGE(r.status == 0, r.out);
  };
  const std::vector<std::string> ec{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  openssl(with({"req", "-x509"}, with(ec, {"-keyout", dir + "/ca.key", "-out", dir + "/ca.crt", "-days", "1", "-subj", "/CN=lgt-ca"})));
  for (const std::string who : {"server", "client"}) {
    openssl(with({"req"}, with(ec, {"-keyout", dir + "/" + who + ".key", "-out", dir + "/" + who + ".csr", "-subj", "/CN=" + who})));
    // OpenVPN's remote-cert-tls checks the key usage and the extended key usage.
    std::ofstream(dir + "/" + who + ".ext") << "extendedKeyUsage=" << (who == "server" ? "serverAuth" : "clientAuth")
                                            << "\nkeyUsage=digitalSignature,keyAgreement\n";
    openssl({"x509", "-req", "-in", dir + "/" + who + ".csr", "-CA", dir + "/ca.crt", "-CAkey", dir + "/ca.key",
             "-CAcreateserial", "-out", dir + "/" + who + ".crt", "-days", "1", "-extfile", dir + "/" + who + ".ext"});
  }
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

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

/// The lab with leakguardd blocking (no WireGuard tunnel, tun* no tunnel by configuration, no
/// endpoint configured: only the hook lets OpenVPN through) and the VPN provider's OpenVPN
/// servers on 198.51.100.1, UDP 1194 and TCP 443, their tunnels NATed to the exit.
struct Provider {
  Rig rig{RigOptions{.lab = {.tunnel = false}, .armed = true, .interval = "60s", .tunnel_patterns = "[wg*]", .endpoint = false}};
  std::string pki = rig.dir + "/pki";
  std::vector<std::unique_ptr<lab::Process>> servers;
  const std::string env_path = "PATH=" LEAKGUARDCTL_DIR ":/usr/sbin:/usr/bin:/sbin:/bin";
  const std::string env_bus = "DBUS_SYSTEM_BUS_ADDRESS=" + rig.bus.address();

  Provider() {
    rig.start();
    REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
    make_pki(pki);
    REQUIRE(rig.net.run("vpn", {"nft", "add", "rule", "inet", "lab_nat", "post", "oifname", "up0", "ip", "saddr", "100.64.0.0/22",
                                "masquerade"}).status == 0);
    for (const auto& [proto, port, net] : {std::tuple{"udp", "1194", "100.64.1.0"}, std::tuple{"tcp-server", "443", "100.64.2.0"}}) {
      servers.push_back(std::make_unique<lab::Process>(
          rig.net.ns("vpn"),
          std::vector<std::string>{"openvpn", "--dev", "tun", "--topology", "subnet", "--server", net, "255.255.255.0", "--proto",
                                   proto, "--local", "198.51.100.1", "--port", port, "--ca", pki + "/ca.crt", "--cert",
                                   pki + "/server.crt", "--key", pki + "/server.key", "--dh", "none", "--push",
                                   "redirect-gateway def1", "--keepalive", "10", "60", "--disable-dco", "--verb", "3"},
          rig.dir + "/server-" + std::string(port) + ".log"));
    }
  }
  /// A client configuration: `remotes` lines, then `extra` lines; OpenVPN's own mark 51820, the
  /// hook as `up`.
  std::string client_config(const std::string& remotes, const std::string& extra) const {
    const std::string conf = rig.dir + "/client.conf";
    std::ofstream f(conf);
    f << "client\ndev tun0\n" << remotes << "nobind\n"
      << "ca " << pki << "/ca.crt\ncert " << pki << "/client.crt\nkey " << pki << "/client.key\n"
      << "remote-cert-tls server\ndisable-dco\nverb 3\nconnect-retry 1\n"
      << "mark 51820\nscript-security 2\nup \"" << kHook << " --mark 51820\"\n"
      // OpenVPN hands its scripts only its own variables: the test's leakguardctl and private
      // bus are named to them (installed, /usr/bin and the system bus need no such lines).
      << "setenv PATH " << env_path.substr(5) << "\nsetenv " << env_bus.substr(0, env_bus.find('=')) << " "
      << env_bus.substr(env_bus.find('=') + 1) << "\n"
      << extra;
    return conf;
  }
  /// The hook's --pre-start, as an ExecStartPre= runs it.
  lab::RunResult pre_start(const std::string& conf) const { return lab::run({"env", env_path, env_bus, kHook, "--pre-start", conf}); }
  std::unique_ptr<lab::Process> start_client(const std::string& conf, const std::string& log) const {
    return std::make_unique<lab::Process>(rig.net.ns("host"), std::vector<std::string>{"env", env_path, env_bus, "openvpn", "--config", conf},
                                          log);
  }
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("the real OpenVPN connects through the block, declared before it starts: secured, and down clears it") {
  Provider vpn;
  Rig& rig = vpn.rig;
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
  Provider vpn;
  Rig& rig = vpn.rig;
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
  // An exit clears it.
  CHECK(client->stop(SIGTERM) == 0);
  CHECK(eventually([&] { return rig.status()["tunnel"]["declared"].is_null(); }, 10s));
}
