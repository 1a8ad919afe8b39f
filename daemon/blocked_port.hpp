#pragma once
// Reads what our blocking rules log (nfnetlink_log, the group attribution.nflog_group) and finds
// who sent each packet, on the daemon's loop. The kernel logs at most kLogPerSecond packets a
// second per rule; here at most kLookupsPerSecond of them are looked up (a sock_diag dump each;
// a sender seen in the last kSenderCacheFor is reused), the rest are counted under the uid the
// log carries. What the kernel could not deliver (a full socket buffer) is counted as lost.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <tuple>
#include <vector>

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "attribution/lookup.hpp"
#include "attribution/packet.hpp"
#include "common/result.hpp"

namespace leakguard::daemon {

inline constexpr int kLookupsPerSecond = 20;
inline constexpr std::chrono::seconds kSenderCacheFor{5};
/// How long an incomplete answer stands (SenderLookup walks /proc and the cgroups at most four
/// times a second).
inline constexpr std::chrono::milliseconds kAskAgainAfter{250};
/// Packets of senders found only in part wait for the next pass (at most this many senders, and
/// packets each; more are told with what is known).
inline constexpr std::size_t kParkedSenders = 64;
inline constexpr std::size_t kParkedPerSender = 256;

class BlockedPort {
 public:
  /// `own`: sent by this daemon itself: one of its probe sockets (not looked up: they are closed
  /// as soon as a send is refused, and must not use up the lookups meant for applications), or
  /// the lookup of a probe server's name through the system's resolver
  /// (attribution::sent_by_self).
  using Callback = std::function<void(const attribution::LoggedPacket&, const attribution::Sender&, bool own)>;
  /// The cgroups the firewall remembered for a packet's flow (its sender sets): asked when the
  /// socket is gone by the time of the lookup.
  using CgroupsOf = std::function<std::vector<std::uint64_t>(const attribution::LoggedPacket&)>;
  BlockedPort(boost::asio::io_context& io, Callback on_packet, CgroupsOf cgroups_of = {});
  ~BlockedPort();
  BlockedPort(const BlockedPort&) = delete;
  BlockedPort& operator=(const BlockedPort&) = delete;

  /// Listens to `group` (none: stops listening). An error if the kernel refuses, e.g. another
  /// process already listens to that group in this network namespace.
  Result<void> listen(std::optional<std::uint16_t> group);
  std::optional<std::uint16_t> group() const { return group_; }
  /// Messages that could not be used (malformed), and datagrams the kernel dropped (ENOBUFS).
  std::uint64_t rejected() const { return rejected_; }
  std::uint64_t lost() const { return lost_; }

 private:
  void wait();
  void receive();
  void retry_parked();
  attribution::Sender sender_of(const attribution::LoggedPacket& p);

  Callback on_packet_;
  CgroupsOf cgroups_of_;
  boost::asio::posix::stream_descriptor socket_;
  std::optional<std::uint16_t> group_;
  std::vector<std::uint8_t> buffer_;
  attribution::SenderLookup lookup_;
  using Key = std::tuple<std::uint8_t, leakguard::IpAddress, std::uint16_t>;  // protocol, source, source port
  std::map<Key, std::pair<std::chrono::steady_clock::time_point, attribution::Sender>> cache_;  // until, answer
  std::map<Key, std::vector<attribution::LoggedPacket>> parked_;
  boost::asio::steady_timer retry_;
  bool retry_waiting_ = false;
  std::chrono::steady_clock::time_point budget_start_{};
  int budget_used_ = 0;
  std::uint64_t rejected_ = 0, lost_ = 0;
  const uid_t own_uid_;   // whose sockets the daemon's own probes are
  const pid_t own_pid_;
  /// A packet of the daemon's own probe (by its socket's owner and a port a probe had just now).
  bool own_probe(const attribution::LoggedPacket& p) const;
};

}  // namespace leakguard::daemon
