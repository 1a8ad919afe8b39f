#include "common/iface.hpp"

#include <net/if.h>

namespace leakguard {

Result<std::string> validate_ifname(std::string_view name) {
  const std::string quoted = "'" + printable_ifname(name) + "'";
  if (name.empty()) return fail("check interface name", "interface name is empty");
  if (name.size() >= IFNAMSIZ)
    return fail("check interface name", quoted + " is longer than " + std::to_string(IFNAMSIZ - 1) + " characters");
  if (name == "." || name == "..") return fail("check interface name", quoted + " is not a valid interface name");
  for (unsigned char c : name) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f)
      return fail("check interface name", quoted + " contains '/', ':', white space or a control character");
    // The kernel would take these, but no VPN client names a tunnel so, and they cannot be written
    // into an nft rule or a log line as they are: refused here, consistently for every input.
    if (c == '"' || c == '\\' || c == '\'' || c >= 0x80)
      return fail("check interface name", quoted + " contains a quote, a backslash or a non-ASCII byte");
  }
  return std::string(name);
}

Result<IfnamePattern> IfnamePattern::parse(std::string_view text) {
  IfnamePattern p{std::string(text)};
  if (text == "*") return fail("check interface pattern", "'*' would match every interface");
  auto stem = p.stem();
  if (stem.find('*') != std::string_view::npos)
    return fail("check interface pattern", "'" + p.text + "': '*' is only allowed at the end");
  if (auto ok = validate_ifname(stem); !ok) return fail("check interface pattern", ok.error().message);
  return p;
}

std::vector<std::string_view> IfnamePattern::excluded_devices() const {
  std::vector<std::string_view> out;
  if (!is_prefix()) return out;
  for (std::string_view d : kKernelFallbackDevices)
    if (d.starts_with(stem())) out.push_back(d);
  return out;
}

bool IfnamePattern::matches(std::string_view ifname) const {
  if (!is_prefix()) return ifname == text;
  if (!ifname.starts_with(stem())) return false;
  for (std::string_view d : kKernelFallbackDevices)
    if (ifname == d) return false;
  return true;
}

std::string_view to_string(InterfaceClass c) {
  switch (c) {
    case InterfaceClass::loopback: return "loopback";
    case InterfaceClass::tunnel: return "tunnel";
    case InterfaceClass::physical: return "physical";
    case InterfaceClass::other: return "other";
  }
  return "?";
}

std::string printable_ifname(std::string_view name) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : name) {
    if (c >= 0x21 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace leakguard
