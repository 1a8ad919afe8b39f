#pragma once
// One STUN Binding transaction as a pure state machine: no sockets, no clock of its own. The
// caller asks `next(now)` what to do (send these bytes / wait until then / done), carries it out,
// and feeds back what happened (`send_failed`, `receive`). Time is whatever the caller says it is,
// so tests run on virtual time.
//
// Retransmission follows RFC 8489 §6.2.1 (RTO 500 ms, doubled each time, Rc = 7 sends, then Rm = 16
// RTOs of waiting: 39.5 s in all) but a probe must finish quickly, so the whole transaction is also
// bounded by a configurable total timeout. Over TCP (§6.2.2) there is one send and Ti = 39.5 s.
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/defaults.hpp"
#include "probes/stun.hpp"

namespace leakguard::probes {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

// ---- what a transaction (or an attempt to run one) ends with ----------------------------------

/// The server saw us: this is the address and port our request came from, as the server saw it.
struct Reflexive {
  stun::TransportAddress mapped;
  bool legacy = false;  ///< from MAPPED-ADDRESS (an RFC 3489 server)
  milliseconds rtt{0};  ///< from the first send to the answer (includes retransmission waits)
  int attempts = 0;     ///< requests sent
  bool operator==(const Reflexive&) const = default;
};
/// The request never left: the kernel refused the send (EPERM: a firewall drop; ENETUNREACH: no
/// route; ...), or a TCP connect was refused locally.
struct Blocked {
  int error = 0;  ///< errno
  bool operator==(const Blocked&) const = default;
};
/// No usable answer before the deadline.
struct TimedOut {
  int attempts = 0;
  bool operator==(const TimedOut&) const = default;
};
/// The server answered with a Binding error response.
struct ServerError {
  stun::ErrorCode error;
  std::vector<std::uint16_t> unknown_attributes;
  bool operator==(const ServerError&) const = default;
};
/// The probe could not be set up here (socket, bind, resolve, ...): nothing was sent.
struct LocalFailure {
  std::string step;  ///< e.g. "bind to device", "resolve"
  int error = 0;     ///< errno where there is one
  std::string message;
  bool operator==(const LocalFailure&) const = default;
};
using Outcome = std::variant<Reflexive, Blocked, TimedOut, ServerError, LocalFailure>;

/// "reflexive", "blocked", "timeout", "error", "failed".
std::string_view kind(const Outcome& o);
/// One line, e.g. "reflexive 203.0.113.2:40000 after 3 ms (1 attempt)", "blocked (EPERM)".
std::string str(const Outcome& o);
/// "EPERM", "ENETUNREACH", ... (or the number).
std::string errno_name(int error);
/// EPERM/EACCES: a send refused by the packet filter, as opposed to no route.
bool refused_by_firewall(int error);

// ---- the transaction ----------------------------------------------------------------------------

/// The initial retransmission timeout, RTO (RFC 8489 §6.2.1: 500 ms).
inline constexpr milliseconds kInitialRto{500};

struct TransactionOptions {
  milliseconds rto = kInitialRto;  ///< initial retransmission timeout
  int max_sends = 7;          ///< Rc (RFC 8489 §6.2.1)
  int last_wait_rtos = 16;    ///< Rm: how many RTOs to wait after the last send (RFC 8489 §6.2.1)
  milliseconds total = kDefaultProbeTimeout;  ///< the probing bound: done by then whatever the RFC schedule says
  bool reliable = false;      ///< TCP: one send, no retransmissions (RFC 8489 §6.2.2)
  milliseconds reliable_timeout{39500};  ///< Ti (RFC 8489 §6.2.2)
};

/// Why a received message did not end the transaction.
enum class Receipt {
  accepted,           ///< it was our answer; the transaction is done
  late,               ///< the transaction had already ended
  wrong_source,       ///< not from the server's address and port
  malformed,          ///< not a valid STUN message, or an unusable response
  not_a_response,     ///< a request or indication, or another method
  wrong_transaction,  ///< a valid response to someone else's transaction
};
std::string_view to_string(Receipt r);

class Transaction {
 public:
  struct Send {
    std::span<const std::uint8_t> bytes;  ///< valid while the transaction lives
    int attempt = 1;                      ///< 1 for the first transmission
  };
  struct Wait {
    TimePoint until;
  };
  struct Done {
    const Outcome* outcome;
  };
  using Effect = std::variant<Send, Wait, Done>;

  /// Counts of what was received and not accepted, for the report.
  struct Ignored {
    std::size_t wrong_source = 0, malformed = 0, not_a_response = 0, wrong_transaction = 0, late = 0;
    std::string last_reason;  ///< the most recent reason, e.g. "parse stun: wrong magic cookie"
    std::size_t total() const { return wrong_source + malformed + not_a_response + wrong_transaction; }
  };

  Transaction(stun::TransactionId id, stun::TransportAddress server, TransactionOptions options, TimePoint start,
              stun::RequestOptions request = {});

  /// What to do now. A Send is counted as sent when returned; report failures with send_failed().
  Effect next(TimePoint now);
  /// The send (or TCP connect) failed with errno `error`. Transient errors (EAGAIN, ENOBUFS, EINTR)
  /// are left to the retransmission; anything else ends the transaction as Blocked.
  void send_failed(TimePoint now, int error);
  /// A datagram (or TCP frame) arrived from `from`.
  Receipt receive(TimePoint now, const stun::TransportAddress& from, std::span<const std::uint8_t> bytes);
  /// Ends the transaction now with a local failure (e.g. the socket broke while waiting).
  void abort(LocalFailure failure);

  bool done() const { return done_; }
  /// The outcome once done().
  const Outcome& outcome() const { return outcome_; }
  const stun::TransactionId& id() const { return id_; }
  const stun::TransportAddress& server() const { return server_; }
  const std::vector<std::uint8_t>& request() const { return request_; }
  int attempts() const { return sends_; }
  const Ignored& ignored() const { return ignored_; }
  /// When the transaction will give up at the latest (moves earlier once the RFC schedule ends).
  TimePoint deadline() const { return deadline_; }

 private:
  void finish(Outcome o);

  stun::TransactionId id_;
  stun::TransportAddress server_;
  TransactionOptions options_;
  std::vector<std::uint8_t> request_;
  TimePoint start_;
  TimePoint deadline_;
  TimePoint next_send_;
  TimePoint first_send_{};
  milliseconds interval_;
  int sends_ = 0;
  bool done_ = false;
  Outcome outcome_ = TimedOut{};
  Ignored ignored_;
};

}  // namespace leakguard::probes
