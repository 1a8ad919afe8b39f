// Real packets through the lab with leakguard's table in the host namespace: for each policy and
// family, what must pass passes and what must not is stopped (tests/lab/README.md has the map).
// "Stopped" is shown twice: the sender's kernel refuses the datagram (EPERM) or the connection
// (reset), and the receiver has not seen it by the time a later control packet sent on an allowed
// path has arrived.
#include <doctest/doctest.h>

#include <map>

#include <iostream>

#include "firewall/firewall.hpp"
#include "tests/integration/firewall/net_util.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::firewall;
using namespace fwtest;
namespace lab = leakguard::lab;

namespace {

constexpr std::uint32_t kMark = 51820;  // the lab's wg-quick fwmark
constexpr std::uint16_t kPlain = 40000, kEndpointUdp = 40001, kTcp = 40010, kEndpointTcp = 40011;

struct Fam {
  int af;
  const char* name;
  const char* web;        ///< a server address in the 'inet' namespace
  const char* vpn_exit;   ///< what the server sees for tunnelled traffic
  const char* isp_seen;   ///< what it sees for traffic that left through eth0
  const char* gateway;    ///< the ISP router on eth0's link
};
const Fam kV4{AF_INET, "IPv4", "203.0.113.80", "203.0.113.66", "203.0.113.2", "192.0.2.1"};
const Fam kV6{AF_INET6, "IPv6", "2001:db8:3::80", "2001:db8:3::66", "2001:db8:2::10", "2001:db8:2::1"};

Policy lab_policy(Mode mode) {
  Policy p;
  p.mode = mode;
  p.tunnels = {*IfnamePattern::parse("wg0")};
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820"),       // the real WireGuard server
                 *Endpoint::parse("203.0.113.80:40001/udp"),   // test endpoints with receivers
                 *Endpoint::parse("[2001:db8:3::80]:40001/udp"), *Endpoint::parse("203.0.113.80:40011/tcp"),
                 *Endpoint::parse("[2001:db8:3::80]:40011/tcp")};
  p.fwmark = FwMark{kMark};
  return p;
}

Firewall open_in(const std::string& ns, Ownership o = Ownership::automatic) {
  lab::NetnsScope in(ns);
  Options opt;
  opt.ownership = o;
  auto fw = Firewall::open(opt);
  REQUIRE_MESSAGE(fw, (fw ? "" : fw.error().str()));
  return std::move(*fw);
}

void apply(Firewall& fw, const Policy& p) {
  auto r = fw.apply(p);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().str()));
}

/// The 'inet' receivers for one family.
struct Receivers {
  Fd plain, endpoint, dns, tcp, endpoint_tcp, dns_tcp, dot_tcp;
  Receivers(const lab::Lab& l, const Fam& f)
      : plain(udp_listener(l.ns("inet"), f.web, kPlain)),
        endpoint(udp_listener(l.ns("inet"), f.web, kEndpointUdp)),
        dns(udp_listener(l.ns("inet"), f.web, 53)),
        tcp(tcp_listener(l.ns("inet"), f.web, kTcp)),
        endpoint_tcp(tcp_listener(l.ns("inet"), f.web, kEndpointTcp)),
        dns_tcp(tcp_listener(l.ns("inet"), f.web, 53)),
        dot_tcp(tcp_listener(l.ns("inet"), f.web, 853)) {}
};

SocketSpec host(const lab::Lab& l, const Fam& f, const std::string& dev = {}, std::optional<std::uint32_t> mark = {}) {
  SocketSpec s;
  s.ns = l.ns("host");
  s.family = f.af;
  s.device = dev;
  s.mark = mark;
  return s;
}

/// Sends `payload` on `s` and expects the kernel to refuse it, then proves the receiver did not
/// get it: a control datagram through the tunnel must arrive first.
void expect_udp_blocked(const lab::Lab& l, const Fam& f, const SocketSpec& s, const SockAddr& to, const Fd& receiver,
                        const std::string& payload) {
  Fd fd = udp_socket(s);
  CHECK_MESSAGE(send_udp(fd, to, payload) == EPERM, payload);
  Fd control = udp_socket(host(l, f));
  const std::string c = "control-after-" + payload;
  REQUIRE(send_udp(control, to, c) == 0);
  std::vector<Datagram> seen;
  REQUIRE_MESSAGE(wait_for(receiver, c, seen), "the control packet through the tunnel did not arrive: " << c);
  for (auto& d : collect(receiver, 100ms)) seen.push_back(d);
  CHECK_MESSAGE(!contains(seen, payload), "leaked: " << payload);
}

/// Sends and expects arrival; returns the source address the receiver saw.
std::string expect_udp_arrives(const SocketSpec& s, const SockAddr& to, const Fd& receiver, const std::string& payload) {
  Fd fd = udp_socket(s);
  REQUIRE_MESSAGE(send_udp(fd, to, payload) == 0, payload);
  std::vector<Datagram> seen;
  REQUIRE_MESSAGE(wait_for(receiver, payload, seen), "did not arrive: " << payload);
  for (const auto& d : seen)
    if (d.payload == payload) return d.from;
  return {};
}

