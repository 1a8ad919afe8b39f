#include "tests/e2e/rig/openvpn.hpp"

#include <fstream>
#include <iterator>
#include <stdexcept>

namespace leakguard::e2e {

namespace {

void must(const lab::RunResult& r, const std::string& what) {
  if (r.status != 0) throw std::runtime_error(what + " failed: " + r.out);
}

/// A CA, a server and a client certificate (ECDSA P-256, a day), made with openssl in `dir`.
void make_pki(const std::string& dir) {
  must(lab::run({"mkdir", "-p", "-m", "0700", dir}), "mkdir " + dir);
  auto openssl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    must(lab::run(args), "openssl " + args[1]);
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

}  // namespace

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string OpenvpnProvider::hook() { return LEAKGUARD_SOURCE_DIR "/systemd/hooks/openvpn"; }

OpenvpnProvider::OpenvpnProvider(const Rig& rig)
    : rig_(rig),
      pki_(rig.dir + "/pki"),
      env_path_([] {
        const std::string ctl = LEAKGUARDCTL;
        return "PATH=" + ctl.substr(0, ctl.rfind('/')) + ":/usr/sbin:/usr/bin:/sbin:/bin";
      }()),
      env_bus_("DBUS_SYSTEM_BUS_ADDRESS=" + rig.bus.address()) {
  make_pki(pki_);
  must(rig.net.run("vpn", {"nft", "add", "rule", "inet", "lab_nat", "post", "oifname", "up0", "ip", "saddr", "100.64.0.0/22",
                           "masquerade"}),
       "the provider's NAT");
  for (const auto& [proto, port, net] : {std::tuple{"udp", "1194", "100.64.1.0"}, std::tuple{"tcp-server", "443", "100.64.2.0"}}) {
    servers_.push_back(std::make_unique<lab::Process>(
        rig.net.ns("vpn"),
        std::vector<std::string>{"openvpn", "--dev", "tun", "--topology", "subnet", "--server", net, "255.255.255.0", "--proto", proto,
                                 "--local", "198.51.100.1", "--port", port, "--ca", pki_ + "/ca.crt", "--cert", pki_ + "/server.crt",
                                 "--key", pki_ + "/server.key", "--dh", "none", "--push", "redirect-gateway def1", "--keepalive",
                                 "10", "60", "--disable-dco", "--verb", "3"},
        rig.dir + "/server-" + std::string(port) + ".log"));
  }
}

std::string OpenvpnProvider::client_config(const std::string& remotes, const std::string& extra, bool up_hook) const {
  const std::string conf = rig_.dir + "/client.conf";
  std::ofstream f(conf);
  f << "client\ndev tun0\n" << remotes << "nobind\n"
    << "ca " << pki_ << "/ca.crt\ncert " << pki_ << "/client.crt\nkey " << pki_ << "/client.key\n"
    << "remote-cert-tls server\ndisable-dco\nverb 3\nconnect-retry 1\nmark 51820\n";
  if (up_hook)
    f << "script-security 2\nup \"" << hook() << " --mark 51820\"\n"
      // OpenVPN hands its scripts only its own variables: the test's leakguardctl and private bus
      // are named to them (installed, /usr/bin and the system bus need no such lines).
      << "setenv PATH " << env_path_.substr(5) << "\nsetenv " << env_bus_.substr(0, env_bus_.find('=')) << " "
      << env_bus_.substr(env_bus_.find('=') + 1) << "\n";
  f << extra;
  return conf;
}

lab::RunResult OpenvpnProvider::pre_start(const std::string& conf) const {
  return lab::run({"env", env_path_, env_bus_, hook(), "--pre-start", conf});
}

std::unique_ptr<lab::Process> OpenvpnProvider::start_client(const std::string& conf, const std::string& log) const {
  return std::make_unique<lab::Process>(rig_.net.ns("host"),
                                        std::vector<std::string>{"env", env_path_, env_bus_, "openvpn", "--config", conf}, log);
}

}  // namespace leakguard::e2e
