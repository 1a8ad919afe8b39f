// Attribution's pure parts: nfnetlink_log datagrams built here as the kernel writes them
// (linux/netfilter/nfnetlink_log.h: values in network byte order), the IP and port parser, the
// choice of the sending socket among sock_diag's, cgroup paths to units, and the bounded table.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "attribution/flows.hpp"
#include "attribution/lookup.hpp"
#include "attribution/packet.hpp"
#include "tests/unit/attribution/nflog_bytes.hpp"

using namespace leakguard;
using namespace leakguard::attribution;

namespace {

using leakguard::test::nflog::Bytes;
using leakguard::test::nflog::attr;
using leakguard::test::nflog::attr32;
using leakguard::test::nflog::put;


// An IPv4/UDP packet 192.0.2.10:40001 -> 203.0.113.3:3478 (headers only, as copy_range keeps).
Bytes ipv4_udp() {
  Bytes p = {0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 10, 203, 0, 113, 3};
  const Bytes udp = {0x9c, 0x41, 0x0d, 0x96, 0, 8, 0, 0};
  p.insert(p.end(), udp.begin(), udp.end());
  return p;
}

// An IPv6/TCP packet 2001:db8:2::10:50000 -> 2001:db8:3::3:443, behind a hop-by-hop header.
Bytes ipv6_tcp() {
  Bytes p(40, 0);
  p[0] = 0x60;
  p[6] = 0;  // next: hop-by-hop
  p[7] = 64;
  in6_addr a{};
  inet_pton(AF_INET6, "2001:db8:2::10", &a);
  std::memcpy(p.data() + 8, &a, 16);
  inet_pton(AF_INET6, "2001:db8:3::3", &a);
  std::memcpy(p.data() + 24, &a, 16);
  const Bytes hbh = {6, 0, 1, 4, 0, 0, 0, 0};  // next: TCP; 8 bytes
  p.insert(p.end(), hbh.begin(), hbh.end());
  const Bytes tcp = {0xc3, 0x50, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0, 0};
  p.insert(p.end(), tcp.begin(), tcp.end());
  return p;
}

Bytes message(const Bytes& payload, const char* prefix, std::optional<std::uint32_t> uid, std::uint16_t type = NFULNL_MSG_PACKET) {
  Bytes attrs;
  nfulnl_msg_packet_hdr ph{htons(0x0800), 3, 0};
  attr(attrs, NFULA_PACKET_HDR, &ph, sizeof ph);
  attr(attrs, NFULA_PREFIX, prefix, std::strlen(prefix) + 1);
  attr32(attrs, NFULA_IFINDEX_OUTDEV, 2);
  if (uid) {
    attr32(attrs, NFULA_UID, *uid);
    attr32(attrs, NFULA_GID, *uid);
  }
  attr(attrs, NFULA_PAYLOAD, payload.data(), payload.size());
  Bytes m;
  nlmsghdr h{};
  h.nlmsg_len = static_cast<std::uint32_t>(sizeof h + sizeof(nfgenmsg) + attrs.size());
  h.nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_ULOG << 8) | type);
  put(m, &h, sizeof h);
  nfgenmsg g{AF_INET, NFNETLINK_V0, htons(0x4c47)};
  put(m, &g, sizeof g);
  m.insert(m.end(), attrs.begin(), attrs.end());
  return m;
}

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

}  // namespace

TEST_CASE("a logged packet: the rule, the interface, the socket's owner, addresses and ports") {
  Bytes d = message(ipv4_udp(), "udp-out", 1000);
  const Bytes second = message(ipv6_tcp(), "tcp-out", std::nullopt);
  d.insert(d.end(), second.begin(), second.end());
  auto b = parse_nflog(d);
  REQUIRE(b.rejected.empty());
  REQUIRE(b.packets.size() == 2);
  const auto& u = b.packets[0];
  CHECK(u.rule == "udp-out");
  CHECK(u.outdev == 2);
  CHECK(u.uid == 1000u);
  CHECK(u.gid == 1000u);
  CHECK(u.source == ip("192.0.2.10"));
  CHECK(u.destination == ip("203.0.113.3"));
  CHECK(u.protocol == 17);
  CHECK(u.source_port == 40001);
  CHECK(u.destination_port == 3478);
  CHECK(destination_text(u) == "203.0.113.3:3478/udp");
  const auto& t = b.packets[1];
  CHECK(t.rule == "tcp-out");
  CHECK_FALSE(t.uid.has_value());  // no local socket: forwarded
  CHECK(t.protocol == 6);          // behind the hop-by-hop header
  CHECK(t.source_port == 50000);
  CHECK(t.destination_port == 443);
  CHECK(destination_text(t) == "[2001:db8:3::3]:443/tcp");
}

