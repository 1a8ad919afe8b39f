#include "firewall/ruleset.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "common/overloaded.hpp"

namespace leakguard::firewall {

std::string_view nft_type(KeyType k) {
  switch (k) {
    case KeyType::ipv4_addr: return "ipv4_addr";
    case KeyType::ipv6_addr: return "ipv6_addr";
    case KeyType::inet_service: return "inet_service";
    case KeyType::endpoint4: return "ipv4_addr . inet_proto . inet_service";
    case KeyType::endpoint6: return "ipv6_addr . inet_proto . inet_service";
    case KeyType::ifname_proto: return "ifname . nf_proto . inet_proto";
    case KeyType::sender4: return "cgroupsv2 . ipv4_addr . inet_proto . inet_service . inet_service";
    case KeyType::sender6: return "cgroupsv2 . ipv6_addr . inet_proto . inet_service . inet_service";
  }
  return "?";
}

std::string_view to_string(Hook h) {
  switch (h) {
    case Hook::input: return "input";
    case Hook::output: return "output";
    case Hook::forward: return "forward";
  }
  return "?";
}

// ---- address arithmetic (big-endian byte strings) --------------------------------------------

namespace {

/// a + 1; false if it wrapped (a was all ones).
bool increment(IpAddress& a) {
  for (std::size_t i = a.size(); i-- > 0;) {
    if (++a.bytes[i] != 0) return true;
  }
  return false;
}

IpAddress last_of(const Prefix& p) {
  IpAddress a = p.network().address;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int bits_here = static_cast<int>(p.length) - static_cast<int>(i * 8);
    if (bits_here >= 8) continue;
    const auto host = bits_here <= 0 ? 0xff : (0xff >> bits_here);
    a.bytes[i] = static_cast<std::uint8_t>(a.bytes[i] | host);
  }
  return a;
}

}  // namespace

AddressRange AddressRange::of(const Prefix& p) { return AddressRange{p.network().address, last_of(p)}; }

std::optional<std::uint8_t> AddressRange::prefix_length() const {
  if (first.family != last.family) return std::nullopt;
  const unsigned max = first.family == Family::v4 ? 32 : 128;
  for (unsigned len = 0; len <= max; ++len) {
    Prefix p{first, static_cast<std::uint8_t>(len)};
    if (p.network().address == first && last_of(p) == last) return static_cast<std::uint8_t>(len);
  }
  return std::nullopt;
}

std::string AddressRange::str() const {
  if (first == last) return first.str();
  if (auto len = prefix_length()) return first.str() + "/" + std::to_string(*len);
  return first.str() + "-" + last.str();
}

std::string to_string(const Element& e) {
  return std::visit(overloaded{
                        [](const Endpoint& ep) {
                          return ep.address.str() + " . " + std::string(to_string(ep.transport)) + " . " +
                                 std::to_string(ep.port);
                        },
                        [](const AddressRange& r) { return r.str(); },
                        [](std::uint16_t port) { return std::to_string(port); },
                    },
                    e);
}

std::vector<AddressRange> merge_ranges(std::vector<AddressRange> ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<AddressRange> out;
  for (const auto& r : ranges) {
    if (!out.empty()) {
      AddressRange& cur = out.back();
      // Overlapping or adjacent (cur.last + 1 == r.first): one range. The kernel's interval
      // sets refuse overlaps, and adjacent ranges would share a boundary element.
      IpAddress next = cur.last;
      const bool cur_reaches_top = !increment(next);
      if (cur_reaches_top || r.first <= next) {
        if (cur.last < r.last) cur.last = r.last;
        continue;
      }
    }
    out.push_back(r);
  }
  return out;
}

// ---- Ruleset ---------------------------------------------------------------------------------

const Set* Ruleset::find_set(std::string_view name) const {
  for (const auto& s : sets)
    if (s.name == name) return &s;
  return nullptr;
}

std::size_t Ruleset::rule_count() const {
  std::size_t n = 0;
  for (const auto& c : chains) n += c.rules.size();
  return n;
}

std::size_t Ruleset::element_count() const {
  std::size_t n = 0;
  for (const auto& s : sets) n += s.elements.size();
  return n;
}

