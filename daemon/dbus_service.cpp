#include "daemon/dbus_service.hpp"

#include <poll.h>
#include <unistd.h>

#include <sdbus-c++/sdbus-c++.h>

#include "leakguard_adaptor.h"  // generated from org.leakguard.Daemon1.xml

namespace leakguard::daemon {
namespace {
constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr const char* kInvalidArgument = "org.freedesktop.DBus.Error.InvalidArgs";
constexpr const char* kFailed = "org.leakguard.Daemon1.Error.Failed";
}  // namespace

class DbusService::Object final
    : public sdbus::AdaptorInterfaces<org::leakguard::Daemon1_adaptor, sdbus::Properties_adaptor> {
 public:
  Object(sdbus::IConnection& c, DbusService& s) : AdaptorInterfaces(c, kPath), s_(s) { registerAdaptor(); }
  ~Object() { unregisterAdaptor(); }

  using AdaptorInterfaces::getObject;

 private:
  DbusService& s_;

  Caller caller() {
    Caller c;
    const auto* msg = getObject().getCurrentlyProcessedMessage();
    if (!msg) throw sdbus::Error(kAccessDenied, "no caller credentials");
    try {
      c.uid = msg->getCredsUid();
      c.gid = msg->getCredsGid();
      c.groups = msg->getCredsSupplementaryGids();
      c.pid = msg->getCredsPid();
    } catch (const sdbus::Error& e) {
      // Without credentials we cannot tell who asks: refuse rather than guess.
      throw sdbus::Error(kAccessDenied, std::string("cannot read the caller's credentials: ") + e.what());
    }
    return c;
  }

  // The bus policy already keeps strangers out; this is the second, independent check.
  Caller authorize(const char* what) {
    const Caller c = caller();
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
  std::string GetStatus() override { return s_.control_.status_json(); }

  std::string State() override { return s_.control_.snapshot().state; }
  std::string Policy() override { return s_.control_.snapshot().policy; }
  bool Armed() override { return s_.control_.snapshot().armed; }
  std::string TunnelInterface() override { return s_.control_.snapshot().tunnel_interface; }
  std::vector<std::string> Endpoints() override { return s_.control_.snapshot().endpoints; }
  std::string LastProbe() override { return s_.control_.snapshot().last_probe_json; }
  uint64_t LeakCount() override { return s_.control_.snapshot().leak_count; }
};

DbusService::DbusService(boost::asio::io_context& io, Control& control, Options options, LogFn log)
    : io_(io), control_(control), options_(options), log_(std::move(log)), fd_(io), timeout_(io), retry_(io) {}

DbusService::~DbusService() {
  object_.reset();
  connection_.reset();
}

void DbusService::start() { connect(); }

void DbusService::connect() {
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
  try {
    while (connection_->processPendingRequest()) {
    }
  } catch (const sdbus::Error& e) {
    lost(e.what());
    return;
  }
  arm_wait();
}

void DbusService::state_changed(const std::string& from, const std::string& to, const std::string& reason) {
  if (object_) object_->emitStateChanged(from, to, reason);
  properties_changed();
}

void DbusService::leak_detected(const std::string& interface, const std::string& family, const std::string& reflexive,
                                const std::string& server) {
  if (object_) object_->emitLeakDetected(interface, family, reflexive, server);
}

void DbusService::probe_completed(const std::string& verdict) {
  if (object_) object_->emitProbeCompleted(verdict);
  properties_changed();
}

void DbusService::table_tampered(const std::string& process) {
  if (object_) object_->emitTableTampered(process);
}

void DbusService::properties_changed() {
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
