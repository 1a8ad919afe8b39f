#include <doctest/doctest.h>

#include "common/iface.hpp"

using namespace leakguard;

TEST_CASE("interface names follow the kernel's rules") {
  CHECK(validate_ifname("eth0"));
  CHECK(validate_ifname("wg-mullvad-se1"));  // 14 characters
  CHECK(validate_ifname("abcdefghijklmno"));  // 15: the longest allowed
  CHECK_FALSE(validate_ifname(""));
  CHECK_FALSE(validate_ifname("abcdefghijklmnop"));  // 16
  CHECK_FALSE(validate_ifname("eth/0"));
  CHECK_FALSE(validate_ifname("eth 0"));
  CHECK_FALSE(validate_ifname("eth0:1"));
  CHECK_FALSE(validate_ifname("."));
  CHECK_FALSE(validate_ifname(".."));
  CHECK_FALSE(validate_ifname(std::string_view("et\0h", 4)));
}

TEST_CASE("tunnel patterns: exact names and trailing-star prefixes") {
  auto exact = IfnamePattern::parse("wg0");
  REQUIRE(exact);
  CHECK(exact->matches("wg0"));
  CHECK_FALSE(exact->matches("wg01"));

  auto prefix = IfnamePattern::parse("wg*");
  REQUIRE(prefix);
  CHECK(prefix->is_prefix());
  CHECK(prefix->stem() == "wg");
  CHECK(prefix->matches("wg0"));
  CHECK(prefix->matches("wg-mullvad"));
  CHECK_FALSE(prefix->matches("eth0"));

  CHECK(prefix->excluded_devices().empty());

  CHECK_FALSE(IfnamePattern::parse("*"));
  CHECK_FALSE(IfnamePattern::parse(""));
  CHECK_FALSE(IfnamePattern::parse("w*g"));
  CHECK_FALSE(IfnamePattern::parse("wg**"));
  CHECK_FALSE(IfnamePattern::parse("tun/*"));
}

TEST_CASE("interface names are made printable for logs, JSON and D-Bus") {
  CHECK(leakguard::printable_ifname("wg0") == "wg0");
  CHECK(leakguard::printable_ifname("\x80\xff") == "\\x80\\xff");  // not UTF-8: JSON and D-Bus refuse it
  CHECK(leakguard::printable_ifname("a\\b") == "a\\x5cb");           // the escape character itself
  CHECK(leakguard::printable_ifname(std::string_view("a\x01", 2)) == "a\\x01");
}

TEST_CASE("interface classes by name: one definition for the watcher, the prober and the daemon") {
  CHECK(to_string(InterfaceClass::loopback) == "loopback");
  CHECK(to_string(InterfaceClass::tunnel) == "tunnel");
  CHECK(to_string(InterfaceClass::physical) == "physical");
  CHECK(to_string(InterfaceClass::other) == "other");
}

TEST_CASE("a prefix never names a kernel fallback device (tun* is not ipip's tunl0), a literal name does") {
  const auto tun = *IfnamePattern::parse("tun*");
  CHECK(tun.matches("tun0"));
  CHECK(tun.matches("tunnel1"));
  CHECK_FALSE(tun.matches("tunl0"));
  CHECK(tun.matches("tunl1"));  // only the device the module makes itself
  CHECK(tun.excluded_devices() == std::vector<std::string_view>{"tunl0"});
  CHECK(IfnamePattern::parse("gre*")->excluded_devices() == std::vector<std::string_view>{"gre0", "gretap0"});
  CHECK(IfnamePattern::parse("ip6*")->excluded_devices() == std::vector<std::string_view>{"ip6tnl0", "ip6gre0", "ip6_vti0"});
  const auto literal = *IfnamePattern::parse("tunl0");
  CHECK(literal.matches("tunl0"));
  CHECK(literal.excluded_devices().empty());
}
