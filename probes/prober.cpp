#include "probes/prober.hpp"

#include "probes/own_ports.hpp"

#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <span>
#include <tuple>

namespace leakguard::probes {
namespace asio = boost::asio;
namespace {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

SockAddr to_sockaddr(const IpAddress& a, std::uint16_t port) {
  SockAddr s;
  if (a.family == Family::v4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&s.storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, a.bytes.data(), 4);
    s.length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&s.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, a.bytes.data(), 16);
    s.length = sizeof(sockaddr_in6);
  }
  return s;
}

std::optional<stun::TransportAddress> from_sockaddr(const sockaddr_storage& s) {
  stun::TransportAddress t;
  if (s.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&s);
    std::memcpy(t.address.bytes.data(), &in->sin_addr, 4);
    t.port = ntohs(in->sin_port);
    return t;
  }
  if (s.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
    t.address.family = Family::v6;
    std::memcpy(t.address.bytes.data(), &in6->sin6_addr, 16);
    t.port = ntohs(in6->sin6_port);
    // An IPv4-mapped source cannot reach an IPV6_V6ONLY socket; nothing to unmap.
    return t;
  }
  return std::nullopt;
}

// A message header over one buffer, with room for the peer's (or, from the error queue, the
// original destination's) address and for control messages.
msghdr message_header(sockaddr_storage& name, iovec& iov, std::span<char> control) {
  msghdr msg{};
  msg.msg_name = &name;
  msg.msg_namelen = sizeof name;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  return msg;
}

IpAddress from_asio(const asio::ip::address& a) {
  IpAddress ip;
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), ip.bytes.begin());
  } else {
    ip.family = Family::v6;
    const auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), ip.bytes.begin());
  }
  return ip;
}

std::string server_text(const config::StunServer& s) { return s.str(); }

milliseconds since(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<milliseconds>(to - from);
}

// An address a probe can send from toward a server beyond the link: of the family, not link-local
// (it cannot reach beyond the link), loopback, multicast or unspecified.
bool usable_source(const IpAddress& a, Family f) {
  return a.family == f && !a.is_link_local() && !a.is_loopback() && !a.is_multicast() && !a.is_unspecified();
}

// Errors of a TCP connect that mean the SYN never left (like a refused UDP send).
bool connect_blocked(int e) {
  return e == EPERM || e == EACCES || e == ENETUNREACH || e == EHOSTUNREACH || e == EADDRNOTAVAIL || e == ENETDOWN;
}

}  // namespace

// Sort key: the report lists probes by server, family, then bound ones in interface order, routed last.
using Key = std::tuple<std::size_t, int, int, std::size_t, std::size_t>;
// Hop probes: by target (in the order met), family, interface.
using HopKey = std::tuple<std::size_t, int, std::size_t>;

struct Prober::Round : std::enable_shared_from_this<Round> {
  struct Job;
  struct HopJob;

  Round(asio::io_context& io_, Plan plan_, Done done_)
      : io(io_), plan(std::move(plan_)), done(std::move(done_)), resolver(io_), resolve_timer(io_) {}

  asio::io_context& io;
  Plan plan;
  Done done;
  TimePoint start;
  TimePoint deadline;
  asio::ip::udp::resolver resolver;
  asio::steady_timer resolve_timer;
  std::size_t resolving = 0;
  // Per server: its name is being resolved. getaddrinfo runs on asio's resolver thread, where
  // cancel() cannot stop it (it waits out resolv.conf's timeouts, seconds): at the round's deadline
  // a name still out is recorded as timed out, and its late answer is ignored.
  std::vector<bool> awaiting_name;
  std::size_t lookups_in_flight = 0;  // getaddrinfo calls not returned yet, timed out or not
  void resolve_failed(std::size_t si, int code, std::string why);
  std::size_t running_jobs = 0;  // every probe
  // The device-bound and routed STUN probes. The others - hop and address-bound probes - may come
  // to nothing by design (a silent router; an address-bound packet sent into a full tunnel with a
  // source the VPN server drops): once these have ended, they get kSecondaryGrace, no more.
  std::size_t running_stun = 0;
  std::size_t holds = 0;  // > 0 while jobs are being added: jobs that end at once must not end the round
  std::vector<std::shared_ptr<Job>> jobs;
  std::vector<std::pair<Key, ProbeResult>> results;
  std::vector<std::shared_ptr<HopJob>> hop_jobs;
  std::vector<std::pair<HopKey, HopResult>> hop_results;
  std::vector<IpAddress> hop_targets_seen;  // each target once, whether a server's or an endpoint's
  std::vector<IpAddress> local_addresses;   // every interface's: an ICMP error from one of them is ours
  bool cancelled = false;
  bool completed = false;
  bool completion_posted = false;

