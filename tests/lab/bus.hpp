#pragma once
// A private D-Bus "system bus" for tests: a dbus-daemon of our own with the system bus's default
// policy (method calls denied unless a policy file allows them) plus leakguard's policy file.
// Clients in this process and its children reach it through DBUS_SYSTEM_BUS_ADDRESS.
#include <sys/types.h>

#include <string>

namespace leakguard::lab {

class PrivateBus {
 public:
  /// `policy_file`: a busconfig fragment to include (e.g. systemd/org.leakguard.Daemon1.conf);
  /// `control_group`: replaces group="leakguard" in it, so tests need no such group on the machine.
  /// `permissive`: allow every call at the bus level (to test the daemon's own checks).
  PrivateBus(const std::string& policy_file, const std::string& control_group, bool permissive = false);
  ~PrivateBus();
  PrivateBus(const PrivateBus&) = delete;
  PrivateBus& operator=(const PrivateBus&) = delete;

  const std::string& address() const { return address_; }
  /// The bus daemon's process.
  pid_t pid() const { return pid_; }
  /// Stops the bus (SIGKILL, like a crash) and starts a new one on the same address.
  void restart();
  void stop();

 private:
  void start();
  std::string dir_;
  std::string config_;
  std::string address_;
  pid_t pid_ = -1;
};

}  // namespace leakguard::lab
