#pragma once
// The private control socket: org.leakguard.Daemon1's methods spoken peer to peer (D-Bus without
// dbus-daemon) on a Unix socket in the daemon's runtime directory, /run/leakguard/private, the way
// systemd offers /run/systemd/private to systemctl. It is for root: the directory is 0700 and
// owned by the daemon's user, so only root (and the daemon itself) can reach the socket, and a
// connecting process that may not control the daemon (SO_PEERCRED) is hung up on at once.
//
// Why (issue 14, finding 1): any local user may call GetStatus on the system bus. A flood of such
// calls saturates dbus-daemon itself (its own GetId answers 20-30x slower); every call through the
// bus then waits in its queue, whatever leakguardd does. Root's controls (the VPN clients' hooks,
// leakguardctl as root) come through here instead and are served within one turn of the loop.
// Signals and properties (but TunnelInterface, which leakguardctl reads) stay on the system bus;
// `leakguardctl monitor` listens there.
//
// Each connection is processed like the bus connection: at most `batch` messages per turn of the
// loop, then the rest of the daemon gets its turn.
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "daemon/dbus_service.hpp"

namespace leakguard::daemon {

class PrivateBus {
 public:
  struct Options {
    std::size_t batch = 32;      ///< messages handled per connection per turn of the loop, at most
    std::size_t max_peers = 16;  ///< connections at once; beyond that, new ones are hung up on
  };

  PrivateBus(boost::asio::io_context& io, DbusService& service, std::string path, DbusService::LogFn log,
             Options options);
  ~PrivateBus();
  PrivateBus(const PrivateBus&) = delete;
  PrivateBus& operator=(const PrivateBus&) = delete;

  /// Binds the socket (replacing one a previous run left), mode 0600, and accepts connections.
  Result<void> start();

  struct Peer;  // one connection: its sd-bus server end and who is on the other side

 private:
  void accept();
  void accepted(int fd);
  void process(const std::shared_ptr<Peer>& p);
  void arm_wait(const std::shared_ptr<Peer>& p);
  void drop(const std::shared_ptr<Peer>& p);

  boost::asio::io_context& io_;
  DbusService& service_;
  std::string path_;
  DbusService::LogFn log_;
  Options options_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer backoff_;  // after accept() ran out of descriptors or memory
  bool bound_ = false;                 // the path is ours to remove
  std::list<std::shared_ptr<Peer>> peers_;
};

}  // namespace leakguard::daemon
