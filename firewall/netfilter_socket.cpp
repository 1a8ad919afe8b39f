#include "firewall/netfilter_socket.hpp"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

#include "firewall/nft_dump.hpp"

namespace leakguard::firewall {

namespace {

// Large enough for any dump skb the kernel builds (it caps them well below this).
constexpr std::size_t kRxBuffer = 256 * 1024;

int poll_in(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

/// The extended ACK text (NLMSGERR_ATTR_MSG), if the kernel sent one.
std::string extack_message(const nlmsghdr* nlh) {
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  // With NETLINK_CAP_ACK the original message is not echoed: the TLVs follow struct nlmsgerr.
  std::string msg;
  mnl_attr_parse(
      nlh, sizeof(nlmsgerr),
      [](const nlattr* a, void* d) -> int {
        if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG) *static_cast<std::string*>(d) = mnl_attr_get_str(a);
        return MNL_CB_OK;
      },
      &msg);
  return msg;
}

}  // namespace

std::string describe_netlink_error(int err, bool whole_batch) {
  std::string s = std::strerror(err);
  switch (err) {
    case EPERM:
      // nfnetlink checks CAP_NET_ADMIN before it looks at any message; a refusal of one message
      // means the table belongs to another socket (NFT_TABLE_F_OWNER).
      s += whole_batch ? " (CAP_NET_ADMIN is needed)" : " (the table is owned by another process's netlink socket)";
      break;
    case EOPNOTSUPP:
      if (whole_batch) s += " (nf_tables is not available in this kernel)";
      break;
    case ENOENT: s += " (the table, chain or set does not exist)"; break;
    case EEXIST: s += " (it exists already)"; break;
    case ENOBUFS: s += " (socket buffer overrun: answers were lost)"; break;
    case EMSGSIZE: s += " (message too large)"; break;
    default: break;
  }
  return s;
}

Result<NetfilterSocket> NetfilterSocket::open(const Options& options) {
  NetfilterSocket s;
  s.options_ = options;
  s.nl_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (!s.nl_) {
    const int e = errno;
    return fail("open netfilter socket",
                std::string(std::strerror(e)) + (e == EPROTONOSUPPORT ? " (nfnetlink is not available in this kernel)" : ""), e);
  }
  if (mnl_socket_bind(s.nl_, 0, MNL_SOCKET_AUTOPID) < 0) return fail("bind netfilter socket", std::strerror(errno), errno);
  s.portid_ = mnl_socket_get_portid(s.nl_);
  const int fd = mnl_socket_get_fd(s.nl_);
  const int one = 1;
  // Small ACKs (no copy of our message) with the kernel's explanation attached.
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  // FORCE needs CAP_NET_ADMIN, which we need anyway; without it, the plain option still helps.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &options.rcvbuf, sizeof options.rcvbuf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.rcvbuf, sizeof options.rcvbuf);
  if (auto ok = s.ensure_sndbuf(static_cast<std::size_t>(options.sndbuf)); !ok) return tl::unexpected(ok.error());
  s.seq_ = static_cast<std::uint32_t>(::time(nullptr));
  s.rx_.resize(kRxBuffer);
  return s;
}

NetfilterSocket::NetfilterSocket(NetfilterSocket&& other) noexcept { *this = std::move(other); }

NetfilterSocket& NetfilterSocket::operator=(NetfilterSocket&& other) noexcept {
  if (this != &other) {
    if (nl_) mnl_socket_close(nl_);
    nl_ = other.nl_;
    other.nl_ = nullptr;
    portid_ = other.portid_;
    seq_ = other.seq_;
    sndbuf_ = other.sndbuf_;
    options_ = other.options_;
    rx_ = std::move(other.rx_);
  }
  return *this;
}

NetfilterSocket::~NetfilterSocket() {
  if (nl_) mnl_socket_close(nl_);
}

int NetfilterSocket::fd() const { return nl_ ? mnl_socket_get_fd(nl_) : -1; }

Result<void> NetfilterSocket::ensure_sndbuf(std::size_t bytes) {
  // netlink_sendmsg refuses messages longer than the send buffer minus a little.
  if (bytes + 4096 <= static_cast<std::size_t>(sndbuf_)) return {};
  int want = static_cast<int>(std::max<std::size_t>(bytes * 2, static_cast<std::size_t>(options_.sndbuf)));
  const int fd = mnl_socket_get_fd(nl_);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) != 0)
    return fail("set send buffer", std::strerror(errno), errno);
  int got = 0;
  socklen_t len = sizeof got;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len);
  sndbuf_ = got;
  return {};
}

