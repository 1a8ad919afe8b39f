#include "daemon/dbus_service.hpp"

#include <poll.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <sdbus-c++/sdbus-c++.h>

#include "common/json_text.hpp"
#include "firewall/counters.hpp"
#include "leakguard_adaptor.h"  // generated from org.leakguard.Daemon1.xml

namespace leakguard::daemon {
namespace {
constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr const char* kInvalidArgument = "org.freedesktop.DBus.Error.InvalidArgs";
constexpr const char* kFailed = "org.leakguard.Daemon1.Error.Failed";
constexpr const char* kLimitsExceeded = "org.leakguard.Daemon1.Error.LimitsExceeded";
constexpr const char* kTunnelBusyError = "org.leakguard.Daemon1.Error.TunnelBusy";

// Thrown by a handler that leaves its call unanswered on purpose (see DbusService::limit).
struct Unanswered {};

std::string rate(double per_second) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", per_second);
  return b;
}
}  // namespace

class DbusService::Object final
    : public sdbus::AdaptorInterfaces<org::leakguard::Daemon1_adaptor, sdbus::Properties_adaptor> {
 public:
  Object(sdbus::IConnection& c, DbusService& s) : AdaptorInterfaces(c, kPath), s_(s) { registerAdaptor(); }
  ~Object() { unregisterAdaptor(); }

  using AdaptorInterfaces::getObject;

 private:
  DbusService& s_;

  // Answers the call in `result` with what `body(caller)` returns (or the sdbus::Error it throws),
  // once the caller's credentials are known: at once when the bus told us before, else when it
  // answers our question (the loop goes on meanwhile). The bus has gone away if an answer cannot be
  // sent; then there is nobody to tell.
  template <typename... Ts, typename Body>
  void with_caller(sdbus::Result<Ts...>&& result, Body body) {
    auto pending = std::make_shared<sdbus::Result<Ts...>>(std::move(result));
    const auto* msg = getObject().getCurrentlyProcessedMessage();
    if (!msg) {
      answer_error(*pending, sdbus::Error(kAccessDenied, "no caller credentials"));
      return;
    }
    s_.with_caller(msg->getSender(), [pending, body = std::move(body)](const Caller* c, const sdbus::Error* e) {
      try {
        if (!c) throw *e;
        if constexpr (sizeof...(Ts) == 0) {
          body(*c);
          pending->returnResults();
        } else {
          pending->returnResults(body(*c));
        }
      } catch (const sdbus::Error& error) {
        answer_error(*pending, error);
      } catch (const Unanswered&) {
        // Dropped: the Result goes without an answer (sdbus-c++ sends nothing for it).
      }
    });
  }
  template <typename... Ts>
  static void answer_error(const sdbus::Result<Ts...>& r, const sdbus::Error& e) {
    try {
      r.returnError(e);
    } catch (const sdbus::Error&) {
    }
  }

  // A call that asked for no reply (the flood in issue 14, finding 1) would be answered into the
  // void: it gets no work at all. sdbus-c++ hands handlers the MethodCall as a Message.
  bool unanswered() {
    const auto* msg = getObject().getCurrentlyProcessedMessage();
    return msg && static_cast<const sdbus::MethodCall*>(msg)->doesntExpectReply();
  }

  // Runs one method's work once the caller is known (DbusService::arm() and its siblings throw
  // sdbus::Error for a refusal or failure).
  void call(sdbus::Result<>&& result, std::function<void(const Caller&)> body) { with_caller(std::move(result), std::move(body)); }

  void Arm(sdbus::Result<>&& result) override {
    call(std::move(result), [this](const Caller& c) { s_.arm(c); });
  }
  void Disarm(sdbus::Result<>&& result) override {
    call(std::move(result), [this](const Caller& c) { s_.disarm(c); });
  }
  void SetTunnel(sdbus::Result<>&& result, std::string interface, std::vector<std::string> endpoints,
                 uint32_t fwmark) override {
    call(std::move(result), [this, interface = std::move(interface), endpoints = std::move(endpoints), fwmark](
                                const Caller& c) { s_.set_tunnel(c, interface, endpoints, fwmark, Claim::replace); });
  }
  void ClaimTunnel(sdbus::Result<>&& result, std::string interface, std::vector<std::string> endpoints, uint32_t fwmark,
                   bool ahead) override {
    call(std::move(result), [this, interface = std::move(interface), endpoints = std::move(endpoints), fwmark, ahead](
                                const Caller& c) {
      s_.set_tunnel(c, interface, endpoints, fwmark, ahead ? Claim::ahead : Claim::unless_other_live);
    });
  }
  void ClearTunnel(sdbus::Result<>&& result) override {
    call(std::move(result), [this](const Caller& c) { s_.clear_tunnel(c, std::nullopt); });
  }
  void ReleaseTunnel(sdbus::Result<bool>&& result, std::string interface) override {
    with_caller(std::move(result), [this, interface = std::move(interface)](const Caller& c) { return s_.clear_tunnel(c, interface); });
  }
  void SetAllowLan(sdbus::Result<>&& result, bool allow) override {
    call(std::move(result), [this, allow](const Caller& c) { s_.set_allow_lan(c, allow); });
  }
  void SetPolicy(sdbus::Result<>&& result, std::string policy) override {
    call(std::move(result), [this, policy = std::move(policy)](const Caller& c) { s_.set_policy(c, policy); });
  }
  void Reload(sdbus::Result<>&& result) override {
    call(std::move(result), [this](const Caller& c) { s_.reload(c); });
  }
  void ProbeNow(sdbus::Result<std::string, std::string>&& result) override {
    auto pending = std::make_shared<sdbus::Result<std::string, std::string>>(std::move(result));
    const auto* msg = getObject().getCurrentlyProcessedMessage();
    if (!msg) {
      answer_error(*pending, sdbus::Error(kAccessDenied, "no caller credentials"));
      return;
    }
    s_.with_caller(msg->getSender(), [this, pending](const Caller* c, const sdbus::Error* e) {
      try {
        if (!c) throw *e;
        s_.probe_now(*c, [pending](std::string verdict, std::string report) {
          try {
            pending->returnResults(verdict, report);
          } catch (const sdbus::Error&) {
            // The caller or the bus went away while the probe ran; nothing to answer.
          }
        });
      } catch (const sdbus::Error& error) {
        answer_error(*pending, error);
      }
    });
  }
  void GetStatus(sdbus::Result<std::string>&& result) override {
    if (unanswered()) return;  // sdbus-c++ drops a Result never answered; the caller expects nothing
    with_caller(std::move(result), [this](const Caller& c) -> std::string { return s_.get_status(c); });
  }

  // Served from memory (see DbusService::properties()).
  std::string State() override { return s_.properties().state; }
  std::string Policy() override { return s_.properties().policy; }
  bool Armed() override { return s_.properties().armed; }
  std::string TunnelInterface() override { return s_.properties().tunnel_interface; }
  std::vector<std::string> Endpoints() override { return s_.properties().endpoints; }
  std::string LastProbe() override { return s_.properties().last_probe_json; }
  uint64_t LeakCount() override { return s_.properties().leak_count; }
};

