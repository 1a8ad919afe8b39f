// The I/O half of netwatch/wireguard.hpp: asking the kernel (generic netlink) or a userspace
// implementation (its UNIX socket) for a device's peers, within kPeerReadDeadline.
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/wireguard.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>

#include "common/iface.hpp"
#include "netwatch/wireguard.hpp"

namespace leakguard::netwatch {

using Clock = std::chrono::steady_clock;

namespace {

struct MnlClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// Sends one request and hands every answer message to `on_msg` until the end (one message, or a
// dump's NLMSG_DONE), the deadline, or an error. (Generic netlink, and sock_diag below.)
Result<void> genl_exchange(mnl_socket* nl, nlmsghdr* req, bool dump, Clock::time_point deadline,
                           const std::function<Result<void>(const nlmsghdr*)>& on_msg) {
  constexpr const char* step = "read WireGuard peers";
  if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0) return fail(step, std::string("netlink send: ") + std::strerror(errno), errno);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  const int fd = mnl_socket_get_fd(nl);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return fail(step, "no answer from the kernel in time");
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) return fail(step, std::string("netlink receive: ") + std::strerror(errno), errno);
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_seq != req->nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return {};
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) return fail(step, "a truncated netlink error");
        const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
        if (e->error == 0) return {};
        return fail(step, std::strerror(-e->error), -e->error);
      }
      if (h->nlmsg_len < mnl_nlmsg_size(GENL_HDRLEN)) return fail(step, "a truncated generic netlink message");
      if (auto r = on_msg(h); !r) return r;
      if (!dump) return {};
    }
  }
}

Result<std::optional<PeerEndpoints>> read_kernel(const std::string& ifname) {
  constexpr const char* step = "read WireGuard peers";
  const auto deadline = Clock::now() + kPeerReadDeadline;
  std::unique_ptr<mnl_socket, MnlClose> nl(mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC));
  if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    return fail(step, std::string("generic netlink: ") + std::strerror(errno), errno);
  std::vector<char> req(MNL_SOCKET_BUFFER_SIZE);
  auto start = [&](std::uint16_t type, std::uint16_t flags, std::uint8_t cmd, std::uint8_t version, std::uint32_t seq) {
    auto* h = mnl_nlmsg_put_header(req.data());
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_REQUEST | flags;
    h->nlmsg_seq = seq;
    auto* g = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(h, sizeof(genlmsghdr)));
    g->cmd = cmd;
    g->version = version;
    return h;
  };
  // The family's number: "wireguard" is registered when the module is loaded.
  auto* h = start(GENL_ID_CTRL, NLM_F_ACK, CTRL_CMD_GETFAMILY, 1, 1);
  mnl_attr_put_strz(h, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
  std::uint16_t family = 0;
  auto got = genl_exchange(nl.get(), h, false, deadline, [&](const nlmsghdr* m) -> Result<void> {
    mnl_attr_parse(m, GENL_HDRLEN, [](const nlattr* a, void* data) {
      if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(a, MNL_TYPE_U16) >= 0)
        *static_cast<std::uint16_t*>(data) = mnl_attr_get_u16(a);
      return MNL_CB_OK;
    }, &family);
    return {};
  });
  if (!got) {
    if (got.error().code == ENOENT) return fail(step, "the kernel has no WireGuard (generic netlink family 'wireguard')", ENOENT);
    return tl::unexpected(got.error());
  }
  if (family == 0) return fail(step, "the kernel named no number for the 'wireguard' family");
  h = start(family, NLM_F_DUMP, WG_CMD_GET_DEVICE, WG_GENL_VERSION, 2);
  mnl_attr_put_strz(h, WGDEVICE_A_IFNAME, ifname.c_str());
  GenlPeerReader reader;
  got = genl_exchange(nl.get(), h, true, deadline, [&](const nlmsghdr* m) {
    const auto* p = static_cast<const std::uint8_t*>(mnl_nlmsg_get_payload(m)) + GENL_HDRLEN;
    return reader.add(std::span<const std::uint8_t>(p, m->nlmsg_len - mnl_nlmsg_size(GENL_HDRLEN)));
  });
  if (!got) {
    if (got.error().code == ENODEV) return std::optional<PeerEndpoints>{};  // gone, or not WireGuard
    return tl::unexpected(got.error());
  }
  return std::optional<PeerEndpoints>{reader.endpoints()};
}

