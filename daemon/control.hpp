#pragma once
// What the control surface (D-Bus) may ask of the daemon, and who may ask it. The D-Bus adapter
// validates and authorizes, then calls Control; the daemon's wiring implements Control.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ip.hpp"
#include "common/mode.hpp"
#include "common/result.hpp"
#include "common/strong.hpp"

namespace leakguard::daemon {

/// Who sent a request, from the bus's record of the connection (uid and every group, the primary
/// one included; not /etc/group, not /proc).
struct Caller {
  uid_t uid = 0;
  std::vector<gid_t> groups;
  pid_t pid = 0;
  /// "uid 1000 (pid 4242)" for logs and reasons.
  std::string str() const;
};

/// Root, or a member of the control group (any of its groups, the primary one included), may change things.
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

/// How a declaration treats the one before it (Control::set_tunnel).
enum class Claim {
  replace,            ///< SetTunnel: whatever was declared is replaced
  unless_other_live,  ///< ClaimTunnel: refused while another declared interface exists
  ahead,              ///< ClaimTunnel ahead: refused while any other interface is declared
};
/// Error::step of a declaration refused because another VPN's tunnel is declared and there.
inline constexpr const char* kTunnelBusy = "one VPN at a time";

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

/// What GetStatus tells a caller who is neither root nor in the control group: whether they are
/// protected, and nothing that identifies the VPN or the user's real address. Kept: state,
/// armed, policy, allow_lan, tunnel_up, leak_count, protection, config_error, the reason (as
/// public_reason() gives it), the last probe's verdict, and the
/// firewall's installed/owner flags and its one-line counter summary. Left out: endpoints,
/// fwmark, the tunnel's names, exit and reflexive addresses, probe details, the network, rule
/// errors (they quote addresses). `redacted` says so. The input is Control::status_json()'s.
nlohmann::json public_status(const nlohmann::json& status);

/// A state's reason as everyone may read it (GetStatus for non-members, and the StateChanged
/// signal, which every local user receives): a probe's summary names the leaked and the exit
/// addresses, so "probe leak: leak: 203.0.113.2 seen by ..." becomes "probe leak". Other reasons
/// (rules applied, tunnel down, network changes, configuration errors, tampering) stay.
std::string public_reason(const std::string& reason);

class Control {
 public:
  virtual ~Control() = default;
  virtual Result<void> arm(const std::string& by) = 0;
  virtual Result<void> disarm(const std::string& by) = 0;
  /// Declares the tunnel. `claim` replace: whatever was declared before is replaced (SetTunnel);
  /// unless_other_live: refused (Error::step kTunnelBusy) while another interface is declared and
  /// exists (ClaimTunnel: one VPN at a time, decided on the loop, so two VPNs starting at once
  /// cannot both pass).
  virtual Result<void> set_tunnel(const TunnelDeclaration& t, const std::string& by, Claim claim) = 0;
  /// Forgets the declaration; with `only_if`, only when that interface is the declared one.
  /// Whether a declaration was forgotten.
  virtual Result<bool> clear_tunnel(const std::string& by, const std::optional<std::string>& only_if) = 0;
  virtual Result<void> set_allow_lan(bool allow, const std::string& by) = 0;
  virtual Result<void> set_policy(Mode policy, const std::string& by) = 0;
  virtual Result<void> reload(const std::string& by) = 0;
  /// Starts a probe round; `done(verdict, report_json)` runs on the loop when it ends. Refused,
  /// with `done` never called, when no round can run (no usable configuration).
  virtual Result<void> probe_now(std::function<void(std::string, std::string)> done) = 0;
  virtual std::string status_json() const = 0;
  virtual Snapshot snapshot() const = 0;
};

}  // namespace leakguard::daemon