Result<void> NetfilterSocket::send(const nft::Batch& batch) {
  if (auto ok = ensure_sndbuf(batch.bytes.size()); !ok) return ok;
  seq_ = batch.next_seq();
  if (mnl_socket_sendto(nl_, batch.bytes.data(), batch.bytes.size()) < 0) {
    const int e = errno;
    return fail("send batch", std::string(std::strerror(e)) + " (" + std::to_string(batch.bytes.size()) + " bytes)", e);
  }
  // The kernel runs the batch inside sendmsg, so every ACK is queued by now; poll only guards
  // against answers that never come.
  std::size_t acked = 0;
  std::optional<Error> first_error;
  std::uint32_t first_error_seq = 0;
  bool batch_level_error = false;
  const int fd = mnl_socket_get_fd(nl_);
  while (acked < batch.steps.size() && !batch_level_error) {
    ssize_t n = ::recv(fd, rx_.data(), rx_.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (first_error) break;  // everything the kernel had to say has been read
      const int r = poll_in(fd, options_.timeout);
      if (r == 0)
        return fail("wait for acks", "no answer for " + std::to_string(batch.steps.size() - acked) + " of " +
                                         std::to_string(batch.steps.size()) + " messages",
                    ETIMEDOUT);
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      return fail("receive acks", describe_netlink_error(e, true), e);
    }
    nft::for_each_message(rx_.data(), static_cast<std::size_t>(n), [&](const nlmsghdr* nlh) {
      if (nlh->nlmsg_type != NLMSG_ERROR) return;
      if (nlh->nlmsg_seq < batch.begin_seq || nlh->nlmsg_seq > batch.end_seq) return;  // stale answer
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      const nft::Batch::Step* step = batch.step(nlh->nlmsg_seq);
      if (step) ++acked;
      if (err->error == 0) return;
      const int code = -err->error;
      if (!step) batch_level_error = true;  // e.g. nf_tables missing: the kernel answers the batch begin
      if (!first_error || (step && nlh->nlmsg_seq < first_error_seq)) {
        std::string msg = describe_netlink_error(code, step == nullptr);
        const std::string ext = extack_message(nlh);
        if (!ext.empty()) msg += ": " + ext;
        first_error = Error{step ? step->what() : "run batch", msg, code};
        first_error_seq = nlh->nlmsg_seq;
      }
    });
  }
  if (first_error) return tl::unexpected(*first_error);
  return {};
}

Result<void> NetfilterSocket::request(std::span<const std::uint8_t> message,
                                      const std::function<Result<void>(const nlmsghdr*)>& on_reply, const char* step) {
  const auto* req = reinterpret_cast<const nlmsghdr*>(message.data());
  const std::uint32_t seq = req->nlmsg_seq;
  const bool dump = (req->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  if (mnl_socket_sendto(nl_, message.data(), message.size()) < 0) return fail(step, std::strerror(errno), errno);
  const int fd = mnl_socket_get_fd(nl_);
  bool done = false;
  bool interrupted = false;
  std::optional<Error> error;
  while (!done) {
    ssize_t n = ::recv(fd, rx_.data(), rx_.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (poll_in(fd, options_.timeout) == 0) return fail(step, "no answer from the kernel", ETIMEDOUT);
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      return fail(step, describe_netlink_error(e, true), e);
    }
    nft::for_each_message(rx_.data(), static_cast<std::size_t>(n), [&](const nlmsghdr* nlh) {
      if (done || nlh->nlmsg_seq != seq) return;
      if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
      if (nlh->nlmsg_type == NLMSG_DONE) {
        done = true;
        return;
      }
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) error = Error{step, describe_netlink_error(-err->error, false), -err->error};
        done = true;
        return;
      }
      if (!error) {
        if (auto ok = on_reply(nlh); !ok) error = ok.error();
      }
    });
    if (!dump && !done && error) break;
  }
  if (error) return tl::unexpected(*error);
  if (interrupted) return fail(step, "the table changed during the dump", EINTR);
  return {};
}

}  // namespace leakguard::firewall