std::string Ruleset::str() const {
  std::string s = "table inet " + table + ":";
  for (const auto& c : chains)
    s += " " + c.name + "(" + std::to_string(c.rules.size()) + " rules, policy " + (c.policy_drop ? "drop" : "accept") + ")";
  s += " sets:";
  for (const auto& set : sets) s += " " + set.name + "(" + std::to_string(set.elements.size()) + ")";
  return s;
}

namespace {

// Names of the sets: rules refer to them, the daemon's deltas too.
constexpr const char* kEndpoints4 = "endpoints4";
constexpr const char* kEndpoints6 = "endpoints6";
constexpr const char* kDnsPorts = "dns_ports";
constexpr const char* kLan4 = "lan4";
constexpr const char* kLan6 = "lan6";
constexpr const char* kDhcp4 = "dhcp4";
constexpr const char* kTunnelAddrs4 = "tunnel_addrs4";
constexpr const char* kTunnelAddrs6 = "tunnel_addrs6";
constexpr const char* kSendersChain = "senders";

// DNS over UDP/TCP (RFC 1035 §4.2) and DNS over TLS (RFC 7858 §3.1).
constexpr std::uint16_t kDnsPort = 53;
constexpr std::uint16_t kDnsOverTlsPort = 853;
// DHCPv4 client and server ports (RFC 2131 §4.1).
constexpr std::uint16_t kDhcp4Client = 68;
constexpr std::uint16_t kDhcp4Server = 67;
// DHCPv6 client and server/relay ports (RFC 8415 §7.2).
constexpr std::uint16_t kDhcp6Client = 546;
constexpr std::uint16_t kDhcp6Server = 547;
// ICMPv6 router solicitation .. neighbour advertisement: 133..136 (RFC 4861 §4.1-4.4); they are
// only valid with hop limit 255 (RFC 4861 §6.1.1, §7.1.1), which also keeps them on the link.
constexpr std::uint8_t kNdFirst = 133;
constexpr std::uint8_t kNdLast = 136;
constexpr std::uint8_t kNdHoplimit = 255;
// MLD: query 130 (RFC 3810 §5.1), version 2 report 143 sent to ff02::16 (RFC 3810 §5.2.14).
// Without reports, switches that snoop MLD stop forwarding our solicited-node multicast: ND dies.
constexpr std::uint8_t kMldQuery = 130;
constexpr std::uint8_t kMld2Report = 143;
// MLDv1 report 131 and done 132 (RFC 2710 §3.6, §3.7).
constexpr std::uint8_t kMld1Report = 131;
constexpr std::uint8_t kMld1Done = 132;
// Size of each per-interface counting set: one element per (interface, protocol) seen.
constexpr std::uint32_t kCountingSetSize = 1024;

Prefix pfx(const char* text) { return *Prefix::parse(text); }

/// The interface is one the tunnel pattern names: the pattern, then (a prefix only) each kernel
/// fallback device it would also match, excluded by name - `oifname "tun*" oifname != "tunl0"`.
/// Packets through other tunnels break off at the first compare.
std::vector<Match> tunnel_is(bool output, const IfnamePattern& t) {
  std::vector<Match> m{IfnameIs{output, t}};
  for (std::string_view d : t.excluded_devices()) m.push_back(IfnameIs{output, IfnamePattern{std::string(d)}, true});
  return m;
}

Rule accept(std::vector<Match> m) { return Rule{std::move(m), std::nullopt, false, Verdict::accept, ""}; }

Rule counted(std::vector<Match> m, Verdict v, std::string tag) {
  return Rule{std::move(m), std::nullopt, true, v, std::move(tag)};
}

std::string dir_tag(Hook h) {
  switch (h) {
    case Hook::output: return "out";
    case Hook::input: return "in";
    case Hook::forward: return "fwd";
  }
  return "?";
}

std::string counting_set(Hook h) { return "ifstat_" + dir_tag(h); }

/// How a chain stops a packet. Output rejects, so the local sender fails at once (EPERM, or a
/// TCP reset instead of SYN retries). Input only drops: rejecting an incoming packet would send
/// something out of the interface. Forward rejects in udp mode (the ICMP error or reset goes back
/// to the container as ICMP or TCP, which udp mode lets through); in strict mode that answer would
/// itself be a packet leaving a non-tunnel interface and our output chain would stop it, so
/// forward drops.
Verdict block_verdict(Hook h, Mode mode, bool tcp) {
  if (h == Hook::input || (h == Hook::forward && mode == Mode::strict)) return Verdict::drop;
  return tcp ? Verdict::tcp_reset : Verdict::reject;
}

/// The rules that end every chain: count per interface, then block per mode, counted. In udp
/// mode, an escalated family's packets that are not datagrams are then counted and blocked as
/// strict mode would (same verdicts and tags), before the final accept.
void add_blocking(Chain& c, Mode mode, const std::vector<Family>& escalated = {}) {
  const bool out = c.hook != Hook::input;  // output and forward judge the outgoing interface
  const std::string d = dir_tag(c.hook);
  // Counted in a separate rule without a verdict: if the counting set is full, the dynset
  // expression breaks out of its rule, and the verdict must not depend on that.
  // In udp mode each datagram protocol is counted and blocked by a pair of rules of its own (a
  // packet of another protocol passes each pair after two expressions); strict counts every
  // packet once.
  const CountPerInterface count{out, counting_set(c.hook)};
  if (mode == Mode::strict) c.rules.push_back(Rule{{}, count, false, Verdict::none, ""});

  const Verdict datagram_verdict = block_verdict(c.hook, mode, false);
  const Verdict tcp_verdict = block_verdict(c.hook, mode, true);
  if (mode == Mode::strict)
    c.rules.push_back(counted({L4protoIs{kProtoTcp}}, tcp_verdict, "tcp-" + d));
  for (std::uint8_t proto : kDatagramProtos) {
    if (mode == Mode::udp) c.rules.push_back(Rule{{L4protoIs{proto}}, count, false, Verdict::none, ""});
    c.rules.push_back(counted({L4protoIs{proto}}, datagram_verdict, "udp-" + d));
  }
  // The last rule decides everything left, in both modes: the chain's drop policy is never what
  // lets a packet through or stops it while the chain has rules.
  if (mode == Mode::strict) {
    c.rules.push_back(counted({}, datagram_verdict, "ip-" + d));
    return;
  }
  for (Family f : {Family::v4, Family::v6}) {
    if (std::find(escalated.begin(), escalated.end(), f) == escalated.end()) continue;
    c.rules.push_back(Rule{{NfprotoIs{f}}, count, false, Verdict::none, ""});
    c.rules.push_back(counted({NfprotoIs{f}, L4protoIs{kProtoTcp}}, block_verdict(c.hook, Mode::strict, true), "tcp-" + d));
    c.rules.push_back(counted({NfprotoIs{f}}, block_verdict(c.hook, Mode::strict, false), "ip-" + d));
  }
  c.rules.push_back(accept({}));
}

/// Before every counted block of the chain, the same matches logged (no verdict, or a jump to
/// `senders` when given): what leaves and is blocked is logged for the daemon's attribution, at
/// most `l.per_second` a second per rule, and its sender's cgroup remembered. Only blocked packets
/// pass these rules, so nothing that is let through pays for them.
void add_log_rules(Chain& c, const Policy::LogBlocked& l, std::string_view senders) {
  std::vector<Rule> rules;
  rules.reserve(c.rules.size() * 2);
  for (auto& r : c.rules) {
    if (r.counter && r.verdict != Verdict::none && r.verdict != Verdict::accept && r.verdict != Verdict::jump) {
      Rule log{r.matches, std::nullopt, false, Verdict::none, "", LogTo{l.group, l.per_second, l.burst, r.comment}};
      if (!senders.empty()) log.verdict = Verdict::jump, log.target = std::string(senders);
      rules.push_back(std::move(log));
    }
    rules.push_back(std::move(r));
  }
  c.rules = std::move(rules);
}

void add_dns(Chain& c, Mode mode) {
  const std::string d = dir_tag(c.hook);
  const bool dst = c.hook != Hook::input;  // queries go to port 53; input sees the replies
  c.rules.push_back(counted({PortInSet{kProtoTcp, dst, kDnsPorts}}, block_verdict(c.hook, mode, true), "dns-" + d));
  c.rules.push_back(counted({PortInSet{kProtoUdp, dst, kDnsPorts}}, block_verdict(c.hook, mode, false), "dns-" + d));
}

void add_lan(Chain& c) {
  const bool dst = c.hook != Hook::input;
  c.rules.push_back(accept({AddressInSet{Family::v4, dst, kLan4}}));
  c.rules.push_back(accept({AddressInSet{Family::v6, dst, kLan6}}));
}

/// An interval set's elements: the ranges merged (the kernel refuses overlapping intervals).
std::vector<Element> interval_elements(std::vector<AddressRange> r) {
  std::vector<Element> out;
  for (auto& m : merge_ranges(std::move(r))) out.emplace_back(m);
  return out;
}

std::vector<Element> lan_elements(const Policy& p, Family f) {
  std::vector<AddressRange> r;
  for (const auto& n : p.lan_subnets)
    if (n.address.family == f) r.push_back(AddressRange::of(n));
  // Multicast only where it stays on the link: a LAN's discovery (mDNS, LLMNR, SSDP), never
  // multicast a router may carry off the link.
  for (const auto& n : link_scope_ranges(f)) r.push_back(AddressRange::of(n));
  return interval_elements(std::move(r));
}

std::vector<Element> dhcp_elements(const Policy& p) {
  std::vector<AddressRange> r;
  for (const auto& n : p.dhcp_subnets) r.push_back(AddressRange::of(n));
  return interval_elements(std::move(r));
}

std::vector<Element> tunnel_address_elements(const Policy& p, Family f) {
  std::vector<IpAddress> a;
  for (const auto& x : p.tunnel_addresses)
    if (x.family == f) a.push_back(x);
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  std::vector<Element> out;
  for (const auto& x : a) out.emplace_back(AddressRange{x, x});
  return out;
}

std::vector<Element> endpoint_elements(const Policy& p, Family f) {
  // Sorted as plain Endpoints (cheaper than through the variant), then wrapped.
  std::vector<Endpoint> eps;
  eps.reserve(p.endpoints.size());
  for (const auto& e : p.endpoints)
    if (e.address.family == f) eps.push_back(e);
  if (!std::is_sorted(eps.begin(), eps.end())) std::sort(eps.begin(), eps.end());
  eps.erase(std::unique(eps.begin(), eps.end()), eps.end());
  return std::vector<Element>(eps.begin(), eps.end());
}

}  // namespace

