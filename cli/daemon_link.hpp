#pragma once
// How leakguardctl (and the benchmarks) reach leakguardd: over the system bus, or, for root, over
// the daemon's private socket (/run/leakguard/private: the same methods, peer to peer, without
// dbus-daemon; daemon/private_bus.hpp says why). Both speak org.leakguard.Daemon1; a refusal or
// failure comes as sdbus::Error with the D-Bus error name the daemon sent, the same on both ways.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace leakguard::cli {

/// The daemon's methods as the commands call them.
class Daemon {
 public:
  virtual ~Daemon() = default;
  virtual void Arm() = 0;
  virtual void Disarm() = 0;
  virtual void SetTunnel(const std::string& interface, const std::vector<std::string>& endpoints, uint32_t fwmark) = 0;
  virtual void ClearTunnel() = 0;
  virtual void SetAllowLan(bool allow) = 0;
  virtual void SetPolicy(const std::string& policy) = 0;
  virtual void Reload() = 0;
  virtual std::tuple<std::string, std::string> ProbeNow() = 0;
  virtual std::string GetStatus() = 0;
  virtual std::string TunnelInterface() = 0;
};

/// The system bus (DBUS_SYSTEM_BUS_ADDRESS, else the system's); throws sdbus::Error if there is none.
std::unique_ptr<Daemon> connect_bus();
/// The private socket at `path`, connected and answering; nullptr when it cannot be used (not
/// there, a stale socket the daemon left, no permission, or the daemon hung up: not root).
std::unique_ptr<Daemon> connect_private(const std::string& path);
/// $LEAKGUARD_PRIVATE_SOCKET if set (empty: never), else /run/leakguard/private.
std::string private_socket_path();
/// The daemon's signals on the system bus, each to `on_signal(name, args)`, until interrupted.
void follow_signals(const std::function<void(const std::string& name, const std::vector<std::string>& args)>& on_signal);

}  // namespace leakguard::cli
