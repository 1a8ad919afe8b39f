#pragma once
// The VPN provider's OpenVPN (Debian's openvpn) in a rig's lab: a CA, server and client
// certificates made with openssl, a server on 198.51.100.1 over UDP 1194 and one over TCP 443 in
// the VPN namespace (their tunnels 100.64.1.0/24 and 100.64.2.0/24 NATed to the exit), and client
// configurations for the user's machine with the shipped hook. Shared by e2e/openvpn_test and
// bench_connect. Errors throw std::runtime_error.
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/rig/rig.hpp"

namespace leakguard::e2e {

class OpenvpnProvider {
 public:
  explicit OpenvpnProvider(const Rig& rig);
  OpenvpnProvider(const OpenvpnProvider&) = delete;
  OpenvpnProvider& operator=(const OpenvpnProvider&) = delete;

  /// The shipped hook, systemd/hooks/openvpn.
  static std::string hook();
  /// A client configuration (DIR/client.conf): `remotes` lines, then `extra` lines; dev tun0,
  /// OpenVPN's own mark 51820, and with `up_hook` the hook as `up` (with --mark 51820).
  std::string client_config(const std::string& remotes, const std::string& extra, bool up_hook = true) const;
  /// The hook's --pre-start, as an ExecStartPre= runs it.
  lab::RunResult pre_start(const std::string& conf) const;
  /// OpenVPN with `conf` on the user's machine, its output in `log`.
  std::unique_ptr<lab::Process> start_client(const std::string& conf, const std::string& log) const;

 private:
  const Rig& rig_;
  std::string pki_;
  std::string env_path_, env_bus_;
  std::vector<std::unique_ptr<lab::Process>> servers_;
};

/// A whole file ("" if it cannot be read).
std::string read_all(const std::string& path);

}  // namespace leakguard::e2e