Ruleset build_ruleset(const Policy& given) {
  Ruleset rs;
  // The emergency block declares every set too (so that a good policy replaces it in place), with
  // no element: every other field of its policy is ignored.
  Policy emergency;
  emergency.emergency = true;
  const Policy& p = given.emergency ? emergency : given;
  rs.sets.push_back(Set{kEndpoints4, KeyType::endpoint4, false, false, 0, endpoint_elements(p, Family::v4)});
  rs.sets.push_back(Set{kEndpoints6, KeyType::endpoint6, false, false, 0, endpoint_elements(p, Family::v6)});
  rs.sets.push_back(Set{kDnsPorts, KeyType::inet_service, false, false, 0, {kDnsPort, kDnsOverTlsPort}});
  // The LAN sets exist (empty) without allow_lan too: every policy declares the same sets and
  // chains, so any change between policies is a change of rules and elements in place.
  rs.sets.push_back(Set{kLan4, KeyType::ipv4_addr, true, false, 0, p.allow_lan ? lan_elements(p, Family::v4) : std::vector<Element>{}});
  rs.sets.push_back(Set{kLan6, KeyType::ipv6_addr, true, false, 0, p.allow_lan ? lan_elements(p, Family::v6) : std::vector<Element>{}});
  rs.sets.push_back(Set{kDhcp4, KeyType::ipv4_addr, true, false, 0, dhcp_elements(p)});
  rs.sets.push_back(Set{kTunnelAddrs4, KeyType::ipv4_addr, false, false, 0, tunnel_address_elements(p, Family::v4)});
  rs.sets.push_back(Set{kTunnelAddrs6, KeyType::ipv6_addr, false, false, 0, tunnel_address_elements(p, Family::v6)});
  for (Hook h : {Hook::output, Hook::input, Hook::forward})
    rs.sets.push_back(Set{counting_set(h), KeyType::ifname_proto, false, true, kCountingSetSize, {}});
  // Declared by every policy (empty without attribution), like the LAN sets.
  rs.sets.push_back(Set{std::string(kSenderSet4), KeyType::sender4, false, false, kSenderSetSize, {}, kSenderTimeoutS});
  rs.sets.push_back(Set{std::string(kSenderSet6), KeyType::sender6, false, false, kSenderSetSize, {}, kSenderTimeoutS});
  rs.chains = build_chains(p);
  return rs;
}

