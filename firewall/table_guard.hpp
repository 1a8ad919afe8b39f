#pragma once
// Watches nf_tables (NFNLGRP_NFTABLES) for changes to table inet leakguard made by anyone but
// our own Firewall socket; on one, compares the kernel's table with the model and, if it
// differs, re-asserts it in one batch. Events lost to a full socket buffer (ENOBUFS) trigger
// the same check. Runs on the daemon's io_context; the callback runs there too.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "firewall/firewall.hpp"

namespace boost::asio {
class io_context;
}

namespace leakguard::firewall {

/// One foreign change to our table and what the guard did about it.
struct TamperEvent {
  std::string by;            ///< the changing process from NEWGEN, e.g. "nft[1234]"; "unknown (events lost)"
  std::string what;          ///< what the notifications said, then what differed
  bool restored = false;     ///< the table is as the model says (after a repair, or it never differed)
  bool repaired = false;     ///< a replace batch was sent
  std::chrono::microseconds repair_time{0};  ///< first foreign notification read -> table in place again
  std::uint32_t generation = 0;              ///< the ruleset generation of the change (NEWGEN)
  std::string error;         ///< why it could not be restored
  /// One line for the log.
  std::string str() const;
};

/// What NEWGEN says about a transaction (the attributes libnftnl 1.2.4 does not expose).
struct Generation {
  std::uint32_t id = 0;
  std::uint32_t pid = 0;
  std::string process;
};
/// Parses an NFT_MSG_NEWGEN message: NFTA_GEN_ID, NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME.
Result<Generation> parse_newgen(const void* nlmsg, std::size_t len);

class TableGuard {
 public:
  using Callback = std::function<void(const TamperEvent&)>;
  struct Options {
    int rcvbuf = 16 << 20;  ///< large: a reader that stalls loses events (ENOBUFS)
  };

  /// Subscribes in the calling thread's network namespace and starts watching. `fw` must
  /// outlive the guard.
  static Result<std::unique_ptr<TableGuard>> start(boost::asio::io_context& io, Firewall& fw, Callback on_event,
                                                   const Options& options);
  static Result<std::unique_ptr<TableGuard>> start(boost::asio::io_context& io, Firewall& fw, Callback on_event) {
    return start(io, fw, std::move(on_event), Options{});
  }
  ~TableGuard();
  TableGuard(const TableGuard&) = delete;
  TableGuard& operator=(const TableGuard&) = delete;

  /// Stops watching (call on the io_context's thread, or after it stopped).
  void stop();
  /// Foreign transactions that touched our table so far.
  std::uint64_t events() const;

 private:
  struct Impl;
  explicit TableGuard(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace leakguard::firewall