DbusService::DbusService(boost::asio::io_context& io, Control& control, Options options, LogFn log)
    : io_(io),
      control_(control),
      options_(options),
      log_(std::move(log)),
      fd_(io),
      timeout_(io),
      retry_(io),
      limiter_(options.rate_limit),
      refusals_(options.rate_limit),
      property_limiter_(options.property_limit),
      status_(options.status_max_age) {
  if (options_.batch == 0) options_.batch = 1;
}

DbusService::~DbusService() {
  waiting_.clear();
  driver_.reset();
  object_.reset();
  connection_.reset();
}

void DbusService::start() { connect(); }

void DbusService::connect() {
  ++generation_;
  senders_.clear();  // unique names belong to one bus instance
  try {
    connection_ = sdbus::createSystemBusConnection(kName);
    object_ = std::make_unique<Object>(*connection_, *this);
    driver_ = sdbus::createProxy(*connection_, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    fd_.assign(::dup(connection_->getEventLoopPollData().fd));
  } catch (const sdbus::Error& e) {
    driver_.reset();
    object_.reset();
    connection_.reset();
    if (!waiting_logged_) log_(true, std::string("D-Bus: cannot register ") + kName + ", retrying: " + e.what());
    waiting_logged_ = true;
    retry_.expires_after(options_.retry);
    retry_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) connect();
    });
    return;
  }
  waiting_logged_ = false;
  last_ = control_.snapshot();
  log_(false, std::string("D-Bus: ") + kName + " registered on the system bus");
  arm_wait();
}