namespace {

/// The regular chain the output chain's log rules jump to: for each family, the sending socket's
/// cgroup at every level from 1 to kSenderLevels remembered with the packet's destination and
/// ports (levels below the socket's own cgroup break off: the deepest remembered is its own).
/// Rules only with attribution; the chain is declared by every policy.
Chain senders_chain(const Policy& p) {
  Chain c{kSendersChain, Hook::output, 0, true, {}, false};
  if (!p.log_blocked || p.emergency) return c;
  for (Family f : {Family::v4, Family::v6})
    for (std::uint8_t level = 1; level <= kSenderLevels; ++level) {
      Rule r;
      r.remember = RememberSender{f, level, std::string(f == Family::v4 ? kSenderSet4 : kSenderSet6)};
      c.rules.push_back(std::move(r));
    }
  return c;
}

std::vector<Chain> build_base_chains(const Policy& p);

}  // namespace

std::vector<Chain> build_chains(const Policy& p) {
  std::vector<Chain> chains = build_base_chains(p);
  chains.push_back(senders_chain(p));
  return chains;
}

namespace {

std::vector<Chain> build_base_chains(const Policy& p) {
  if (p.emergency) {
    // The emergency block: nothing but loopback, in and out, both families; nothing forwarded.
    // The same chains as every policy, ending with strict mode's counted blocks (output rejects,
    // so local senders fail at once; input and forward drop).
    Chain out{"output", Hook::output, 0, true, {accept({LoopbackIs{true}})}};
    add_blocking(out, Mode::strict);
    Chain in{"input", Hook::input, 0, true, {accept({LoopbackIs{false}})}};
    add_blocking(in, Mode::strict);
    Chain fwd{"forward", Hook::forward, 0, true, {}};
    add_blocking(fwd, Mode::strict);
    return {std::move(out), std::move(in), std::move(fwd)};
  }
  // output: locally generated packets, judged by the interface they leave through. The endpoints
  // come first: every packet through the tunnel also leaves once, encrypted, to the endpoint, so
  // this order takes the fewest rules per tunnelled packet (bench_pathcost).
  // Without a mark, a socket of another user than the VPN client's is refused first (the owner
  // test comes first: the kernel's own sockets, as WireGuard's, break off at it at once).
  Chain out{"output", Hook::output, 0, true, {}};  // policy drop: see Chain::policy_drop
  for (Family f : {Family::v4, Family::v6}) {
    const EndpointInSet to_endpoint{f, true, f == Family::v4 ? kEndpoints4 : kEndpoints6};
    if (!p.fwmark && p.endpoint_uid)
      out.rules.push_back(counted({SocketUidIsNot{*p.endpoint_uid}, to_endpoint}, Verdict::reject, "endpoint-out"));
    std::vector<Match> m;
    if (p.fwmark) m.push_back(MarkIs{FwMark{p.fwmark->value}});
    m.push_back(to_endpoint);
    out.rules.push_back(accept(std::move(m)));
  }
  out.rules.push_back(accept({LoopbackIs{true}}));
  for (const auto& t : p.tunnels) out.rules.push_back(accept(tunnel_is(true, t)));
  // DHCPv4 from the client port: broadcast (DISCOVER, REQUEST, REBIND), or unicast to a server
  // on the link (RENEW); never to any address on port 67 (a root socket on port 68 is no
  // licence to leave). A server behind a relay is renewed by the broadcast rebind.
  out.rules.push_back(accept({AddressIs{true, pfx("255.255.255.255/32")}, PortsAre{kProtoUdp, kDhcp4Client, kDhcp4Server}}));
  out.rules.push_back(accept({AddressInSet{Family::v4, true, kDhcp4}, PortsAre{kProtoUdp, kDhcp4Client, kDhcp4Server}}));
  out.rules.push_back(accept({AddressIs{false, pfx("fe80::/10")}, AddressIs{true, pfx("ff02::1:2/128")},
                              PortsAre{kProtoUdp, kDhcp6Client, kDhcp6Server}}));
  out.rules.push_back(accept({Icmpv6TypeIn{kNdFirst, kNdLast}, HoplimitIs{kNdHoplimit}}));
  out.rules.push_back(accept({Icmpv6TypeIn{kMld2Report, kMld2Report}, AddressIs{true, pfx("ff02::16/128")}}));
  // MLDv1 (RFC 2710), which a host falls back to on a link with an MLDv1 querier: reports to
  // the group reported, done to all routers - link-local groups, hop limit 1 (§3).
  out.rules.push_back(accept({Icmpv6TypeIn{kMld1Report, kMld1Done}, AddressIs{true, pfx("ff02::/16")}, HoplimitIs{1}}));
  add_dns(out, p.mode);
  if (p.allow_lan) add_lan(out);
  add_blocking(out, p.mode, p.escalated);

  // input: packets for this host, judged by the interface they came in through.
  Chain in{"input", Hook::input, 0, true, {}};
  in.rules.push_back(accept({LoopbackIs{false}}));
  for (const auto& t : p.tunnels) in.rules.push_back(accept(tunnel_is(false, t)));
  // What is addressed to the tunnel's own address came in through another interface: a LAN
  // peer routing it via eth0 (CVE-2019-14899), whatever its source claims - before the
  // endpoint, LAN and (udp mode) accept-all rules.
  in.rules.push_back(counted({AddressInSet{Family::v4, true, kTunnelAddrs4}}, Verdict::drop, "tunaddr-in"));
  in.rules.push_back(counted({AddressInSet{Family::v6, true, kTunnelAddrs6}}, Verdict::drop, "tunaddr-in"));
  // From the endpoints only what answers this host's own flow to them (conntrack: a reply, or
  // more of a flow it began): a packet with the endpoint's address and port as its source is
  // otherwise anyone's to forge. Replies carry no mark (the mark is a property of the local socket).
  in.rules.push_back(accept({EndpointInSet{Family::v4, false, kEndpoints4}, CtState{}}));
  in.rules.push_back(accept({EndpointInSet{Family::v6, false, kEndpoints6}, CtState{}}));
  // ICMP errors about a flow this host was let send (conntrack's "related": the quoted packet is
  // one of its flows): Packet Too Big / Fragmentation Needed for the VPN's own connection to
  // its endpoint, or an unreachable for a LAN flow. Without them path-MTU discovery to an IPv6 or
  // TCP endpoint black-holes in strict mode. Conntrack only confirms flows the output chain let
  // out, so nothing blocked has a flow to relate to.
  in.rules.push_back(accept({L4protoIs{kProtoIcmp}, CtState{true}}));
  in.rules.push_back(accept({L4protoIs{kProtoIcmpv6}, CtState{true}}));
  // And none that quotes no flow of this host's: Linux hands an ICMP error to the socket its
  // quoted header names, whatever local address it came to, so a LAN peer's forged unreachable
  // or Packet Too Big sent to eth0's address reached the tunnel's own sockets in udp mode
  // (ECONNREFUSED, a path MTU of 552 on the tunnel's route) past tunaddr-in. Conntrack has no
  // flow for it, or sees it addressed to another address than the flow's: invalid. (Neighbour
  // discovery and MLD are untracked, not invalid; a ping to this host is new.)
  in.rules.push_back(counted({L4protoIs{kProtoIcmp}, CtState{false, true}}, Verdict::drop, "icmperr-in"));
  in.rules.push_back(counted({L4protoIs{kProtoIcmpv6}, CtState{false, true}}, Verdict::drop, "icmperr-in"));
  in.rules.push_back(accept({NfprotoIs{Family::v4}, PortsAre{kProtoUdp, kDhcp4Server, kDhcp4Client}}));
  in.rules.push_back(accept({AddressIs{false, pfx("fe80::/10")}, PortsAre{kProtoUdp, kDhcp6Server, kDhcp6Client}}));
  in.rules.push_back(accept({Icmpv6TypeIn{kNdFirst, kNdLast}, HoplimitIs{kNdHoplimit}}));
  in.rules.push_back(accept({Icmpv6TypeIn{kMldQuery, kMldQuery}, AddressIs{false, pfx("fe80::/10")}}));
  add_dns(in, p.mode);
  if (p.allow_lan) add_lan(in);
  add_blocking(in, p.mode, p.escalated);

  // forward: routed packets (containers, VMs) take the same way out as our own. Into the tunnel
  // anything; out of it only what answers a flow that went in (a container's replies, the LAN
  // behind a VPN gateway): a new flow from the tunnel - the VPN server or a peer using this host
  // as a router - leaves another interface only as the rules below allow (the LAN with
  // allow_lan), like any other routed packet.
  Chain fwd{"forward", Hook::forward, 0, true, {}};
  for (const auto& t : p.tunnels) fwd.rules.push_back(accept(tunnel_is(true, t)));
  for (const auto& t : p.tunnels) {
    std::vector<Match> m = tunnel_is(false, t);
    m.push_back(CtState{true});
    fwd.rules.push_back(accept(std::move(m)));
  }
  add_dns(fwd, p.mode);
  if (p.allow_lan) add_lan(fwd);
  add_blocking(fwd, p.mode, p.escalated);

  if (p.log_blocked) {
    add_log_rules(out, *p.log_blocked, kSendersChain);
    add_log_rules(fwd, *p.log_blocked, "");  // routed packets have no local socket to remember
  }

  return {std::move(out), std::move(in), std::move(fwd)};
}

}  // namespace

