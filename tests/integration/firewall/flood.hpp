#pragma once
// A paced UDP flood through TwoHosts: flows that must be stopped and flows that must pass, each
// datagram numbered, so that the tests can count exactly what crossed while the table was being
// replaced, updated, orphaned or taken over.
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/firewall/net_util.hpp"

namespace fwtest {

class Flood {
 public:
  struct FlowSpec {
    std::string name;
    bool must_pass;        ///< false: every datagram must be refused and none may arrive
    std::string device;    ///< the sender's interface in snd
    std::string to_ip;     ///< receiver address in rcv
    std::uint16_t port;
  };
  struct Counts {
    std::uint64_t sent = 0;      ///< sendto succeeded
    std::uint64_t refused = 0;   ///< sendto failed with EPERM (our rule)
    std::uint64_t errors = 0;    ///< any other sendto error
    std::uint64_t received = 0;  ///< distinct sequence numbers that arrived
    std::uint64_t overflow = 0;  ///< receive-buffer drops (SO_RXQ_OVFL): would make counts inexact
  };

  /// `rate` datagrams per second per flow.
  Flood(const TwoHosts& net, std::vector<FlowSpec> specs, int rate) : rate_(rate) {
    for (std::size_t i = 0; i < specs.size(); ++i) {
      auto f = std::make_unique<Flow>();
      f->spec = specs[i];
      SocketSpec s;
      s.ns = net.snd.name();
      s.device = specs[i].device;
      s.family = specs[i].to_ip.find(':') == std::string::npos ? AF_INET : AF_INET6;
      f->tx = udp_socket(s);
      f->rx = udp_listener(net.rcv.name(), specs[i].to_ip, specs[i].port);
      const int big = 32 << 20;
      setsockopt(f->rx.get(), SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
      const int one = 1;
      setsockopt(f->rx.get(), SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
      f->to = SockAddr::of(specs[i].to_ip, specs[i].port);
      flows_.push_back(std::move(f));
    }
  }
  ~Flood() { stop(); }

  void start() {
    running_ = true;
    sender_ = std::thread([this] { send_loop(); });
    receiver_ = std::thread([this] { receive_loop(); });
  }

  /// Stops sending, then waits (at most `drain`) until every sent datagram of the passing flows
  /// has been read.
  void stop(std::chrono::milliseconds drain = std::chrono::milliseconds(5000)) {
    if (!sender_.joinable()) return;
    running_ = false;
    sender_.join();
    const auto deadline = Clock::now() + drain;
    while (Clock::now() < deadline && !all_arrived()) {
      std::unique_lock lock(m_);
      cv_.wait_until(lock, deadline);
    }
    receiving_ = false;
    receiver_.join();
  }

  Counts counts(std::size_t flow) const {
    const Flow& f = *flows_.at(flow);
    Counts c;
    c.sent = f.sent.load();
    c.refused = f.refused.load();
    c.errors = f.errors.load();
    c.received = f.received.load();
    c.overflow = f.overflow.load();
    return c;
  }
  const FlowSpec& spec(std::size_t flow) const { return flows_.at(flow)->spec; }
  std::size_t flows() const { return flows_.size(); }

  /// Waits until flow `flow` has received at least `n` datagrams in total (progress), at most 10 s.
  bool wait_received(std::size_t flow, std::uint64_t n) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return flows_.at(flow)->received.load() >= n; });
  }

  std::string report() const {
    std::string s;
    for (std::size_t i = 0; i < flows_.size(); ++i) {
      const auto c = counts(i);
      s += flows_[i]->spec.name + ": sent " + std::to_string(c.sent) + ", refused " + std::to_string(c.refused) +
           ", other errors " + std::to_string(c.errors) + ", received " + std::to_string(c.received) + ", rx overflow " +
           std::to_string(c.overflow) + "\n";
    }
    return s;
  }

 private:
  struct Flow {
    FlowSpec spec;
    Fd tx, rx;
    SockAddr to;
    std::atomic<std::uint64_t> seq{0}, sent{0}, refused{0}, errors{0}, received{0}, overflow{0};
  };

  bool all_arrived() const {
    for (const auto& f : flows_)
      if (f->spec.must_pass && f->received.load() + f->overflow.load() < f->sent.load()) return false;
    return true;
  }

