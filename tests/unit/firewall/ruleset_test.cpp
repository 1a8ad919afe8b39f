// The table model: what each policy puts in which chain, in which order, and which changes
// become set-element updates instead of a table replace.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>

#include "firewall/nft_text.hpp"
#include "firewall/ruleset.hpp"

using namespace leakguard;
using namespace leakguard::firewall;

namespace {

Policy policy(Mode mode, bool lan = false, bool mark = true) {
  Policy p;
  p.mode = mode;
  p.allow_lan = lan;
  p.tunnels = {*IfnamePattern::parse("wg0"), *IfnamePattern::parse("tun*")};
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820"), *Endpoint::parse("[2001:db8:3::66]:51820"),
                 *Endpoint::parse("203.0.113.9:443/tcp")};
  if (mark) p.fwmark = FwMark{51820};
  p.lan_subnets = {*Prefix::parse("192.0.2.0/24")};
  return p;
}

const Chain& chain(const Ruleset& rs, const std::string& name) {
  auto it = std::find_if(rs.chains.begin(), rs.chains.end(), [&](const Chain& c) { return c.name == name; });
  REQUIRE(it != rs.chains.end());
  return *it;
}

std::vector<std::string> lines(const Chain& c) {
  std::vector<std::string> out;
  for (const auto& r : c.rules) out.push_back(to_nft_text(r));
  return out;
}

std::size_t index_of(const std::vector<std::string>& v, const std::string& line) {
  auto it = std::find(v.begin(), v.end(), line);
  CAPTURE(line);
  REQUIRE(it != v.end());
  return static_cast<std::size_t>(it - v.begin());
}

}  // namespace

TEST_CASE("three filter chains at priority filter - policy drop in both modes - the last rule decides the rest") {
  for (Mode m : {Mode::udp, Mode::strict}) {
    CAPTURE(to_string(m));
    const Ruleset rs = build_ruleset(policy(m));
    REQUIRE(rs.chains.size() == 4);  // and the regular chain the log rules jump to
    CHECK(rs.table == "leakguard");
    CHECK_FALSE(chain(rs, "senders").base);
    CHECK(chain(rs, "senders").rules.empty());  // without attribution
    for (const auto& c : rs.chains) {
      if (!c.base) continue;
      CAPTURE(c.name);
      CHECK(c.priority == 0);
      // A chain evaluated empty (being created or deleted in a transaction) must stop packets.
      CHECK(c.policy_drop);
      REQUIRE_FALSE(c.rules.empty());
      // What no earlier rule decided is decided by the last one, never by the policy: udp mode
      // lets it through explicitly, strict stops it.
      const Rule& last = c.rules.back();
      CHECK(last.matches.empty());
      CHECK(last.verdict == (m == Mode::udp ? Verdict::accept : c.hook == Hook::input || c.hook == Hook::forward ? Verdict::drop : Verdict::reject));
    }
    CHECK(chain(rs, "output").hook == Hook::output);
    CHECK(chain(rs, "input").hook == Hook::input);
    CHECK(chain(rs, "forward").hook == Hook::forward);
  }
}