void DbusService::lost(const std::string& why) {
  log_(true, "D-Bus: connection lost (" + why + "); enforcement continues, reconnecting");
  boost::system::error_code ignored;
  fd_.cancel(ignored);
  fd_.close(ignored);
  timeout_.cancel();
  waiting_.clear();  // their calls went with the bus: nobody to answer
  waiting_total_ = 0;
  driver_.reset();
  object_.reset();
  connection_.reset();
  ++generation_;
  waiting_logged_ = true;
  retry_.expires_after(options_.retry);
  retry_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) connect();
  });
}

// Waits for what sd-bus asks for: readable, writable when it has output queued, or its timeout.
void DbusService::arm_wait() {
  const auto poll = connection_->getEventLoopPollData();
  auto on_event = [this](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    process();
  };
  fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read, on_event);
  if (poll.events & POLLOUT) fd_.async_wait(boost::asio::posix::stream_descriptor::wait_write, on_event);
  if (auto rel = poll.getRelativeTimeout()) {
    timeout_.expires_after(*rel);
    timeout_.async_wait(on_event);
  }
}

void DbusService::process() {
  if (!connection_) return;
  // Cancel the other pending waits of this round so exactly one round is outstanding.
  boost::system::error_code ignored;
  fd_.cancel(ignored);
  timeout_.cancel();
  // At most `batch` requests, then the loop's other work gets its turn: a flood of calls must not
  // keep netlink, nftables, timers or signals waiting. More may be queued inside sd-bus already
  // (read from the socket, so the descriptor would not wake us): continue from a posted handler,
  // which runs after everything that became ready meanwhile.
  bool more = false;
  try {
    for (std::size_t i = 0; i < options_.batch; ++i) {
      more = connection_->processPendingRequest();
      if (!more) break;
    }
  } catch (const sdbus::Error& e) {
    lost(e.what());
    return;
  }
  if (!more) {
    arm_wait();
    return;
  }
  boost::asio::post(io_, [this, generation = generation_] {
    if (generation == generation_) process();
  });
}

// The bus policy already keeps strangers out; this is the second, independent check.
void DbusService::authorize(const Caller& c, const char* what) {
  if (!may_control(c, options_.control_group)) {
    log_(false, std::string("refused ") + what + " from " + c.str() + ": not root and not in group leakguard");
    throw sdbus::Error(kAccessDenied, std::string(what) + " needs root or membership in group leakguard");
  }
}

// Authorizes, runs one change, turns its failure into a D-Bus error, publishes the new values.
void DbusService::change(const Caller& c, const char* what, const std::function<Result<void>(const std::string& by)>& f) {
  authorize(c, what);
  auto r = f(c.str());
  if (!r) throw sdbus::Error(kFailed, r.error().str());
  properties_changed();
}

namespace {
[[noreturn]] void invalid(const Error& e) { throw sdbus::Error(kInvalidArgument, "invalid argument " + e.str()); }
}  // namespace

