#pragma once
// Interface names and name patterns as the kernel accepts them.
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace leakguard {

/// Checks a kernel interface name: 1..15 bytes (IFNAMSIZ-1), no '/', ':' or white
/// space, not "." or ".." (the rules of the kernel's dev_valid_name()); and, stricter than the
/// kernel, no quotes, backslashes or non-ASCII bytes (they cannot go into an nft rule as they are).
Result<std::string> validate_ifname(std::string_view name);

/// An interface name safe to print, log, put in JSON or on D-Bus (which need valid UTF-8): the
/// kernel allows any byte but '/', ':', NUL and white space, so other bytes outside printable
/// ASCII become "\xNN".
std::string printable_ifname(std::string_view name);

/// What an interface is to a kill switch (netwatch/ classifies, probes/ and the daemon read it).
/// Never guessed from the kind alone: a wireguard-go interface is a plain "tun", so tunnels are
/// named by configured patterns or declared.
enum class InterfaceClass { loopback, tunnel, physical, other };
/// "loopback", "tunnel", "physical", "other".
std::string_view to_string(InterfaceClass c);

/// A tunnel name pattern: an exact name ("wg0") or a prefix with a trailing '*' ("wg*").
struct IfnamePattern {
  std::string text;  ///< as given, e.g. "wg*"

  static Result<IfnamePattern> parse(std::string_view text);
  bool is_prefix() const { return !text.empty() && text.back() == '*'; }
  /// The literal part: the whole name, or the prefix without '*'.
  std::string_view stem() const { return is_prefix() ? std::string_view(text).substr(0, text.size() - 1) : text; }
  /// Whether `ifname` is one this pattern names. A prefix never matches a kernel fallback device
  /// (kKernelFallbackDevices: `tun*` would name ipip's tunl0); a literal name matches itself.
  bool matches(std::string_view ifname) const;
  /// The kernel fallback devices the prefix would match if they were not excluded, which the
  /// firewall's rules exclude by name (`oifname "tun*" oifname != "tunl0" accept`).
  std::vector<std::string_view> excluded_devices() const;
  bool operator==(const IfnamePattern&) const = default;
};

/// The devices a tunnelling module creates in every network namespace once it is loaded (ipip's
/// tunl0, ip_gre's gre0, gretap0 and erspan0, sit0, ip6tnl0, ip6gre0, ip_vti0, ip6_vti0): plain,
/// unencrypted encapsulation, never a VPN - Calico routes pods through tunl0, and what it carries
/// leaves the physical interface as IP protocol 4, which `udp` policy lets out.
inline constexpr std::string_view kKernelFallbackDevices[] = {"tunl0", "gre0", "gretap0", "erspan0", "sit0",
                                                              "ip6tnl0", "ip6gre0", "ip_vti0", "ip6_vti0"};

}  // namespace leakguard