TEST_CASE("output: endpoints first - then loopback (by index) and tunnels - DHCP - ND - DNS block - then the policy block") {
  const auto out = lines(chain(build_ruleset(policy(Mode::udp)), "output"));
  // Each tunnelled packet also leaves once to the endpoint: that accept comes first.
  CHECK(out[0] == "meta mark 0x0000ca6c ip daddr . meta l4proto . th dport @endpoints4 accept");
  CHECK(out[1] == "meta mark 0x0000ca6c ip6 daddr . meta l4proto . th dport @endpoints6 accept");
  CHECK(out[2] == "oif \"lo\" accept");
  CHECK(out[3] == "oifname \"wg0\" accept");
  CHECK(out[4] == "oifname \"tun*\" oifname != \"tunl0\" accept");  // never ipip's fallback device
  const auto ep6 = std::size_t{1};
  // DHCPv4 only to the broadcast address or a server on the link, never anywhere on port 67.
  const auto dhcp4 = index_of(out, "ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept");
  CHECK(out[dhcp4 + 1] == "ip daddr @dhcp4 udp sport 68 udp dport 67 accept");
  const auto dhcp6 = index_of(out, "ip6 saddr fe80::/10 ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept");
  const auto nd = index_of(out, "icmpv6 type 133-136 ip6 hoplimit 255 accept");
  const auto dns_tcp = index_of(out, "tcp dport @dns_ports counter reject with tcp reset comment \"dns-out\"");
  const auto dns_udp = index_of(out, "udp dport @dns_ports counter reject with icmpx admin-prohibited comment \"dns-out\"");
  const auto count = index_of(out, "meta l4proto udp update @ifstat_out { oifname . meta nfproto . meta l4proto }");
  const auto block = index_of(out, "meta l4proto udp counter reject with icmpx admin-prohibited comment \"udp-out\"");
  // Endpoints come before the DNS block (a VPN on port 53 must work), DNS before the LAN.
  CHECK(dns_tcp > std::max({ep6, dhcp4, dhcp6, nd}));
  CHECK(dns_udp == dns_tcp + 1);
  CHECK(count == dns_udp + 1);  // no LAN in this policy
  CHECK(block == count + 1);
  // Then every other datagram protocol an unprivileged socket can send, counted and blocked as
  // UDP (a UDP-Lite socket is as unprivileged as a UDP one).
  const std::vector<std::string> others{"udplite", "sctp", "dccp", "l2tp"};
  for (std::size_t i = 0; i < others.size(); ++i) {
    CHECK(out[block + 1 + 2 * i] == "meta l4proto " + others[i] + " update @ifstat_out { oifname . meta nfproto . meta l4proto }");
    CHECK(out[block + 2 + 2 * i] ==
          "meta l4proto " + others[i] + " counter reject with icmpx admin-prohibited comment \"udp-out\"");
  }
  CHECK(block + 2 * others.size() == out.size() - 2);
  CHECK(out.back() == "accept");  // udp mode: what is not a datagram passes, by rule (the policy is drop)
}

TEST_CASE("strict blocks TCP with a reset - UDP and everything else with admin-prohibited - all counted") {
  const Ruleset rs = build_ruleset(policy(Mode::strict));
  const auto out = lines(chain(rs, "output"));
  REQUIRE(out.size() >= 8);
  CHECK(out[out.size() - 8] == "update @ifstat_out { oifname . meta nfproto . meta l4proto }");
  CHECK(out[out.size() - 7] == "meta l4proto tcp counter reject with tcp reset comment \"tcp-out\"");
  CHECK(out[out.size() - 6] == "meta l4proto udp counter reject with icmpx admin-prohibited comment \"udp-out\"");
  CHECK(out[out.size() - 5] == "meta l4proto udplite counter reject with icmpx admin-prohibited comment \"udp-out\"");
  CHECK(out[out.size() - 4] == "meta l4proto sctp counter reject with icmpx admin-prohibited comment \"udp-out\"");
  CHECK(out[out.size() - 3] == "meta l4proto dccp counter reject with icmpx admin-prohibited comment \"udp-out\"");
  CHECK(out[out.size() - 2] == "meta l4proto l2tp counter reject with icmpx admin-prohibited comment \"udp-out\"");
  CHECK(out[out.size() - 1] == "counter reject with icmpx admin-prohibited comment \"ip-out\"");
  // Input never rejects (that would send packets out): it drops.
  const auto in = lines(chain(rs, "input"));
  CHECK(in[in.size() - 7] == "meta l4proto tcp counter drop comment \"tcp-in\"");
  CHECK(in[in.size() - 6] == "meta l4proto udp counter drop comment \"udp-in\"");
  CHECK(in[in.size() - 2] == "meta l4proto l2tp counter drop comment \"udp-in\"");
  CHECK(in[in.size() - 1] == "counter drop comment \"ip-in\"");
  // Forward drops in strict: a reject's answer would leave a non-tunnel interface (the
  // container's), which our own output chain stops.
  const auto fwd = lines(chain(rs, "forward"));
  CHECK(fwd[fwd.size() - 7] == "meta l4proto tcp counter drop comment \"tcp-fwd\"");
  CHECK(fwd[fwd.size() - 1] == "counter drop comment \"ip-fwd\"");
  index_of(fwd, "tcp dport @dns_ports counter drop comment \"dns-fwd\"");
}

