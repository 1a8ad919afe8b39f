#pragma once
// What the control surface (D-Bus) may ask of the daemon, and who may ask it. The D-Bus adapter
// validates and authorizes, then calls Control; the daemon's wiring implements Control.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.hpp"
#include "common/mode.hpp"
#include "common/result.hpp"
#include "common/strong.hpp"

namespace leakguard::daemon {

/// Who sent a request, from the bus's credentials (real uid and groups, not /etc/group).
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  pid_t pid = 0;
  /// "uid 1000 (pid 4242)" for logs and reasons.
  std::string str() const;
};

/// Root, or a member of the control group (primary or supplementary), may change things.
bool may_control(const Caller& c, std::optional<gid_t> control_group);

/// A tunnel declaration as a VPN client sends it, checked: a valid interface name (literal: no
/// '*', which the rules would read as a wildcard), 1 up to the
/// firewall's endpoint limit (firewall::Limits::max_endpoints) of well-formed distinct endpoints,
/// an fwmark (0 means none).
struct TunnelDeclaration {
  std::string interface;
  std::vector<Endpoint> endpoints;
  std::optional<FwMark> fwmark;
  bool operator==(const TunnelDeclaration&) const = default;
};
Result<TunnelDeclaration> check_tunnel(const std::string& interface, const std::vector<std::string>& endpoints,
                                       std::uint32_t fwmark);

/// A snapshot of what the D-Bus properties show.
struct Snapshot {
  std::string state;
  std::string policy;
  bool armed = false;
  std::string tunnel_interface;
  std::vector<std::string> endpoints;
  std::string last_probe_json;
  std::uint64_t leak_count = 0;
  bool operator==(const Snapshot&) const = default;
};

class Control {
 public:
  virtual ~Control() = default;
  virtual Result<void> arm(const std::string& by) = 0;
  virtual Result<void> disarm(const std::string& by) = 0;
  virtual Result<void> set_tunnel(const TunnelDeclaration& t, const std::string& by) = 0;
  virtual Result<void> clear_tunnel(const std::string& by) = 0;
  virtual Result<void> set_allow_lan(bool allow, const std::string& by) = 0;
  virtual Result<void> set_policy(Mode policy, const std::string& by) = 0;
  virtual Result<void> reload(const std::string& by) = 0;
  /// Starts a probe round; `done(verdict, report_json)` runs on the loop when it ends.
  virtual void probe_now(std::function<void(std::string, std::string)> done) = 0;
  virtual std::string status_json() const = 0;
  virtual Snapshot snapshot() const = 0;
};

}  // namespace leakguard::daemon