TEST_CASE("nfnetlink_log input that does not fit is rejected with a reason, never read past") {
  const Bytes good = message(ipv4_udp(), "udp-out", 0);
  // Every truncation of a good message: rejected (or, cut at its end, nothing), never a crash.
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto b = parse_nflog(std::span(good.data(), n));
    CHECK(b.packets.empty());
    if (n > 0) CHECK_FALSE(b.rejected.empty());
  }
  // Other messages of the subsystem (the acknowledgement of our configuration) are skipped.
  CHECK(parse_nflog(message(ipv4_udp(), "x", 0, NFULNL_MSG_CONFIG)).packets.empty());
  // No payload: the group does not copy packets.
  {
    Bytes m = good;
    Bytes attrs;
    attr(attrs, NFULA_PREFIX, "udp-out", 8);
    nlmsghdr h{};
    h.nlmsg_len = static_cast<std::uint32_t>(sizeof h + sizeof(nfgenmsg) + attrs.size());
    h.nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET);
    m.clear();
    put(m, &h, sizeof h);
    nfgenmsg g{AF_INET, NFNETLINK_V0, 0};
    put(m, &g, sizeof g);
    m.insert(m.end(), attrs.begin(), attrs.end());
    auto b = parse_nflog(m);
    REQUIRE(b.rejected.size() == 1);
    CHECK(b.rejected[0].find("no payload") != std::string::npos);
  }
  // A prefix without its NUL; a uid of the wrong size.
  {
    Bytes attrs;
    attr(attrs, NFULA_PREFIX, "abc", 3);
    Bytes m;
    nlmsghdr h{};
    h.nlmsg_len = static_cast<std::uint32_t>(sizeof h + sizeof(nfgenmsg) + attrs.size());
    h.nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET);
    put(m, &h, sizeof h);
    nfgenmsg g{};
    put(m, &g, sizeof g);
    m.insert(m.end(), attrs.begin(), attrs.end());
    auto b = parse_nflog(m);
    REQUIRE(b.rejected.size() == 1);
    CHECK(b.rejected[0].find("NUL") != std::string::npos);
  }
  // Payloads: not IP, a short header, a later fragment (no ports).
  LoggedPacket p;
  CHECK(parse_ip(Bytes{0x20, 0, 0, 0}, p));
  CHECK(parse_ip(Bytes{0x45, 0, 0}, p));
  Bytes frag = ipv4_udp();
  frag[6] = 0x00;
  frag[7] = 0x10;  // fragment offset 16 x 8 bytes
  CHECK_FALSE(parse_ip(frag, p));
  CHECK(p.protocol == 17);
  CHECK(p.source_port == 0);
  CHECK(destination_text(p) == "203.0.113.3:0/udp");
}

TEST_CASE("the sending socket: the local port and address must fit, a connected one wins") {
  LoggedPacket p;
  p.source = ip("192.0.2.10");
  p.destination = ip("203.0.113.3");
  p.source_port = 40001;
  p.destination_port = 3478;
  auto sock = [](const char* local, std::uint16_t lport, const char* remote, std::uint16_t rport, std::uint64_t inode) {
    SocketInfo s;
    s.local = *IpAddress::parse(local);
    s.remote = *IpAddress::parse(remote);
    s.local_port = lport;
    s.remote_port = rport;
    s.inode = inode;
    return s;
  };
  const std::vector<SocketInfo> v = {
      sock("0.0.0.0", 40002, "0.0.0.0", 0, 1),           // another port
      sock("192.0.2.99", 40001, "0.0.0.0", 0, 2),        // another local address
      sock("0.0.0.0", 40001, "0.0.0.0", 0, 3),           // unconnected, wildcard
      sock("192.0.2.10", 40001, "0.0.0.0", 0, 4),        // unconnected, this address
      sock("192.0.2.10", 40001, "198.51.100.7", 53, 5),  // connected elsewhere
  };
  auto c = choose_socket(v, p);
  REQUIRE(c);
  CHECK(c->inode == 4);
  auto with_connected = v;
  with_connected.push_back(sock("0.0.0.0", 40001, "203.0.113.3", 3478, 6));
  CHECK(choose_socket(with_connected, p)->inode == 6);
  CHECK_FALSE(choose_socket({v[0], v[1], v[4]}, p));
}

