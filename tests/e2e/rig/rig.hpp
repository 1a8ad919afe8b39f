#pragma once
// The end-to-end rig: the lab, a private system bus running the project's D-Bus policy, and
// leakguardd as a process in the lab's host namespace, with helpers to steer and observe it.
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/lab/bus.hpp"
#include "tests/lab/lab.hpp"

namespace leakguard::e2e {

/// The group tests use in place of "leakguard" (an existing one: dbus-daemon must resolve it).
extern const char* const kControlGroup;

struct RigOptions {
  lab::Options lab;
  bool armed = true;
  std::string policy = "udp";
  std::string interval = "60s";
  std::string tunnel_patterns = "[wg*]";
  bool endpoint = true;  ///< configure the lab's WireGuard endpoint (198.51.100.1:51820/udp, fwmark 51820)
  /// probe.servers (YAML flow list): the lab's STUN server over UDP, both families.
  std::string servers = R"(["203.0.113.3:3478", "[2001:db8:3::3]:3478"])";
  std::string on_exposure = "escalate";  ///< probe.on_exposure
  std::vector<std::string> daemon_args{};  ///< more command-line arguments for leakguardd
  std::vector<std::string> wrapper{};      ///< a command leakguardd runs under (e.g. setpriv ...)
};

class Rig {
 public:
  explicit Rig(RigOptions o = {});
  ~Rig();
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  lab::Lab net;
  lab::PrivateBus bus;
  const std::string dir;     ///< scratch directory (config, logs), removed at the end
  const std::string config;  ///< the daemon's configuration file
  lab::RuntimeDir runtime;       ///< on a tmpfs, as /run/leakguard is under systemd
  const std::string state_dir;  ///< the daemon's --state-dir (its runtime directory under systemd)
  /// The daemon's private socket (STATE_DIR/private), root's way in as /run/leakguard/private is
  /// under systemd: named to every leakguardctl the test starts (LEAKGUARD_PRIVATE_SOCKET).
  const std::string private_socket;

  /// Starts leakguardd (again); its output goes to a log of its own per start.
  void start();
  lab::Process& daemon() { return *daemon_; }
  /// What the current daemon printed so far.
  std::string output() const;

  /// leakguardctl ARGS (as root, or as nobody with no groups / with the control group).
  enum class As { root, nobody, member };
  lab::RunResult ctl(const std::vector<std::string>& args, As as = As::root) const;
  /// leakguardctl ARGS with the system bus out of its reach: what the private socket alone gives.
  lab::RunResult ctl_without_bus(const std::vector<std::string>& args, As as = As::root) const;
  /// busctl --system ARGS against the private bus (as root or nobody).
  lab::RunResult busctl(const std::vector<std::string>& args, As as = As::root) const;
  nlohmann::json status() const;
  std::string state() const;
  bool wait_state(const std::string& want, std::chrono::milliseconds deadline = std::chrono::seconds(15)) const;
  /// Waits until leakguardd answers on the bus (whatever its state).
  bool wait_answering(std::chrono::milliseconds deadline = std::chrono::seconds(10)) const;
  /// Runs the project's wg-quick hook (systemd/hooks/wg-quick ACTION wg0) in the host namespace,
  /// as wg-quick's PostUp ("up") and PreDown ("down") lines would, with leakguardctl on PATH.
  lab::RunResult wg_quick_hook(const std::string& action) const;
  /// Which of the project's wg-quick hooks a configuration runs.
  enum class WgHooks { none, up_down, pre_up_down };
  /// Writes a wg-quick configuration for the lab's user machine (its key and addresses, the VPN
  /// server as its one peer, PersistentKeepalive so that WireGuard's first handshake leaves at
  /// once) with the project's hook: as PostUp/PreDown, and as PreUp too for pre_up_down. Returns
  /// its path (DIR/wg/NAME.conf: wg-quick names the interface after the file).
  std::string wg_quick_config(WgHooks hooks, const std::string& name = "wg0") const;
  /// The real `wg-quick ACTION CONFIG` in the host namespace (userspace WireGuard, wireguard-go:
  /// the lab has no kernel module), with leakguardctl on PATH and the private bus.
  lab::RunResult wg_quick(const std::string& action, const std::string& conf) const;
  /// `nft list table inet leakguard` in the host namespace ("" if there is none).
  std::string table() const;
  /// What coturn's own STUN client gets through the host's routing from the STUN server at
  /// `server` (an IPv4 or IPv6 address, port 3478): the reflexive address without port, "" if none.
  std::string witness(const std::string& server) const;

 private:
  std::vector<std::string> daemon_args_;
  std::vector<std::string> wrapper_;
  std::unique_ptr<lab::Process> daemon_;
  std::string log_;
  int starts_ = 0;
};

/// Polls `f` until true or the deadline (the things waited for have no event to block on).
bool eventually(const std::function<bool()>& f, std::chrono::milliseconds deadline);
std::string read_file(const std::string& path);

}  // namespace leakguard::e2e