TEST_CASE("udp policy with IPv6 escalated: IPv6 blocked as strict does, IPv4 as udp does - a rule change in place") {
  Policy p = policy(Mode::udp);
  p.escalated = {Family::v6};
  const Ruleset rs = build_ruleset(p);
  const auto out = lines(chain(rs, "output"));
  REQUIRE(out.size() >= 4);
  CHECK(out[out.size() - 4] == "meta nfproto ipv6 update @ifstat_out { oifname . meta nfproto . meta l4proto }");
  CHECK(out[out.size() - 3] == "meta nfproto ipv6 meta l4proto tcp counter reject with tcp reset comment \"tcp-out\"");
  CHECK(out[out.size() - 2] == "meta nfproto ipv6 counter reject with icmpx admin-prohibited comment \"ip-out\"");
  CHECK(out[out.size() - 1] == "accept");  // IPv4's TCP and the rest still pass (udp policy)
  const auto in = lines(chain(rs, "input"));
  CHECK(in[in.size() - 2] == "meta nfproto ipv6 counter drop comment \"ip-in\"");
  const auto fwd = lines(chain(rs, "forward"));
  CHECK(fwd[fwd.size() - 3] == "meta nfproto ipv6 meta l4proto tcp counter drop comment \"tcp-fwd\"");
  // The endpoints, ND and DHCPv6 stay above it; going back is a change of rules, not of sets.
  CHECK(index_of(out, "meta nfproto ipv6 counter reject with icmpx admin-prohibited comment \"ip-out\"") >
        index_of(out, "icmpv6 type 133-136 ip6 hoplimit 255 accept"));
  const Change back = plan_change(rs, build_ruleset(policy(Mode::udp)));
  CHECK(back.kind == Change::Kind::rules);
  // Ignored in strict (everything is blocked there already) and by the emergency block.
  Policy strict = policy(Mode::strict);
  strict.escalated = {Family::v6};
  CHECK(build_ruleset(strict).chains == build_ruleset(policy(Mode::strict)).chains);
}

TEST_CASE("every drop or reject rule has a counter and a kind-direction tag") {
  for (Mode m : {Mode::udp, Mode::strict})
    for (bool lan : {false, true}) {
      const Ruleset rs = build_ruleset(policy(m, lan));
      for (const auto& c : rs.chains) {
        const std::string dir = c.hook == Hook::output ? "out" : c.hook == Hook::input ? "in" : "fwd";
        for (const auto& r : c.rules) {
          CAPTURE(to_nft_text(r));
          const bool blocks = r.verdict == Verdict::drop || r.verdict == Verdict::reject || r.verdict == Verdict::tcp_reset;
          CHECK(r.counter == blocks);
          if (blocks) {
            CHECK(r.comment.size() > dir.size() + 1);
            CHECK(r.comment.substr(r.comment.size() - dir.size() - 1) == "-" + dir);
          }
          // Output rejects (fail fast), forward too in udp mode; input, and forward in strict, drop.
          const bool drops = c.hook == Hook::input || (c.hook == Hook::forward && m == Mode::strict);
          if (drops) CHECK((!blocks || r.verdict == Verdict::drop));
          else CHECK(r.verdict != Verdict::drop);
        }
      }
    }
}

TEST_CASE("without an fwmark the endpoint rules match any packet - input never checks the mark") {
  const Ruleset rs = build_ruleset(policy(Mode::udp, false, false));
  const auto out = lines(chain(rs, "output"));
  CHECK(index_of(out, "ip daddr . meta l4proto . th dport @endpoints4 accept") == 0);
  for (const auto& l : out) CHECK(l.find("skuid") == std::string::npos);
  const auto in = lines(chain(build_ruleset(policy(Mode::udp)), "input"));
  // Inbound from an endpoint only as part of a flow this host began (TunnelVision/14899 class:
  // the endpoint's address and port are anyone's to put in a source field).
  index_of(in, "ip saddr . meta l4proto . th sport @endpoints4 ct state established accept");
  index_of(in, "ip6 saddr . meta l4proto . th sport @endpoints6 ct state established accept");
  for (const auto& l : in) CHECK(l.find("mark") == std::string::npos);
}

TEST_CASE("without an fwmark an endpoint uid refuses other users' sockets first - with a mark the mark alone decides") {
  Policy p = policy(Mode::udp, false, false);
  p.endpoint_uid = 0;
  const auto out = lines(chain(build_ruleset(p), "output"));
  const auto refuse4 = index_of(out, "meta skuid != 0 ip daddr . meta l4proto . th dport @endpoints4 counter reject with icmpx admin-prohibited comment \"endpoint-out\"");
  const auto refuse6 = index_of(out, "meta skuid != 0 ip6 daddr . meta l4proto . th dport @endpoints6 counter reject with icmpx admin-prohibited comment \"endpoint-out\"");
  CHECK(refuse4 < index_of(out, "ip daddr . meta l4proto . th dport @endpoints4 accept"));
  CHECK(refuse6 < index_of(out, "ip6 daddr . meta l4proto . th dport @endpoints6 accept"));
  p.endpoint_uid = 998;
  index_of(lines(chain(build_ruleset(p), "output")),
           "meta skuid != 998 ip daddr . meta l4proto . th dport @endpoints4 counter reject with icmpx admin-prohibited comment \"endpoint-out\"");
  p.fwmark = FwMark{51820};
  for (const auto& l : lines(chain(build_ruleset(p), "output"))) CHECK(l.find("skuid") == std::string::npos);
}