  void begin();
  void add_jobs(std::size_t si, const std::vector<IpAddress>& addresses, bool by_name);
  void add_hop_jobs(const IpAddress& target, const std::string& what);
  void launch(Key key, ProbeResult r);
  void record(Key key, ProbeResult r);
  void maybe_complete();
  void settle_secondary();
  void cancel();
  const Interface* interface_by_index(int index) const;
  /// Whether the plan's bound probes may use `itf` (Plan::only).
  bool chosen(const Interface& itf) const {
    return plan.only.empty() || std::find(plan.only.begin(), plan.only.end(), itf.name) != plan.only.end();
  }
};

struct Prober::Round::Job : std::enable_shared_from_this<Job> {
  Job(std::shared_ptr<Round> round_, Key key_, ProbeResult r, Transaction tx_)
      : round(std::move(round_)), key(key_), result(std::move(r)), tx(std::move(tx_)), fd(round->io), timer(round->io) {}

  std::shared_ptr<Round> round;
  Key key;
  ProbeResult result;
  Transaction tx;
  asio::posix::stream_descriptor fd;
  asio::steady_timer timer;
  bool connected = false;
  bool finished = false;
  std::optional<asio::steady_timer> cutoff;  // address-bound: the end of its grace (settle_secondary)
  stun::StreamFramer framer;  // TCP: bytes received and not yet framed

  bool tcp() const { return result.transport == Transport::tcp; }
  std::optional<LocalFailure> open();
  void run();
  void drive();
  void arm_read();
  void on_readable_udp();
  void on_readable_tcp();
  void connect_done(int error);
  void finish();
};

// One hop probe: a UDP socket bound to one interface and address, datagrams with TTL 1..max_ttl
// to one target, then the error queue read until a router answers, everything was refused here,
// or the round's deadline.
struct Prober::Round::HopJob : std::enable_shared_from_this<HopJob> {
  HopJob(std::shared_ptr<Round> round_, HopKey key_, HopResult r)
      : round(std::move(round_)), key(key_), result(std::move(r)), fd(round->io), timer(round->io) {}

  std::shared_ptr<Round> round;
  HopKey key;
  HopResult result;
  asio::posix::stream_descriptor fd;
  asio::steady_timer timer;
  std::array<TimePoint, kMaxHops + 1> sent_at{};
  std::array<bool, kMaxHops + 1> refused{};
  int refused_count = 0;
  bool finished = false;

  std::optional<LocalFailure> open();
  void run();
  void arm_read();
  void on_readable();
  void finish(HopOutcome o);
};

std::optional<LocalFailure> Prober::Round::HopJob::open() {
  const bool v6 = result.family == Family::v6;
  const int s = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return LocalFailure{"open socket", errno, std::strerror(errno)};
  fd.assign(s);
  auto fail = [&](const char* step) { return LocalFailure{step, errno, std::strerror(errno)}; };
  const int one = 1;
  if (v6 && ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) return fail("set IPV6_V6ONLY");
  if (::setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, result.interface.c_str(), static_cast<socklen_t>(result.interface.size() + 1)) != 0)
    return fail("bind to device");
  const SockAddr local = to_sockaddr(*result.source, 0);
  if (::bind(s, local.get(), local.length) != 0) return fail("bind to address");
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&bound), &len) == 0)
    if (auto ta = from_sockaddr(bound)) note_own_port(IPPROTO_UDP, result.family, ta->port);
  // ICMP errors about our datagrams come to the error queue, with who sent them.
  if (v6 ? ::setsockopt(s, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one) : ::setsockopt(s, IPPROTO_IP, IP_RECVERR, &one, sizeof one))
    return fail("set RECVERR");
  return std::nullopt;
}

