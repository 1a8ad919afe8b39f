#include "cli/daemon_link.hpp"

#include <sdbus-c++/sdbus-c++.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-bus.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "leakguard_proxy.h"  // generated from daemon/org.leakguard.Daemon1.xml

namespace leakguard::cli {
namespace {

constexpr const char* kName = "org.leakguard.Daemon1";
constexpr const char* kPath = "/org/leakguard/Daemon1";
constexpr const char* kPrivateSocket = "/run/leakguard/private";
// How long the private socket may take to let us in and answer a Ping.
constexpr std::chrono::seconds kAnswerWithin{5};

// One proxy for every command; signal handlers only matter to `monitor`.
class Proxy final : public sdbus::ProxyInterfaces<org::leakguard::Daemon1_proxy> {
 public:
  std::function<void(const std::string&, const std::vector<std::string>&)> on_signal;

  explicit Proxy(sdbus::IConnection& c) : ProxyInterfaces(c, kName, kPath) { registerProxy(); }
  ~Proxy() { unregisterProxy(); }

 private:
  void emit(const std::string& n, std::vector<std::string> a) {
    if (on_signal) on_signal(n, a);
  }
  void onStateChanged(const std::string& o, const std::string& n, const std::string& r) override {
    emit("StateChanged", {o, n, r});
  }
  void onLeakDetected(const std::string& i, const std::string& f, const std::string& a, const std::string& s) override {
    emit("LeakDetected", {i, f, a, s});
  }
  void onProbeCompleted(const std::string& v) override { emit("ProbeCompleted", {v}); }
  void onTableTampered(const std::string& p) override { emit("TableTampered", {p}); }
  void onBlocked(const std::string& app, const std::string& user, const std::string& dest, const std::string& iface,
                 const uint64_t& packets) override {
    emit("Blocked", {app, user, dest, iface, std::to_string(packets)});
  }
};

class BusDaemon final : public Daemon {
 public:
  explicit BusDaemon(std::unique_ptr<sdbus::IConnection> conn) : conn_(std::move(conn)), proxy_(*conn_) {}
  void Arm() override { proxy_.Arm(); }
  void Disarm() override { proxy_.Disarm(); }
  void SetTunnel(const std::string& i, const std::vector<std::string>& e, uint32_t m) override { proxy_.SetTunnel(i, e, m); }
  void ClaimTunnel(const std::string& i, const std::vector<std::string>& e, uint32_t m, bool ahead) override {
    proxy_.ClaimTunnel(i, e, m, ahead);
  }
  void ClearTunnel() override { proxy_.ClearTunnel(); }
  bool ReleaseTunnel(const std::string& i) override { return proxy_.ReleaseTunnel(i); }
  void SetAllowLan(bool allow) override { proxy_.SetAllowLan(allow); }
  void SetPolicy(const std::string& p) override { proxy_.SetPolicy(p); }
  void Reload() override { proxy_.Reload(); }
  std::tuple<std::string, std::string> ProbeNow() override { return proxy_.ProbeNow(); }
  std::string GetStatus() override { return proxy_.GetStatus(); }