void DbusService::arm(const Caller& c) {
  change(c, "Arm", [this](const std::string& by) { return control_.arm(by); });
}
void DbusService::disarm(const Caller& c) {
  change(c, "Disarm", [this](const std::string& by) { return control_.disarm(by); });
}
void DbusService::set_tunnel(const Caller& c, const std::string& interface, const std::vector<std::string>& endpoints,
                             std::uint32_t fwmark, Claim claim) {
  change(c, claim == Claim::replace ? "SetTunnel" : "ClaimTunnel", [&](const std::string& by) -> Result<void> {
    auto t = check_tunnel(interface, endpoints, fwmark);
    if (!t) invalid(t.error());
    auto r = control_.set_tunnel(*t, by, claim);
    if (!r && r.error().step == kTunnelBusy) throw sdbus::Error(kTunnelBusyError, r.error().str());
    return r;
  });
}
bool DbusService::clear_tunnel(const Caller& c, const std::optional<std::string>& only_if) {
  bool cleared = false;
  change(c, only_if ? "ReleaseTunnel" : "ClearTunnel", [&](const std::string& by) -> Result<void> {
    auto r = control_.clear_tunnel(by, only_if);
    if (!r) return tl::unexpected(r.error());
    cleared = *r;
    return {};
  });
  return cleared;
}
void DbusService::set_allow_lan(const Caller& c, bool allow) {
  change(c, "SetAllowLan", [&](const std::string& by) { return control_.set_allow_lan(allow, by); });
}
void DbusService::set_policy(const Caller& c, const std::string& policy) {
  change(c, "SetPolicy", [&](const std::string& by) -> Result<void> {
    auto mode = parse_mode(policy);
    if (!mode) invalid(mode.error());
    return control_.set_policy(*mode, by);
  });
}
void DbusService::reload(const Caller& c) {
  change(c, "Reload", [this](const std::string& by) { return control_.reload(by); });
}

void DbusService::probe_now(const Caller& c, std::function<void(std::string verdict, std::string report)> done) {
  authorize(c, "ProbeNow");
  // Without a usable configuration (state error) no round can run: refused with the reason, like
  // every other change in that state.
  if (auto r = control_.probe_now(std::move(done)); !r) throw sdbus::Error(kFailed, r.error().str());
}

// What everyone may call costs a turn of the loop; beyond that, unprivileged callers share a
// budget per uid. An excess call is refused with LimitsExceeded, logged at most once per report
// period; refusals have a budget of their own (the same rate), and beyond it a call is left
// unanswered. Every answer is a message the bus must carry for us, and the bus serves our
// connection no faster than any other: answering a flood would queue root's replies and our
// signals behind it. An unanswered call keeps one of the caller's pending-reply slots at the bus
// (max_replies_per_connection, 128 on the system bus), so a flood stalls its own sender.
void DbusService::limit(const Caller& c, const char* what) {
  if (may_control(c, options_.control_group)) return;
  const auto now = GuardClock::now();
  const auto d = limiter_.take(c.uid, now);
  if (d.allowed) return;
  if (!refusals_.take(c.uid, now).allowed) throw Unanswered{};
  const auto& l = limiter_.limit();
  if (d.report)
    log_(false, std::string("refused ") + std::to_string(*d.report) + " " + what + " call(s) from uid " +
                    std::to_string(c.uid) + ": more than " + rate(l.per_second) + "/s (burst " + rate(l.burst) + ")");
  throw sdbus::Error(kLimitsExceeded, std::string(what) + ": uid " + std::to_string(c.uid) + " calls more than " +
                                          rate(l.per_second) + " times a second; try again later");
}