void Prober::Round::HopJob::run() {
  static constexpr std::array<std::uint8_t, 16> payload{'l', 'e', 'a', 'k', 'g', 'u', 'a', 'r', 'd', ' ', 'h', 'o', 'p', 's', '\n', 0};
  const bool v6 = result.family == Family::v6;
  int first_error = 0;
  for (int ttl = 1; ttl <= result.max_ttl; ++ttl) {
    if (v6 ? ::setsockopt(fd.native_handle(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl)
           : ::setsockopt(fd.native_handle(), IPPROTO_IP, IP_TTL, &ttl, sizeof ttl)) {
      finish(LocalFailure{"set TTL", errno, std::strerror(errno)});
      return;
    }
    const SockAddr to = to_sockaddr(result.target, static_cast<std::uint16_t>(round->plan.hop_port_base + ttl - 1));
    sent_at[static_cast<std::size_t>(ttl)] = Clock::now();
    auto send = [&] { return ::sendto(fd.native_handle(), payload.data(), payload.size(), 0, to.get(), to.length) >= 0; };
    // An ICMP error about an earlier datagram, already back, fails the next send once (the socket's
    // pending error, e.g. EHOSTUNREACH for a time exceeded): that send is tried again.
    if (send() || (!refused_by_firewall(errno) && send())) {
      ++result.sent;
    } else if (first_error == 0) {
      first_error = errno;
    }
  }
  // Nothing left (EPERM: the block; ENETUNREACH: no route that way): nothing can answer.
  if (result.sent == 0) {
    finish(Blocked{first_error});
    return;
  }
  timer.expires_at(round->deadline);
  timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->finish(TimedOut{self->result.sent});
  });
  arm_read();
}

void Prober::Round::HopJob::arm_read() {
  // An error queued on the socket wakes a read wait too (EPOLLERR).
  fd.async_wait(asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->finished || self->round->cancelled) return;
    self->on_readable();
  });
}

void Prober::Round::HopJob::on_readable() {
  const TimePoint now = Clock::now();
  std::array<std::uint8_t, 512> buf;
  alignas(cmsghdr) std::array<char, 512> control;
  for (;;) {
    sockaddr_storage to{};
    iovec iov{buf.data(), buf.size()};
    msghdr msg = message_header(to, iov, control);
    if (::recvmsg(fd.native_handle(), &msg, MSG_ERRQUEUE) < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: the error queue is empty
    }
    QueuedError e;
    e.family = result.family;
    if (auto dest = from_sockaddr(to)) e.port = dest->port;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      const bool v4err = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
      const bool v6err = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
      if (!v4err && !v6err) continue;
      sock_extended_err ee;
      std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
      e.icmp = ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6;
      e.type = ee.ee_type;
      e.code = ee.ee_code;
      // The offender's address follows the structure in the same control message.
      sockaddr_storage offender{};
      const std::size_t room = c->cmsg_len - CMSG_LEN(sizeof ee);
      std::memcpy(&offender, CMSG_DATA(c) + sizeof ee, std::min(room, sizeof offender));
      if (auto o = from_sockaddr(offender)) e.offender = o->address;
    }
    const HopSignal signal = classify(e, round->local_addresses, result.max_ttl, round->plan.hop_port_base);
    const int ttl = ttl_of_port(e.port, result.max_ttl, round->plan.hop_port_base);
    if (signal == HopSignal::answered) {
      finish(HopAnswer{*e.offender, ttl, e.type, e.code, since(sent_at[static_cast<std::size_t>(ttl)], now)});
      return;
    }
    if (signal == HopSignal::refused_here && !refused[static_cast<std::size_t>(ttl)]) {
      refused[static_cast<std::size_t>(ttl)] = true;
      ++refused_count;
    }
  }
  // Ordinary datagrams (the target itself answering UDP) are read and dropped: only errors count.
  while (::recv(fd.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT) >= 0) {
  }
  if (refused_count >= result.sent) {
    finish(Blocked{EACCES});  // every datagram that left the socket was rejected by this machine
    return;
  }
  arm_read();
}

void Prober::Round::HopJob::finish(HopOutcome o) {
  if (finished) return;
  finished = true;
  result.outcome = std::move(o);
  result.elapsed = since(round->start, Clock::now());
  timer.cancel();
  boost::system::error_code ignored;
  fd.close(ignored);
  auto r = round;
  r->hop_results.emplace_back(key, std::move(result));
  --r->running_jobs;
  r->maybe_complete();
}

// ---- setting up one socket ----------------------------------------------------------------------

