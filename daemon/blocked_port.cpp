#include "daemon/blocked_port.hpp"

#include "probes/own_ports.hpp"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>

namespace leakguard::daemon {
namespace {

// One NFULNL_MSG_CONFIG request (group in nfgenmsg.res_id), acknowledged; the answer's error.
int configure(int fd, std::uint16_t group, std::uint8_t family, const std::function<void(nlmsghdr*)>& attrs) {
  static std::uint32_t seq = 0;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  auto* h = mnl_nlmsg_put_header(buf.data());
  h->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  h->nlmsg_seq = ++seq;
  auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(h, sizeof(nfgenmsg)));
  g->nfgen_family = family;
  g->version = NFNETLINK_V0;
  g->res_id = htons(group);
  attrs(h);
  if (::send(fd, h, h->nlmsg_len, 0) < 0) return errno;
  // The acknowledgement (packets of a group already bound could come first: skipped).
  for (int tries = 0; tries < 64; ++tries) {
    char in[8192];
    const ssize_t n = ::recv(fd, in, sizeof in, 0);
    if (n < 0) return errno;
    int len = static_cast<int>(n);
    for (auto* m = reinterpret_cast<const nlmsghdr*>(in); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_seq != h->nlmsg_seq || m->nlmsg_type != NLMSG_ERROR) continue;
      return -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
    }
  }
  return ETIMEDOUT;
}

}  // namespace

BlockedPort::BlockedPort(boost::asio::io_context& io, Callback on_packet, CgroupsOf cgroups_of)
    : on_packet_(std::move(on_packet)), cgroups_of_(std::move(cgroups_of)), socket_(io), buffer_(1 << 16), retry_(io), own_uid_(::geteuid()), own_pid_(::getpid()) {}

BlockedPort::~BlockedPort() { (void)listen(std::nullopt); }

Result<void> BlockedPort::listen(std::optional<std::uint16_t> group) {
  if (group == group_ && (socket_.is_open() || !group)) return {};
  if (socket_.is_open()) {
    boost::system::error_code ec;
    socket_.close(ec);  // the kernel unbinds the group with the socket
  }
  group_.reset();
  if (!group) return {};
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return fail("listen for blocked packets", std::string("netlink socket: ") + std::strerror(errno), errno);
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  timeval tv{1, 0};  // for the configuration's acknowledgements only (then non-blocking)
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    const int e = errno;
    ::close(fd);
    return fail("listen for blocked packets", std::string("bind: ") + std::strerror(e), e);
  }
  auto cmd = [](std::uint8_t c) {
    return [c](nlmsghdr* h) {
      nfulnl_msg_config_cmd x{c};
      mnl_attr_put(h, NFULA_CFG_CMD, sizeof x, &x);
    };
  };
  int e = configure(fd, *group, AF_UNSPEC, cmd(NFULNL_CFG_CMD_BIND));
  if (e == 0)
    e = configure(fd, *group, AF_UNSPEC, [](nlmsghdr* h) {
      // The first 128 bytes of each packet: the IP header, extension headers and the ports.
      nfulnl_msg_config_mode m{};
      m.copy_range = htonl(128);
      m.copy_mode = NFULNL_COPY_PACKET;
      mnl_attr_put(h, NFULA_CFG_MODE, sizeof m, &m);
      // Deliver at once (no batching into a timeout): a leak attempt shows while it happens.
      mnl_attr_put_u32(h, NFULA_CFG_QTHRESH, htonl(1));
    });
  if (e != 0) {
    ::close(fd);
    const std::string why = e == EBUSY ? "another process listens to nfnetlink_log group " + std::to_string(*group) +
                                             " (set attribution.nflog_group to a free one)"
                                       : std::string(std::strerror(e));
    return fail("listen for blocked packets", why, e);
  }
  // A deep receive buffer: a burst is read on the next turn of the loop, not lost.
  const int size = 1 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  socket_.assign(fd);
  socket_.non_blocking(true);
  group_ = group;
  wait();
  return {};
}

void BlockedPort::wait() {
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;
    receive();
    wait();
  });
}

bool BlockedPort::own_probe(const attribution::LoggedPacket& p) const {
  return attribution::may_be_own_probe(p, own_uid_) && probes::is_own_port(p.protocol, p.source.family, p.source_port);
}

void BlockedPort::receive() {
  // A bounded number of datagrams per turn: the loop's other sources get their turn too.
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = ::recv(socket_.native_handle(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ENOBUFS) {
        ++lost_;
        continue;
      }
      return;  // EAGAIN: all read
    }
    auto batch = attribution::parse_nflog(std::span(buffer_.data(), static_cast<std::size_t>(n)));
    rejected_ += batch.rejected.size();
    for (const auto& p : batch.packets) {
      if (own_probe(p) || attribution::sent_by_self(p, {}, own_uid_, own_pid_)) {
        attribution::Sender s;
        s.uid = p.uid;
        on_packet_(p, s, true);
        continue;
      }
      const Key key{p.protocol, p.source, p.source_port};
      if (auto it = parked_.find(key); it != parked_.end() && it->second.size() < kParkedPerSender) {
        it->second.push_back(p);  // told with the rest once its sender is known
        continue;
      }
      attribution::Sender s = sender_of(p);
      if (s.ask_again && parked_.size() < kParkedSenders && !parked_.contains(key)) {
        // Found only in part (the last pass over /proc or the cgroups is too recent to make
        // another): this sender's packets wait for the next pass rather than be told half.
        parked_[key].push_back(p);
        retry_parked();
        continue;
      }
      on_packet_(p, s, attribution::sent_by_self(p, s, own_uid_, own_pid_));
    }
  }
}

void BlockedPort::retry_parked() {
  if (retry_waiting_) return;
  retry_waiting_ = true;
  retry_.expires_after(kAskAgainAfter);
  retry_.async_wait([this](const boost::system::error_code& ec) {
    retry_waiting_ = false;
    if (ec) return;
    auto parked = std::exchange(parked_, {});
    for (auto& [key, packets] : parked) {
      cache_.erase(key);
      attribution::Sender s = sender_of(packets.front());
      s.ask_again = false;  // what it is now, told
      for (const auto& p : packets) on_packet_(p, s, attribution::sent_by_self(p, s, own_uid_, own_pid_));
    }
  });
}

attribution::Sender BlockedPort::sender_of(const attribution::LoggedPacket& p) {
  const auto now = std::chrono::steady_clock::now();
  const Key key{p.protocol, p.source, p.source_port};
  if (auto it = cache_.find(key); it != cache_.end() && now < it->second.first) return it->second.second;
  if (now - budget_start_ >= std::chrono::seconds(1)) budget_start_ = now, budget_used_ = 0;
  if (budget_used_ >= kLookupsPerSecond) {
    // Over budget: the log's own word (the socket's owner) stands, and says so.
    attribution::Sender s;
    s.uid = p.uid;
    s.note = "not looked up (more than " + std::to_string(kLookupsPerSecond) + " new senders a second)";
    return s;
  }
  ++budget_used_;
  attribution::Sender s = lookup_.find(p, [&]() -> std::vector<std::uint64_t> {
    if (!cgroups_of_) return {};
    return cgroups_of_(p);
  });
  // An answer that asks to be asked again (a pass over /proc or the cgroups was too recent) is
  // kept only until that pass may run: a sender's every packet must not spend the budget.
  if (cache_.size() > 4096) cache_.clear();
  cache_[key] = {now + (s.ask_again ? kAskAgainAfter : kSenderCacheFor), s};
  return s;
}

}  // namespace leakguard::daemon