 private:
  std::unique_ptr<sdbus::IConnection> conn_;
  Proxy proxy_;
};

// The private socket, peer to peer with sd-bus (sdbus-c++ 1.2 has no such connection).
class PrivateDaemon final : public Daemon {
 public:
  static std::unique_ptr<PrivateDaemon> connect(const std::string& path) {
    sockaddr_un sa{};
    if (path.empty() || path.size() >= sizeof sa.sun_path) return nullptr;
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size());
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) < 0) {
      ::close(fd);
      return nullptr;
    }
    std::unique_ptr<PrivateDaemon> d(new PrivateDaemon);
    if (sd_bus_new(&d->bus_) < 0) {
      ::close(fd);
      return nullptr;
    }
    if (sd_bus_set_fd(d->bus_, fd, fd) < 0) {
      ::close(fd);
      return nullptr;
    }
    if (sd_bus_start(d->bus_) < 0) return nullptr;
    // The kernel accepts a connection into the listener's backlog whether or not the daemon runs
    // its loop (stopped, or stuck): sd-bus would wait 90 s for the handshake, then the bus 25 s more,
    // and a VPN hook with them. The handshake and the Ping get a few seconds; a daemon that lets us
    // in but does not answer is said to be so, not looked for on the bus.
    const auto deadline = std::chrono::steady_clock::now() + kAnswerWithin;
    auto not_answering = [&] {
      return sdbus::Error(kNotAnsweringError, path + " accepted the connection, but nothing answered within " +
                                                  std::to_string(kAnswerWithin.count()) + " s");
    };
    for (;;) {
      const int ready = sd_bus_is_ready(d->bus_);
      if (ready > 0) break;
      if (ready < 0) return nullptr;
      const int r = sd_bus_process(d->bus_, nullptr);
      if (r < 0) return nullptr;  // refused (not ours to use): the bus decides
      if (r > 0) continue;
      const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw not_answering();
      if (sd_bus_wait(d->bus_, static_cast<std::uint64_t>(left.count())) < 0) return nullptr;
    }
    // sd-bus's server answers Peer.Ping itself: proof that we were let in.
    sd_bus_message* ping = nullptr;
    if (sd_bus_message_new_method_call(d->bus_, &ping, nullptr, kPath, "org.freedesktop.DBus.Peer", "Ping") < 0) return nullptr;
    sd_bus_error e{};  // SD_BUS_ERROR_NULL is a C compound literal
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    const int r = sd_bus_call(d->bus_, ping, static_cast<std::uint64_t>(std::max<std::int64_t>(left.count(), 1)), &e, nullptr);
    sd_bus_message_unref(ping);
    const bool timed_out = r == -ETIMEDOUT;
    sd_bus_error_free(&e);
    if (timed_out) throw not_answering();
    return r < 0 ? nullptr : std::move(d);
  }
  // Not flushed: every call waited for its reply, and a flush would wait out sd-bus's 90 s handshake
  // on a daemon that never answered.
  ~PrivateDaemon() override { sd_bus_close_unref(bus_); }

  void Arm() override { call("Arm"); }
  void Disarm() override { call("Disarm"); }
  void SetTunnel(const std::string& i, const std::vector<std::string>& e, uint32_t m) override { declare("SetTunnel", i, e, m); }
  void ClaimTunnel(const std::string& i, const std::vector<std::string>& e, uint32_t m, bool ahead) override {
    declare("ClaimTunnel", i, e, m, ahead);
  }
  void ClearTunnel() override { call("ClearTunnel"); }
  bool ReleaseTunnel(const std::string& i) override {
    auto reply = call("ReleaseTunnel", [&](sd_bus_message* msg) { return sd_bus_message_append(msg, "s", i.c_str()); });
    int released = 0;
    check(sd_bus_message_read(reply.get(), "b", &released));
    return released != 0;
  }
  void SetAllowLan(bool allow) override {
    call("SetAllowLan", [&](sd_bus_message* msg) { return sd_bus_message_append(msg, "b", int(allow)); });
  }
  void SetPolicy(const std::string& p) override {
    call("SetPolicy", [&](sd_bus_message* msg) { return sd_bus_message_append(msg, "s", p.c_str()); });
  }
  void Reload() override { call("Reload"); }
  std::tuple<std::string, std::string> ProbeNow() override {
    auto reply = call("ProbeNow");
    const char *verdict = nullptr, *report = nullptr;
    check(sd_bus_message_read(reply.get(), "ss", &verdict, &report));
    return {verdict, report};
  }
  std::string GetStatus() override {
    auto reply = call("GetStatus");
    const char* status = nullptr;
    check(sd_bus_message_read(reply.get(), "s", &status));
    return status;
  }

 private:
  PrivateDaemon() = default;
  using Reply = std::unique_ptr<sd_bus_message, decltype(&sd_bus_message_unref)>;

  // SetTunnel ("sasu") and ClaimTunnel ("sasub": with `ahead`).
  void declare(const char* method, const std::string& i, const std::vector<std::string>& e, uint32_t m,
               std::optional<bool> ahead = std::nullopt) {
    call(method, [&](sd_bus_message* msg) {
      std::vector<const char*> list;
      for (const auto& x : e) list.push_back(x.c_str());
      list.push_back(nullptr);
      int r = sd_bus_message_append(msg, "s", i.c_str());
      if (r >= 0) r = sd_bus_message_append_strv(msg, const_cast<char**>(list.data()));
      if (r >= 0) r = sd_bus_message_append(msg, "u", m);
      if (r >= 0 && ahead) r = sd_bus_message_append(msg, "b", int(*ahead));
      return r;
    });
  }

  Reply call(const char* method, const std::function<int(sd_bus_message*)>& args = {}) {
    sd_bus_message* msg = nullptr;
    check(sd_bus_message_new_method_call(bus_, &msg, nullptr, kPath, kName, method));
    Reply call(msg, &sd_bus_message_unref);
    if (args) check(args(msg));
    sd_bus_error e{};  // SD_BUS_ERROR_NULL is a C compound literal
    sd_bus_message* reply = nullptr;
    const int r = sd_bus_call(bus_, msg, 0, &e, &reply);  // 0: sd-bus's default (25 s, as on the bus)
    raise(r, e);
    return Reply(reply, &sd_bus_message_unref);
  }
  // An error the daemon sent keeps its name; one of our own side means the daemon went away.
  static void raise(int r, sd_bus_error& e) {
    if (r >= 0) {
      sd_bus_error_free(&e);
      return;
    }
    std::string name = sd_bus_error_is_set(&e) ? e.name : "org.freedesktop.DBus.Error.Disconnected";
    std::string message = sd_bus_error_is_set(&e) && e.message ? e.message : std::strerror(-r);
    sd_bus_error_free(&e);
    throw sdbus::Error(std::move(name), std::move(message));
  }
  static void check(int r) {
    sd_bus_error e{};  // SD_BUS_ERROR_NULL is a C compound literal
    raise(r, e);
  }

  sd_bus* bus_ = nullptr;
};