std::optional<LocalFailure> Prober::Round::Job::open() {
  const bool v6 = result.family == Family::v6;
  const int s = ::socket(v6 ? AF_INET6 : AF_INET, (tcp() ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return LocalFailure{"open socket", errno, std::strerror(errno)};
  fd.assign(s);  // owns it from here
  auto fail = [&](const char* step) { return LocalFailure{step, errno, std::strerror(errno)}; };
  const int one = 1;
  if (v6 && ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) return fail("set IPV6_V6ONLY");
  if (!result.routed && !result.address_bound) {
    // Like a browser on a multi-homed machine: this interface, this address. SO_BINDTODEVICE makes
    // the kernel send through the interface whatever the routing table prefers (IPv4; IPv6 still
    // needs a route via it, else the send fails with ENETUNREACH).
    if (::setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, result.interface.c_str(),
                     static_cast<socklen_t>(result.interface.size() + 1)) != 0)
      return fail("bind to device");
  }
  IpAddress any;
  any.family = result.family;
  const SockAddr local = to_sockaddr(result.routed ? any : *result.source, 0);
  if (::bind(s, local.get(), local.length) != 0) return fail("bind to address");
  if (!tcp()) {
    // Which interface and local address each answer came to: how we tell the routed probe's path.
    if (v6 ? ::setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one)
           : ::setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one))
      return fail("set PKTINFO");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&bound), &len) == 0)
    if (auto ta = from_sockaddr(bound)) {
      result.local_port = ta->port;
      note_own_port(tcp() ? IPPROTO_TCP : IPPROTO_UDP, result.family, ta->port);
    }
  return std::nullopt;
}

void Prober::Round::Job::run() {
  if (!tcp()) {
    connected = true;
    arm_read();
    drive();
    return;
  }
  const SockAddr server = to_sockaddr(result.server_address->address, result.server_address->port);
  if (::connect(fd.native_handle(), server.get(), server.length) == 0) {
    connect_done(0);
    return;
  }
  if (errno != EINPROGRESS) {
    connect_done(errno);
    return;
  }
  fd.async_wait(asio::posix::stream_descriptor::wait_write, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->finished) return;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(self->fd.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    self->connect_done(err);
  });
  drive();  // arms the deadline while the connect is pending
}

void Prober::Round::Job::connect_done(int error) {
  if (finished) return;
  if (error == 0) {
    connected = true;
    result.sent = true;  // the handshake went out and came back
    if (result.routed) {
      // No PKTINFO on a stream: the source address the kernel chose names the way out instead.
      sockaddr_storage local{};
      socklen_t len = sizeof local;
      if (::getsockname(fd.native_handle(), reinterpret_cast<sockaddr*>(&local), &len) == 0)
        if (auto ta = from_sockaddr(local)) {
          result.source = ta->address;
          for (const auto& itf : round->plan.interfaces)
            if (std::find(itf.addresses.begin(), itf.addresses.end(), ta->address) != itf.addresses.end()) {
              result.arrival_interface = itf.name;
              result.arrival_class = itf.cls;
            }
        }
    }
    arm_read();
    drive();
    return;
  }
  if (connect_blocked(error)) tx.send_failed(Clock::now(), error);
  else tx.abort({"connect", error, std::strerror(error)});
  finish();
}

// ---- running the transaction ---------------------------------------------------------------------

void Prober::Round::Job::drive() {
  while (!finished && !round->cancelled) {
    const TimePoint now = Clock::now();
    if (!connected && now < tx.deadline()) {
      timer.expires_at(tx.deadline());
      timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec) self->drive();
      });
      return;
    }
    auto effect = tx.next(now);
    if (auto* send = std::get_if<Transaction::Send>(&effect)) {
      ssize_t n;
      if (tcp()) {
        n = ::send(fd.native_handle(), send->bytes.data(), send->bytes.size(), MSG_NOSIGNAL);
      } else {
        const SockAddr to = to_sockaddr(result.server_address->address, result.server_address->port);
        n = ::sendto(fd.native_handle(), send->bytes.data(), send->bytes.size(), 0, to.get(), to.length);
      }
      // A fresh socket's buffer takes a 28-byte request whole; a short TCP write cannot happen here.
      if (n < 0) tx.send_failed(now, errno);
      else result.sent = true;
      continue;
    }
    if (auto* wait = std::get_if<Transaction::Wait>(&effect)) {
      timer.expires_at(wait->until);
      timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec) self->drive();
      });
      return;
    }
    finish();
    return;
  }
}