void run_family_checks(const lab::Lab& l, Firewall& fw, Mode mode, const Fam& f) {
  INFO(to_string(mode) << " " << f.name);
  Receivers r(l, f);
  const auto plain = SockAddr::of(f.web, kPlain);
  const std::string tag = std::string(to_string(mode)) + "-" + f.name;

  // UDP out of eth0 (the WebRTC leak): stopped in both policies.
  expect_udp_blocked(l, f, host(l, f, "eth0"), plain, r.plain, tag + " udp via eth0");
  // UDP through the tunnel: passes, and the server sees the VPN's exit address.
  CHECK(expect_udp_arrives(host(l, f), plain, r.plain, tag + " udp via tunnel") == f.vpn_exit);

  // TCP out of eth0: allowed in udp, reset at once in strict (not a hang).
  const int tcp_eth0 = tcp_connect(host(l, f, "eth0"), SockAddr::of(f.web, kTcp));
  if (mode == Mode::udp) CHECK_MESSAGE(tcp_eth0 == 0, err_name(tcp_eth0));
  else CHECK_MESSAGE(tcp_eth0 == ECONNREFUSED, err_name(tcp_eth0));
  CHECK(tcp_connect(host(l, f), SockAddr::of(f.web, kTcp)) == 0);  // through the tunnel

  // The endpoints: only with the VPN client's mark (the mark also routes them out of eth0).
  CHECK(expect_udp_arrives(host(l, f, {}, kMark), SockAddr::of(f.web, kEndpointUdp), r.endpoint, tag + " endpoint marked") ==
        f.isp_seen);
  expect_udp_blocked(l, f, host(l, f, "eth0"), SockAddr::of(f.web, kEndpointUdp), r.endpoint, tag + " endpoint unmarked");
  CHECK(tcp_connect(host(l, f, {}, kMark), SockAddr::of(f.web, kEndpointTcp)) == 0);
  const int unmarked_tcp = tcp_connect(host(l, f, "eth0"), SockAddr::of(f.web, kEndpointTcp));
  if (mode == Mode::strict) CHECK_MESSAGE(unmarked_tcp == ECONNREFUSED, err_name(unmarked_tcp));

  // DNS outside the tunnel: stopped in both policies, UDP and TCP, 53 and 853; through the tunnel fine.
  expect_udp_blocked(l, f, host(l, f, "eth0"), SockAddr::of(f.web, 53), r.dns, tag + " dns via eth0");
  expect_udp_blocked(l, f, host(l, f, {}, kMark), SockAddr::of(f.web, 53), r.dns, tag + " dns marked via eth0");
  CHECK(expect_udp_arrives(host(l, f), SockAddr::of(f.web, 53), r.dns, tag + " dns via tunnel") == f.vpn_exit);
  const int dns_tcp = tcp_connect(host(l, f, "eth0"), SockAddr::of(f.web, 53));
  CHECK_MESSAGE(dns_tcp == ECONNREFUSED, err_name(dns_tcp));
  const int dot_tcp = tcp_connect(host(l, f, "eth0"), SockAddr::of(f.web, 853));
  CHECK_MESSAGE(dot_tcp == ECONNREFUSED, err_name(dot_tcp));
  CHECK(tcp_connect(host(l, f), SockAddr::of(f.web, 53)) == 0);

  // Everything that connected reached the server; nothing that was refused did.
  CHECK(accept_n(r.tcp, mode == Mode::udp ? 2u : 1u) == (mode == Mode::udp ? 2u : 1u));
  CHECK(accept_n(r.dns_tcp, 1) == 1);  // the tunnelled one only
  CHECK(accept_all(r.tcp).empty());
  CHECK(accept_all(r.dns_tcp).empty());
  CHECK(accept_all(r.dot_tcp).empty());
  (void)fw;
}