// Whether the socket listening on the file `path` is one of our network namespace: sock_diag
// lists the asking socket's namespace only, and a bound socket names its file (UNIX_DIAG_VFS: the
// file's inode and device), so ours is the one whose file is this very file. (SO_PEERCRED would
// name the process that listened, which for wireguard-go is a launcher that has exited, and
// /proc/PID/ns is not everyone's to read; the socket a connection makes on the server's side is
// made in the connecting socket's namespace, so the peer says nothing.)
Result<bool> listener_in_own_netns(const std::string& path, Clock::time_point deadline) {
  struct stat file{};
  if (::stat(path.c_str(), &file) != 0) return fail("stat", std::strerror(errno), errno);
  std::unique_ptr<mnl_socket, MnlClose> nl(mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC));
  if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    return fail("sock_diag", std::strerror(errno), errno);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* req = mnl_nlmsg_put_header(buf.data());
  req->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req->nlmsg_seq = 3;
  auto* u = static_cast<unix_diag_req*>(mnl_nlmsg_put_extra_header(req, sizeof(unix_diag_req)));
  u->sdiag_family = AF_UNIX;
  u->udiag_states = 1U << 10;  // TCP_LISTEN: listening sockets only
  u->udiag_show = UDIAG_SHOW_VFS;
  struct Match {
    const struct stat& file;
    bool found = false;
  } match{file};
  auto got = genl_exchange(nl.get(), req, true, deadline, [&](const nlmsghdr* m) -> Result<void> {
    if (m->nlmsg_len < mnl_nlmsg_size(sizeof(unix_diag_msg))) return {};
    mnl_attr_parse(m, sizeof(unix_diag_msg), [](const nlattr* a, void* data) {
      auto& mt = *static_cast<Match*>(data);
      if (mnl_attr_get_type(a) != UNIX_DIAG_VFS || mnl_attr_get_payload_len(a) < sizeof(unix_diag_vfs)) return MNL_CB_OK;
      unix_diag_vfs v{};
      std::memcpy(&v, mnl_attr_get_payload(a), sizeof v);
      // The kernel's own dev_t (major << 20 | minor), not stat()'s encoding of it.
      // The kernel's inode number is cut to 32 bits here (udiag_vfs_ino is a __u32).
      if (v.udiag_vfs_ino == static_cast<std::uint32_t>(mt.file.st_ino) && v.udiag_vfs_dev >> 20 == major(mt.file.st_dev) &&
          (v.udiag_vfs_dev & 0xfffffU) == minor(mt.file.st_dev))
        mt.found = true;
      return MNL_CB_OK;
    }, &match);
    return {};
  });
  if (!got) {
    if (got.error().code == ENOENT || got.error().code == EOPNOTSUPP)
      return fail("sock_diag", "this kernel cannot list UNIX sockets (CONFIG_UNIX_DIAG)", got.error().code);
    return tl::unexpected(got.error());
  }
  return match.found;
}

Result<std::optional<PeerEndpoints>> read_userspace(const std::string& ifname, const std::string& dir) {
  constexpr const char* step = "read WireGuard peers";
  const auto deadline = Clock::now() + kPeerReadDeadline;
  const std::string path = dir + "/" + ifname + ".sock";
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return fail(step, path + ": path too long");
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(step, std::string("socket: ") + std::strerror(errno), errno);
  struct Fd {
    int fd;
    ~Fd() { ::close(fd); }
  } guard{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    // No socket: no userspace WireGuard by that name (a socket left by one that exited refuses).
    if (errno == ENOENT || errno == ECONNREFUSED) return std::optional<PeerEndpoints>{};
    return fail(step, path + ": " + std::strerror(errno), errno);
  }
  // /run/wireguard is the machine's, not the network namespace's: a userspace WireGuard of the same
  // name in another namespace (started with `ip netns exec`) answers here too, and its peers are
  // not ours to follow.
  auto here = listener_in_own_netns(path, deadline);
  if (!here) return fail(step, path + ": cannot tell which network namespace serves it (" + here.error().str() + "): not followed");
  if (!*here) return fail(step, path + ": served from another network namespace (its own interface of that name): not followed");
  auto wait = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, events, 0};
    return left > 0 && ::poll(&p, 1, static_cast<int>(left)) > 0;
  };
  const std::string_view request = "get=1\n\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    if (!wait(POLLOUT)) return fail(step, path + ": no room to ask in time");
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(step, path + ": " + std::strerror(errno), errno);
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  // The answer ends with an empty line; a device with many peers says a lot (bounded).
  constexpr std::size_t kMaxAnswer = 4 << 20;
  std::string answer;
  char buf[16384];
  while (answer.size() < 2 || answer.compare(answer.size() - 2, 2, "\n\n") != 0) {
    if (answer.size() > kMaxAnswer) return fail(step, path + ": the answer is larger than 4 MiB");
    if (!wait(POLLIN)) return fail(step, path + ": no complete answer in time");
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail(step, path + ": " + std::strerror(errno), errno);
    if (n > 0) answer.append(buf, static_cast<std::size_t>(n));
  }
  auto peers = parse_uapi_peers(answer);
  if (!peers) return fail(step, path + ": " + peers.error().message);
  return std::optional<PeerEndpoints>{std::move(*peers)};
}

}  // namespace

Result<std::optional<PeerEndpoints>> read_wireguard_peers(const std::string& ifname, const std::string& kind,
                                                          const std::string& uapi_dir) {
  if (auto ok = validate_ifname(ifname); !ok) return fail("read WireGuard peers", ok.error().message);
  if (kind == "wireguard") return read_kernel(ifname);
  return read_userspace(ifname, uapi_dir);
}

}  // namespace leakguard::netwatch
