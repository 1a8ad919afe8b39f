// The dry run: nft syntax for a policy, exactly (golden), and the parts that vary with it.
// That nft -f accepts this text and installs what our batch installs is checked in
// tests/integration/firewall (it needs a kernel).
#include <doctest/doctest.h>

#include "firewall/nft_text.hpp"

using namespace leakguard;
using namespace leakguard::firewall;

TEST_CASE("golden: the dry run of a one-tunnel - one-endpoint udp policy") {
  Policy p;
  p.tunnels = {*IfnamePattern::parse("wg0")};
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820")};
  auto text = dry_run(p);
  REQUIRE(text);
  const std::string golden =
        "# leakguard dry run: mode=udp allow_lan=no tunnels=[wg0] endpoints=[198.51.100.1:51820/udp] fwmark=none lan=[]\n"
        "table inet leakguard {\n"
        "\tset endpoints4 {\n"
        "\t\ttype ipv4_addr . inet_proto . inet_service\n"
        "\t\telements = { 198.51.100.1 . udp . 51820 }\n"
        "\t}\n"
        "\n"
        "\tset endpoints6 {\n"
        "\t\ttype ipv6_addr . inet_proto . inet_service\n"
        "\t}\n"
        "\n"
        "\tset dns_ports {\n"
        "\t\ttype inet_service\n"
        "\t\telements = { 53, 853 }\n"
        "\t}\n"
        "\n"
        "\tset lan4 {\n"
        "\t\ttype ipv4_addr\n"
        "\t\tflags interval\n"
        "\t}\n"
        "\n"
        "\tset lan6 {\n"
        "\t\ttype ipv6_addr\n"
        "\t\tflags interval\n"
        "\t}\n"
        "\n"
        "\tset dhcp4 {\n"
        "\t\ttype ipv4_addr\n"
        "\t\tflags interval\n"
        "\t}\n"
        "\n"
        "\tset tunnel_addrs4 {\n"
        "\t\ttype ipv4_addr\n"
        "\t}\n"
        "\n"
        "\tset tunnel_addrs6 {\n"
        "\t\ttype ipv6_addr\n"
        "\t}\n"
        "\n"
        "\tset ifstat_out {\n"
        "\t\ttype ifname . nf_proto . inet_proto\n"
        "\t\tsize 1024\n"
        "\t\tflags dynamic\n"
        "\t\tcounter\n"
        "\t}\n"
        "\n"
        "\tset ifstat_in {\n"
        "\t\ttype ifname . nf_proto . inet_proto\n"
        "\t\tsize 1024\n"
        "\t\tflags dynamic\n"
        "\t\tcounter\n"
        "\t}\n"
        "\n"
        "\tset ifstat_fwd {\n"
        "\t\ttype ifname . nf_proto . inet_proto\n"
        "\t\tsize 1024\n"
        "\t\tflags dynamic\n"
        "\t\tcounter\n"
        "\t}\n"
        "\n"
        "\tset senders4 {\n"
        "\t\ttype cgroupsv2 . ipv4_addr . inet_proto . inet_service . inet_service\n"
        "\t\tsize 4096\n"
        "\t\tflags dynamic,timeout\n"
        "\t\ttimeout 10s\n"
        "\t}\n"
        "\n"
        "\tset senders6 {\n"
        "\t\ttype cgroupsv2 . ipv6_addr . inet_proto . inet_service . inet_service\n"
        "\t\tsize 4096\n"
        "\t\tflags dynamic,timeout\n"
        "\t\ttimeout 10s\n"
        "\t}\n"
        "\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority filter; policy drop;\n"
        "\t\tip daddr . meta l4proto . th dport @endpoints4 accept\n"
        "\t\tip6 daddr . meta l4proto . th dport @endpoints6 accept\n"
        "\t\toif \"lo\" accept\n"
        "\t\toifname \"wg0\" accept\n"
        "\t\tip daddr 255.255.255.255 udp sport 68 udp dport 67 accept\n"
        "\t\tip daddr @dhcp4 udp sport 68 udp dport 67 accept\n"
        "\t\tip6 saddr fe80::/10 ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept\n"
        "\t\ticmpv6 type 133-136 ip6 hoplimit 255 accept\n"
        "\t\ticmpv6 type 143 ip6 daddr ff02::16 accept\n"
        "\t\ticmpv6 type 131-132 ip6 daddr ff02::/16 ip6 hoplimit 1 accept\n"
        "\t\ttcp dport @dns_ports counter reject with tcp reset comment \"dns-out\"\n"
        "\t\tudp dport @dns_ports counter reject with icmpx admin-prohibited comment \"dns-out\"\n"
        "\t\tmeta l4proto udp update @ifstat_out { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto udp counter reject with icmpx admin-prohibited comment \"udp-out\"\n"
        "\t\tmeta l4proto udplite update @ifstat_out { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto udplite counter reject with icmpx admin-prohibited comment \"udp-out\"\n"
        "\t\tmeta l4proto sctp update @ifstat_out { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto sctp counter reject with icmpx admin-prohibited comment \"udp-out\"\n"
        "\t\tmeta l4proto dccp update @ifstat_out { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto dccp counter reject with icmpx admin-prohibited comment \"udp-out\"\n"
        "\t\tmeta l4proto l2tp update @ifstat_out { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto l2tp counter reject with icmpx admin-prohibited comment \"udp-out\"\n"
        "\t\taccept\n"
        "\t}\n"
        "\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        "\t\tiif \"lo\" accept\n"
        "\t\tiifname \"wg0\" accept\n"
        "\t\tip daddr @tunnel_addrs4 counter drop comment \"tunaddr-in\"\n"
        "\t\tip6 daddr @tunnel_addrs6 counter drop comment \"tunaddr-in\"\n"
        "\t\tip saddr . meta l4proto . th sport @endpoints4 ct state established accept\n"
        "\t\tip6 saddr . meta l4proto . th sport @endpoints6 ct state established accept\n"
        "\t\tmeta l4proto icmp ct state established,related accept\n"
        "\t\tmeta l4proto ipv6-icmp ct state established,related accept\n"
        "\t\tmeta l4proto icmp ct state invalid counter drop comment \"icmperr-in\"\n"
        "\t\tmeta l4proto ipv6-icmp ct state invalid counter drop comment \"icmperr-in\"\n"
        "\t\tmeta nfproto ipv4 udp sport 67 udp dport 68 accept\n"
        "\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept\n"
        "\t\ticmpv6 type 133-136 ip6 hoplimit 255 accept\n"
        "\t\ticmpv6 type 130 ip6 saddr fe80::/10 accept\n"
        "\t\ttcp sport @dns_ports counter drop comment \"dns-in\"\n"
        "\t\tudp sport @dns_ports counter drop comment \"dns-in\"\n"
        "\t\tmeta l4proto udp update @ifstat_in { iifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto udp counter drop comment \"udp-in\"\n"
        "\t\tmeta l4proto udplite update @ifstat_in { iifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto udplite counter drop comment \"udp-in\"\n"
        "\t\tmeta l4proto sctp update @ifstat_in { iifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto sctp counter drop comment \"udp-in\"\n"
        "\t\tmeta l4proto dccp update @ifstat_in { iifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto dccp counter drop comment \"udp-in\"\n"
        "\t\tmeta l4proto l2tp update @ifstat_in { iifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto l2tp counter drop comment \"udp-in\"\n"
        "\t\taccept\n"
        "\t}\n"
        "\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority filter; policy drop;\n"
        "\t\toifname \"wg0\" accept\n"
        "\t\tiifname \"wg0\" ct state established,related accept\n"
        "\t\ttcp dport @dns_ports counter reject with tcp reset comment \"dns-fwd\"\n"
        "\t\tudp dport @dns_ports counter reject with icmpx admin-prohibited comment \"dns-fwd\"\n"
        "\t\tmeta l4proto udp update @ifstat_fwd { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto udp counter reject with icmpx admin-prohibited comment \"udp-fwd\"\n"
        "\t\tmeta l4proto udplite update @ifstat_fwd { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto udplite counter reject with icmpx admin-prohibited comment \"udp-fwd\"\n"
        "\t\tmeta l4proto sctp update @ifstat_fwd { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto sctp counter reject with icmpx admin-prohibited comment \"udp-fwd\"\n"
        "\t\tmeta l4proto dccp update @ifstat_fwd { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto dccp counter reject with icmpx admin-prohibited comment \"udp-fwd\"\n"
        "\t\tmeta l4proto l2tp update @ifstat_fwd { oifname . meta nfproto . meta l4proto }\n"
        "\t\tmeta l4proto l2tp counter reject with icmpx admin-prohibited comment \"udp-fwd\"\n"
        "\t\taccept\n"
        "\t}\n"
        "\n"
        "\tchain senders {\n"
        "\t}\n"
        "}\n"
      ;
  CHECK(*text == golden);
}