TEST_CASE("forward: into the tunnel accepted - out of it only replies - DNS and the policy block judged by the outgoing interface") {
  const auto fwd = lines(chain(build_ruleset(policy(Mode::udp)), "forward"));
  CHECK(fwd[0] == "oifname \"wg0\" accept");
  CHECK(fwd[1] == "oifname \"tun*\" oifname != \"tunl0\" accept");
  // A new flow from the tunnel (the VPN server using this host as a router) is judged like any
  // routed packet: only what answers a flow that went into the tunnel passes unjudged.
  CHECK(fwd[2] == "iifname \"wg0\" ct state established,related accept");
  CHECK(fwd[3] == "iifname \"tun*\" iifname != \"tunl0\" ct state established,related accept");
  for (const auto& l : fwd) CHECK(l.find("iifname \"wg0\" accept") == std::string::npos);
  index_of(fwd, "udp dport @dns_ports counter reject with icmpx admin-prohibited comment \"dns-fwd\"");
  index_of(fwd, "meta l4proto udp update @ifstat_fwd { oifname . meta nfproto . meta l4proto }");
  index_of(fwd, "meta l4proto udp counter reject with icmpx admin-prohibited comment \"udp-fwd\"");
  CHECK(fwd[fwd.size() - 2] == "meta l4proto l2tp counter reject with icmpx admin-prohibited comment \"udp-fwd\"");
  CHECK(fwd.back() == "accept");
  // No endpoint, DHCP or loopback exemption for routed packets.
  for (const auto& l : fwd) {
    CHECK(l.find("@endpoints") == std::string::npos);
    CHECK(l.find("sport 68") == std::string::npos);
    CHECK(l.find("\"lo\"") == std::string::npos);
    CHECK(l.find("oif ") == std::string::npos);
  }
}

TEST_CASE("sets: endpoints per family - DNS ports - LAN sets always declared - filled only with allow_lan - counting sets") {
  const Ruleset off = build_ruleset(policy(Mode::udp, false));
  REQUIRE(off.find_set("endpoints4"));
  CHECK(off.find_set("endpoints4")->elements ==
        std::vector<Element>{*Endpoint::parse("198.51.100.1:51820"), *Endpoint::parse("203.0.113.9:443/tcp")});
  CHECK(off.find_set("endpoints6")->elements == std::vector<Element>{*Endpoint::parse("[2001:db8:3::66]:51820")});
  CHECK(off.find_set("dns_ports")->elements == std::vector<Element>{std::uint16_t{53}, std::uint16_t{853}});
  // Declared but empty: every policy has the same sets, so switching allow_lan is a change of
  // rules and elements in place, never a new set.
  REQUIRE(off.find_set("lan4"));
  REQUIRE(off.find_set("lan6"));
  CHECK(off.find_set("lan4")->elements.empty());
  CHECK(off.find_set("lan6")->elements.empty());
  CHECK(same_declarations(off, build_ruleset(policy(Mode::strict, true))));
  for (const char* s : {"ifstat_out", "ifstat_in", "ifstat_fwd"}) {
    REQUIRE(off.find_set(s));
    CHECK(off.find_set(s)->counting);
    CHECK(off.find_set(s)->key == KeyType::ifname_proto);
    CHECK(off.find_set(s)->elements.empty());
  }
  for (const auto& l : lines(chain(off, "output"))) CHECK(l.find("@lan") == std::string::npos);

  const Ruleset on = build_ruleset(policy(Mode::udp, true));
  REQUIRE(on.find_set("lan4"));
  CHECK(on.find_set("lan4")->interval);
  std::vector<std::string> lan4;
  for (const auto& e : on.find_set("lan4")->elements) lan4.push_back(to_string(e));
  // Multicast only where it stays on the link (and SSDP): not 224.0.0.0/4, not ff00::/8.
  CHECK(lan4 == std::vector<std::string>{"169.254.0.0/16", "192.0.2.0/24", "224.0.0.0/24", "239.255.255.250",
                                         "255.255.255.255"});
  std::vector<std::string> lan6;
  for (const auto& e : on.find_set("lan6")->elements) lan6.push_back(to_string(e));
  CHECK(lan6 == std::vector<std::string>{"fe80::/10", "ff02::/16"});
  const auto out = lines(chain(on, "output"));
  const auto lan = index_of(out, "ip daddr @lan4 accept");
  CHECK(lan > index_of(out, "udp dport @dns_ports counter reject with icmpx admin-prohibited comment \"dns-out\""));
  index_of(lines(chain(on, "input")), "ip6 saddr @lan6 accept");
  index_of(lines(chain(on, "forward")), "ip daddr @lan4 accept");
}