TEST_CASE("a cgroup path names its innermost unit, odd bytes escaped - and pids are read defensively") {
  CHECK(unit_of_cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.chromium.Chromium-1234.scope") ==
        "app-org.chromium.Chromium-1234.scope");
  CHECK(unit_of_cgroup("/system.slice/docker-0123abcd.scope") == "docker-0123abcd.scope");
  CHECK(unit_of_cgroup("/system.slice/leakguard.service") == "leakguard.service");
  CHECK(unit_of_cgroup("/user.slice/user@1000.service/app.slice/app-x.scope/sub") == "app-x.scope");
  CHECK(unit_of_cgroup("/") == "");
  CHECK(unit_of_cgroup("/lxc/c1") == "");
  CHECK(unit_of_cgroup("/a/b\x1b[31mred\n.scope") == "b\\x1b[31mred\\x0a.scope");
  CHECK(parse_pids("1\n42\nx\n-3\n1234567890\n\n7") == std::vector<std::int32_t>{1, 42, 7});
  CHECK(parse_pids("1\n2\n3\n", 2).size() == 2);
}

TEST_CASE("the Uid line of /proc/PID/status: four ids, or none") {
  CHECK(parse_status_uids("Name:\tx\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n") ==
        std::array<std::uint32_t, 4>{1000, 1001, 1002, 1003});
  CHECK(parse_status_uids("Uid:\t0\t0\t0\t4294967295\n") == std::array<std::uint32_t, 4>{0, 0, 0, 4294967295u});
  CHECK_FALSE(parse_status_uids("Name:\tx\n"));
  CHECK_FALSE(parse_status_uids("Uid:\t1000\t1000\n"));           // truncated
  CHECK_FALSE(parse_status_uids("Uid:\t4294967296\t0\t0\t0\n"));  // out of range
  CHECK_FALSE(parse_status_uids("Uid:\t-1\t0\t0\t0\n"));
  CHECK_FALSE(parse_status_uids(""));
}

namespace {
// A /proc of our own: PID directories with an fd directory of symlinks and a comm file.
struct FakeProc {
  std::string root;
  FakeProc() {
    char tmpl[] = "/tmp/lgt-proc-XXXXXX";
    root = ::mkdtemp(tmpl);
  }
  ~FakeProc() { std::filesystem::remove_all(root); }
  void process(int pid, const std::string& comm, const std::vector<std::string>& fds) {
    const std::string dir = root + "/" + std::to_string(pid);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir + "/fd");
    std::ofstream(dir + "/comm") << comm << "\n";
    for (std::size_t i = 0; i < fds.size(); ++i) std::filesystem::create_symlink(fds[i], dir + "/fd/" + std::to_string(i + 3));
  }
};
}  // namespace

TEST_CASE("PID reuse: a remembered PID that no longer holds the socket is never named") {
  FakeProc proc;
  proc.process(100, "first", {"socket:[555]", "pipe:[1]"});
  proc.process(101, "other", {"socket:[556]"});
  SenderLookup::Options o;
  o.proc = proc.root;
  o.cgroup_root = "/nonexistent";
  o.min_scan_interval = std::chrono::hours(1);  // one pass only: what it remembers is then stale
  SenderLookup lookup(o);
  CHECK(lookup.holder(555) == 100);
  CHECK(lookup.holder(556) == 101);
  // PID 100 exits; the kernel gives its number to an unrelated process, and the socket is now
  // held by PID 200 (inherited). The pass it remembers says 100: that is not said.
  proc.process(100, "reused", {"socket:[777]"});
  proc.process(200, "heir", {"socket:[555]"});
  bool incomplete = false;
  CHECK_FALSE(lookup.holder(555, &incomplete));
  CHECK(incomplete);  // and it says why: no new pass was allowed yet
  // With a new pass allowed, the socket's holder now.
  o.min_scan_interval = std::chrono::milliseconds(0);
  SenderLookup fresh(o);
  CHECK(fresh.holder(555) == 200);
  proc.process(200, "heir", {});
  CHECK_FALSE(fresh.holder(555));  // closed: nobody holds it
  CHECK(fresh.holder(556) == 101);
}