void Prober::Round::Job::arm_read() {
  fd.async_wait(asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->finished || self->round->cancelled) return;
    if (self->tcp()) self->on_readable_tcp();
    else self->on_readable_udp();
  });
}

void Prober::Round::Job::on_readable_udp() {
  std::array<std::uint8_t, 8192> buf;
  alignas(cmsghdr) std::array<char, 256> control;
  for (;;) {
    sockaddr_storage from{};
    iovec iov{buf.data(), buf.size()};
    msghdr msg = message_header(from, iov, control);
    const ssize_t n = ::recvmsg(fd.native_handle(), &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: drained. Anything else (a queued ICMP error) was consumed by reading it.
    }
    // A datagram larger than the buffer arrives cut (MSG_TRUNC); the codec then rejects its length.
    const auto size = static_cast<std::size_t>(n);
    const TimePoint now = Clock::now();
    int arrival = 0;
    std::optional<IpAddress> local;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof info);
        arrival = info.ipi_ifindex;
        IpAddress a;
        std::memcpy(a.bytes.data(), &info.ipi_addr, 4);
        local = a;
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof info);
        arrival = static_cast<int>(info.ipi6_ifindex);
        IpAddress a;
        a.family = Family::v6;
        std::memcpy(a.bytes.data(), &info.ipi6_addr, 16);
        local = a;
      }
    }
    auto sender = from_sockaddr(from);
    if (!sender) continue;
    const Receipt receipt = tx.receive(now, *sender, std::span<const std::uint8_t>(buf.data(), std::min(size, buf.size())));
    if (receipt == Receipt::accepted) {
      if (arrival > 0) {
        if (const Interface* itf = round->interface_by_index(arrival)) {
          result.arrival_interface = itf->name;
          result.arrival_class = itf->cls;
        } else {
          char name[IF_NAMESIZE] = {};
          result.arrival_interface = if_indextoname(static_cast<unsigned>(arrival), name) ? name : "if" + std::to_string(arrival);
          if (round->plan.classify_unknown) result.arrival_class = round->plan.classify_unknown(result.arrival_interface);
        }
      }
      if (result.routed && local) result.source = local;
    }
    if (tx.done()) {
      finish();
      return;
    }
  }
  arm_read();
}

void Prober::Round::Job::on_readable_tcp() {
  std::array<std::uint8_t, 4096> buf;
  const ssize_t n = ::recv(fd.native_handle(), buf.data(), buf.size(), 0);
  const TimePoint now = Clock::now();
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    arm_read();
    return;
  }
  if (n <= 0) {
    // Closed or reset without a usable answer: not a reflexive address, and nothing more can come.
    tx.abort({"receive", n < 0 ? errno : 0, n < 0 ? std::strerror(errno) : "the server closed the connection"});
    finish();
    return;
  }
  // RFC 8489 §6.2.2: over TCP each message is framed by its own header length. What is not STUN
  // breaks the stream for good: it is counted once, then the deadline is waited out.
  framer.append(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)), [&](std::span<const std::uint8_t> frame) {
    (void)tx.receive(now, *result.server_address, frame);
    return !tx.done();
  });
  if (tx.done()) {
    finish();
    return;
  }
  if (framer.broken()) return;
  arm_read();
}

void Prober::Round::Job::finish() {
  if (finished) return;
  finished = true;
  const TimePoint now = Clock::now();
  if (!tx.done()) (void)tx.next(std::max(now, tx.deadline()));  // ends it as a timeout
  result.outcome = tx.outcome();
  result.ignored = tx.ignored().total();
  result.ignored_reason = tx.ignored().last_reason;
  result.elapsed = since(round->start, now);
  timer.cancel();
  boost::system::error_code ignored;
  fd.close(ignored);
  auto r = round;  // keep the round alive while it records us
  if (r->plan.on_result && !r->cancelled) r->plan.on_result(result);
  if (cutoff) cutoff->cancel();
  const bool primary = !result.address_bound;
  r->record(key, std::move(result));
  --r->running_jobs;
  if (primary) --r->running_stun;
  r->maybe_complete();
}

// ---- the round -----------------------------------------------------------------------------------

const Interface* Prober::Round::interface_by_index(int index) const {
  for (const auto& i : plan.interfaces)
    if (static_cast<int>(i.index.value) == index) return &i;
  return nullptr;
}