TEST_CASE("duplicate endpoints collapse to one element") {
  Policy p = policy(Mode::udp);
  p.endpoints.push_back(*Endpoint::parse("198.51.100.1:51820"));
  CHECK(build_ruleset(p).find_set("endpoints4")->elements.size() == 2);
}

TEST_CASE("address ranges merge when they overlap or touch - and print as prefixes where they are one") {
  auto r = [](const char* p) { return AddressRange::of(*Prefix::parse(p)); };
  auto merged = merge_ranges({r("10.0.0.128/25"), r("10.0.0.0/25"), r("10.0.2.0/24"), r("10.0.2.5/32"), r("192.0.2.0/24")});
  std::vector<std::string> s;
  for (const auto& m : merged) s.push_back(m.str());
  CHECK(s == std::vector<std::string>{"10.0.0.0/24", "10.0.2.0/24", "192.0.2.0/24"});
  auto odd = merge_ranges({r("10.0.0.0/24"), r("10.0.1.0/25")});
  REQUIRE(odd.size() == 1);
  CHECK(odd[0].str() == "10.0.0.0-10.0.1.127");
  auto top = merge_ranges({r("255.255.255.255/32"), r("240.0.0.0/4")});
  REQUIRE(top.size() == 1);
  CHECK(top[0].str() == "240.0.0.0/4");
  CHECK(r("2001:db8::/64").str() == "2001:db8::/64");
  CHECK(r("192.0.2.7/24").str() == "192.0.2.0/24");  // host bits cleared
}

TEST_CASE("plan_change: endpoint or LAN changes are element deltas - rule changes replace only the chains that differ") {
  const Policy base = policy(Mode::udp, true);
  const Ruleset a = build_ruleset(base);

  SUBCASE("same policy: no change") {
    CHECK(plan_change(a, build_ruleset(base)) == Change{});
  }
  SUBCASE("one endpoint added and one removed") {
    Policy p = base;
    p.endpoints.erase(p.endpoints.begin());
    p.endpoints.push_back(*Endpoint::parse("198.51.100.2:1194/udp"));
    const Change c = plan_change(a, build_ruleset(p));
    CHECK(c.kind == Change::Kind::elements);
    CHECK(c.chains.empty());
    REQUIRE(c.deltas.size() == 1);
    CHECK(c.deltas[0].set == "endpoints4");
    CHECK(c.deltas[0].remove == std::vector<Element>{*Endpoint::parse("198.51.100.1:51820")});
    CHECK(c.deltas[0].add == std::vector<Element>{*Endpoint::parse("198.51.100.2:1194/udp")});
  }
  SUBCASE("a LAN subnet added next to another: the merged range replaces the old one") {
    Policy p = base;
    p.lan_subnets.push_back(*Prefix::parse("192.0.3.0/24"));
    const Change c = plan_change(a, build_ruleset(p));
    CHECK(c.kind == Change::Kind::elements);
    REQUIRE(c.deltas.size() == 1);
    CHECK(c.deltas[0].set == "lan4");
    CHECK(c.deltas[0].interval);
    REQUIRE(c.deltas[0].remove.size() == 1);
    CHECK(to_string(c.deltas[0].remove[0]) == "192.0.2.0/24");
    REQUIRE(c.deltas[0].add.size() == 1);
    CHECK(to_string(c.deltas[0].add[0]) == "192.0.2.0/23");
  }
  SUBCASE("LAN subnets change while allow_lan is off: nothing to do") {
    const Ruleset off = build_ruleset(policy(Mode::udp, false));
    Policy p = policy(Mode::udp, false);
    p.lan_subnets.push_back(*Prefix::parse("10.0.0.0/8"));
    CHECK(plan_change(off, build_ruleset(p)).kind == Change::Kind::none);
  }
  SUBCASE("mode: every chain's rules, in place") {
    Policy p = base;
    p.mode = Mode::strict;
    const Change c = plan_change(a, build_ruleset(p));
    CHECK(c.kind == Change::Kind::rules);
    CHECK(c.chains == std::vector<std::string>{"output", "input", "forward"});
    CHECK(c.deltas.empty());
  }
  SUBCASE("allow_lan off: the LAN rules go and the LAN sets are emptied, in place") {
    Policy p = base;
    p.allow_lan = false;
    const Change c = plan_change(a, build_ruleset(p));
    CHECK(c.kind == Change::Kind::rules);
    CHECK(c.chains == std::vector<std::string>{"output", "input", "forward"});
    REQUIRE(c.deltas.size() == 2);
    CHECK(c.deltas[0].set == "lan4");
    CHECK(c.deltas[0].add.empty());
    CHECK(c.deltas[0].remove.size() == a.find_set("lan4")->elements.size());
    CHECK(c.deltas[1].set == "lan6");
  }
  SUBCASE("fwmark: only output matches the mark") {
    Policy p = base;
    p.fwmark = FwMark{1};
    const Change c = plan_change(a, build_ruleset(p));
    CHECK(c.kind == Change::Kind::rules);
    CHECK(c.chains == std::vector<std::string>{"output"});
  }
  SUBCASE("tunnels and an endpoint at once: rules and elements in one change") {
    Policy p = base;
    p.tunnels.pop_back();
    p.endpoints.push_back(*Endpoint::parse("198.51.100.3:443/tcp"));
    const Change c = plan_change(a, build_ruleset(p));
    CHECK(c.kind == Change::Kind::rules);
    CHECK(c.chains == std::vector<std::string>{"output", "input", "forward"});
    REQUIRE(c.deltas.size() == 1);
    CHECK(c.deltas[0].add == std::vector<Element>{*Endpoint::parse("198.51.100.3:443/tcp")});
  }
  SUBCASE("a different declaration (another chain policy, a set missing): the declarations change") {
    Ruleset b = build_ruleset(base);
    b.chains[1].policy_drop = false;
    CHECK(plan_change(a, b).kind == Change::Kind::declarations);
    Ruleset c = build_ruleset(base);
    c.sets.pop_back();
    CHECK(plan_change(a, c).kind == Change::Kind::declarations);
  }
}