// sdbus-c++ says "Failed to open system bus (No such file or directory)": the reason is in brackets.
std::string reason_of(const sdbus::Error& e) {
  std::string why = e.getMessage();
  if (const auto open = why.rfind(" ("); open != std::string::npos && why.ends_with(")"))
    why = why.substr(open + 2, why.size() - open - 3);
  return why.empty() ? e.getName() : why;
}

sdbus::Error no_bus(const sdbus::Error& e) { return sdbus::Error(kNoBusError, system_bus_address() + ": " + reason_of(e)); }

}  // namespace

std::string system_bus_address() {
  const char* env = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  const std::string address = env && *env ? env : "unix:path=/run/dbus/system_bus_socket";  // sd-bus's default
  constexpr std::string_view kUnixPath = "unix:path=";
  if (address.starts_with(kUnixPath) && address.find_first_of(",;") == std::string::npos)
    return address.substr(kUnixPath.size());
  return address;
}

std::unique_ptr<Daemon> connect_bus() {
  std::unique_ptr<sdbus::IConnection> conn;
  try {
    conn = sdbus::createSystemBusConnection();
  } catch (const sdbus::Error& e) {
    throw no_bus(e);
  }
  return std::make_unique<BusDaemon>(std::move(conn));
}

std::unique_ptr<Daemon> connect_private(const std::string& path) { return PrivateDaemon::connect(path); }

std::string private_socket_path() {
  const char* env = std::getenv("LEAKGUARD_PRIVATE_SOCKET");
  return env ? env : kPrivateSocket;
}