TEST_CASE("strict with LAN - mark and prefix tunnels: the lines that differ") {
  Policy p;
  p.mode = Mode::strict;
  p.allow_lan = true;
  p.tunnels = {*IfnamePattern::parse("tun*")};
  p.endpoints = {*Endpoint::parse("[2001:db8:3::66]:51820"), *Endpoint::parse("203.0.113.9:443/tcp")};
  p.fwmark = FwMark{0xca6c};
  p.lan_subnets = {*Prefix::parse("10.0.0.0/25"), *Prefix::parse("10.0.0.128/25"), *Prefix::parse("2001:db8:2::/64")};
  auto text = dry_run(p);
  REQUIRE(text);
  const std::string& t = *text;
  auto has = [&](const std::string& s) {
    CAPTURE(s);
    CHECK(t.find(s) != std::string::npos);
  };
  has("\t\ttype filter hook output priority filter; policy drop;\n");
  has("\t\toifname \"tun*\" oifname != \"tunl0\" accept\n");
  has("\t\tmeta mark 0x0000ca6c ip6 daddr . meta l4proto . th dport @endpoints6 accept\n");
  has("\t\telements = { 203.0.113.9 . tcp . 443 }\n");
  has("\t\telements = { 2001:db8:3::66 . udp . 51820 }\n");
  has("\tset lan4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.0.0.0/24, 169.254.0.0/16, 224.0.0.0/24, 239.255.255.250,\n\t\t\t     255.255.255.255 }\n");
  has("\t\telements = { 2001:db8:2::/64, fe80::/10, ff02::/16 }\n");
  has("\t\tip6 saddr @lan6 accept\n");
  has("\t\tupdate @ifstat_out { oifname . meta nfproto . meta l4proto }\n");
  has("\t\tcounter reject with icmpx admin-prohibited comment \"ip-out\"\n");
  has("\t\tcounter drop comment \"ip-in\"\n");
  CHECK(t.find("flags owner") == std::string::npos);  // table flags belong to the socket, not the text
}