  void send_loop() {
    // Paced in 1 ms ticks (load generation, not synchronisation).
    const int per_tick = std::max(1, rate_ / 1000);
    auto next = Clock::now();
    while (running_) {
      for (int k = 0; k < per_tick; ++k) {
        for (std::size_t i = 0; i < flows_.size(); ++i) {
          Flow& f = *flows_[i];
          const std::string payload = std::to_string(i) + " " + std::to_string(f.seq++);
          const int e = send_udp(f.tx, f.to, payload);
          if (e == 0) ++f.sent;
          else if (e == EPERM) ++f.refused;
          else ++f.errors;
        }
      }
      next += std::chrono::milliseconds(1);
      std::this_thread::sleep_until(next);
    }
  }

  void receive_loop() {
    std::vector<pollfd> pfds;
    for (const auto& f : flows_) pfds.push_back({f->rx.get(), POLLIN, 0});
    std::vector<std::vector<bool>> seen(flows_.size());
    while (receiving_) {
      ::poll(pfds.data(), pfds.size(), 20);
      for (std::size_t i = 0; i < flows_.size(); ++i) {
        Flow& f = *flows_[i];
        for (;;) {
          char buf[128];
          char ctrl[CMSG_SPACE(sizeof(std::uint32_t))];
          iovec iov{buf, sizeof buf};
          msghdr mh{};
          mh.msg_iov = &iov;
          mh.msg_iovlen = 1;
          mh.msg_control = ctrl;
          mh.msg_controllen = sizeof ctrl;
          const ssize_t n = ::recvmsg(f.rx.get(), &mh, MSG_DONTWAIT);
          if (n < 0) break;
          for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
              std::uint32_t drops = 0;
              std::memcpy(&drops, CMSG_DATA(c), sizeof drops);
              f.overflow = drops;
            }
          const std::string payload(buf, static_cast<std::size_t>(n));
          const auto space = payload.find(' ');
          if (space == std::string::npos) continue;
          const std::size_t seq = std::stoull(payload.substr(space + 1));
          auto& s = seen[i];
          if (seq >= s.size()) s.resize(seq + 1 + 4096);
          if (!s[seq]) {
            s[seq] = true;
            ++f.received;
          }
        }
      }
      cv_.notify_all();
    }
  }

  int rate_;
  std::vector<std::unique_ptr<Flow>> flows_;
  std::atomic<bool> running_{false}, receiving_{true};
  std::thread sender_, receiver_;
  mutable std::mutex m_;
  std::condition_variable cv_;
};

/// The magnifier: another table's output chain at our priority (0) that decides nothing but
/// takes time (it jumps to a chain of `rules` times `meta l4proto udp counter`), hooked in again
/// before every change. The kernel runs base chains of equal priority newest first, so a chain
/// that a change creates runs before this one and a chain it deletes runs after it: a packet
/// takes as long to get from one to the other as this chain takes to evaluate. Other firewalls
/// (iptables-nft, firewalld, docker) put chains at this priority on real machines.
class Magnifier {
 public:
  Magnifier(const leakguard::lab::Netns& ns, int rules) : ns_(ns) {
    std::string text = "table inet lgt_slow {\n\tchain slow {\n";
    for (int i = 0; i < rules; ++i) text += "\t\tmeta l4proto udp counter\n";
    text += "\t}\n}\n";
    nft(text + kHook);
  }
  ~Magnifier() { std::remove(file_.c_str()); }
  Magnifier(const Magnifier&) = delete;
  Magnifier& operator=(const Magnifier&) = delete;

  /// Hooks the chain in again, in front of every base chain of equal priority there is now.
  void rehook() { nft(std::string("delete chain inet lgt_slow entry\n") + kHook); }

 private:
  static constexpr const char* kHook =
      "add chain inet lgt_slow entry { type filter hook output priority 0; }\n"
      "add rule inet lgt_slow entry jump slow\n";

  void nft(const std::string& text) {
    {
      std::ofstream f(file_, std::ios::trunc);
      f << text;
    }
    // nft started from inside the namespace (fork inherits the thread's namespace): faster
    // than `ip netns exec`, which this runs before every change.
    leakguard::lab::NetnsScope in(ns_.name());
    const auto r = leakguard::lab::run({"nft", "-f", file_});
    if (r.status != 0) throw std::runtime_error("nft -f (magnifier): " + r.out);
  }

  const leakguard::lab::Netns& ns_;
  std::string file_ = "/tmp/" + leakguard::lab::unique_name("magnifier") + ".nft";
};

}  // namespace fwtest