TEST_CASE("the ruleset prints on one line") {
  const Ruleset rs = build_ruleset(policy(Mode::strict, true));
  CHECK(rs.str().rfind("table inet leakguard: output(", 0) == 0);
  CHECK(rs.str().find("policy drop") != std::string::npos);
  CHECK(rs.str().find("endpoints4(2)") != std::string::npos);
  CHECK(rs.rule_count() == rs.chains[0].rules.size() + rs.chains[1].rules.size() + rs.chains[2].rules.size());
}

TEST_CASE("incremental endpoint changes: only what is missing is added and only what is there removed") {
  Ruleset rs = build_ruleset(policy(Mode::udp));
  const Endpoint have = *Endpoint::parse("198.51.100.1:51820");
  const Endpoint have6 = *Endpoint::parse("[2001:db8:3::66]:51820");
  const Endpoint fresh = *Endpoint::parse("198.51.100.50:1194/udp");
  const Endpoint absent = *Endpoint::parse("198.51.100.60:1194/udp");
  const Endpoint fresh6 = *Endpoint::parse("[2001:db8::5]:443/tcp");

  auto d = endpoint_deltas(rs, {fresh, have, fresh, fresh6}, {absent, have6});
  REQUIRE(d.size() == 2);
  CHECK(d[0].set == "endpoints4");
  CHECK(d[0].add == std::vector<Element>{fresh});
  CHECK(d[0].remove.empty());
  CHECK(d[1].set == "endpoints6");
  CHECK(d[1].add == std::vector<Element>{fresh6});
  CHECK(d[1].remove == std::vector<Element>{have6});

  apply_deltas(rs, d);
  Policy expected = policy(Mode::udp);
  expected.endpoints.push_back(fresh);
  expected.endpoints.push_back(fresh6);
  expected.endpoints.erase(std::find(expected.endpoints.begin(), expected.endpoints.end(), have6));
  CHECK(rs == build_ruleset(expected));  // same model as building from scratch

  CHECK(endpoint_deltas(rs, {fresh}, {absent}).empty());  // nothing to do
  CHECK(endpoint_deltas(rs, {have}, {have}).empty());     // removed and added back: no change
}

