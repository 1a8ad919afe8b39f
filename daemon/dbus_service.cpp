#include "daemon/dbus_service.hpp"

#include <poll.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <sdbus-c++/sdbus-c++.h>

#include "leakguard_adaptor.h"  // generated from org.leakguard.Daemon1.xml

namespace leakguard::daemon {
namespace {
constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr const char* kInvalidArgument = "org.freedesktop.DBus.Error.InvalidArgs";
constexpr const char* kFailed = "org.leakguard.Daemon1.Error.Failed";
constexpr const char* kLimitsExceeded = "org.leakguard.Daemon1.Error.LimitsExceeded";

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

  // The caller's credentials, asked of the bus once per connection: the bus fixes them when the
  // connection is made and never reuses a unique name, and asking is a round trip through the bus
  // (slow exactly when the bus is flooded).
  const Caller& caller() {
    const auto* msg = getObject().getCurrentlyProcessedMessage();
    if (!msg) throw sdbus::Error(kAccessDenied, "no caller credentials");
    const std::string sender = msg->getSender();
    if (const Caller* known = s_.senders_.find(sender)) return *known;
    Caller c;
    try {
      c.uid = msg->getCredsUid();
      c.gid = msg->getCredsGid();
      c.groups = msg->getCredsSupplementaryGids();
      c.pid = msg->getCredsPid();
    } catch (const sdbus::Error& e) {
      // Without credentials we cannot tell who asks: refuse rather than guess.
      throw sdbus::Error(kAccessDenied, std::string("cannot read the caller's credentials: ") + e.what());
    }
    return s_.senders_.insert(sender, std::move(c));
  }

  // What everyone may call costs a turn of the loop; beyond that, unprivileged callers share a
  // budget per uid. An excess call is refused at once, and logged at most once per report period.
  void limit(const char* what) {
    const Caller& c = caller();
    if (may_control(c, s_.options_.control_group)) return;
    const auto d = s_.limiter_.take(c.uid, GuardClock::now());
    if (d.allowed) return;
    const auto& l = s_.limiter_.limit();
    if (d.report)
      s_.log_(false, std::string("refused ") + std::to_string(*d.report) + " " + what + " call(s) from uid " +
                         std::to_string(c.uid) + ": more than " + rate(l.per_second) + "/s (burst " +
                         rate(l.burst) + ")");
    throw sdbus::Error(kLimitsExceeded, std::string(what) + ": uid " + std::to_string(c.uid) + " calls more than " +
                                            rate(l.per_second) + " times a second; try again later");
  }

  // The bus policy already keeps strangers out; this is the second, independent check.
  Caller authorize(const char* what) {
    const Caller c = caller();  // a copy: the cache may drop its entry while the change runs
    if (!may_control(c, s_.options_.control_group)) {
      s_.log_(false, std::string("refused ") + what + " from " + c.str() + ": not root and not in group leakguard");
      throw sdbus::Error(kAccessDenied, std::string(what) + " needs root or membership in group leakguard");
    }
    return c;
  }

  // Authorizes, runs one change, turns its failure into a D-Bus error, publishes the new values.
  void change(const char* what, const std::function<Result<void>(const std::string& by)>& f) {
    const Caller c = authorize(what);
    auto r = f(c.str());
    if (!r) throw sdbus::Error(kFailed, r.error().str());
    s_.properties_changed();
  }

  [[noreturn]] static void invalid(const Error& e) {
    throw sdbus::Error(kInvalidArgument, "invalid argument " + e.str());
  }

  void Arm() override {
    change("Arm", [&](const std::string& by) { return s_.control_.arm(by); });
  }
  void Disarm() override {
    change("Disarm", [&](const std::string& by) { return s_.control_.disarm(by); });
  }
  void SetTunnel(const std::string& interface, const std::vector<std::string>& endpoints,
                 const uint32_t& fwmark) override {
    change("SetTunnel", [&](const std::string& by) -> Result<void> {
      auto t = check_tunnel(interface, endpoints, fwmark);
      if (!t) invalid(t.error());
      return s_.control_.set_tunnel(*t, by);
    });
  }
  void ClearTunnel() override {
    change("ClearTunnel", [&](const std::string& by) { return s_.control_.clear_tunnel(by); });
  }
  void SetAllowLan(const bool& allow) override {
    change("SetAllowLan", [&](const std::string& by) { return s_.control_.set_allow_lan(allow, by); });
  }
  void SetPolicy(const std::string& policy) override {
    change("SetPolicy", [&](const std::string& by) -> Result<void> {
      auto mode = parse_mode(policy);
      if (!mode) invalid(mode.error());
      return s_.control_.set_policy(*mode, by);
    });
  }
  void Reload() override {
    change("Reload", [&](const std::string& by) { return s_.control_.reload(by); });
  }
  void ProbeNow(sdbus::Result<std::string, std::string>&& result) override {
    auto pending = std::make_shared<sdbus::Result<std::string, std::string>>(std::move(result));
    try {
      authorize("ProbeNow");
    } catch (const sdbus::Error& e) {
      pending->returnError(e);
      return;
    }
    s_.control_.probe_now([pending](std::string verdict, std::string report) {
      try {
        pending->returnResults(verdict, report);
      } catch (const sdbus::Error&) {
        // The caller or the bus went away while the probe ran; nothing to answer.
      }
    });
  }
  // Building the document dumps the nftables counters over netlink: at most once per
  // status_max_age, or when something changed.
  std::string GetStatus() override {
    limit("GetStatus");
    return s_.status_.get(GuardClock::now(), [this] { return s_.control_.status_json(); });
  }

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
      status_(options.status_max_age) {
  if (options_.batch == 0) options_.batch = 1;
}

DbusService::~DbusService() {
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
    fd_.assign(::dup(connection_->getEventLoopPollData().fd));
  } catch (const sdbus::Error& e) {
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

void DbusService::invalidate() {
  status_.invalidate();
  properties_.reset();
}

const Snapshot& DbusService::properties() {
  // Served from memory: every change reaches properties_changed(), which drops it; the age bound
  // only covers a change that forgot to say so.
  const auto now = GuardClock::now();
  if (!properties_ || now < properties_at_ || now - properties_at_ >= options_.status_max_age) {
    properties_ = control_.snapshot();
    properties_at_ = now;
  }
  return *properties_;
}

void DbusService::state_changed(const std::string& from, const std::string& to, const std::string& reason) {
  invalidate();
  if (object_) object_->emitStateChanged(from, to, reason);
  properties_changed();
}

void DbusService::leak_detected(const std::string& interface, const std::string& family, const std::string& reflexive,
                                const std::string& server) {
  invalidate();
  if (object_) object_->emitLeakDetected(interface, family, reflexive, server);
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
  if (object_ && !changed.empty()) object_->emitPropertiesChangedSignal(org::leakguard::Daemon1_adaptor::INTERFACE_NAME, changed);
}

}  // namespace leakguard::daemon
