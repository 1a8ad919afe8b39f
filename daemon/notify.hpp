#pragma once
// The service manager's notification protocol (sd_notify): READY, STATUS, STOPPING, WATCHDOG.
// Without NOTIFY_SOCKET (not under systemd) every call is a cheap no-op.
#include <chrono>
#include <optional>
#include <string_view>

namespace leakguard::daemon {

class Notifier {
 public:
  Notifier();
  /// Sends "READY=1" with a status line.
  void ready(std::string_view status) const;
  void status(std::string_view status) const;
  void stopping(std::string_view status) const;
  void watchdog() const;
  /// How often to ping the watchdog (half of WatchdogSec), if systemd asked for pings.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }
  bool enabled() const { return enabled_; }

 private:
  void send(std::string_view text) const;
  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace leakguard::daemon