/// A namespace routed through the lab's host (a container, or a peer behind a tunnel interface):
/// a veth `host_if` in the host with NET.1/24 and V6::1/64, eth0 in `child` with .2 / ::2 and its
/// default routes via the host; the host forwards and masquerades it (in the lab's host
/// namespace only, never the machine's).
void routed_child(const lab::Lab& l, const lab::Netns& child, const std::string& host_if, const std::string& net,
                  const std::string& v6) {
  const std::string h = l.ns("host");
  auto sh = [&](const std::vector<std::string>& argv) {
    auto r = lab::run(argv);
    REQUIRE_MESSAGE(r.status == 0, r.out);
  };
  sh({"ip", "-n", h, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", child.name()});
  sh({"ip", "-n", h, "addr", "add", net + ".1/24", "dev", host_if});
  sh({"ip", "-n", h, "-6", "addr", "add", v6 + "::1/64", "dev", host_if, "nodad"});
  sh({"ip", "-n", h, "link", "set", host_if, "up"});
  sh({"ip", "-n", child.name(), "addr", "add", net + ".2/24", "dev", "eth0"});
  sh({"ip", "-n", child.name(), "-6", "addr", "add", v6 + "::2/64", "dev", "eth0", "nodad"});
  sh({"ip", "-n", child.name(), "link", "set", "eth0", "up"});
  sh({"ip", "-n", child.name(), "route", "add", "default", "via", net + ".1"});
  sh({"ip", "-n", child.name(), "-6", "route", "add", "default", "via", v6 + "::1"});
  REQUIRE(l.run("host", {"sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}).status == 0);
  REQUIRE(l.run("host", {"nft", "add table inet lgtest_nat; add chain inet lgtest_nat post { type nat hook postrouting priority srcnat; }; "
                                "add rule inet lgtest_nat post ip saddr " + net + ".0/24 masquerade; "
                                "add rule inet lgtest_nat post ip6 saddr " + v6 + "::/64 masquerade"})
              .status == 0);
}

}  // namespace

TEST_CASE("udp policy - IPv4 and IPv6 - UDP and DNS stopped outside the tunnel - TCP and the marked endpoints pass") {
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  apply(fw, lab_policy(Mode::udp));
  run_family_checks(l, fw, Mode::udp, kV4);
  run_family_checks(l, fw, Mode::udp, kV6);

  auto c = fw.counters();
  REQUIRE_MESSAGE(c, (c ? "" : c.error().str()));
  std::uint64_t udp_eth0 = 0, dns = 0;
  std::map<std::string, std::uint64_t> per_family;
  for (const auto& x : *c) {
    MESSAGE(x.str());
    if (x.kind == "udp" && x.direction == "out" && x.interface_or_scope == "eth0") udp_eth0 += x.packets, per_family[x.family] += x.packets;
    if (x.kind == "dns" && x.direction == "out") dns += x.packets;
  }
  CHECK(udp_eth0 >= 4);  // plain and unmarked endpoint, per family (DNS has its own rule)
  CHECK(per_family["ipv4"] >= 2);  // the counting sets tell the families apart
  CHECK(per_family["ipv6"] >= 2);
  CHECK(dns >= 8);
  const std::string summary = summarize(*c);
  MESSAGE(summary);
  CHECK(summary.find("UDP packets towards the internet via eth0") != std::string::npos);
  CHECK(summary.find("DNS outside the tunnel") != std::string::npos);
}

TEST_CASE("strict policy - IPv4 and IPv6 - all IP stopped outside the tunnel - TCP reset at once - tunnel still works") {
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  apply(fw, lab_policy(Mode::strict));
  run_family_checks(l, fw, Mode::strict, kV4);
  run_family_checks(l, fw, Mode::strict, kV6);
  // ICMP out of eth0 is IP too.
  const auto ping = l.run("host", {"ping", "-c1", "-W1", "-I", "eth0", "203.0.113.80"});
  CHECK(ping.status != 0);
  CHECK(l.run("host", {"ping", "-c1", "-W2", "203.0.113.80"}).status == 0);  // through the tunnel
}

TEST_CASE("udp policy stops the other datagram protocols too: UDP-Lite (IPv4, IPv6), SCTP, DCCP, L2TPv3 (IPv4, IPv6)") {
  // UDP-Lite is an unprivileged SOCK_DGRAM socket like UDP. SCTP, DCCP and L2TPv3 over IP are
  // sent from raw sockets here (this kernel may have none of their modules): the rules judge the
  // IP protocol number, not the socket that made the packet. L2TPv3 (115) is an unprivileged
  // SOCK_DGRAM socket wherever l2tp_ip is built (Debian's kernels), and passed udp mode before.
  lab::Lab l;
  struct Case {
    const char* name;
    const Fam* fam;
    int protocol;
    bool raw;
  };
  const Case cases[] = {{"UDP-Lite", &kV4, IPPROTO_UDPLITE, false},
                        {"UDP-Lite", &kV6, IPPROTO_UDPLITE, false},
                        {"SCTP", &kV4, IPPROTO_SCTP, true},
                        {"DCCP", &kV4, IPPROTO_DCCP, true},
                        {"L2TPv3", &kV4, kProtoL2tp, true},
                        {"L2TPv3", &kV6, kProtoL2tp, true}};
  // A datagram of the case's protocol from the host, out of `dev` ("" = routed: the tunnel).
  auto send = [&](const Case& c, const std::string& dev, const std::string& payload) {
    SocketSpec s = host(l, *c.fam, dev);
    s.protocol = c.protocol;
    Fd fd = make_socket(s, c.raw ? SOCK_RAW : SOCK_DGRAM);
    return send_udp(fd, SockAddr::of(c.fam->web, c.raw ? 0 : kPlain), payload);
  };
  // Has a datagram carrying `payload` arrived by the deadline? (A raw IPv4 socket reads the IP
  // header too, so the payload is looked for inside what arrived.) Everything read is kept in `seen`.
  auto arrives = [](const Fd& rx, const std::string& payload, std::vector<Datagram>& seen, std::chrono::milliseconds t) {
    const auto deadline = Clock::now() + t;
    for (;;) {
      for (auto& d : drain(rx)) seen.push_back(std::move(d));
      for (const auto& d : seen)
        if (d.payload.find(payload) != std::string::npos) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{rx.get(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  };
  Firewall fw = open_in(l.ns("host"));
  for (const auto& c : cases) {
    const std::string tag = std::string(c.name) + " " + c.fam->name;
    INFO(tag);
    SocketSpec rs;
    rs.ns = l.ns("inet");
    rs.family = c.fam->af;
    rs.protocol = c.protocol;
    if (!c.raw) {
      rs.bind_ip = c.fam->web;
      rs.bind_port = kPlain;
    }
    Fd rx = make_socket(rs, c.raw ? SOCK_RAW : SOCK_DGRAM);
    std::vector<Datagram> seen;
    // Without our table it leaves eth0 and arrives: the path the rules must close.
    REQUIRE(fw.remove());
    REQUIRE(send(c, "eth0", tag + " before") == 0);
    REQUIRE_MESSAGE(arrives(rx, tag + " before", seen, 5000ms), "the path via eth0 does not work without a table");

    apply(fw, lab_policy(Mode::udp));
    CHECK(send(c, "eth0", tag + " via eth0") == EPERM);
    // The control: through the tunnel the same protocol still passes, and arrives after anything
    // sent earlier via eth0 would have.
    REQUIRE(send(c, "", tag + " via the tunnel") == 0);
    REQUIRE_MESSAGE(arrives(rx, tag + " via the tunnel", seen, 5000ms), "the control through the tunnel did not arrive");
    arrives(rx, "\x01never-sent", seen, 100ms);
    for (const auto& d : seen) CHECK_MESSAGE(d.payload.find(tag + " via eth0") == std::string::npos, "leaked: " << tag);
    // Counted as UDP, on eth0 (the table was installed afresh for this case).
    auto counted = fw.counters();
    REQUIRE_MESSAGE(counted, (counted ? "" : counted.error().str()));
    std::uint64_t eth0 = 0;
    for (const auto& x : *counted)
      if (x.kind == "udp" && x.direction == "out" && x.interface_or_scope == "eth0") eth0 = x.packets;
    CHECK(eth0 == 1);
  }
}

TEST_CASE("IPv6 neighbour discovery keeps working on eth0 in strict mode") {
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  apply(fw, lab_policy(Mode::strict));
  // Forget the router's link-layer address: the next packet out of eth0 must solicit it again.
  REQUIRE(l.run("host", {"ip", "-6", "neigh", "flush", "dev", "eth0"}).status == 0);
  REQUIRE(l.run("isp", {"ip", "-6", "neigh", "flush", "dev", "down0"}).status == 0);
  Receivers r(l, kV6);
  // The marked endpoint goes out of eth0 via the router 2001:db8:2::1: without NS/NA this
  // datagram would be accepted by sendto and silently never delivered.
  CHECK(expect_udp_arrives(host(l, kV6, {}, kMark), SockAddr::of(kV6.web, kEndpointUdp), r.endpoint, "after nd") ==
        kV6.isp_seen);
  const auto neigh = l.run("host", {"ip", "-6", "neigh", "show", "2001:db8:2::1", "dev", "eth0"});
  MESSAGE(neigh.out);
  CHECK(neigh.out.find("lladdr") != std::string::npos);
}

TEST_CASE("DHCPv4 and DHCPv6 pass in both policies - other UDP to the same places does not - nor DHCP to far servers") {
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  const unsigned down0 = ifindex(l.ns("isp"), "down0");
  const unsigned eth0 = ifindex(l.ns("host"), "eth0");
  // The "DHCP server" on the ISP side of eth0's link.
  Fd server4 = udp_listener(l.ns("isp"), "0.0.0.0", 67, "down0");
  Fd server6 = udp_listener(l.ns("isp"), "::", 547, "down0");
  {
    lab::NetnsScope in(l.ns("isp"));
    ipv6_mreq m{};
    inet_pton(AF_INET6, "ff02::1:2", &m.ipv6mr_multiaddr);  // All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1)
    m.ipv6mr_interface = down0;
    REQUIRE(setsockopt(server6.get(), IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &m, sizeof m) == 0);
  }
  // The client side on the host: the DHCP client port, sending and receiving.
  SocketSpec c4 = host(l, kV4, "eth0");
  c4.bind_port = 68;
  c4.broadcast = true;
  Fd client4 = udp_socket(c4);
  for (Mode mode : {Mode::udp, Mode::strict}) {
    const std::string m(to_string(mode));
    apply(fw, lab_policy(mode));
    const std::string d = m + " DHCPDISCOVER";
    REQUIRE(send_udp(client4, SockAddr::of("255.255.255.255", 67), d) == 0);
    std::vector<Datagram> seen;
    CHECK_MESSAGE(wait_for(server4, d, seen), d);
    // Not from the client port: plain UDP to the broadcast address, stopped.
    SocketSpec other = host(l, kV4, "eth0");
    other.broadcast = true;
    Fd o = udp_socket(other);
    CHECK(send_udp(o, SockAddr::of("255.255.255.255", 67), m + " not dhcp") == EPERM);
    // From the client port, but to an address far away: no DHCP server is there (a root socket on
    // port 68 is no licence to leave).
    CHECK(send_udp(client4, SockAddr::of("203.0.113.80", 67), m + " far port 67") == EPERM);
    // RENEW: unicast to the server on the link, once the daemon has put the link's subnet in.
    Policy with_link = lab_policy(mode);
    with_link.dhcp_subnets = {*Prefix::parse("192.0.2.0/24")};
    apply(fw, with_link);
    const std::string renew = m + " DHCPREQUEST renewing";
    REQUIRE(send_udp(client4, SockAddr::of("192.0.2.1", 67), renew) == 0);
    CHECK_MESSAGE(wait_for(server4, renew, seen), renew);
    CHECK(send_udp(client4, SockAddr::of("203.0.113.80", 67), m + " far port 67, again") == EPERM);

    // The server's answer reaches the client port (input), other source ports do not.
    SocketSpec s4;
    s4.ns = l.ns("isp");
    s4.device = "down0";
    s4.bind_port = 67;
    Fd offer = udp_socket(s4);
    const std::string off = m + " DHCPOFFER";
    REQUIRE(send_udp(offer, SockAddr::of("192.0.2.10", 68), off) == 0);
    CHECK_MESSAGE(wait_for(client4, off, seen), off);
    SocketSpec s5 = s4;
    s5.bind_port = 5000;
    Fd not_offer = udp_socket(s5);
    REQUIRE(send_udp(not_offer, SockAddr::of("192.0.2.10", 68), m + " from 5000") == 0);
    REQUIRE(send_udp(offer, SockAddr::of("192.0.2.10", 68), m + " second offer") == 0);
    CHECK(wait_for(client4, m + " second offer", seen));
    for (auto& x : collect(client4, 100ms)) seen.push_back(x);
    CHECK_FALSE(contains(seen, m + " from 5000"));

    // DHCPv6 SOLICIT from the link-local address, port 546, to ff02::1:2 port 547.
    SocketSpec c6 = host(l, kV6, "eth0");
    c6.bind_port = 546;
    Fd solicit = udp_socket(c6);
    const std::string sol = m + " SOLICIT";
    REQUIRE(send_udp(solicit, SockAddr::of("ff02::1:2", 547, eth0), sol) == 0);
    std::vector<Datagram> seen6;
    REQUIRE_MESSAGE(wait_for(server6, sol, seen6), sol);
    CHECK(seen6.back().from.rfind("fe80:", 0) == 0);
    Fd other6 = udp_socket(host(l, kV6, "eth0"));
    CHECK(send_udp(other6, SockAddr::of("ff02::1:2", 547, eth0), m + " not dhcpv6") == EPERM);
  }
}

TEST_CASE("allow_lan opens the on-link subnets and multicast - off again closes them - LAN changes are set updates") {
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  Fd lan4 = udp_listener(l.ns("isp"), "192.0.2.1", 40020);
  Fd lan6 = udp_listener(l.ns("isp"), "2001:db8:2::1", 40020);
  Fd host_in = udp_listener(l.ns("host"), "192.0.2.10", 40021);
  Policy p = lab_policy(Mode::udp);
  auto send_lan = [&](const Fam& f, const std::string& payload) {
    Fd fd = udp_socket(host(l, f));  // on-link: the main table's subnet route wins over the tunnel
    return send_udp(fd, SockAddr::of(f.gateway, 40020), payload);
  };
  auto send_in = [&](const std::string& payload) {
    SocketSpec s;
    s.ns = l.ns("isp");
    Fd fd = udp_socket(s);
    REQUIRE(send_udp(fd, SockAddr::of("192.0.2.10", 40021), payload) == 0);
  };
  std::vector<Datagram> seen;

  apply(fw, p);  // LAN off
  CHECK(send_lan(kV4, "lan4 off") == EPERM);
  CHECK(send_lan(kV6, "lan6 off") == EPERM);
  {
    Fd m = udp_socket(host(l, kV4, "eth0"));
    CHECK(send_udp(m, SockAddr::of("224.0.0.251", 5353), "mdns off") == EPERM);
  }
  send_in("in off");

  p.allow_lan = true;
  p.lan_subnets = {*Prefix::parse("192.0.2.0/24"), *Prefix::parse("2001:db8:2::/64")};
  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::replaced);
  CHECK(send_lan(kV4, "lan4 on") == 0);
  CHECK(wait_for(lan4, "lan4 on", seen));
  CHECK(send_lan(kV6, "lan6 on") == 0);
  CHECK(wait_for(lan6, "lan6 on", seen));
  {
    Fd m = udp_socket(host(l, kV4, "eth0"));
    CHECK(send_udp(m, SockAddr::of("224.0.0.251", 5353), "mdns on") == 0);
  }
  send_in("in on");
  CHECK(wait_for(host_in, "in on", seen));
  CHECK_FALSE(contains(seen, "in off"));  // dropped on the way in while LAN was off

  // Dropping the IPv4 subnet is a set update, no table replace; IPv4 LAN closes, IPv6 stays open.
  p.lan_subnets = {*Prefix::parse("2001:db8:2::/64")};
  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::set_elements);
  CHECK(send_lan(kV4, "lan4 removed") == EPERM);
  CHECK(send_lan(kV6, "lan6 kept") == 0);
  CHECK(wait_for(lan6, "lan6 kept", seen));

  p.allow_lan = false;
  apply(fw, p);
  CHECK(send_lan(kV6, "lan6 off again") == EPERM);
  CHECK_FALSE(contains(seen, "lan4 off"));
  CHECK_FALSE(contains(seen, "lan6 off"));
  for (auto& x : collect(lan4, 100ms)) seen.push_back(x);
  CHECK_FALSE(contains(seen, "lan4 removed"));
}

TEST_CASE("forwarded traffic from a child namespace takes the same way out") {
  lab::Lab l;
  lab::Netns child("ctr");
  const std::string h = l.ns("host");
  routed_child(l, child, "ctr0", "100.64.200", "2001:db8:200");

  Firewall fw = open_in(h);
  for (Mode mode : {Mode::udp, Mode::strict}) {
    apply(fw, lab_policy(mode));
    for (const Fam* f : {&kV4, &kV6}) {
      INFO(to_string(mode) << " " << f->name);
      Receivers r(l, *f);
      const std::string tag = std::string(to_string(mode)) + " " + f->name + " ";
      SocketSpec c;
      c.ns = child.name();
      c.family = f->af;
      // Default: the host routes the container into the tunnel.
      Fd u = udp_socket(c);
      REQUIRE(send_udp(u, SockAddr::of(f->web, kPlain), tag + "fwd via tunnel") == 0);
      std::vector<Datagram> seen;
      REQUIRE(wait_for(r.plain, tag + "fwd via tunnel", seen));
      CHECK(seen.back().from == f->vpn_exit);
      CHECK(tcp_connect(c, SockAddr::of(f->web, kTcp)) == 0);

      // Now the host routes the container out of eth0 (a split-tunnel mistake): the forward hook stops it.
      const std::string fam = f->af == AF_INET ? "-4" : "-6";
      const std::string src = f->af == AF_INET ? "100.64.200.0/24" : "2001:db8:200::/64";
      REQUIRE(l.run("host", {"ip", fam, "rule", "add", "from", src, "table", "main", "priority", "100"}).status == 0);
      REQUIRE(send_udp(u, SockAddr::of(f->web, kPlain), tag + "fwd via eth0") == 0);  // its own kernel sends it
      REQUIRE(send_udp(u, SockAddr::of(f->web, 53), tag + "fwd dns via eth0") == 0);
      // udp mode: TCP passes, TCP DNS is reset at once. strict: both dropped (a reset would
      // itself have to leave through ctr0, a non-tunnel interface), so the SYN goes unanswered.
      const int tcp = tcp_connect(c, SockAddr::of(f->web, kTcp), 700ms);
      if (mode == Mode::udp) CHECK_MESSAGE(tcp == 0, err_name(tcp));
      else CHECK_MESSAGE(tcp == ETIMEDOUT, err_name(tcp));
      const int dns_tcp = tcp_connect(c, SockAddr::of(f->web, 53), 700ms);
      CHECK_MESSAGE(dns_tcp == (mode == Mode::udp ? ECONNREFUSED : ETIMEDOUT), err_name(dns_tcp));
      REQUIRE(l.run("host", {"ip", fam, "rule", "del", "priority", "100"}).status == 0);
      // Back through the tunnel: the control arrives, the eth0 attempts did not.
      REQUIRE(send_udp(u, SockAddr::of(f->web, kPlain), tag + "control") == 0);
      REQUIRE(wait_for(r.plain, tag + "control", seen));
      for (auto& x : collect(r.plain, 100ms)) seen.push_back(x);
      for (auto& x : drain(r.dns)) seen.push_back(x);
      CHECK_FALSE(contains(seen, tag + "fwd via eth0"));
      CHECK_FALSE(contains(seen, tag + "fwd dns via eth0"));
    }
    auto c = fw.counters();
    REQUIRE(c);
    std::uint64_t fwd_udp = 0;
    for (const auto& x : *c)
      if (x.direction == "fwd" && x.kind == "udp" && x.interface_or_scope == "all") fwd_udp = x.packets;
    CHECK(fwd_udp >= 2);
    MESSAGE(summarize(*c));
  }
}

TEST_CASE("forwarding: a new flow from the tunnel does not leave another interface - into the tunnel it does") {
  // A peer behind a tunnel interface (the VPN server, or a mesh peer, using this host as a
  // router): its new flows are judged like any routed packet leaving eth0, never let through
  // because they came in through the tunnel. The same peer's packets routed back into the wg0
  // tunnel arrive (the control), and once our table is gone the eth0 path is shown to work.
  lab::Lab l;
  lab::Netns peer("peer");
  const std::string h = l.ns("host");
  routed_child(l, peer, "tnl9", "100.64.201", "2001:db8:201");

  Firewall fw = open_in(h);
  for (Mode mode : {Mode::udp, Mode::strict}) {
    Policy p = lab_policy(mode);
    p.tunnels.push_back(*IfnamePattern::parse("tnl9"));
    apply(fw, p);
    for (const Fam* f : {&kV4, &kV6}) {
      INFO(to_string(mode) << " " << f->name);
      Receivers r(l, *f);
      const std::string tag = std::string(to_string(mode)) + " " + f->name + " ";
      SocketSpec c;
      c.ns = peer.name();
      c.family = f->af;
      Fd u = udp_socket(c);
      const std::string fam = f->af == AF_INET ? "-4" : "-6";
      const std::string src = f->af == AF_INET ? "100.64.201.0/24" : "2001:db8:201::/64";
      // The host routes the peer out of eth0.
      REQUIRE(l.run("host", {"ip", fam, "rule", "add", "from", src, "table", "main", "priority", "100"}).status == 0);
      REQUIRE(send_udp(u, SockAddr::of(f->web, kPlain), tag + "from the tunnel via eth0") == 0);
      const int tcp = tcp_connect(c, SockAddr::of(f->web, kTcp), 700ms);
      // udp mode lets TCP out of eth0 by its definition, for routed packets as for our own;
      // strict drops it (nothing answers the SYN).
      if (mode == Mode::udp) CHECK_MESSAGE(tcp == 0, err_name(tcp));
      else CHECK_MESSAGE(tcp == ETIMEDOUT, err_name(tcp));
      REQUIRE(l.run("host", {"ip", fam, "rule", "del", "priority", "100"}).status == 0);
      // Into the wg0 tunnel: the control arrives, from the VPN's exit; the eth0 datagram did not.
      REQUIRE(send_udp(u, SockAddr::of(f->web, kPlain), tag + "control") == 0);
      std::vector<Datagram> seen;
      REQUIRE(wait_for(r.plain, tag + "control", seen));
      CHECK(seen.back().from == f->vpn_exit);
      for (auto& x : collect(r.plain, 100ms)) seen.push_back(x);
      CHECK_FALSE(contains(seen, tag + "from the tunnel via eth0"));
      CHECK(accept_n(r.tcp, mode == Mode::udp ? 1u : 0u) == (mode == Mode::udp ? 1u : 0u));
      CHECK(accept_all(r.tcp).empty());
    }
  }
  // Without our table the same datagram out of eth0 arrives (the path is real).
  auto removed = fw.remove();
  REQUIRE_MESSAGE(removed, (removed ? "" : removed.error().str()));
  REQUIRE(l.run("host", {"ip", "-4", "rule", "add", "from", "100.64.201.0/24", "table", "main", "priority", "100"}).status == 0);
  Receivers r(l, kV4);
  SocketSpec c;
  c.ns = peer.name();
  Fd u = udp_socket(c);
  REQUIRE(send_udp(u, SockAddr::of(kV4.web, kPlain), "disarmed via eth0") == 0);
  std::vector<Datagram> seen;
  REQUIRE(wait_for(r.plain, "disarmed via eth0", seen));
  CHECK(seen.back().from == kV4.isp_seen);
}

TEST_CASE("strict policy: ICMP errors about the VPN's own flow reach the host - path MTU to the endpoint, IPv4 and IPv6") {
  // The ISP's uplink takes 1280 bytes; the host's marked (endpoint) socket sends 1400 with DF.
  // The ISP router answers Fragmentation Needed / Packet Too Big to the host's eth0 address:
  // conntrack relates it to the endpoint flow and the input chain must let it in, or path-MTU
  // discovery to the endpoint black-holes (the socket would never learn the smaller MTU).
  lab::Lab l;
  REQUIRE(l.run("isp", {"ip", "link", "set", "up0", "mtu", "1280"}).status == 0);
  Firewall fw = open_in(l.ns("host"));
  apply(fw, lab_policy(Mode::strict));
  for (const Fam* f : {&kV4, &kV6}) {
    INFO(f->name);
    Receivers r(l, *f);
    Fd s = udp_socket(host(l, *f, {}, kMark));
    const bool v4 = f->af == AF_INET;
    const int one = 1, dont = v4 ? IP_PMTUDISC_DO : IPV6_PMTUDISC_DO;
    REQUIRE(setsockopt(s.get(), v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_MTU_DISCOVER : IPV6_MTU_DISCOVER, &dont, sizeof dont) == 0);
    REQUIRE(setsockopt(s.get(), v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_RECVERR : IPV6_RECVERR, &one, sizeof one) == 0);
    const SockAddr to = SockAddr::of(f->web, kEndpointUdp);
    REQUIRE(::connect(s.get(), to.sa(), to.len) == 0);
    // A small datagram first: the flow exists (and arrives: the endpoint path is open).
    REQUIRE(::send(s.get(), "small", 5, 0) == 5);
    std::vector<Datagram> seen;
    REQUIRE(wait_for(r.endpoint, "small", seen));
    const std::string big(1400, 'x');
    REQUIRE(::send(s.get(), big.data(), big.size(), 0) == static_cast<ssize_t>(big.size()));
    // The ICMP error lands on the socket's error queue (POLLERR), with the new MTU.
    pollfd pfd{s.get(), 0, 0};
    const int ready = ::poll(&pfd, 1, 3000);
    REQUIRE_MESSAGE(ready == 1, "no ICMP error reached the socket within 3 s (the input chain dropped it?)");
    CHECK((pfd.revents & POLLERR) != 0);
    int mtu = 0;
    socklen_t len = sizeof mtu;
    REQUIRE(getsockopt(s.get(), v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_MTU : IPV6_MTU, &mtu, &len) == 0);
    CHECK(mtu == 1280);
  }
}

TEST_CASE("strict policy: MLDv1 reports leave eth0 (a link with an MLDv1 querier)") {
  // With force_mld_version=1 (what a host falls back to beside an MLDv1 querier) the kernel
  // reports a group it joins with an ICMPv6 type 131 to that group, hop limit 1. The ISP router,
  // a member of the same group, is the witness: its raw ICMPv6 socket sees the report.
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  apply(fw, lab_policy(Mode::strict));
  const std::string group = "ff02::1234";
  auto join = [&](const std::string& ns, const std::string& dev) {
    SocketSpec s;
    s.ns = ns;
    s.family = AF_INET6;
    Fd fd = udp_socket(s);
    ipv6_mreq m{};
    REQUIRE(inet_pton(AF_INET6, group.c_str(), &m.ipv6mr_multiaddr) == 1);
    {
      lab::NetnsScope in(ns);
      m.ipv6mr_interface = if_nametoindex(dev.c_str());
    }
    REQUIRE(m.ipv6mr_interface != 0);
    REQUIRE(setsockopt(fd.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) == 0);
    return fd;
  };
  Fd isp_member = join(l.ns("isp"), "down0");
  SocketSpec raw;
  raw.ns = l.ns("isp");
  raw.family = AF_INET6;
  raw.device = "down0";
  raw.protocol = IPPROTO_ICMPV6;
  Fd witness = make_socket(raw, SOCK_RAW);
  REQUIRE(l.run("host", {"sysctl", "-qw", "net.ipv6.conf.eth0.force_mld_version=1"}).status == 0);
  Fd host_member = join(l.ns("host"), "eth0");
  const auto deadline = Clock::now() + 3s;
  bool seen = false;
  while (!seen && Clock::now() < deadline) {
    pollfd p{witness.get(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0))) != 1) break;
    unsigned char buf[1500];
    sockaddr_in6 from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(witness.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n >= 24 && buf[0] == 131) {  // MLDv1 report: type, code, checksum, delay, reserved, group
      char g[INET6_ADDRSTRLEN] = {};
      inet_ntop(AF_INET6, buf + 8, g, sizeof g);
      seen = g == group;
    }
  }
  CHECK_MESSAGE(seen, "no MLDv1 report for " << group << " reached the ISP router within 3 s");
}

TEST_CASE("a tun* pattern does not open ipip's fallback device tunl0 - tun7 it does") {
  // The kernel's ipip module makes tunl0 in every namespace (Calico routes pods through it): an
  // unencrypted encapsulation that `tun*` must not name. A veth called tunl0 stands in for it (the
  // rules see only the name; loading ipip here would make one in the machine's own namespace too).
  lab::Lab l;
  lab::Netns peer("peer");
  const std::string h = l.ns("host");
  auto sh = [&](const std::vector<std::string>& argv) {
    auto r = lab::run(argv);
    REQUIRE_MESSAGE(r.status == 0, r.out);
  };
  const std::pair<const char*, const char*> links[] = {{"tunl0", "100.64.210"}, {"tun7", "100.64.211"}};
  for (const auto& [name, net] : links) {
    const std::string far = std::string("p") + name;
    sh({"ip", "-n", h, "link", "add", name, "type", "veth", "peer", "name", far, "netns", peer.name()});
    sh({"ip", "-n", h, "addr", "add", std::string(net) + ".1/24", "dev", name});
    sh({"ip", "-n", h, "link", "set", name, "up"});
    sh({"ip", "-n", peer.name(), "addr", "add", std::string(net) + ".2/24", "dev", far});
    sh({"ip", "-n", peer.name(), "link", "set", far, "up"});
  }
  Firewall fw = open_in(h);
  Policy p = lab_policy(Mode::udp);
  p.tunnels.push_back(*IfnamePattern::parse("tun*"));
  apply(fw, p);
  Fd via_tunl0 = udp_listener(peer.name(), "100.64.210.2", kPlain);
  Fd via_tun7 = udp_listener(peer.name(), "100.64.211.2", kPlain);
  SocketSpec s;
  s.ns = h;
  Fd u = udp_socket(s);
  CHECK_MESSAGE(send_udp(u, SockAddr::of("100.64.210.2", kPlain), "via tunl0") == EPERM, "tunl0 was let through");
  REQUIRE(send_udp(u, SockAddr::of("100.64.211.2", kPlain), "via tun7") == 0);
  std::vector<Datagram> seen;
  REQUIRE(wait_for(via_tun7, "via tun7", seen));
  CHECK_FALSE(contains(collect(via_tunl0, 100ms), "via tunl0"));
  // Without our table tunl0's path works (the control for the refusal above).
  auto removed = fw.remove();
  REQUIRE_MESSAGE(removed, (removed ? "" : removed.error().str()));
  REQUIRE(send_udp(u, SockAddr::of("100.64.210.2", kPlain), "via tunl0 disarmed") == 0);
  REQUIRE(wait_for(via_tunl0, "via tunl0 disarmed", seen));
}

namespace {

std::uint16_t inet_checksum(const std::uint8_t* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

/// From the ISP router (on eth0's link), an ICMP port unreachable sent to `to` (an address of the
/// host's) that quotes the UDP flow `from` -> `dst`: what a LAN peer can forge about a tunnel
/// flow whose addresses and ports it guesses.
void forge_unreachable(const lab::Lab& l, const Fam& f, const std::string& to, const SockAddr& from, const SockAddr& dst) {
  const bool v4 = f.af == AF_INET;
  SocketSpec spec;
  spec.ns = l.ns("isp");
  spec.family = f.af;
  spec.protocol = v4 ? static_cast<int>(IPPROTO_ICMP) : static_cast<int>(IPPROTO_ICMPV6);
  Fd raw = make_socket(spec, SOCK_RAW);
  std::vector<std::uint8_t> m(8, 0);
  m[0] = v4 ? 3 : 1;  // destination unreachable (RFC 792, RFC 4443 §3.1)
  m[1] = v4 ? 3 : 4;  // port unreachable
  // The quoted packet: its IP header, then the first 8 bytes of its UDP header.
  std::vector<std::uint8_t> ip(v4 ? 20 : 40, 0);
  if (v4) {
    ip[0] = 0x45;
    ip[3] = 28;
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    std::memcpy(&ip[12], &reinterpret_cast<const sockaddr_in*>(from.sa())->sin_addr, 4);
    std::memcpy(&ip[16], &reinterpret_cast<const sockaddr_in*>(dst.sa())->sin_addr, 4);
    const std::uint16_t c = inet_checksum(ip.data(), ip.size());
    ip[10] = static_cast<std::uint8_t>(c >> 8);
    ip[11] = static_cast<std::uint8_t>(c);
  } else {
    ip[0] = 0x60;
    ip[5] = 8;
    ip[6] = IPPROTO_UDP;
    ip[7] = 64;
    std::memcpy(&ip[8], &reinterpret_cast<const sockaddr_in6*>(from.sa())->sin6_addr, 16);
    std::memcpy(&ip[24], &reinterpret_cast<const sockaddr_in6*>(dst.sa())->sin6_addr, 16);
  }
  m.insert(m.end(), ip.begin(), ip.end());
  const std::uint16_t sport = from.port(), dport = dst.port();
  m.insert(m.end(), {static_cast<std::uint8_t>(sport >> 8), static_cast<std::uint8_t>(sport), static_cast<std::uint8_t>(dport >> 8),
                     static_cast<std::uint8_t>(dport), 0, 8, 0, 0});
  if (v4) {  // (the kernel sums ICMPv6 itself)
    const std::uint16_t c = inet_checksum(m.data(), m.size());
    m[2] = static_cast<std::uint8_t>(c >> 8);
    m[3] = static_cast<std::uint8_t>(c);
  }
  const SockAddr a = SockAddr::of(to, 0);
  REQUIRE(::sendto(raw.get(), m.data(), m.size(), 0, a.sa(), a.len) == static_cast<ssize_t>(m.size()));
}

/// How many errors wait on a socket's error queue (IP_RECVERR / IPV6_RECVERR), read off it.
int queued_errors(const Fd& s) {
  int n = 0;
  for (;;) {
    char data[64], control[512];
    iovec io{data, sizeof data};
    msghdr h{};
    h.msg_iov = &io;
    h.msg_iovlen = 1;
    h.msg_control = control;
    h.msg_controllen = sizeof control;
    if (::recvmsg(s.get(), &h, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return n;
    ++n;
  }
}

}  // namespace

TEST_CASE("udp policy: an ICMP error forged to eth0's address about a tunnel flow does not reach the tunnel's socket") {
  // Linux hands an ICMP error to the socket its quoted header names, whatever local address it
  // came to: a LAN peer's port unreachable sent to eth0's address, quoting a flow through wg0,
  // made the tunnel's socket fail with ECONNREFUSED (and a Fragmentation Needed set a path MTU of
  // 552 on the tunnel's route) in udp policy, past the tunnel-address drop. Conntrack calls it
  // invalid (no flow of this host's is addressed there); the input chain drops it.
  lab::Lab l;
  Firewall fw = open_in(l.ns("host"));
  apply(fw, lab_policy(Mode::udp));
  for (const Fam* f : {&kV4, &kV6}) {
    INFO(f->name);
    const bool v4 = f->af == AF_INET;
    Receivers r(l, *f);
    // A flow through the tunnel (the default route): connected, errors queued.
    Fd s = udp_socket(host(l, *f));
    const int one = 1;
    REQUIRE(setsockopt(s.get(), v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_RECVERR : IPV6_RECVERR, &one, sizeof one) == 0);
    const SockAddr dst = SockAddr::of(f->web, kPlain);
    REQUIRE(::connect(s.get(), dst.sa(), dst.len) == 0);
    REQUIRE(::send(s.get(), "flow", 4, 0) == 4);
    std::vector<Datagram> seen;
    REQUIRE(wait_for(r.plain, "flow", seen));
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    REQUIRE(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&local), &len) == 0);
    SockAddr from;
    std::memcpy(&from.ss, &local, len);
    from.len = len;
    const std::string eth0 = v4 ? "192.0.2.10" : "2001:db8:2::10";
    forge_unreachable(l, *f, eth0, from, dst);
    // The control: the same error once the table is gone reaches the socket - what the forged one
    // would have done. Then the queue holds exactly one error: the control's.
    REQUIRE(fw.remove());
    forge_unreachable(l, *f, eth0, from, dst);
    pollfd pfd{s.get(), 0, 0};
    REQUIRE_MESSAGE(::poll(&pfd, 1, 3000) == 1, "not even the control error reached the socket");
    CHECK(queued_errors(s) == 1);
    apply(fw, lab_policy(Mode::udp));
  }
}
