#pragma once
// The adapter the daemon uses: install, replace, update, verify and remove table inet leakguard.
// All changes go through one netlink socket kept for the Firewall's lifetime: with the kernel's
// owner flag, that socket is the only one allowed to touch the table, and when it closes (the
// daemon dies) the persist flag keeps the table in place, blocking (see docs/firewall.md).
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "firewall/counters.hpp"
#include "firewall/netfilter_socket.hpp"
#include "firewall/policy.hpp"
#include "firewall/ruleset.hpp"

namespace leakguard::firewall {

/// Whether to ask the kernel for NFT_TABLE_F_OWNER | NFT_TABLE_F_PERSIST.
enum class Ownership : std::uint8_t {
  automatic,  ///< if the kernel supports both flags (probed at open); else no owner flag
  off,        ///< never (the table guard alone defends the table)
};

struct Options {
  Ownership ownership = Ownership::automatic;
  Limits limits;
  NetfilterSocket::Options socket;
};

/// How the last successful apply() reached the kernel.
struct ApplyReport {
  enum class How : std::uint8_t {
    unchanged,
    set_elements,  ///< element changes only
    replaced,      ///< rules replaced in place (changed chains flushed and refilled), and elements
    installed,     ///< the first apply in this process: created, adopted (an orphan) or set right in place
    repaired,      ///< every declaration re-sent, every rule and element put back (reassert)
    recreated,     ///< the table deleted and made anew (install, takeover of an orphan, last resort)
    removed,       ///< the table deleted (remove())
  };
  How how = How::unchanged;
  std::size_t messages = 0;  ///< netlink messages in the batch (without begin/end)
  std::size_t bytes = 0;     ///< batch size
  std::chrono::microseconds took{0};  ///< encode + send + every ACK
  std::string str() const;
};

/// Thread-safe: every public member takes one mutex, so the table guard's thread and the
/// caller's may use the same Firewall.
class Firewall {
 public:
  /// Opens the netlink socket in the calling thread's network namespace and probes the kernel:
  /// nf_tables present, permission (CAP_NET_ADMIN), owner+persist support. Touches no table but
  /// a scratch one created and deleted in one transaction.
  static Result<Firewall> open(const Options& options);
  static Result<Firewall> open() { return open(Options{}); }
  Firewall(Firewall&&) noexcept;
  Firewall& operator=(Firewall&&) noexcept;
  ~Firewall();

  /// Validates and installs `p`, always in one transaction. The first time: the table made anew
  /// (which also takes over an orphan). Later: the changed chains' rules replaced in place and
  /// set elements updated, never a chain or set created or deleted (no window: see
  /// docs/firewall.md). On error the kernel's state is what it was before.
  Result<void> apply(const Policy& p);
  /// Adds and removes endpoints in one set-element batch without rebuilding the model: the cost
  /// does not grow with the number of endpoints installed (apply() compares whole policies).
  /// Needs an installed policy; endpoints already there (or not there) are skipped.
  Result<void> update_endpoints(const std::vector<Endpoint>& add, const std::vector<Endpoint>& remove);
  /// Puts the current model back in place (the guard's repair): every declaration, rule and
  /// element, without deleting the table; the table is made anew only if that is refused (a
  /// foreign declaration in the way). No-op without a model.
  Result<void> reassert();
  /// Removes the table (no error if it is not there) and forgets the model.
  Result<void> remove();

  /// Keeps our table as a previous process left it — chains, sets, rules and elements untouched —
  /// and, with the owner flag, takes ownership of it (the kernel then refuses others' changes).
  /// True if a table with chains is there (kept); false if there is none to keep.
  Result<bool> adopt_as_is();
  /// Reads the kernel's table and compares it with the model: empty if it is exactly in place,
  /// else one line per difference ("table is missing", "1 rule(s) added to chain output").
  Result<std::vector<std::string>> verify();
  /// The drop/reject counters (see counters.hpp).
  Result<std::vector<Counter>> counters();
  /// What the sender sets hold now: who sent the blocked packets of the last kSenderTimeoutS
  /// seconds (empty without attribution, or with no table of ours).
  Result<std::vector<SenderRecord>> senders();

  /// True if our table carries the owner flag (kernel support, not disabled by options).
  bool owns_table() const;
  /// What the probe found: "owner+persist", or why not ("kernel lacks NFT_TABLE_F_PERSIST", "disabled").
  std::string ownership_note() const;
  /// Our netlink port id: notifications with it are our own changes.
  std::uint32_t portid() const;
  /// True while a table of ours is believed installed (cheaper than ruleset()).
  bool installed() const;
  /// The policy and ruleset believed installed, if any.
  std::optional<Policy> policy() const;
  std::optional<Ruleset> ruleset() const;
  ApplyReport last_apply() const;

 private:
  struct Impl;
  explicit Firewall(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace leakguard::firewall