void Prober::Round::begin() {
  ++holds;
  start = Clock::now();
  deadline = start + plan.timeout;
  for (const auto& itf : plan.interfaces) local_addresses.insert(local_addresses.end(), itf.addresses.begin(), itf.addresses.end());
  for (const auto& t : plan.hop_targets) add_hop_jobs(t.address, t.what);
  for (std::size_t si = 0; si < plan.servers.size(); ++si) {
    const auto& s = plan.servers[si];
    if (auto numeric = IpAddress::parse(s.host)) {
      add_jobs(si, {*numeric}, false);
      continue;
    }
    ++resolving;
    ++lookups_in_flight;
    if (awaiting_name.size() < plan.servers.size()) awaiting_name.resize(plan.servers.size());
    awaiting_name[si] = true;
    // No AI_ADDRCONFIG: a family this machine seems not to have is probed anyway (and reported).
    resolver.async_resolve(s.host, std::to_string(s.port), asio::ip::resolver_base::numeric_service,
                           [self = shared_from_this(), si](boost::system::error_code ec,
                                                           asio::ip::udp::resolver::results_type found) {
                             --self->lookups_in_flight;
                             if (!self->awaiting_name[si]) return;  // timed out already
                             self->awaiting_name[si] = false;
                             --self->resolving;
                             if (self->cancelled) return;
                             if (ec) {
                               self->resolve_failed(si, ec.value(), ec == asio::error::operation_aborted ? "timed out" : ec.message());
                             } else {
                               std::vector<IpAddress> addresses;
                               for (const auto& e : found) addresses.push_back(from_asio(e.endpoint().address()));
                               self->add_jobs(si, addresses, true);
                             }
                             if (self->resolving == 0) self->resolve_timer.cancel();
                             self->maybe_complete();
                           });
  }
  if (resolving > 0) {
    resolve_timer.expires_at(deadline);
    resolve_timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->cancelled) return;
      self->resolver.cancel();
      for (std::size_t si = 0; si < self->awaiting_name.size(); ++si) {
        if (!self->awaiting_name[si]) continue;
        self->awaiting_name[si] = false;
        --self->resolving;
        self->resolve_failed(si, 0, "timed out");
      }
      self->maybe_complete();
    });
  }
  --holds;
  maybe_complete();
}

void Prober::Round::add_jobs(std::size_t si, const std::vector<IpAddress>& addresses, bool by_name) {
  struct Hold {
    std::size_t& n;
    explicit Hold(std::size_t& count) : n(count) { ++n; }
    ~Hold() { --n; }
  } hold(holds);
  const auto& server = plan.servers[si];
  for (Family f : {Family::v4, Family::v6}) {
    if ((f == Family::v4 && !plan.ipv4) || (f == Family::v6 && !plan.ipv6)) continue;
    const int fi = f == Family::v4 ? 0 : 1;
    auto it = std::find_if(addresses.begin(), addresses.end(), [f](const IpAddress& a) { return a.family == f; });
    ProbeResult base;
    base.family = f;
    base.server = server_text(server);
    base.transport = server.transport;
    if (it == addresses.end()) {
      // A numeric server of the other family needs no remark; a name without this family does.
      if (by_name) {
        base.routed = true;
        base.outcome = LocalFailure{"resolve", 0, "no " + std::string(to_string(f)) + " address for " + server.host};
        record({si, fi, 1, 0, 0}, std::move(base));
      }
      continue;
    }
    base.server_address = stun::TransportAddress{*it, server.port};
    add_hop_jobs(*it, server_text(server));
    if (plan.bound) {
      for (std::size_t ii = 0; ii < plan.interfaces.size(); ++ii) {
        const auto& itf = plan.interfaces[ii];
        if (itf.cls == InterfaceClass::loopback) continue;
        if (!chosen(itf)) continue;
        for (std::size_t ai = 0; ai < itf.addresses.size(); ++ai) {
          const auto& a = itf.addresses[ai];
          if (!usable_source(a, f)) continue;
          ProbeResult r = base;
          r.interface = itf.name;
          r.index = itf.index;
          r.cls = itf.cls;
          r.source = a;
          if (plan.address_bound) {
            ProbeResult by_address = r;
            by_address.address_bound = true;
            launch({si, fi, 2, ii, ai}, std::move(by_address));
          }
          launch({si, fi, 0, ii, ai}, std::move(r));
        }
      }
    }
    if (plan.routed) {
      ProbeResult r = base;
      r.routed = true;
      launch({si, fi, 1, 0, 0}, std::move(r));
    }
  }
}

