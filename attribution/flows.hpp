#pragma once
// Who sent what the block stopped, aggregated: one entry per application and destination, with
// counts and first/last seen, bounded in memory (the least recently seen entry goes first).
// Pure: the lookup of the sender (attribution/lookup.hpp) happens before; time is passed in.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "attribution/packet.hpp"

namespace leakguard::attribution {

/// The sender of a logged packet, as far as it could be found.
struct Sender {
  std::optional<std::uint32_t> uid;  ///< the socket's owner (from the log, or the socket)
  std::string user;                  ///< its name ("" unknown)
  std::optional<std::int32_t> pid;   ///< the process holding the socket
  std::string process;               ///< its name (/proc/PID/comm); "" unknown
  std::string unit;                  ///< the systemd unit or scope of the socket's cgroup ("" none)
  std::string cgroup;                ///< the socket's cgroup (v2) path ("" unknown)
  /// The socket had closed before it could be looked up, and no process of its user was found
  /// in its cgroup (where the firewall remembered that)
  bool gone = false;
  std::string note;                  ///< how the process was found when not exactly ("" exact)
  /// The socket's holder was not looked for (the last pass over /proc was too recent): ask again
  /// for the next packet rather than keep this answer.
  bool ask_again = false;
  bool operator==(const Sender&) const = default;
};

/// The name an application goes by: its process, else its unit, else "uid N"; without a local
/// socket "forwarded" (a container's or VM's packet routed through this host: the forward chain's
/// rules) or "kernel" (sent by the kernel itself, e.g. a TCP reset or an ICMP error).
std::string app_of(const Sender& s, const LoggedPacket& p);

/// Whether the daemon itself sent `p` (process `own_pid`, running as `own_uid`): the socket's
/// holder, as found, is that process; or the socket's owner is the daemon's uid and that uid is
/// not root's (the unit's dedicated user `leakguard`, which nothing else runs as). Besides its
/// probes (known by their ports before any lookup), the daemon sends the lookups of its probe
/// servers' names through the system's resolver, refused outside the tunnel like any other DNS.
/// Pass an empty `s` to decide before a lookup.
bool sent_by_self(const LoggedPacket& p, const Sender& s, std::uint32_t own_uid, std::int32_t own_pid);

/// The innermost systemd unit a cgroup path names (the last component ending in .scope or
/// .service: "app-org.chromium.Chromium-1234.scope", "docker-<id>.scope"); "" if none. Bytes that
/// are not printable ASCII come out as \xNN.
std::string unit_of_cgroup(std::string_view path);
/// Text safe for a log line and a terminal: printable ASCII kept, anything else as \xNN, at most
/// `max` bytes of input.
std::string printable(std::string_view s, std::size_t max = 256);

using SystemTime = std::chrono::system_clock::time_point;

class BlockedFlows {
 public:
  /// At most `capacity` entries (application x destination x rule).
  explicit BlockedFlows(std::size_t capacity = 256) : capacity_(capacity) {}

  /// One logged packet, its sender, and the interface it was to leave through (by name).
  void add(const LoggedPacket& p, const Sender& s, const std::string& interface, SystemTime now);

  /// {"packets": N logged, "evicted": N entries dropped for room, "flows": [the `top` most
  /// recently seen], "apps": [per application: packets, flows, unit, uid; most packets first]}.
  nlohmann::json to_json(std::size_t top = 20) const;
  std::uint64_t packets() const { return packets_; }
  std::size_t size() const { return flows_.size(); }

  /// What changed since the last call, for the Blocked signal: the flows with new packets (the
  /// `max` with the most), each with how many are new; they count as told from then on. Flows of
  /// application `quiet` count as told without being returned (the daemon's own probes); what is
  /// left over waits for the next call (pending()).
  struct Change {
    std::string app, user, destination, interface;
    std::uint64_t packets = 0;
    bool operator==(const Change&) const = default;
  };
  std::vector<Change> take_changes(std::size_t max, std::string_view quiet = {});
  /// Flows with packets not yet told.
  bool pending() const;

 private:
  struct Flow {
    std::string app, unit, user, process, cgroup, note, interface, rule, destination, protocol;
    std::optional<std::uint32_t> uid;
    std::optional<std::int32_t> pid;
    bool gone = false;
    std::uint64_t packets = 0;
    std::uint64_t told = 0;  // packets already in a Blocked signal
    SystemTime first_seen, last_seen;
  };
  std::size_t capacity_;
  std::map<std::string, Flow> flows_;  // key: app, uid, destination, rule
  std::uint64_t packets_ = 0;
  std::uint64_t evicted_ = 0;
};

}  // namespace leakguard::attribution
