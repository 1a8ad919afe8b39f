#pragma once
// Tiny socket helpers for the firewall tests: sockets are created inside a lab namespace (a
// socket keeps the namespace it was created in) and then used from the test thread with poll()
// and deadlines. No sleeps: every wait is for an event, bounded by a deadline.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/lab/lab.hpp"

namespace fwtest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

/// An IPv4/IPv6 socket address from text ("203.0.113.80", "2001:db8:3::80", "ff02::1:2%eth0").
struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;

  static SockAddr of(const std::string& ip, std::uint16_t port, unsigned scope_id = 0) {
    SockAddr a;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      a.len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      v6->sin6_scope_id = scope_id;
      a.len = sizeof(sockaddr_in6);
    } else {
      throw std::runtime_error("not an address: " + ip);
    }
    return a;
  }
  int family() const { return ss.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
  std::string ip() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    else inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
    return buf;
  }
  std::uint16_t port() const {
    return ntohs(family() == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                     : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  }
};

/// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// How a socket is set up: the namespace it lives in, and optionally a device, a mark, a bind address.
struct SocketSpec {
  std::string ns;
  std::string device;               ///< SO_BINDTODEVICE
  std::optional<std::uint32_t> mark;  ///< SO_MARK
  std::string bind_ip;              ///< "" = any of the family
  std::uint16_t bind_port = 0;
  bool broadcast = false;
  int family = AF_INET;
  int protocol = 0;  ///< socket()'s third argument: IPPROTO_UDPLITE, or the protocol of a raw socket
};

inline void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

