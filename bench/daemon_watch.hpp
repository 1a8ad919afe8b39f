#pragma once
// What the daemon benchmarks watch, as root in the lab: the daemon's StateChanged and
// ProbeCompleted signals with the time each arrived (Watch), and the kernel's own notification that
// an interface went down or away (LinkDown: an rtnetlink socket in the lab's host namespace, as the
// daemon's watcher has). Tunnel loss -> blocking is timed from the second to the first.
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sdbus-c++/sdbus-c++.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "leakguard_proxy.h"
#include "tests/lab/lab.hpp"

namespace leakguard::bench {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
namespace lab = leakguard::lab;

class Watch final : public sdbus::ProxyInterfaces<org::leakguard::Daemon1_proxy> {
 public:
  explicit Watch(sdbus::IConnection& c) : ProxyInterfaces(c, "org.leakguard.Daemon1", "/org/leakguard/Daemon1") {
    registerProxy();
  }
  ~Watch() { unregisterProxy(); }
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::pair<std::string, steady_clock::time_point>> states;
  int probes = 0;

  bool wait_state(const std::string& s, milliseconds deadline, steady_clock::time_point* at = nullptr) {
    std::unique_lock l(m);
    return cv.wait_for(l, deadline, [&] {
      for (auto& [x, t] : states)
        if (x == s) {
          if (at) *at = t;
          return true;
        }
      return false;
    });
  }
  bool wait_probes(int n, milliseconds deadline) {
    std::unique_lock l(m);
    return cv.wait_for(l, deadline, [&] { return probes >= n; });
  }
  void clear() {
    std::lock_guard l(m);
    states.clear();
  }

 private:
  void onStateChanged(const std::string&, const std::string& to, const std::string&) override {
    const auto now = steady_clock::now();
    std::lock_guard l(m);
    states.emplace_back(to, now);
    cv.notify_all();
  }
  void onLeakDetected(const std::string&, const std::string&, const std::string&, const std::string&) override {}
  void onProbeCompleted(const std::string&) override {
    std::lock_guard l(m);
    ++probes;
    cv.notify_all();
  }
  void onTableTampered(const std::string&) override {}
  void onBlocked(const std::string&, const std::string&, const std::string&, const std::string&, const uint64_t&) override {}
};

// When the kernel announced that an interface went down or away: a thread reading an rtnetlink
// socket opened in the lab's host namespace (RTNLGRP_LINK), as the daemon's watcher does.
class LinkDown {
 public:
  LinkDown(const std::string& ns, std::string ifname) : ifname_(std::move(ifname)) {
    lab::NetnsScope in(ns);
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    sockaddr_nl a{};
    a.nl_family = AF_NETLINK;
    a.nl_groups = RTMGRP_LINK;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error(std::string("rtnetlink: ") + std::strerror(errno));
    reader_ = std::thread([this] { run(); });
  }
  ~LinkDown() {
    stop_ = true;
    reader_.join();
    close(fd_);
  }
  void clear() {
    std::lock_guard l(m_);
    at_.reset();
  }
  std::optional<steady_clock::time_point> at() {
    std::lock_guard l(m_);
    return at_;
  }

 private:
  void run() {
    std::vector<char> buf(64 * 1024);
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      const auto now = steady_clock::now();
      // The messages about `ifname_` that say it is down or gone.
      std::size_t off = 0;
      while (n > 0 && off + sizeof(nlmsghdr) <= static_cast<std::size_t>(n)) {
        nlmsghdr h;
        std::memcpy(&h, buf.data() + off, sizeof h);
        if (h.nlmsg_len < sizeof h || off + h.nlmsg_len > static_cast<std::size_t>(n)) break;
        if ((h.nlmsg_type == RTM_NEWLINK || h.nlmsg_type == RTM_DELLINK) && h.nlmsg_len >= NLMSG_LENGTH(sizeof(ifinfomsg))) {
          ifinfomsg ifi;
          std::memcpy(&ifi, buf.data() + off + NLMSG_HDRLEN, sizeof ifi);
          const bool down = h.nlmsg_type == RTM_DELLINK || !(ifi.ifi_flags & IFF_UP);
          if (down && name_of(buf.data() + off, h.nlmsg_len) == ifname_) {
            std::lock_guard l(m_);
            if (!at_) at_ = now;
          }
        }
        off += NLMSG_ALIGN(h.nlmsg_len);
      }
    }
  }
  static std::string name_of(const char* msg, std::size_t len) {
    std::size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg));
    while (off + sizeof(rtattr) <= len) {
      rtattr a;
      std::memcpy(&a, msg + off, sizeof a);
      if (a.rta_len < sizeof a || off + a.rta_len > len) break;
      const char* v = msg + off + RTA_LENGTH(0);
      if (a.rta_type == IFLA_IFNAME) return std::string(v, strnlen(v, a.rta_len - RTA_LENGTH(0)));
      off += RTA_ALIGN(a.rta_len);
    }
    return "";
  }
  std::string ifname_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread reader_;
  std::mutex m_;
  std::optional<steady_clock::time_point> at_;
};

}  // namespace leakguard::bench
