#pragma once
// Who sent a logged packet, found while the socket may still exist: the socket by its addresses
// and ports (sock_diag: its owner, inode and cgroup v2 id), the cgroup's path (a walk of the
// cgroup2 mount, cached), its systemd unit, and the process holding the socket (the inode among
// /proc/PID/fd of the cgroup's processes where those are readable, else the cgroup's processes
// by name). Blocking I/O, each step bounded; the choice of socket is pure and tested.
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "attribution/flows.hpp"
#include "attribution/packet.hpp"

namespace leakguard::attribution {

/// One socket as sock_diag describes it.
struct SocketInfo {
  IpAddress local, remote;  ///< remote all zero for an unconnected socket
  std::uint16_t local_port = 0, remote_port = 0;
  std::uint32_t uid = 0;
  std::uint64_t inode = 0;
  std::optional<std::uint64_t> cgroup_id;
  bool v6only = false;  ///< an IPv6 socket that carries no IPv4 (IPV6_V6ONLY)
  bool operator==(const SocketInfo&) const = default;
};

/// An IPv6 socket as the IPv4 socket it also is, where it carries IPv4 (a dual-stack socket, the
/// default of Go, Java and Node's udp6): bound to :: without IPV6_V6ONLY, or to a v4-mapped
/// address (::ffff:a.b.c.d), and unconnected or connected to a v4-mapped one. None otherwise.
std::optional<SocketInfo> as_ipv4(const SocketInfo& v6);

/// The socket that sent `p` among `sockets` of its protocol and family: the local port must be
/// the packet's source port and the local address its source or the wildcard; one connected to
/// the packet's destination wins over an unconnected one. None if no socket fits.
std::optional<SocketInfo> choose_socket(const std::vector<SocketInfo>& sockets, const LoggedPacket& p);

/// "4242" lines of a cgroup.procs file, at most `max` of them; anything else is skipped.
std::vector<std::int32_t> parse_pids(std::string_view text, std::size_t max = 4096);

/// The four ids (real, effective, saved, filesystem) of the "Uid:" line of a /proc/PID/status
/// text; none if there is no such line.
std::optional<std::array<std::uint32_t, 4>> parse_status_uids(std::string_view status);

/// Where the cgroup v2 hierarchy is mounted (from /proc/self/mountinfo); "" if nowhere in sight.
std::string cgroup2_mount();

class SenderLookup {
 public:
  struct Options {
    std::string cgroup_root;     ///< the cgroup2 mount; "" = found in /proc/self/mountinfo
    std::string proc = "/proc";
    /// Passes over every process's descriptors at most this often.
    std::chrono::milliseconds min_scan_interval{250};
  };
  SenderLookup() : SenderLookup(Options{}) {}
  explicit SenderLookup(Options o);

  /// The sender of `p` as far as it can be found now. Never throws; a socket that is gone gives
  /// the packet's uid and `gone` - and, with `cgroups` (the ids the firewall remembered for the
  /// packet's flow: its socket's cgroup and that cgroup's ancestors), the deepest of those
  /// cgroups, its unit, and the processes of that uid in it.
  /// The process that holds socket `inode` now: from the last pass over /proc if that process
  /// still holds it, else from a new pass (none if one ran less than min_scan_interval ago:
  /// `*incomplete` is then set). Never a PID that no longer holds the socket.
  std::optional<std::int32_t> holder(std::uint64_t inode, bool* incomplete = nullptr);

  /// `cgroups` is asked only when the socket is gone.
  using Cgroups = std::function<std::vector<std::uint64_t>()>;
  Sender find(const LoggedPacket& p, const Cgroups& cgroups = {});

 private:
  std::optional<SocketInfo> socket_of(const LoggedPacket& p);
  std::string cgroup_path(std::uint64_t id);
  void process_of(const SocketInfo& s, Sender& out);
  void processes_in_cgroup(std::optional<std::uint32_t> uid, Sender& out);
  bool holds(std::int32_t pid, std::uint64_t inode) const;
  std::string comm(std::int32_t pid) const;
  std::vector<std::int32_t> cgroup_pids(const std::string& cgroup) const;
  void scan_sockets();
  std::string user_name(std::uint32_t uid);

  Options options_;
  std::map<std::uint64_t, std::string> cgroups_;  // id -> path below the root ("/user.slice/...")
  std::chrono::steady_clock::time_point last_walk_{};
  std::chrono::steady_clock::time_point last_scan_{};
  bool walk_refused_ = false;  // the last cgroup_path() missed and could not walk again yet
  std::map<std::uint64_t, std::int32_t> inode_pid_;  // socket inode -> the process holding it, as last scanned
  std::map<std::uint32_t, std::string> users_;
};

}  // namespace leakguard::attribution