inline Fd make_socket(const SocketSpec& s, int type) {
  leakguard::lab::NetnsScope in(s.ns);
  Fd fd(::socket(s.family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, s.protocol));
  check(fd.get() >= 0, "socket");
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (s.family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (!s.device.empty())
    check(setsockopt(fd.get(), SOL_SOCKET, SO_BINDTODEVICE, s.device.c_str(), static_cast<socklen_t>(s.device.size())) == 0,
          "SO_BINDTODEVICE " + s.device);
  if (s.mark) check(setsockopt(fd.get(), SOL_SOCKET, SO_MARK, &*s.mark, sizeof *s.mark) == 0, "SO_MARK");
  if (s.broadcast) check(setsockopt(fd.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof one) == 0, "SO_BROADCAST");
  if (!s.bind_ip.empty() || s.bind_port) {
    const std::string ip = s.bind_ip.empty() ? (s.family == AF_INET ? "0.0.0.0" : "::") : s.bind_ip;
    const SockAddr a = SockAddr::of(ip, s.bind_port);
    check(::bind(fd.get(), a.sa(), a.len) == 0, "bind " + ip + ":" + std::to_string(s.bind_port));
  }
  return fd;
}

inline Fd udp_socket(const SocketSpec& s) { return make_socket(s, SOCK_DGRAM); }

/// A UDP receiver on ip:port inside `ns`.
inline Fd udp_listener(const std::string& ns, const std::string& ip, std::uint16_t port, const std::string& device = {}) {
  SocketSpec s;
  s.ns = ns;
  s.bind_ip = ip;
  s.bind_port = port;
  s.device = device;
  s.family = ip.find(':') == std::string::npos ? AF_INET : AF_INET6;
  return udp_socket(s);
}

/// 0 if the kernel took the datagram, else errno (EPERM: our output rule dropped it).
inline int send_udp(const Fd& fd, const SockAddr& to, std::string_view payload) {
  const ssize_t n = ::sendto(fd.get(), payload.data(), payload.size(), 0, to.sa(), to.len);
  return n < 0 ? errno : 0;
}

struct Datagram {
  std::string payload;
  std::string from;  ///< source address
  std::uint16_t from_port = 0;
};

/// Reads what is queued now.
inline std::vector<Datagram> drain(const Fd& fd) {
  std::vector<Datagram> out;
  for (;;) {
    char buf[2048];
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const ssize_t n = ::recvfrom(fd.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) break;
    SockAddr a;
    a.ss = ss;
    a.len = len;
    out.push_back({std::string(buf, static_cast<std::size_t>(n)), a.ip(), a.port()});
  }
  return out;
}

/// Waits until a datagram with `payload` arrives (true) or the deadline passes (false). Every
/// datagram read on the way is appended to `seen`.
inline bool wait_for(const Fd& fd, const std::string& payload, std::vector<Datagram>& seen,
                     std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    for (auto& d : drain(fd)) {
      const bool hit = d.payload == payload;
      seen.push_back(std::move(d));
      if (hit) return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
}

/// Everything that arrives within `window` (for proving that something did NOT arrive, after a
/// control packet sent later on an allowed path has arrived).
inline std::vector<Datagram> collect(const Fd& fd, std::chrono::milliseconds window) {
  std::vector<Datagram> seen;
  wait_for(fd, "\x01never-sent", seen, window);
  return seen;
}

inline bool contains(const std::vector<Datagram>& v, const std::string& payload) {
  for (const auto& d : v)
    if (d.payload == payload) return true;
  return false;
}

/// A TCP listener on ip:port inside `ns`.
inline Fd tcp_listener(const std::string& ns, const std::string& ip, std::uint16_t port) {
  SocketSpec s;
  s.ns = ns;
  s.bind_ip = ip;
  s.bind_port = port;
  s.family = ip.find(':') == std::string::npos ? AF_INET : AF_INET6;
  Fd fd = make_socket(s, SOCK_STREAM);
  check(::listen(fd.get(), 64) == 0, "listen");
  return fd;
}

/// Connects within `timeout`: 0 on success, else the errno (ETIMEDOUT if nothing happened).
inline int tcp_connect(const SocketSpec& spec, const SockAddr& to, std::chrono::milliseconds timeout = 5000ms) {
  Fd fd = make_socket(spec, SOCK_STREAM);
  if (::connect(fd.get(), to.sa(), to.len) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd p{fd.get(), POLLOUT, 0};
  const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (r == 0) return ETIMEDOUT;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

/// Accepts every pending connection; returns the peers' addresses.
inline std::vector<std::string> accept_all(const Fd& listener) {
  std::vector<std::string> peers;
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int c = ::accept4(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (c < 0) break;
    SockAddr a;
    a.ss = ss;
    a.len = len;
    peers.push_back(a.ip());
    ::close(c);
  }
  return peers;
}

/// Accepts until `n` connections came in or `timeout` passed; returns how many came in. (A
/// client's connect() completes before the server has the final ACK: wait for it.)
inline std::size_t accept_n(const Fd& listener, std::size_t n, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = Clock::now() + timeout;
  std::size_t got = 0;
  while (got < n) {
    got += accept_all(listener).size();
    if (got >= n) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{listener.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return got;
}

/// Interface index of `dev` inside `ns`.
inline unsigned ifindex(const std::string& ns, const std::string& dev) {
  leakguard::lab::NetnsScope in(ns);
  return if_nametoindex(dev.c_str());
}

/// Two bare namespaces joined twice: "eth0" (a physical uplink: 192.0.2.1 <-> 192.0.2.2,
/// 2001:db8:1::1 <-> ::2) and "tun0" (declared as the tunnel: 100.64.1.1 <-> 100.64.1.2).
/// The firewall goes into `snd`; `rcv` is the rest of the world.
struct TwoHosts {
  leakguard::lab::Netns snd{"snd"};
  leakguard::lab::Netns rcv{"rcv"};

  TwoHosts() {
    for (const auto& [a, b, v4a, v4b] : {std::tuple{"eth0", "e0", "192.0.2.1/24", "192.0.2.2/24"},
                                         std::tuple{"tun0", "t0", "100.64.1.1/24", "100.64.1.2/24"}}) {
      sh({"ip", "-n", snd.name(), "link", "add", a, "type", "veth", "peer", "name", b, "netns", rcv.name()});
      sh({"ip", "-n", snd.name(), "addr", "add", v4a, "dev", a});
      sh({"ip", "-n", rcv.name(), "addr", "add", v4b, "dev", b});
      sh({"ip", "-n", snd.name(), "link", "set", a, "up"});
      sh({"ip", "-n", rcv.name(), "link", "set", b, "up"});
    }
    sh({"ip", "-n", snd.name(), "-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad"});
    sh({"ip", "-n", rcv.name(), "-6", "addr", "add", "2001:db8:1::2/64", "dev", "e0", "nodad"});
  }
  static void sh(const std::vector<std::string>& argv) {
    auto r = leakguard::lab::run(argv);
    if (r.status != 0) throw std::runtime_error("failed: " + argv[0] + " ...: " + r.out);
  }
};

inline std::string err_name(int e) { return e == 0 ? std::string("ok") : std::string(strerrorname_np(e)); }

}  // namespace fwtest