TEST_CASE("the emergency block: only loopback passes, every chain ends blocking, and a good policy replaces it in place") {
  Policy e = policy(Mode::udp, true);  // whatever else the value holds is ignored
  e.emergency = true;
  const Ruleset rs = build_ruleset(e);
  CHECK(lines(chain(rs, "output")) == std::vector<std::string>{
                                          "oif \"lo\" accept",
                                          "update @ifstat_out { oifname . meta nfproto . meta l4proto }",
                                          "meta l4proto tcp counter reject with tcp reset comment \"tcp-out\"",
                                          "meta l4proto udp counter reject with icmpx admin-prohibited comment \"udp-out\"",
                                          "meta l4proto udplite counter reject with icmpx admin-prohibited comment \"udp-out\"",
                                          "meta l4proto sctp counter reject with icmpx admin-prohibited comment \"udp-out\"",
                                          "meta l4proto dccp counter reject with icmpx admin-prohibited comment \"udp-out\"",
      "meta l4proto l2tp counter reject with icmpx admin-prohibited comment \"udp-out\"",
                                          "counter reject with icmpx admin-prohibited comment \"ip-out\"",
                                      });
  CHECK(lines(chain(rs, "input")) == std::vector<std::string>{
                                         "iif \"lo\" accept",
                                         "update @ifstat_in { iifname . meta nfproto . meta l4proto }",
                                         "meta l4proto tcp counter drop comment \"tcp-in\"",
                                         "meta l4proto udp counter drop comment \"udp-in\"",
                                         "meta l4proto udplite counter drop comment \"udp-in\"",
                                         "meta l4proto sctp counter drop comment \"udp-in\"",
                                         "meta l4proto dccp counter drop comment \"udp-in\"",
      "meta l4proto l2tp counter drop comment \"udp-in\"",
                                         "counter drop comment \"ip-in\"",
                                     });
  CHECK(lines(chain(rs, "forward")) == std::vector<std::string>{
                                           "update @ifstat_fwd { oifname . meta nfproto . meta l4proto }",
                                           "meta l4proto tcp counter drop comment \"tcp-fwd\"",
                                           "meta l4proto udp counter drop comment \"udp-fwd\"",
                                           "meta l4proto udplite counter drop comment \"udp-fwd\"",
                                           "meta l4proto sctp counter drop comment \"udp-fwd\"",
                                           "meta l4proto dccp counter drop comment \"udp-fwd\"",
      "meta l4proto l2tp counter drop comment \"udp-fwd\"",
                                           "counter drop comment \"ip-fwd\"",
                                       });
  for (const auto& c : rs.chains) CHECK(c.policy_drop);
  // No endpoint and no LAN element: nothing is let out.
  for (const char* name : {"endpoints4", "endpoints6", "lan4", "lan6"}) {
    REQUIRE(rs.find_set(name));
    CHECK(rs.find_set(name)->elements.empty());
  }
  // The same declarations as any policy: the good policy that follows replaces rules and fills
  // sets in place, never creating or deleting a chain or set (no window).
  for (Mode m : {Mode::udp, Mode::strict}) {
    const Ruleset good = build_ruleset(policy(m, true));
    CHECK(same_declarations(rs, good));
    const Change c = plan_change(rs, good);
    CHECK(c.kind == Change::Kind::rules);
    CHECK(c.chains == std::vector<std::string>{"output", "input", "forward"});
    CHECK(plan_change(good, rs).kind == Change::Kind::rules);
  }
  CHECK_FALSE(same_sets(e, policy(Mode::udp, true)));
  CHECK(e.str().ends_with(" emergency"));
}