TEST_CASE("replace form: one nft -f transaction that works with or without the table") {
  const Ruleset rs = build_ruleset(Policy{});
  TextOptions o;
  o.replace = true;
  const std::string t = to_nft_text(rs, o);
  CHECK(t.rfind("add table inet leakguard\ndelete table inet leakguard\ntable inet leakguard {\n", 0) == 0);
}

TEST_CASE("long element lists wrap four to a line") {
  Policy p;
  for (int i = 1; i <= 6; ++i) p.endpoints.push_back(*Endpoint::parse("198.51.100." + std::to_string(i) + ":51820"));
  const std::string t = to_nft_text(build_ruleset(p));
  CHECK(t.find("\t\telements = { 198.51.100.1 . udp . 51820, 198.51.100.2 . udp . 51820, 198.51.100.3 . udp . 51820, "
               "198.51.100.4 . udp . 51820,\n\t\t\t     198.51.100.5 . udp . 51820, 198.51.100.6 . udp . 51820 }\n") !=
        std::string::npos);
}

TEST_CASE("the dry run refuses an invalid policy with the field named") {
  Policy p;
  p.tunnels = {IfnamePattern{"wg 0"}};
  auto text = dry_run(p);
  REQUIRE_FALSE(text);
  CHECK(text.error().message.rfind("tunnels[0]: ", 0) == 0);
}