namespace {

/// Elements of one set all hold the same alternative: compare without std::visit's dispatch
/// (a set update must not cost more than the kernel's part, even with 10,000 elements).
/// The same order as Endpoint's operator<=> (family, address bytes, port, transport), with
/// one memcmp for the address instead of a byte-wise three-way compare.
int compare_endpoints(const Endpoint& a, const Endpoint& b) {
  if (a.address.family != b.address.family) return a.address.family < b.address.family ? -1 : 1;
  if (int c = std::memcmp(a.address.bytes.data(), b.address.bytes.data(), a.address.bytes.size())) return c;
  if (a.port != b.port) return a.port < b.port ? -1 : 1;
  if (a.transport != b.transport) return a.transport < b.transport ? -1 : 1;
  return 0;
}

int compare_elements(const Element& a, const Element& b) {
  if (a.index() != b.index()) return a.index() < b.index() ? -1 : 1;
  if (const auto* x = std::get_if<Endpoint>(&a)) return compare_endpoints(*x, std::get<Endpoint>(b));
  if (const auto* x = std::get_if<AddressRange>(&a)) {
    const auto& y = std::get<AddressRange>(b);
    return *x < y ? -1 : (y < *x ? 1 : 0);
  }
  const auto x = std::get<std::uint16_t>(a), y = std::get<std::uint16_t>(b);
  return x < y ? -1 : (y < x ? 1 : 0);
}

struct ElementLess {
  bool operator()(const Element& a, const Element& b) const { return compare_elements(a, b) < 0; }
};

}  // namespace