namespace {
// The firewall's counter summary names interfaces ("via eth0 (54), wg0 (26)"): for root and the
// control group only (docs/dbus-api.md). Everyone else gets the totals, from the rules' counters.
void redact_counters(const nlohmann::json& whole, nlohmann::json& p) {
  if (!p.contains("firewall") || !p["firewall"].is_object() || !p["firewall"].contains("blocked")) return;
  const auto* fw = whole.is_object() && whole.contains("firewall") ? &whole["firewall"] : nullptr;
  if (!fw || !fw->contains("counters") || !(*fw)["counters"].is_array()) {
    p["firewall"].erase("blocked");  // no totals to tell apart from the names
    return;
  }
  std::vector<firewall::Counter> totals;
  for (const auto& c : (*fw)["counters"])
    if (c.is_object() && c.value("scope", "") == "all")
      totals.push_back({.kind = c.value("kind", ""), .direction = c.value("direction", ""), .interface_or_scope = "all",
                        .packets = c.value("packets", std::uint64_t{0}), .bytes = c.value("bytes", std::uint64_t{0})});
  p["firewall"]["blocked"] = firewall::summarize(totals);
}
}  // namespace

// Building the document dumps the nftables counters over netlink: at most once per
// status_max_age, or when something changed.
std::string DbusService::get_status(const Caller& c) {
  limit(c, "GetStatus");
  const auto now = GuardClock::now();
  auto full = [&]() -> const std::string& { return status_.get(now, [this] { return control_.status_json(); }); };
  if (may_control(c, options_.control_group)) return full();
  // Everyone else learns whether they are protected, not the VPN or the real address.
  return public_status_.get(now, [&] {
    const auto whole = nlohmann::json::parse(full(), nullptr, false);
    auto p = public_status(whole);
    redact_counters(whole, p);
    return json_text(p);
  });
}

void DbusService::with_caller(const std::string& sender, CallerFn k) {
  if (const Caller* known = senders_.find(sender)) {
    k(known, nullptr);
    return;
  }
  if (waiting_total_ >= options_.max_waiting) {
    const sdbus::Error busy(kLimitsExceeded, "too many calls are waiting for their callers' credentials; try again");
    k(nullptr, &busy);
    return;
  }
  auto& queue = waiting_[sender];
  queue.push_back(std::move(k));
  ++waiting_total_;
  if (queue.size() > 1) return;  // already asked
  try {
    driver_->callMethodAsync("GetConnectionCredentials")
        .onInterface("org.freedesktop.DBus")
        .withArguments(sender)
        .uponReplyInvoke([this, sender, generation = generation_](const sdbus::Error* error,
                                                                  std::map<std::string, sdbus::Variant> answer) {
          if (generation == generation_) credentials(sender, error, answer);
        });
  } catch (const sdbus::Error& e) {
    credentials(sender, &e, {});
  }
}

void DbusService::credentials(const std::string& sender, const sdbus::Error* error,
                              const std::map<std::string, sdbus::Variant>& answer) {
  auto it = waiting_.find(sender);
  if (it == waiting_.end()) return;
  auto queue = std::move(it->second);
  waiting_.erase(it);
  waiting_total_ -= std::min(waiting_total_, queue.size());
  const Caller* caller = nullptr;
  std::optional<sdbus::Error> refused;
  if (error) {
    refused.emplace(kAccessDenied, "cannot read the caller's credentials: " + error->getMessage());
  } else {
    try {
      Caller c;
      c.uid = answer.at("UnixUserID").get<uint32_t>();
      if (auto p = answer.find("ProcessID"); p != answer.end()) c.pid = static_cast<pid_t>(p->second.get<uint32_t>());
      if (auto g = answer.find("UnixGroupIDs"); g != answer.end())
        for (auto gid : g->second.get<std::vector<uint32_t>>()) c.groups.push_back(gid);
      // Everything from the bus's own record of the connection (SO_PEERCRED and SO_PEERGROUPS at
      // connect time; dbus-daemon adds the primary group to UnixGroupIDs), never from /proc at
      // call time, where a reused PID could name another process.
      caller = &senders_.insert(sender, std::move(c));
    } catch (const std::exception& e) {
      refused.emplace(kAccessDenied, std::string("cannot read the caller's credentials: ") + e.what());
    }
  }
  // A copy: a continuation may ask for more credentials, and the cache may drop this entry.
  const std::optional<Caller> known = caller ? std::optional<Caller>(*caller) : std::nullopt;
  for (auto& k : queue) k(known ? &*known : nullptr, refused ? &*refused : nullptr);
}