void Prober::Round::add_hop_jobs(const IpAddress& target, const std::string& what) {
  if (plan.hops <= 0 || (target.family == Family::v4 && !plan.ipv4) || (target.family == Family::v6 && !plan.ipv6)) return;
  if (std::find(hop_targets_seen.begin(), hop_targets_seen.end(), target) != hop_targets_seen.end()) return;
  const std::size_t ti = hop_targets_seen.size();
  hop_targets_seen.push_back(target);
  const int fi = target.family == Family::v4 ? 0 : 1;
  for (std::size_t ii = 0; ii < plan.interfaces.size(); ++ii) {
    const auto& itf = plan.interfaces[ii];
    // The tunnel is the way out that is meant to be open; loopback never leaves.
    if (itf.cls == InterfaceClass::loopback || itf.cls == InterfaceClass::tunnel) continue;
    if (!chosen(itf)) continue;
    // One source address per interface and family: the path out does not depend on which.
    auto a = std::find_if(itf.addresses.begin(), itf.addresses.end(),
                          [&](const IpAddress& x) { return usable_source(x, target.family); });
    if (a == itf.addresses.end()) continue;
    HopResult r;
    r.interface = itf.name;
    r.index = itf.index;
    r.cls = itf.cls;
    r.family = target.family;
    r.source = *a;
    r.target = target;
    r.target_of = what;
    r.max_ttl = std::min(plan.hops, kMaxHops);
    auto job = std::make_shared<HopJob>(shared_from_this(), HopKey{ti, fi, ii}, std::move(r));
    if (auto failure = job->open()) {
      job->result.outcome = *failure;
      job->result.elapsed = since(start, Clock::now());
      job->finished = true;
      hop_results.emplace_back(job->key, std::move(job->result));
      continue;
    }
    ++running_jobs;
    hop_jobs.push_back(job);
    job->run();
  }
}

void Prober::Round::launch(Key key, ProbeResult r) {
  const TimePoint now = Clock::now();
  TransactionOptions o;
  o.rto = plan.rto;
  o.total = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(deadline - now));
  o.reliable = r.transport == Transport::tcp;
  stun::RequestOptions request{.fingerprint = true, .software = plan.software};
  Transaction tx(stun::TransactionId::random(), *r.server_address, o, now, request);
  auto job = std::make_shared<Job>(shared_from_this(), key, std::move(r), std::move(tx));
  if (auto failure = job->open()) {
    job->result.outcome = *failure;
    job->result.elapsed = since(start, Clock::now());
    job->finished = true;
    record(key, std::move(job->result));
    return;
  }
  ++running_jobs;
  if (!job->result.address_bound) ++running_stun;
  jobs.push_back(job);
  job->run();
}

void Prober::Round::record(Key key, ProbeResult r) { results.emplace_back(key, std::move(r)); }

void Prober::Round::resolve_failed(std::size_t si, int code, std::string why) {
  ProbeResult r;
  r.routed = true;
  r.server = server_text(plan.servers[si]);
  r.transport = plan.servers[si].transport;
  r.outcome = LocalFailure{"resolve", code, std::move(why)};
  r.elapsed = since(start, Clock::now());
  record({si, 0, 1, 0, 0}, std::move(r));
}

void Prober::Round::maybe_complete() {
  if (cancelled || completion_posted || holds > 0 || resolving > 0) return;
  if (running_stun == 0 && running_jobs > 0) settle_secondary();
  if (running_jobs > 0) return;
  completion_posted = true;
  // Always from a fresh handler: the caller of start() never sees its callback run inside start().
  asio::post(io, [self = shared_from_this()] {
    if (self->cancelled) return;
    self->completed = true;
    self->jobs.clear();  // the jobs held the round; let both go
    self->hop_jobs.clear();
    auto by_key = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::stable_sort(self->results.begin(), self->results.end(), by_key);
    std::stable_sort(self->hop_results.begin(), self->hop_results.end(), by_key);
    std::vector<ProbeResult> probes;
    for (auto& [k, r] : self->results) probes.push_back(std::move(r));
    std::vector<HopResult> hops;
    for (auto& [k, r] : self->hop_results) hops.push_back(std::move(r));
    auto report = make_report(self->plan.interfaces, std::move(probes), since(self->start, Clock::now()), self->plan.report,
                              std::move(hops));
    auto callback = std::move(self->done);
    if (callback) callback(std::move(report));
  });
}

