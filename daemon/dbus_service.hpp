#pragma once
// org.leakguard.Daemon1 on the system bus, driven by the daemon's io_context (no bus threads).
// Every mutating call is authorized from the caller's bus credentials and its arguments checked
// before it reaches Control. If the bus goes away, the service keeps retrying in the background;
// enforcement never depends on it.
// Everyone may read, so nobody may stall the loop by reading (issue 14, finding 1): at most
// `Options::batch` requests are handled per turn of the loop before the rest of the daemon
// (netlink, nftables, timers, signals) gets its turn; GetStatus is served from a cache that is
// rebuilt at most once a second or when something changes; property reads come from memory; and
// callers that are neither root nor in the control group get a per-uid rate limit on GetStatus.
#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/bus_guard.hpp"
#include "daemon/control.hpp"

namespace sdbus {
class IConnection;
class IProxy;
class Error;
class Variant;
}

namespace leakguard::daemon {

class DbusService {
 public:
  static constexpr const char* kName = "org.leakguard.Daemon1";
  static constexpr const char* kPath = "/org/leakguard/Daemon1";

  struct Options {
    std::optional<gid_t> control_group;  ///< members may control; root always may
    std::chrono::milliseconds retry{1000};  ///< between attempts to reach the bus
    std::size_t batch = 32;                  ///< requests handled per turn of the loop, at most
    RateLimit rate_limit{};                  ///< GetStatus per unprivileged uid
    /// Property reads by everyone together (a getter does not learn who asks): one bucket.
    RateLimit property_limit{.per_second = 100, .burst = 200};
    std::chrono::milliseconds status_max_age{1000};  ///< how old GetStatus's counters may be
    std::size_t max_waiting = 4096;  ///< calls waiting for their callers' credentials, at most
  };
  using LogFn = std::function<void(bool is_error, const std::string&)>;

  DbusService(boost::asio::io_context& io, Control& control, Options options, LogFn log);
  ~DbusService();

  /// Connects (or keeps trying to) and registers the object.
  void start();
  bool connected() const { return static_cast<bool>(object_); }

  // Signals; silently dropped while the bus is away.
  void state_changed(const std::string& from, const std::string& to, const std::string& reason);
  /// Blocked traffic and its sender (root and group leakguard only, by the bus policy).
  void blocked(const std::string& app, const std::string& user, const std::string& destination, const std::string& interface,
               std::uint64_t packets);
  void leak_detected(const std::string& interface, const std::string& family, const std::string& reflexive,
                     const std::string& server);
  void probe_completed(const std::string& verdict);
  void table_tampered(const std::string& process);
  /// Emits PropertiesChanged for every property whose value differs from the last emitted one.
  void properties_changed();

  // The methods' work once the caller is known, for the system bus and the private socket
  // (PrivateBus) alike: each authorizes the caller and checks its arguments; a refusal or a
  // failure is thrown as sdbus::Error (its D-Bus error name and message).
  void arm(const Caller& c);
  void disarm(const Caller& c);
  /// SetTunnel (claim replace) and ClaimTunnel (unless_other_live: refused with Error.TunnelBusy
  /// while another VPN's declared interface is there).
  void set_tunnel(const Caller& c, const std::string& interface, const std::vector<std::string>& endpoints,
                  std::uint32_t fwmark, Claim claim);
  /// ClearTunnel, and ReleaseTunnel (`only_if`: only when that interface is the declared one);
  /// whether a declaration was forgotten.
  bool clear_tunnel(const Caller& c, const std::optional<std::string>& only_if);
  void set_allow_lan(const Caller& c, bool allow);
  void set_policy(const Caller& c, const std::string& policy);
  void reload(const Caller& c);
  /// Runs a probe round; `done` gets its verdict (ok, unverified, leak, exposed-host) and report
  /// (never, if the daemon stops first). Refused with Error.Failed and the reason, `done` never
  /// called, when the daemon has no usable configuration (state error): no round can run.
  void probe_now(const Caller& c, std::function<void(std::string verdict, std::string report)> done);
  /// GetStatus's document for `c`: the whole of it for root and the control group, the public part
  /// for everyone else (rate-limited per uid).
  std::string get_status(const Caller& c);
  std::optional<gid_t> control_group() const { return options_.control_group; }
  /// The properties' values now (the private socket's getter; the bus's are rate-limited).
  Snapshot snapshot() const { return control_.snapshot(); }

  /// How many times the GetStatus document was built (the rest were served from the cache).
  std::uint64_t status_builds() const { return status_.builds(); }

 private:
  class Object;
  friend class Object;

  void authorize(const Caller& c, const char* what);
  void change(const Caller& c, const char* what, const std::function<Result<void>(const std::string& by)>& f);
  void limit(const Caller& c, const char* what);
  void connect();
  void lost(const std::string& why);
  void arm_wait();
  void process();
  void invalidate();
  // Runs `k` with the credentials of the connection `sender` (":1.42"): now if known, else when
  // the bus has answered our asynchronous question; with an error if it cannot be answered.
  using CallerFn = std::function<void(const Caller*, const sdbus::Error*)>;
  void with_caller(const std::string& sender, CallerFn k);
  void credentials(const std::string& sender, const sdbus::Error* error,
                   const std::map<std::string, sdbus::Variant>& answer);
  const Snapshot& properties();

  boost::asio::io_context& io_;  // where the next batch of requests is posted
  Control& control_;
  Options options_;
  LogFn log_;
  std::unique_ptr<sdbus::IConnection> connection_;
  std::unique_ptr<Object> object_;
  std::unique_ptr<sdbus::IProxy> driver_;  // org.freedesktop.DBus, asked for callers' credentials
  boost::asio::posix::stream_descriptor fd_;
  boost::asio::steady_timer timeout_;
  boost::asio::steady_timer retry_;
  Snapshot last_;
  bool waiting_logged_ = false;
  std::uint64_t generation_ = 0;  // a new connection makes older posted continuations void
  RateLimiter limiter_;
  RateLimiter refusals_;  // LimitsExceeded answers per uid; beyond them, calls go unanswered
  RateLimiter property_limiter_;  // one bucket, key 0: all callers together
  bool emitting_ = false;         // our own PropertiesChanged reads the getters: not a caller's read
  SenderCache senders_;
  std::unordered_map<std::string, std::vector<CallerFn>> waiting_;  // for credentials, by sender
  std::size_t waiting_total_ = 0;
  StatusCache status_;
  StatusCache public_status_;  ///< what callers outside the control group see (public_status())
  std::optional<Snapshot> properties_;  // what the property getters serve, until something changes
  GuardTime properties_at_{};
};

}  // namespace leakguard::daemon