void DbusService::invalidate() {
  status_.invalidate();
  public_status_.invalidate();
  properties_.reset();
}

const Snapshot& DbusService::properties() {
  const auto now = GuardClock::now();
  // sd-bus answers Properties.Get/GetAll itself and calls the getters without telling who asks
  // (sdbus-c++ 1.2 has no current message there), so reads by everyone share one budget: a flood
  // of GetAll (each answer carries the last probe report) cannot make the bus carry megabytes.
  if (!emitting_) {
    const auto d = property_limiter_.take(0, now);
    if (!d.allowed) {
      const auto& l = property_limiter_.limit();
      if (d.report)
        log_(false, "refused " + std::to_string(*d.report) + " property read(s): more than " + rate(l.per_second) +
                        "/s from all callers together (burst " + rate(l.burst) + ")");
      throw sdbus::Error(kLimitsExceeded, "property reads: more than " + rate(l.per_second) +
                                              " a second from all callers together; try again later");
    }
  }
  // Served from memory: every change reaches properties_changed(), which drops it; the age bound
  // only covers a change that forgot to say so.
  if (!properties_ || now < properties_at_ || now - properties_at_ >= options_.status_max_age) {
    properties_ = control_.snapshot();
    properties_at_ = now;
  }
  return *properties_;
}

void DbusService::state_changed(const std::string& from, const std::string& to, const std::string& reason) {
  invalidate();
  // Every local user receives this signal: the reason without what a probe saw (public_reason()).
  if (object_) object_->emitStateChanged(from, to, public_reason(reason));
  properties_changed();
}

void DbusService::leak_detected(const std::string& interface, const std::string& family, const std::string& reflexive,
                                const std::string& server) {
  invalidate();
  if (object_) object_->emitLeakDetected(interface, family, reflexive, server);
}

void DbusService::blocked(const std::string& app, const std::string& user, const std::string& destination,
                          const std::string& interface, std::uint64_t packets) {
  invalidate();
  if (object_) object_->emitBlocked(app, user, destination, interface, packets);
}

void DbusService::probe_completed(const std::string& verdict) {
  invalidate();
  if (object_) object_->emitProbeCompleted(verdict);
  properties_changed();
}

void DbusService::table_tampered(const std::string& process) {
  invalidate();
  if (object_) object_->emitTableTampered(process);
}

void DbusService::properties_changed() {
  invalidate();
  const Snapshot now = control_.snapshot();
  std::vector<std::string> changed;
  if (now.state != last_.state) changed.push_back("State");
  if (now.policy != last_.policy) changed.push_back("Policy");
  if (now.armed != last_.armed) changed.push_back("Armed");
  if (now.tunnel_interface != last_.tunnel_interface) changed.push_back("TunnelInterface");
  if (now.endpoints != last_.endpoints) changed.push_back("Endpoints");
  if (now.last_probe_json != last_.last_probe_json) changed.push_back("LastProbe");
  if (now.leak_count != last_.leak_count) changed.push_back("LeakCount");
  last_ = now;
  if (object_ && !changed.empty()) {
    emitting_ = true;
    try {
      object_->emitPropertiesChangedSignal(org::leakguard::Daemon1_adaptor::INTERFACE_NAME, changed);
    } catch (...) {
      emitting_ = false;
      throw;
    }
    emitting_ = false;
  }
}

}  // namespace leakguard::daemon
