#include "netwatch/watcher.hpp"

#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

namespace leakguard::netwatch {
namespace {

constexpr std::size_t kBuffer = 256 * 1024;  // larger than any single datagram the kernel sends

struct MnlClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlClose>;

Result<void> set_rcvbuf(int fd, int bytes) {
  // SO_RCVBUFFORCE passes the system limit (needs CAP_NET_ADMIN); fall back to SO_RCVBUF.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) == 0) return {};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) == 0) return {};
  return fail("set receive buffer", std::strerror(errno), errno);
}

// One dump request (NLM_F_DUMP) and all of its answer; applies every event to `m`.
// Returns false (and leaves the caller to retry) if the kernel flagged the dump as interrupted.
Result<bool> dump_one(mnl_socket* nl, std::uint16_t type, std::size_t header_size, std::uint32_t seq, NetModel& m) {
  alignas(nlmsghdr) std::uint8_t req[128] = {};
  nlmsghdr* nlh = mnl_nlmsg_put_header(req);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  // The family byte leads every rtnetlink header: AF_UNSPEC asks for all families.
  mnl_nlmsg_put_extra_header(nlh, header_size);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return fail("dump", std::strerror(errno), errno);
  std::vector<std::uint8_t> buf(kBuffer);
  bool interrupted = false;
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("dump", std::strerror(errno), errno);
    }
    const std::span<const std::uint8_t> got(buf.data(), static_cast<std::size_t>(n));
    for (std::size_t off = 0; off + sizeof(nlmsghdr) <= got.size();) {
      nlmsghdr h;
      std::memcpy(&h, got.data() + off, sizeof h);
      if (h.nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
      if (h.nlmsg_len < sizeof(nlmsghdr)) break;
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
    auto parsed = parse(got);
    bool done = false;
    for (const auto& e : parsed.events) {
      if (std::holds_alternative<Done>(e)) done = true;
      else if (auto* a = std::get_if<Ack>(&e); a && a->error != 0)
        return fail("dump", std::strerror(-a->error), -a->error);
      else m.apply(e);
    }
    if (done) return !interrupted;
  }
}

}  // namespace

Result<NetModel> dump_model() {
  MnlSocket nl(mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC));
  if (!nl) return fail("dump", std::string("cannot open rtnetlink: ") + std::strerror(errno), errno);
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return fail("dump", std::strerror(errno), errno);
  auto seq = static_cast<std::uint32_t>(time(nullptr));
  // A dump that overlapped a change is flagged NLM_F_DUMP_INTR: take the whole picture again.
  for (int attempt = 0; attempt < 10; ++attempt) {
    NetModel m;
    bool consistent = true;
    const std::pair<std::uint16_t, std::size_t> requests[] = {
        {RTM_GETLINK, sizeof(ifinfomsg)}, {RTM_GETADDR, sizeof(ifaddrmsg)},
        {RTM_GETROUTE, sizeof(rtmsg)}, {RTM_GETRULE, sizeof(fib_rule_hdr)}};
    for (const auto& [type, size] : requests) {
      auto r = dump_one(nl.get(), type, size, ++seq, m);
      if (!r) return tl::unexpected(r.error());
      consistent = consistent && *r;
    }
    if (consistent) return m;
  }
  return fail("dump", "the network kept changing during 10 dumps in a row");
}

Watcher::Watcher(boost::asio::io_context& io, Options options, Callback callback)
    : options_(std::move(options)),
      callback_(std::move(callback)),
      socket_(io),
      timer_(io),
      coalescer_({options_.debounce, options_.max_delay}),
      buffer_(kBuffer) {}

Watcher::~Watcher() = default;

Result<void> Watcher::start() {
  // Subscribe before dumping, so nothing that happens in between is missed.
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return fail("open rtnetlink", std::strerror(errno), errno);
  socket_.assign(fd);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return fail("bind rtnetlink", std::strerror(errno), errno);
  for (int group : {RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE,
                    RTNLGRP_IPV4_RULE, RTNLGRP_IPV6_RULE}) {
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0)
      return fail("subscribe rtnetlink group " + std::to_string(group), std::strerror(errno), errno);
  }
  if (auto r = set_rcvbuf(fd, options_.receive_buffer); !r) return r;
  auto m = dump_model();
  if (!m) return tl::unexpected(m.error());
  published_ = pending_ = std::move(*m);
  wait();
  return {};
}