namespace {

using namespace std::chrono_literals;

// The daemon's state, asked when it comes back (nobody may read properties; everyone may GetStatus).
std::string daemon_state(sdbus::IConnection& conn) {
  try {
    auto daemon = sdbus::createProxy(conn, kName, kPath);
    std::string status;
    daemon->callMethod("GetStatus").onInterface(kName).withTimeout(5s).storeResultsTo(status);
    auto j = nlohmann::json::parse(status, nullptr, false);
    if (j.is_object() && j.contains("state") && j["state"].is_string()) return j["state"].get<std::string>();
  } catch (const sdbus::Error&) {
  }
  return "";
}

// Follows one connection until it breaks; returns why it broke. `present` (whether the daemon
// was on the bus, as last told) outlives the connection; `reconnected`: say where the daemon is
// even if that did not change (the bus went away meanwhile).
std::string watch(sdbus::IConnection& conn, const SignalFn& on_signal, const WatchFn& on_watch,
                  std::optional<bool>& present, bool reconnected) {
  try {
    Proxy proxy(conn);
    proxy.on_signal = on_signal;
    // The name's owner: subscribed first, then asked, so that no change falls between the two.
    std::vector<bool> changes;
    auto slot = conn.addMatch(std::string("type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                          "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='") +
                                  kName + "'",
                              [&changes](sdbus::Message& m) {
                                std::string name, old_owner, new_owner;
                                m >> name >> old_owner >> new_owner;
                                if (name == kName) changes.push_back(!new_owner.empty());
                              });
    auto driver = sdbus::createProxy(conn, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    bool has = false;
    driver->callMethod("NameHasOwner").onInterface("org.freedesktop.DBus").withArguments(std::string(kName)).storeResultsTo(has);
    auto tell = [&](bool now, bool force) {
      if (present == now && !force) return;
      if (now) on_watch({WatchEvent::daemon_back, daemon_state(conn)});
      else on_watch({present == true && !force ? WatchEvent::daemon_stopped : WatchEvent::daemon_absent, ""});
      present = now;
    };
    // At the start, only an absent daemon is news; after the bus came back, either is.
    if (reconnected || !has) tell(has, true);
    present = has;
    for (;;) {
      while (conn.processPendingRequest()) {
      }
      // Handled between dispatches: asking the daemon's state is a call of its own.
      if (!changes.empty()) {
        for (bool now : std::exchange(changes, {})) tell(now, false);
        continue;  // the call may have read more messages: process them before waiting
      }
      const auto poll = conn.getEventLoopPollData();
      pollfd p{poll.fd, poll.events, 0};
      ::poll(&p, 1, poll.getPollTimeout());
    }
  } catch (const sdbus::Error& e) {
    return reason_of(e);
  }
}

}  // namespace

void follow_signals(const SignalFn& on_signal, const WatchFn& on_watch, std::chrono::milliseconds max_backoff) {
  std::unique_ptr<sdbus::IConnection> conn;
  try {
    conn = sdbus::createSystemBusConnection();
  } catch (const sdbus::Error& e) {
    throw no_bus(e);  // at the start: leakguardctl exits, saying so
  }
  std::optional<bool> present;
  bool reconnected = false;
  for (;;) {
    const std::string why = watch(*conn, on_signal, on_watch, present, reconnected);
    conn.reset();
    on_watch({WatchEvent::bus_lost, why});  // once per loss; the retries below are silent
    for (auto wait = std::chrono::milliseconds(100);; wait = std::min(2 * wait, max_backoff)) {
      std::this_thread::sleep_for(wait);
      try {
        conn = sdbus::createSystemBusConnection();
        break;
      } catch (const sdbus::Error&) {
      }
    }
    on_watch({WatchEvent::bus_back, ""});
    reconnected = true;
  }
}

}  // namespace leakguard::cli
