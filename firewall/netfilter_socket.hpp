#pragma once
// libmnl I/O with nf_tables: send one batch and read every ACK, run dumps. The socket's netlink
// port id is who owns our table (NFT_TABLE_F_OWNER), so the Firewall keeps one socket for life.
#include <linux/netlink.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "firewall/ruleset_nft.hpp"

struct mnl_socket;

namespace leakguard::firewall {

class NetfilterSocket {
 public:
  struct Options {
    int sndbuf = 4 << 20;   ///< raised further (SO_SNDBUFFORCE) for batches that need it
    int rcvbuf = 4 << 20;   ///< ACKs and dump replies
    std::chrono::milliseconds timeout{3000};  ///< for ACKs and dump replies that never come
  };

  /// Opens and binds a NETLINK_NETFILTER socket in the calling thread's network namespace.
  static Result<NetfilterSocket> open(const Options& options);
  static Result<NetfilterSocket> open() { return open(Options{}); }
  NetfilterSocket(NetfilterSocket&& other) noexcept;
  NetfilterSocket& operator=(NetfilterSocket&& other) noexcept;
  NetfilterSocket(const NetfilterSocket&) = delete;
  NetfilterSocket& operator=(const NetfilterSocket&) = delete;
  ~NetfilterSocket();

  /// The netlink port id (the kernel's name for this socket, and our table's owner).
  std::uint32_t portid() const { return portid_; }
  int fd() const;
  /// The sequence number for the next batch; send() moves past the batch's numbers.
  std::uint32_t seq() const { return seq_; }
  /// A fresh sequence number for one request.
  std::uint32_t take_seq() { return seq_++; }

  /// Sends one batch (one sendmsg) and walks every ACK. The error names the step that failed
  /// (e.g. "add rule 3 to chain output (udp-out)") with the kernel's errno and extended ACK text.
  Result<void> send(const nft::Batch& batch);
  /// Sends a get or dump request and hands every reply message to `on_reply`, until NLMSG_DONE
  /// or the ACK. A dump the kernel marks as interrupted (NLM_F_DUMP_INTR) fails with EINTR.
  Result<void> request(std::span<const std::uint8_t> message, const std::function<Result<void>(const nlmsghdr*)>& on_reply,
                       const char* step);

 private:
  NetfilterSocket() = default;
  Result<void> ensure_sndbuf(std::size_t bytes);

  mnl_socket* nl_ = nullptr;
  std::uint32_t portid_ = 0;
  std::uint32_t seq_ = 0;
  int sndbuf_ = 0;
  Options options_;
  std::vector<std::uint8_t> rx_;
};

/// errno of a netlink error, described for a human with a hint where one helps. `whole_batch`:
/// the kernel refused the batch as a whole (answered its begin message), not one step in it.
std::string describe_netlink_error(int err, bool whole_batch);

}  // namespace leakguard::firewall