bool same_declarations(const Ruleset& a, const Ruleset& b) {
  if (a.table != b.table || a.chains.size() != b.chains.size() || a.sets.size() != b.sets.size()) return false;
  for (std::size_t i = 0; i < a.chains.size(); ++i) {
    const Chain& x = a.chains[i];
    const Chain& y = b.chains[i];
    if (x.name != y.name || x.hook != y.hook || x.priority != y.priority || x.policy_drop != y.policy_drop || x.base != y.base)
      return false;
  }
  for (std::size_t i = 0; i < a.sets.size(); ++i) {
    const Set& x = a.sets[i];
    const Set& y = b.sets[i];
    if (x.name != y.name || x.key != y.key || x.interval != y.interval || x.counting != y.counting || x.size != y.size ||
        x.timeout_s != y.timeout_s)
      return false;
  }
  return true;
}

Change plan_change(const Ruleset& from, const Ruleset& to) {
  Change c;
  if (!same_declarations(from, to)) {
    c.kind = Change::Kind::declarations;
    return c;
  }
  for (std::size_t i = 0; i < from.chains.size(); ++i)
    if (from.chains[i].rules != to.chains[i].rules) c.chains.push_back(to.chains[i].name);
  for (std::size_t i = 0; i < from.sets.size(); ++i) {
    const Set& a = from.sets[i];
    const Set& b = to.sets[i];
    if (a.datapath_filled()) continue;  // not ours to change
    const bool same = a.elements.size() == b.elements.size() &&
                      std::equal(a.elements.begin(), a.elements.end(), b.elements.begin(),
                                 [](const Element& x, const Element& y) { return compare_elements(x, y) == 0; });
    if (same) continue;
    SetDelta d{a.name, a.key, a.interval, {}, {}, a.elements.empty(), b.elements.empty()};
    // Both lists are sorted and unique. Ranges that changed at all are removed and re-added
    // whole: merged ranges never overlap, so this never collides inside the kernel's tree.
    std::set_difference(a.elements.begin(), a.elements.end(), b.elements.begin(), b.elements.end(),
                        std::back_inserter(d.remove), ElementLess{});
    std::set_difference(b.elements.begin(), b.elements.end(), a.elements.begin(), a.elements.end(),
                        std::back_inserter(d.add), ElementLess{});
    c.deltas.push_back(std::move(d));
  }
  c.kind = !c.chains.empty() ? Change::Kind::rules : !c.deltas.empty() ? Change::Kind::elements : Change::Kind::none;
  return c;
}