void Watcher::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (!ec) on_readable();
  });
}

void Watcher::on_readable() {
  ++stats_.wakeups;
  const int fd = socket_.native_handle();
  bool any = false, urgent = false;
  for (;;) {
    const ssize_t n = recv(fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOBUFS) {
      // The kernel dropped events: the model may be wrong in ways no event will tell. What is
      // still queued is older than anything a dump shows, and replaying it on top of a dump
      // would bring back what was since undone: discard it, then take the whole picture again.
      // Events that arrive from here on are applied on top (re-applying one the dump already
      // shows changes nothing).
      ++stats_.overflows;
      for (;;) {
        const ssize_t d = recv(fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
        if (d > 0 || (d < 0 && (errno == EINTR || errno == ENOBUFS))) continue;
        break;
      }
      auto m = dump_model();
      if (m) {
        pending_ = std::move(*m);
        resynced_ = true;
        any = true;
      } else {
        burst_rejected_.push_back("resync failed: " + m.error().str());
      }
      continue;
    }
    if (n <= 0) break;  // EAGAIN: drained
    auto parsed = parse({buffer_.data(), static_cast<std::size_t>(n)});
    for (const auto& e : parsed.events) {
      if (options_.is_tunnel && !urgent) urgent = netwatch::urgent(pending_, e, options_.is_tunnel);
      if (pending_.apply(e)) {
        ++burst_events_;
        ++stats_.events;
        any = true;
      }
    }
    stats_.rejected += parsed.rejected.size();
    for (auto& r : parsed.rejected) burst_rejected_.push_back(std::move(r));
  }
  if (any || !burst_rejected_.empty()) schedule(urgent);
  wait();
}

void Watcher::schedule(bool urgent) {
  const auto now = Coalescer::Clock::now();
  const auto at = coalescer_.arrived(now, urgent);
  if (at <= now) {
    ++stats_.immediate;
    // Published before the dump that would verify it: a tunnel's link lost must reach the
    // consumer now, and the dump (links, addresses, routes, rules) is the slowest part of a
    // publication (1-10 ms on a busy machine: most of tunnel loss -> blocking). The verification
    // follows a debounce later, with whatever else the teardown sends, and corrects the model if
    // the kernel disagrees.
    publish(false);
    if (options_.verify) {
      verify_due_ = true;
      arm(now + options_.debounce);
    } else {
      timer_.cancel();
    }
    return;
  }
  arm(at);
}

void Watcher::arm(Coalescer::TimePoint at) {
  timer_.expires_at(at);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    // A wait that had already expired when the burst was published at once finds nothing to do.
    if (ec || !(coalescer_.in_burst() || verify_due_)) return;
    ++stats_.wakeups;
    publish(options_.verify);
  });
}

void Watcher::publish(bool verify) {
  coalescer_.published();
  if (verify) verify_due_ = false;
  bool corrected = false;
  if (verify) {
    ++stats_.verifications;
    if (auto m = dump_model(); !m) {
      burst_rejected_.push_back("verify failed: " + m.error().str());
    } else if (!(*m == pending_)) {
      ++stats_.corrections;
      corrected = true;
      pending_ = std::move(*m);
    }
  }
  auto changes = diff(published_, pending_);
  published_ = pending_;
  const bool resynced = std::exchange(resynced_, false);
  auto rejected = std::exchange(burst_rejected_, {});
  const auto events = std::exchange(burst_events_, 0);
  if (changes.empty() && !resynced && rejected.empty()) return;  // a burst that undid itself
  ++stats_.notifications;
  callback_(Notification{published_, std::move(changes), resynced, corrected, events, std::move(rejected), verify});
}

}  // namespace leakguard::netwatch