TEST_CASE("attribution: each output block is logged and jumps to the senders chain - forward only logs - a toggle is a rule change in place") {
  Policy p = policy(Mode::strict);
  p.log_blocked = Policy::LogBlocked{19527, 100, 50};
  const Ruleset rs = build_ruleset(p);
  const auto out = lines(chain(rs, "output"));
  const std::string log = "limit rate 100/second burst 50 packets log prefix ";
  // Right before its block, with the same matches.
  const auto tcp = index_of(out, "meta l4proto tcp counter reject with tcp reset comment \"tcp-out\"");
  REQUIRE(tcp > 0);
  CHECK(out[tcp - 1] == "meta l4proto tcp " + log + "\"tcp-out\" group 19527 jump senders");
  const auto ip = index_of(out, "counter reject with icmpx admin-prohibited comment \"ip-out\"");
  CHECK(out[ip - 1] == log + "\"ip-out\" group 19527 jump senders");
  const auto fwd = lines(chain(rs, "forward"));
  const auto udp_fwd = index_of(fwd, "meta l4proto udp counter drop comment \"udp-fwd\"");
  CHECK(fwd[udp_fwd - 1] == "meta l4proto udp " + log + "\"udp-fwd\" group 19527");  // a routed packet has no local socket
  // Every level of the sending socket's cgroup, for each family, into its own set.
  const Chain& senders = chain(rs, "senders");
  CHECK_FALSE(senders.base);
  const auto s = lines(senders);
  REQUIRE(s.size() == 2u * kSenderLevels);
  CHECK(s.front() == "update @senders4 { socket cgroupv2 level 1 . ip daddr . meta l4proto . th sport . th dport }");
  CHECK(s[kSenderLevels - 1] == "update @senders4 { socket cgroupv2 level 8 . ip daddr . meta l4proto . th sport . th dport }");
  CHECK(s.back() == "update @senders6 { socket cgroupv2 level 8 . ip6 daddr . meta l4proto . th sport . th dport }");
  for (const char* name : {"senders4", "senders6"}) {
    const Set* set = rs.find_set(name);
    REQUIRE(set);
    CHECK(set->datapath_filled());
    CHECK(set->timeout_s == kSenderTimeoutS);
    CHECK(set->size == kSenderSetSize);
  }
  // The same declarations with attribution on or off and in the emergency block: switching is a
  // change of rules in place.
  Policy off = policy(Mode::strict);
  const Ruleset without = build_ruleset(off);
  CHECK(chain(without, "senders").rules.empty());
  CHECK(same_declarations(rs, without));
  const Change c = plan_change(without, rs);
  CHECK(c.kind == Change::Kind::rules);
  CHECK(c.chains == std::vector<std::string>{"output", "forward", "senders"});
  Policy e = p;
  e.emergency = true;
  const Ruleset emergency = build_ruleset(e);
  CHECK(same_declarations(rs, emergency));
  CHECK(chain(emergency, "senders").rules.empty());
  // The dry run says it as nft would.
  const std::string text = to_nft_text(rs);
  CHECK(text.find("\tset senders4 {\n\t\ttype cgroupsv2 . ipv4_addr . inet_proto . inet_service . inet_service\n\t\tsize 4096\n"
                  "\t\tflags dynamic,timeout\n\t\ttimeout 10s\n\t}\n") != std::string::npos);
  CHECK(text.find("\tchain senders {\n\t\tupdate @senders4") != std::string::npos);
}

TEST_CASE("rules_of keeps every field the chains are built from, and nothing the sets are made of") {
  // Firewall takes back the chains a change replaced when the next change has the same
  // rules_of(): a field that build_chains() reads but rules_of() dropped would bring back stale
  // rules. Each change below alters the chains exactly when same_rules() says so.
  Policy base = policy(Mode::udp, true, false);
  base.endpoint_uid = 0;  // root's sockets reach the endpoints (no mark)
  std::vector<std::pair<const char*, std::function<void(Policy&)>>> changes = {
      {"mode", [](Policy& p) { p.mode = Mode::strict; }},
      {"allow_lan", [](Policy& p) { p.allow_lan = false; }},
      {"tunnels", [](Policy& p) { p.tunnels = {*IfnamePattern::parse("tun7")}; }},
      {"fwmark", [](Policy& p) { p.fwmark = FwMark{7}; }},
      {"endpoint_uid", [](Policy& p) { p.endpoint_uid = 1000; }},
      {"emergency", [](Policy& p) { p.emergency = true; }},
      {"escalated", [](Policy& p) { p.escalated = {Family::v6}; }},
      {"log_blocked", [](Policy& p) { p.log_blocked = Policy::LogBlocked{19527, 100, 50}; }},
      {"endpoints", [](Policy& p) { p.endpoints.pop_back(); }},
      {"lan_subnets", [](Policy& p) { p.lan_subnets.clear(); }},
      {"tunnel_addresses", [](Policy& p) { p.tunnel_addresses = {*IpAddress::parse("100.64.0.2")}; }},
      {"dhcp_subnets", [](Policy& p) { p.dhcp_subnets = {*Prefix::parse("192.0.2.0/24")}; }},
  };
  for (const auto& [name, change] : changes) {
    const std::string field = name;
    CAPTURE(field);
    Policy p = base;
    change(p);
    REQUIRE(p != base);
    const bool chains_differ = build_chains(p) != build_chains(base);
    CHECK(same_rules(p, base) == !chains_differ);
    CHECK(build_chains(rules_of(p)) == build_chains(p));
  }
}
