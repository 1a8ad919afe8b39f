#include "daemon/private_bus.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <sdbus-c++/Error.h>
#include <vector>

namespace leakguard::daemon {

struct PrivateBus::Peer : std::enable_shared_from_this<Peer> {
  Peer(boost::asio::io_context& io, DbusService& s, Caller c) : service(s), caller(std::move(c)), fd(io), timeout(io) {}
  ~Peer() {
    boost::system::error_code ignored;
    fd.cancel(ignored);
    fd.close(ignored);
    timeout.cancel();
    sd_bus_slot_unref(slot);
    if (bus) sd_bus_close_unref(bus);  // no flush: a peer that does not read must not block us
  }
  DbusService& service;
  Caller caller;
  sd_bus* bus = nullptr;
  sd_bus_slot* slot = nullptr;
  boost::asio::posix::stream_descriptor fd;  // a duplicate of sd-bus's, to wait on
  boost::asio::steady_timer timeout;
  std::function<void()> kick;  // processes the connection again (after an asynchronous reply)
};

namespace {

constexpr const char* kInterface = DbusService::kName;  // the interface is named like the service
constexpr const char* kFailed = "org.leakguard.Daemon1.Error.Failed";

PrivateBus::Peer& peer_of(void* userdata) { return *static_cast<PrivateBus::Peer*>(userdata); }

// Runs `work` for the connection's caller and returns what it returns (the sd-bus reply's
// result), or an error reply: DbusService's refusals and failures come as sdbus::Error, with the
// name the bus uses.
template <typename Work>
int answer(void* userdata, sd_bus_error* error, Work work) {
  auto& p = peer_of(userdata);
  try {
    return work(p);
  } catch (const sdbus::Error& e) {
    return sd_bus_error_set(error, e.getName().c_str(), e.getMessage().c_str());
  } catch (const std::exception& e) {
    return sd_bus_error_set(error, kFailed, e.what());
  } catch (...) {
    return sd_bus_error_set(error, kFailed, "refused");
  }
}

// A method without arguments or results.
template <void (DbusService::*Method)(const Caller&)>
int plain(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  return answer(userdata, error, [m](PrivateBus::Peer& p) {
    (p.service.*Method)(p.caller);
    return sd_bus_reply_method_return(m, "");
  });
}

template <Claim claim>
int set_tunnel(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  const char* interface = nullptr;
  int r = sd_bus_message_read(m, "s", &interface);
  if (r < 0) return r;
  char** list = nullptr;
  r = sd_bus_message_read_strv(m, &list);
  if (r < 0) return r;
  std::vector<std::string> endpoints;
  for (char** e = list; e && *e; ++e) {
    endpoints.emplace_back(*e);
    free(*e);
  }
  free(list);
  uint32_t fwmark = 0;
  r = sd_bus_message_read(m, "u", &fwmark);
  if (r < 0) return r;
  Claim how = claim;
  if (claim != Claim::replace) {  // ClaimTunnel's `ahead`
    int ahead = 0;
    r = sd_bus_message_read(m, "b", &ahead);
    if (r < 0) return r;
    if (ahead) how = Claim::ahead;
  }
  return answer(userdata, error, [&](PrivateBus::Peer& p) {
    p.service.set_tunnel(p.caller, interface, endpoints, fwmark, how);
    return sd_bus_reply_method_return(m, "");
  });
}

int clear_tunnel(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  return answer(userdata, error, [m](PrivateBus::Peer& p) {
    p.service.clear_tunnel(p.caller, std::nullopt);
    return sd_bus_reply_method_return(m, "");
  });
}

int release_tunnel(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  const char* interface = nullptr;
  if (int r = sd_bus_message_read(m, "s", &interface); r < 0) return r;
  return answer(userdata, error, [&](PrivateBus::Peer& p) {
    return sd_bus_reply_method_return(m, "b", int(p.service.clear_tunnel(p.caller, std::string(interface))));
  });
}

int set_allow_lan(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  int allow = 0;
  if (int r = sd_bus_message_read(m, "b", &allow); r < 0) return r;
  return answer(userdata, error, [&](PrivateBus::Peer& p) {
    p.service.set_allow_lan(p.caller, allow != 0);
    return sd_bus_reply_method_return(m, "");
  });
}

int set_policy(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  const char* policy = nullptr;
  if (int r = sd_bus_message_read(m, "s", &policy); r < 0) return r;
  return answer(userdata, error, [&](PrivateBus::Peer& p) {
    p.service.set_policy(p.caller, policy);
    return sd_bus_reply_method_return(m, "");
  });
}

int get_status(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  return answer(userdata, error, [m](PrivateBus::Peer& p) {
    return sd_bus_reply_method_return(m, "s", p.service.get_status(p.caller).c_str());
  });
}

// Answered when the round is over (the loop goes on meanwhile); if the connection is gone by
// then, there is nobody to tell.
int probe_now(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  return answer(userdata, error, [m](PrivateBus::Peer& p) {
    sd_bus_message_ref(m);  // until answered (the callback may run at once, or never if refused)
    std::weak_ptr<PrivateBus::Peer> weak = p.shared_from_this();
    try {
      p.service.probe_now(p.caller, [m, weak](std::string verdict, std::string report) {
        if (auto alive = weak.lock()) {
          sd_bus_reply_method_return(m, "ss", verdict.c_str(), report.c_str());
          alive->kick();
        }
        sd_bus_message_unref(m);
      });
    } catch (...) {
      sd_bus_message_unref(m);
      throw;
    }
    return 1;  // answered by the callback
  });
}

// org.leakguard.Daemon1's methods as in org.leakguard.Daemon1.xml; the signals and the properties
// are on the bus.
const sd_bus_vtable kVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Arm", "", "", plain<&DbusService::arm>, 0),
    SD_BUS_METHOD("Disarm", "", "", plain<&DbusService::disarm>, 0),
    SD_BUS_METHOD_WITH_NAMES("SetTunnel", "sasu", SD_BUS_PARAM(interface) SD_BUS_PARAM(endpoints) SD_BUS_PARAM(fwmark),
                             "", , set_tunnel<Claim::replace>, 0),
    SD_BUS_METHOD_WITH_NAMES("ClaimTunnel", "sasub",
                             SD_BUS_PARAM(interface) SD_BUS_PARAM(endpoints) SD_BUS_PARAM(fwmark) SD_BUS_PARAM(ahead), "", ,
                             set_tunnel<Claim::unless_other_live>, 0),
    SD_BUS_METHOD("ClearTunnel", "", "", clear_tunnel, 0),
    SD_BUS_METHOD_WITH_NAMES("ReleaseTunnel", "s", SD_BUS_PARAM(interface), "b", SD_BUS_PARAM(released), release_tunnel, 0),
    SD_BUS_METHOD_WITH_NAMES("SetAllowLan", "b", SD_BUS_PARAM(allow), "", , set_allow_lan, 0),
    SD_BUS_METHOD_WITH_NAMES("SetPolicy", "s", SD_BUS_PARAM(policy), "", , set_policy, 0),
    SD_BUS_METHOD_WITH_NAMES("ProbeNow", "", , "ss", SD_BUS_PARAM(verdict) SD_BUS_PARAM(report), probe_now, 0),
    SD_BUS_METHOD_WITH_NAMES("GetStatus", "", , "s", SD_BUS_PARAM(status), get_status, 0),
    SD_BUS_METHOD("Reload", "", "", plain<&DbusService::reload>, 0),
    SD_BUS_VTABLE_END};

// The caller on the other end of a Unix socket, from the kernel (SO_PEERCRED, SO_PEERGROUPS):
// what it was when it connected, never looked up again.
std::optional<Caller> peer_caller(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return std::nullopt;
  Caller c;
  c.uid = cred.uid;
  c.pid = cred.pid;
  c.groups.push_back(cred.gid);
  std::vector<gid_t> groups(64);
  for (int tries = 0; tries < 4; ++tries) {
    socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
      groups.resize(size / sizeof(gid_t));
      c.groups.insert(c.groups.end(), groups.begin(), groups.end());
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(size / sizeof(gid_t) + 1);
  }
  return c;
}

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

PrivateBus::PrivateBus(boost::asio::io_context& io, DbusService& service, std::string path, DbusService::LogFn log,
                       Options options)
    : io_(io), service_(service), path_(std::move(path)), log_(std::move(log)), options_(options), acceptor_(io), backoff_(io) {
  if (options_.batch == 0) options_.batch = 1;
}

PrivateBus::~PrivateBus() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  backoff_.cancel();
  peers_.clear();
  if (bound_) ::unlink(path_.c_str());
}