std::vector<SetDelta> endpoint_deltas(const Ruleset& rs, const std::vector<Endpoint>& add,
                                      const std::vector<Endpoint>& remove) {
  std::vector<SetDelta> out;
  for (Family f : {Family::v4, Family::v6}) {
    const Set* set = rs.find_set(f == Family::v4 ? kEndpoints4 : kEndpoints6);
    if (!set) continue;
    SetDelta d{set->name, set->key, set->interval, {}, {}};
    auto present = [&](const Element& e) {
      return std::binary_search(set->elements.begin(), set->elements.end(), e, ElementLess{});
    };
    auto listed = [](const std::vector<Element>& v, const Element& e) {
      return std::any_of(v.begin(), v.end(), [&](const Element& x) { return compare_elements(x, e) == 0; });
    };
    for (const auto& r : remove)
      if (r.address.family == f && present(Element{r}) && !listed(d.remove, Element{r})) d.remove.emplace_back(r);
    for (const auto& a : add)
      if (a.address.family == f && !listed(d.add, Element{a}) && (!present(Element{a}) || listed(d.remove, Element{a})))
        d.add.emplace_back(a);
    // Removed and added again in the same call: nothing to do for it.
    for (auto it = d.add.begin(); it != d.add.end();) {
      auto in_remove = std::find_if(d.remove.begin(), d.remove.end(), [&](const Element& x) { return compare_elements(x, *it) == 0; });
      if (in_remove != d.remove.end()) {
        d.remove.erase(in_remove);
        it = d.add.erase(it);
      } else {
        ++it;
      }
    }
    std::sort(d.remove.begin(), d.remove.end(), ElementLess{});
    std::sort(d.add.begin(), d.add.end(), ElementLess{});
    if (!d.add.empty() || !d.remove.empty()) out.push_back(std::move(d));
  }
  return out;
}

void apply_deltas(Ruleset& rs, const std::vector<SetDelta>& deltas) {
  for (const auto& d : deltas) {
    auto it = std::find_if(rs.sets.begin(), rs.sets.end(), [&](const Set& s) { return s.name == d.set; });
    if (it == rs.sets.end()) continue;
    auto& v = it->elements;
    for (const auto& r : d.remove) {
      auto pos = std::lower_bound(v.begin(), v.end(), r, ElementLess{});
      if (pos != v.end() && compare_elements(*pos, r) == 0) v.erase(pos);
    }
    for (const auto& a : d.add) {
      auto pos = std::lower_bound(v.begin(), v.end(), a, ElementLess{});
      if (pos == v.end() || compare_elements(*pos, a) != 0) v.insert(pos, a);
    }
  }
}

}  // namespace leakguard::firewall