// Every primary probe has ended: a secondary one still waiting gets as long again as they took (at
// least kSecondaryGrace), then a hop probe counts as silent (a router is nearer than a server and
// answers first; one that stays silent - many do, or rate-limit their ICMP - must not hold the
// round to its timeout) and an address-bound probe ends as a timeout (in a full tunnel it sends
// with a source the VPN server drops).
void Prober::Round::settle_secondary() {
  const TimePoint now = Clock::now();
  const TimePoint until = std::min(deadline, now + std::max<Clock::duration>(kSecondaryGrace, now - start));
  for (auto& j : jobs) {
    if (j->finished || !j->result.address_bound || j->cutoff) continue;
    j->cutoff.emplace(io);
    j->cutoff->expires_at(until);
    j->cutoff->async_wait([j](boost::system::error_code ec) {
      if (!ec && !j->finished && !j->round->cancelled) j->finish();
    });
  }
  for (auto& j : hop_jobs) {
    if (j->finished || until >= j->timer.expiry()) continue;
    j->timer.expires_at(until);  // cancels the pending wait, which then returns with an error
    j->timer.async_wait([j](boost::system::error_code ec) {
      if (!ec) j->finish(TimedOut{j->result.sent});
    });
  }
}

void Prober::Round::cancel() {
  cancelled = true;
  resolver.cancel();
  resolve_timer.cancel();
  for (auto& j : jobs) {
    j->finished = true;
    j->timer.cancel();
    if (j->cutoff) j->cutoff->cancel();
    boost::system::error_code ignored;
    j->fd.close(ignored);
  }
  jobs.clear();
  for (auto& j : hop_jobs) {
    j->finished = true;
    j->timer.cancel();
    boost::system::error_code ignored;
    j->fd.close(ignored);
  }
  hop_jobs.clear();
}

// ---- the public face -------------------------------------------------------------------------------

Plan plan_for(const config::Probe& probe, std::vector<Interface> interfaces) {
  Plan p;
  p.interfaces = std::move(interfaces);
  p.servers = probe.servers;
  p.ipv4 = probe.ipv4;
  p.ipv6 = probe.ipv6;
  p.timeout = probe.timeout;
  p.hops = probe.hops;
  return p;
}

void add_endpoint_hop_targets(Plan& plan, const std::vector<Endpoint>& endpoints) {
  std::vector<std::uint16_t> udp_ports;
  for (const auto& e : endpoints) {
    if (e.transport == Transport::udp) udp_ports.push_back(e.port);
    const bool known = std::any_of(plan.hop_targets.begin(), plan.hop_targets.end(),
                                   [&](const HopTarget& t) { return t.address == e.address; });
    if (!known) plan.hop_targets.push_back({e.address, "endpoint " + e.str()});
  }
  plan.hop_port_base = pick_hop_port_base(udp_ports, std::min(plan.hops, kMaxHops));
}

Prober::Prober(asio::io_context& io) : io_(io) {}

Prober::~Prober() { cancel(); }

void Prober::start(Plan plan, Done done) {
  cancel();
  round_ = std::make_shared<Round>(io_, std::move(plan), std::move(done));
  round_->begin();
}

void Prober::cancel() {
  if (round_ && !round_->completed) round_->cancel();
  round_.reset();
}

bool Prober::running() const { return round_ && !round_->completed && !round_->cancelled; }

bool Prober::lookups_in_flight() const { return round_ && round_->lookups_in_flight > 0; }

Report probe(Plan plan) {
  auto io = std::make_unique<asio::io_context>();
  auto prober = std::make_unique<Prober>(*io);
  Report out;
  prober->start(std::move(plan), [&](Report r) {
    out = std::move(r);
    io->stop();  // the round is over: nothing else is waited for
  });
  io->run();
  // A name lookup the round's deadline gave up on still sits in getaddrinfo on asio's resolver
  // thread, which destroying the io_context would join (resolv.conf's timeouts: seconds). The
  // round's answer is here: leave that thread to the process's end (leakguardctl candidates exits
  // right after) rather than wait for it.
  // (Kept reachable, not destroyed: a leak checker sees them parked, not lost.)
  if (prober->lookups_in_flight()) {
    static auto* parked = new std::vector<std::pair<Prober*, asio::io_context*>>;
    parked->emplace_back(prober.release(), io.release());
  }
  return out;
}

}  // namespace leakguard::probes