Result<void> PrivateBus::start() {
  // A socket a previous run left behind (a crash, kill -9) answers nobody: replace it. Anything
  // else at the path is not ours to remove.
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return fail("private socket", path_ + " exists and is not a socket");
    ::unlink(path_.c_str());
  }
  boost::system::error_code ec;
  const boost::asio::local::stream_protocol::endpoint at(path_);
  acceptor_.open(at.protocol(), ec);
  // Only the daemon's user may connect through the file's mode (root passes anyway): 0600 from
  // the moment it exists.
  const mode_t old = ::umask(0177);
  if (!ec) acceptor_.bind(at, ec);
  ::umask(old);
  if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    const std::string why = ec.message();
    acceptor_.close(ec);
    return fail("private socket", path_ + ": " + why);
  }
  bound_ = true;
  acceptor_.non_blocking(true, ec);
  accept();
  return {};
}

void PrivateBus::accept() {
  acceptor_.async_wait(boost::asio::socket_base::wait_read, [this](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    for (;;) {
      const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0) {
        accepted(fd);
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // Out of descriptors or memory: try again in a while rather than spin on a ready socket.
      log_(true, "private socket: accept: " + errno_text(errno) + "; retrying in 1 s");
      backoff_.expires_after(std::chrono::seconds(1));
      backoff_.async_wait([this](const boost::system::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    accept();
  });
}

void PrivateBus::accepted(int fd) {
  const auto caller = peer_caller(fd);
  if (!caller || !may_control(*caller, service_.control_group())) {
    log_(false, "private socket: hung up on " + (caller ? caller->str() : std::string("a caller without credentials")) +
                    ": not root and not in group leakguard");
    ::close(fd);
    return;
  }
  if (peers_.size() >= options_.max_peers) {
    log_(false, "private socket: hung up on " + caller->str() + ": " + std::to_string(peers_.size()) +
                    " connections already");
    ::close(fd);
    return;
  }
  auto p = std::make_shared<Peer>(io_, service_, *caller);
  sd_id128_t id{};
  int r = sd_bus_new(&p->bus);
  if (r >= 0) r = sd_bus_set_fd(p->bus, fd, fd);  // the bus owns fd from here on
  if (r < 0) ::close(fd);
  if (r >= 0) r = sd_id128_randomize(&id);
  if (r >= 0) r = sd_bus_set_server(p->bus, 1, id);
  if (r >= 0) r = sd_bus_add_object_vtable(p->bus, &p->slot, DbusService::kPath, kInterface, kVtable, p.get());
  if (r >= 0) r = sd_bus_start(p->bus);
  if (r >= 0) {
    const int copy = ::dup(fd);
    if (copy < 0) r = -errno;
    else p->fd.assign(copy);
  }
  if (r < 0) {
    log_(true, "private socket: cannot serve " + caller->str() + ": " + errno_text(-r));
    return;  // ~Peer closes what was made
  }
  std::weak_ptr<Peer> weak = p;
  p->kick = [this, weak] {
    boost::asio::post(io_, [this, weak] {
      if (auto q = weak.lock()) process(q);
    });
  };
  peers_.push_back(p);
  process(p);
}

void PrivateBus::process(const std::shared_ptr<Peer>& p) {
  boost::system::error_code ignored;
  p->fd.cancel(ignored);
  p->timeout.cancel();
  int r = 0;
  for (std::size_t i = 0; i < options_.batch; ++i) {
    r = sd_bus_process(p->bus, nullptr);
    if (r <= 0) break;
  }
  if (r < 0 || sd_bus_is_open(p->bus) <= 0) {
    drop(p);
    return;
  }
  if (r > 0) {  // more may be waiting: after the loop's other work
    p->kick();
    return;
  }
  arm_wait(p);
}

// Waits for what sd-bus asks for: readable, writable when it has output queued, or its timeout.
void PrivateBus::arm_wait(const std::shared_ptr<Peer>& p) {
  const int events = sd_bus_get_events(p->bus);
  if (events < 0) {
    drop(p);
    return;
  }
  std::weak_ptr<Peer> weak = p;
  auto on_event = [this, weak](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (auto q = weak.lock()) process(q);
  };
  if (events & POLLIN) p->fd.async_wait(boost::asio::posix::stream_descriptor::wait_read, on_event);
  if (events & POLLOUT) p->fd.async_wait(boost::asio::posix::stream_descriptor::wait_write, on_event);
  uint64_t until = 0;
  if (sd_bus_get_timeout(p->bus, &until) >= 0 && until != UINT64_MAX) {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const uint64_t now_us = static_cast<uint64_t>(now.tv_sec) * 1000000u + static_cast<uint64_t>(now.tv_nsec) / 1000u;
    p->timeout.expires_after(std::chrono::microseconds(until > now_us ? until - now_us : 0));
    p->timeout.async_wait(on_event);
  }
}

void PrivateBus::drop(const std::shared_ptr<Peer>& p) { peers_.remove(p); }

}  // namespace leakguard::daemon