TEST_CASE("blocked flows: per application and destination, counted, bounded, most recent first") {
  using namespace std::chrono_literals;
  BlockedFlows flows(3);
  const SystemTime t0{std::chrono::seconds(1764640000)};
  LoggedPacket p;
  p.rule = "udp-out";
  p.source = ip("192.0.2.10");
  p.destination = ip("203.0.113.3");
  p.protocol = 17;
  p.destination_port = 3478;
  Sender chromium{1000, "alice", 4242, "chromium", "app-org.chromium.Chromium-4242.scope", "/user.slice/x.scope", false, ""};
  flows.add(p, chromium, "eth0", t0);
  flows.add(p, chromium, "eth0", t0 + 1s);
  Sender gone;
  gone.uid = 4006;
  gone.gone = true;
  p.destination_port = 3479;
  flows.add(p, gone, "eth0", t0 + 2s);
  auto j = flows.to_json();
  CHECK(j["packets"] == 3);
  REQUIRE(j["flows"].size() == 2);
  CHECK(j["flows"][0]["app"] == "uid 4006");  // most recent first
  CHECK(j["flows"][0]["gone"] == true);
  CHECK(j["flows"][1]["app"] == "chromium");
  CHECK(j["flows"][1]["packets"] == 2);
  CHECK(j["flows"][1]["unit"] == "app-org.chromium.Chromium-4242.scope");
  CHECK(j["flows"][1]["user"] == "alice");
  CHECK(j["flows"][1]["first_seen"] == "2025-12-02T01:46:40Z");
  CHECK(j["flows"][1]["last_seen"] == "2025-12-02T01:46:41Z");
  REQUIRE(j["apps"].size() == 2);
  CHECK(j["apps"][0]["app"] == "chromium");  // most packets first
  CHECK(j["apps"][0]["packets"] == 2);
  // For the Blocked signal: what is new since the last call, busiest first, each told once.
  auto changes = flows.take_changes(10);
  REQUIRE(changes.size() == 2);
  CHECK(changes[0] == BlockedFlows::Change{"chromium", "alice", "203.0.113.3:3478/udp", "eth0", 2});
  CHECK(changes[1] == BlockedFlows::Change{"uid 4006", "uid 4006", "203.0.113.3:3479/udp", "eth0", 1});
  CHECK(flows.take_changes(10).empty());
  p.destination_port = 3478;
  flows.add(p, chromium, "eth0", t0 + 3s);
  CHECK(flows.take_changes(10) == std::vector<BlockedFlows::Change>{{"chromium", "alice", "203.0.113.3:3478/udp", "eth0", 1}});
  CHECK(flows.to_json()["packets"] == 4);
  p.destination_port = 3479;
  // Bounded: the least recently seen goes first.
  for (int i = 0; i < 5; ++i) {
    p.destination_port = static_cast<std::uint16_t>(5000 + i);
    flows.add(p, chromium, "eth0", t0 + std::chrono::seconds(10 + i));
  }
  CHECK(flows.size() == 3);
  j = flows.to_json();
  CHECK(j["evicted"] == 4);
  CHECK(j["packets"] == 9);
  CHECK(j["flows"][0]["destination"] == "203.0.113.3:5004/udp");
  CHECK(j["flows"][2]["destination"] == "203.0.113.3:5002/udp");
  // No socket, no uid: forwarded (the forward chain's rules), else the kernel's own.
  LoggedPacket fwd;
  fwd.rule = "udp-fwd";
  CHECK(app_of(Sender{}, fwd) == "forwarded");
  fwd.rule = "tcp-out";
  CHECK(app_of(Sender{}, fwd) == "kernel");
}

