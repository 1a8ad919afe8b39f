#include "daemon/notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace leakguard::daemon {

Notifier::Notifier() : enabled_(std::getenv("NOTIFY_SOCKET") != nullptr) {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) watchdog_ = std::chrono::microseconds(usec / 2);
}

void Notifier::send(std::string_view text) const {
  if (!enabled_) return;
  sd_notify(0, std::string(text).c_str());
}

void Notifier::ready(std::string_view status) const { send("READY=1\nSTATUS=" + std::string(status)); }
void Notifier::status(std::string_view status) const { send("STATUS=" + std::string(status)); }
void Notifier::stopping(std::string_view status) const { send("STOPPING=1\nSTATUS=" + std::string(status)); }
void Notifier::watchdog() const { send("WATCHDOG=1"); }

}  // namespace leakguard::daemon
