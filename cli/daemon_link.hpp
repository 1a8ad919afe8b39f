#pragma once
// How leakguardctl (and the benchmarks) reach leakguardd: over the system bus, or, for root, over
// the daemon's private socket (/run/leakguard/private: the same methods, peer to peer, without
// dbus-daemon; daemon/private_bus.hpp says why). Both speak org.leakguard.Daemon1; a refusal or
// failure comes as sdbus::Error with the D-Bus error name the daemon sent, the same on both ways.
#include <chrono>
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
  virtual void ClaimTunnel(const std::string& interface, const std::vector<std::string>& endpoints, uint32_t fwmark,
                           bool ahead) = 0;
  virtual void ClearTunnel() = 0;
  virtual bool ReleaseTunnel(const std::string& interface) = 0;
  virtual void SetAllowLan(bool allow) = 0;
  virtual void SetPolicy(const std::string& policy) = 0;
  virtual void Reload() = 0;
  virtual std::tuple<std::string, std::string> ProbeNow() = 0;
  virtual std::string GetStatus() = 0;
};

/// The error name connect_bus() and follow_signals() throw when the system bus itself cannot be
/// reached (leakguardctl's own, never sent by the daemon): not the same as a daemon that is not on it.
inline constexpr const char* kNoBusError = "org.leakguard.ctl.Error.NoSystemBus";
/// The error name connect_private() throws when the daemon's socket accepts a connection but
/// nothing answers in a few seconds (the daemon stopped or stuck): not looked for on the bus.
inline constexpr const char* kNotAnsweringError = "org.leakguard.ctl.Error.NotAnswering";
/// Where the system bus is: $DBUS_SYSTEM_BUS_ADDRESS, else the system's socket (a unix:path= address
/// as its path).
std::string system_bus_address();

/// The system bus (DBUS_SYSTEM_BUS_ADDRESS, else the system's); throws sdbus::Error, named
/// kNoBusError with "ADDRESS: why", if it cannot be reached.
std::unique_ptr<Daemon> connect_bus();
/// The private socket at `path`, connected and answering; nullptr when it cannot be used (not
/// there, a stale socket the daemon left, no permission, or the daemon hung up: not root); throws
/// sdbus::Error (kNotAnsweringError) if the daemon let us connect but did not answer in 5 s.
std::unique_ptr<Daemon> connect_private(const std::string& path);
/// $LEAKGUARD_PRIVATE_SOCKET if set (empty: never), else /run/leakguard/private.
std::string private_socket_path();
/// What `monitor` learns besides the daemon's signals: whether leakguardd is on the bus (its name's
/// owner, NameOwnerChanged), and whether the bus itself is there.
struct WatchEvent {
  enum Kind {
    daemon_absent,   ///< at start, or when the bus came back: nobody owns org.leakguard.Daemon1
    daemon_stopped,  ///< the name lost its owner: leakguardd stopped, crashed or was killed
    daemon_back,     ///< the name has an owner again; `detail` is the daemon's state ("" if unknown)
    bus_lost,        ///< the connection to the system bus broke; `detail` says why. Retrying.
    bus_back,        ///< connected again after bus_lost
  };
  Kind kind;
  std::string detail;
  bool operator==(const WatchEvent&) const = default;
};
using SignalFn = std::function<void(const std::string& name, const std::vector<std::string>& args)>;
using WatchFn = std::function<void(const WatchEvent&)>;
/// The daemon's signals on the system bus, each to `on_signal(name, args)`, and the daemon's
/// coming and going to `on_watch`, until interrupted. If the bus cannot be reached at the start,
/// throws sdbus::Error (kNoBusError); once connected, a lost bus is reported once (bus_lost) and
/// reconnected to, waiting 100 ms, then twice as long each time up to `max_backoff`.
void follow_signals(const SignalFn& on_signal, const WatchFn& on_watch,
                    std::chrono::milliseconds max_backoff = std::chrono::seconds(5));

}  // namespace leakguard::cli