TEST_CASE("the daemon's own lookups are its own: the socket's holder is the daemon, or its owner the daemon's dedicated uid") {
  // The lookup of a probe server's name goes through the system's resolver from a port no probe
  // had: before, it was listed first in `leakguardctl blocked` as "leakguardd ... -> :53/udp"
  // and told to every desktop as an application blocked outside the VPN.
  LoggedPacket dns;
  dns.rule = "udp-out";
  dns.protocol = 17;
  dns.destination_port = 53;
  dns.uid = 108;
  Sender s;
  CHECK(sent_by_self(dns, s, 108, 4242));        // the unit's dedicated user: nothing else runs as it
  CHECK_FALSE(sent_by_self(dns, s, 107, 4242));  // another user's socket
  dns.uid = 0;
  CHECK_FALSE(sent_by_self(dns, s, 0, 4242));  // root is everyone's: only the process says
  s.pid = 4242;
  CHECK(sent_by_self(dns, s, 0, 4242));
  s.pid = 4243;
  CHECK_FALSE(sent_by_self(dns, s, 0, 4242));
  // Held by the daemon but another user's socket (passed to it in a D-Bus message): not its own.
  s.pid = 4242;
  dns.uid = 1000;
  CHECK_FALSE(sent_by_self(dns, s, 0, 4242));
  LoggedPacket fwd;  // forwarded: no socket, no holder
  fwd.rule = "udp-fwd";
  CHECK_FALSE(sent_by_self(fwd, Sender{}, 108, 4242));
}

TEST_CASE("the daemon's own probe: its socket's uid, or TCP without a socket in the output chain (the end of its connection)") {
  LoggedPacket p;
  p.protocol = 6;
  p.rule = "tcp-out";
  p.uid = 0;
  CHECK(may_be_own_probe(p, 0));
  CHECK_FALSE(may_be_own_probe(p, 108));  // another user's socket
  // The FIN or RST the kernel sends for a probe socket already closed: no socket, no uid. Before,
  // an escalation that closed the probe's path turned these into "kernel tried to reach
  // 203.0.113.3:3478 outside the VPN" notifications.
  p.uid.reset();
  CHECK(may_be_own_probe(p, 108));
  p.rule = "tcp-fwd";  // forwarded: never ours
  CHECK_FALSE(may_be_own_probe(p, 108));
  p.rule = "udp-out";
  p.protocol = 17;  // a datagram always has its socket
  CHECK_FALSE(may_be_own_probe(p, 108));
}

TEST_CASE("a dual-stack IPv6 socket is also the IPv4 socket it carries - a v6-only one or one connected to IPv6 is not") {
  SocketInfo s;
  s.local = *IpAddress::parse("::");
  s.remote = *IpAddress::parse("::");
  s.local.family = s.remote.family = Family::v6;
  s.local_port = 40007;
  s.uid = 4007;
  s.inode = 99;
  auto v4 = as_ipv4(s);
  REQUIRE(v4);
  CHECK(v4->local == IpAddress::v4(0, 0, 0, 0));
  CHECK(v4->remote == IpAddress::v4(0, 0, 0, 0));
  CHECK(v4->local_port == 40007);
  CHECK(v4->inode == 99);
  // Found for an IPv4 packet from its port (before, such a sender was "gone").
  LoggedPacket p;
  p.protocol = 17;
  p.source = *IpAddress::parse("192.0.2.10");
  p.destination = *IpAddress::parse("203.0.113.3");
  p.source_port = 40007;
  p.destination_port = 40007;
  CHECK(choose_socket({*v4}, p) == v4);
  s.v6only = true;  // IPV6_V6ONLY: no IPv4 at all
  CHECK_FALSE(as_ipv4(s));
  s.v6only = false;
  s.local = *IpAddress::parse("::ffff:192.0.2.10");  // bound to a v4-mapped address
  s.remote = *IpAddress::parse("::ffff:203.0.113.3");  // and connected to one
  v4 = as_ipv4(s);
  REQUIRE(v4);
  CHECK(v4->local == *IpAddress::parse("192.0.2.10"));
  CHECK(v4->remote == *IpAddress::parse("203.0.113.3"));
  s.remote = *IpAddress::parse("2001:db8::1");  // connected to IPv6: sends no IPv4
  CHECK_FALSE(as_ipv4(s));
  s.local = *IpAddress::parse("2001:db8::10");
  s.remote = *IpAddress::parse("::");
  CHECK_FALSE(as_ipv4(s));
  SocketInfo plain;  // an IPv4 socket is no IPv6 one
  CHECK_FALSE(as_ipv4(plain));
}
