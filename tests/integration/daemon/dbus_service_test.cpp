// The D-Bus service end to end through a private bus running the project's policy file: every
// method and property via busctl, authorization as root / nobody / nobody in the control group,
// bad input, signals via the generated proxy, and the bus going away and coming back.
#include <doctest/doctest.h>
#include <grp.h>

#include <systemd/sd-bus.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "daemon/dbus_service.hpp"
#include "leakguard_proxy.h"
#include "tests/lab/bus.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::daemon;
namespace lab = leakguard::lab;

namespace {
// The test's stand-in for group "leakguard": an existing group (dbus-daemon's policy needs a
// name it can resolve), whose membership each call sets with setpriv.
const char* const kGroupName = "users";
const gid_t kGroup = [] {
  const group* g = getgrnam(kGroupName);
  return g ? g->gr_gid : gid_t{100};
}();

// Records what the service asked for; runs on the service's loop thread.
class FakeControl final : public Control {
 public:
  explicit FakeControl(std::chrono::microseconds cost = {}) : status_cost(cost) {}
  mutable std::mutex m;
  std::vector<std::string> calls;
  Snapshot snap{"blocking", "udp", true, "", {}, "", 0};

  Result<void> record(std::string what) {
    std::lock_guard l(m);
    calls.push_back(std::move(what));
    return {};
  }
  Result<void> arm(const std::string& by) override {
    snap.armed = true;
    return record("arm by " + by);
  }
  Result<void> disarm(const std::string& by) override {
    snap.armed = false;
    return record("disarm by " + by);
  }
  bool busy = false;  ///< a claim is refused as the controller refuses it while another VPN is up
  Result<void> set_tunnel(const TunnelDeclaration& t, const std::string&, Claim claim) override {
    if (claim != Claim::replace && busy) return fail(kTunnelBusy, "tunnel wg9 is declared");
    snap.tunnel_interface = t.interface;
    snap.endpoints.clear();
    for (const auto& e : t.endpoints) snap.endpoints.push_back(e.str());
    return record(std::string(claim == Claim::replace ? "" : claim == Claim::ahead ? "claim ahead " : "claim ") + "tunnel " + t.interface + " " +
                  std::to_string(t.endpoints.size()) + " mark " + (t.fwmark ? t.fwmark->str() : "none"));
  }
  Result<bool> clear_tunnel(const std::string&, const std::optional<std::string>& only_if) override {
    if (only_if && *only_if != snap.tunnel_interface) return false;
    snap.tunnel_interface.clear();
    record(only_if ? "release tunnel " + *only_if : "clear tunnel");
    return true;
  }
  Result<void> set_allow_lan(bool allow, const std::string&) override {
    return record(std::string("allow_lan ") + (allow ? "on" : "off"));
  }
  Result<void> set_policy(Mode p, const std::string&) override {
    snap.policy = std::string(to_string(p));
    return record("policy " + snap.policy);
  }
  Result<void> reload(const std::string&) override { return fail("reload", "line 3: bad"); }
  Result<void> probe_now(std::function<void(std::string, std::string)> done) override {
    record("probe");
    done("ok", R"({"verdict":"ok"})");
    return {};
  }
  mutable std::atomic<int> status_built{0};
  std::chrono::microseconds status_cost{0};  ///< CPU time each status or snapshot takes, like a counter dump
  std::string status_json() const override {
    const auto until = std::chrono::steady_clock::now() + status_cost;
    while (std::chrono::steady_clock::now() < until) {
    }
    ++status_built;
    return R"({"state":"secured","reason":"tunnel wg0 up","endpoints":["198.51.100.1:51820/udp"],)"
           R"("last_probe":{"verdict":"ok","tunnel_exits":{"ipv4":["203.0.113.66"]}},"network":{"links":[]}})";
  }
  mutable std::atomic<int> snapshots{0};
  Snapshot snapshot() const override {
    const auto until = std::chrono::steady_clock::now() + status_cost;
    while (std::chrono::steady_clock::now() < until) {
    }
    ++snapshots;
    return snap;
  }
  std::vector<std::string> take() {
    std::lock_guard l(m);
    return std::exchange(calls, {});
  }
};

struct Service {
  lab::PrivateBus bus;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  FakeControl control;
  std::mutex log_m;
  std::vector<std::string> log;
  DbusService service;
  std::thread loop;

  explicit Service(bool permissive = false, DbusService::Options options = {kGroup, std::chrono::milliseconds(100)},
                   std::chrono::microseconds status_cost = {})
      : bus(LEAKGUARD_DBUS_POLICY, kGroupName, permissive),
        control(status_cost),
        service(io, control, options, [this](bool, const std::string& line) {
          std::lock_guard l(log_m);
          log.push_back(line);
        }) {
    service.start();
    REQUIRE(service.connected());
    loop = std::thread([this] { io.run(); });
  }
  ~Service() {
    work.reset();
    io.stop();
    loop.join();
  }
  // Runs f on the service's loop and waits for it.
  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(io, [&task] { task(); });
    return fut.get();
  }
};

std::vector<std::string> busctl(std::vector<std::string> args, const std::string& as = "root") {
  std::vector<std::string> argv;
  if (as == "nobody") argv = {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
  if (as == "nobody+group") argv = {"setpriv", "--reuid=nobody", "--regid=nogroup", "--groups=" + std::to_string(kGroup)};
  if (as == "nobody+primary") argv = {"setpriv", "--reuid=nobody", "--regid=" + std::to_string(kGroup), "--clear-groups"};
  argv.insert(argv.end(), {"busctl", "--system", "--timeout=5"});
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = lab::run(argv, std::chrono::seconds(10));
  return {std::to_string(r.status), r.out};
}

std::vector<std::string> call(const std::string& method, std::vector<std::string> args = {},
                              const std::string& as = "root") {
  std::vector<std::string> a{"call", DbusService::kName, DbusService::kPath, DbusService::kName, method};
  a.insert(a.end(), args.begin(), args.end());
  return busctl(a, as);
}

std::vector<std::string> get(const std::string& property, const std::string& as = "root") {
  return busctl({"get-property", DbusService::kName, DbusService::kPath, DbusService::kName, property}, as);
}
}  // namespace

bool starts(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST_CASE("every method and property through busctl, as root") {
  Service s;
  CHECK(call("Arm")[0] == "0");
  CHECK(call("Disarm")[0] == "0");
  CHECK(call("SetTunnel", {"sasu", "wg0", "2", "198.51.100.1:51820/udp", "[2001:db8::1]:51820", "51820"})[0] == "0");
  CHECK(call("ClearTunnel")[0] == "0");
  CHECK(call("SetAllowLan", {"b", "true"})[0] == "0");
  CHECK(call("SetPolicy", {"s", "strict"})[0] == "0");
  auto probe = call("ProbeNow");
  CHECK(probe[0] == "0");
  CHECK(probe[1].find(R"(ss "ok")") != std::string::npos);
  auto status = call("GetStatus");
  CHECK(status[0] == "0");
  CHECK(status[1].find("secured") != std::string::npos);
  auto reload = call("Reload");  // the fake refuses: the error reaches the caller
  CHECK(reload[0] != "0");
  CHECK(reload[1].find("line 3: bad") != std::string::npos);
  CHECK(call("ClaimTunnel", {"sasub", "wg1", "1", "198.51.100.2:51820", "0", "false"})[0] == "0");
  auto other = call("ReleaseTunnel", {"s", "wg0"});  // wg1 is declared: nothing released
  CHECK(other == std::vector<std::string>{"0", "b false\n"});
  CHECK(call("ReleaseTunnel", {"s", "wg1"}) == std::vector<std::string>{"0", "b true\n"});
  s.control.busy = true;
  auto busy = call("ClaimTunnel", {"sasub", "wg1", "1", "198.51.100.2:51820", "0", "false"});
  CHECK(busy[0] != "0");
  CHECK(busy[1].find("one VPN at a time: tunnel wg9 is declared") != std::string::npos);
  CHECK(call("ClaimTunnel", {"sasub", "tun", "1", "198.51.100.3:1194", "0", "true"})[0] != "0");  // busy: refused too
  s.control.busy = false;
  CHECK(call("ClaimTunnel", {"sasub", "tun", "1", "198.51.100.3:1194", "0", "true"})[0] == "0");
  // SetTunnel replaces regardless.
  CHECK(call("SetTunnel", {"sasu", "wg0", "2", "198.51.100.1:51820/udp", "[2001:db8::1]:51820", "51820"})[0] == "0");

  auto calls = s.control.take();
  REQUIRE(calls.size() == 11);
  CHECK(starts(calls[0], "arm by uid 0, pid "));
  CHECK(starts(calls[1], "disarm by uid 0"));
  CHECK(calls[2] == "tunnel wg0 2 mark 51820");
  CHECK(calls[3] == "clear tunnel");
  CHECK(calls[4] == "allow_lan on");
  CHECK(calls[5] == "policy strict");
  CHECK(calls[6] == "probe");
  CHECK(calls[7] == "claim tunnel wg1 1 mark none");
  CHECK(calls[8] == "release tunnel wg1");
  CHECK(calls[9] == "claim ahead tunnel tun 1 mark none");
  CHECK(calls[10] == "tunnel wg0 2 mark 51820");

  CHECK(get("State")[1] == "s \"blocking\"\n");
  CHECK(get("Policy")[1] == "s \"strict\"\n");
  CHECK(get("Armed")[1] == "b false\n");
  CHECK(get("TunnelInterface")[1] == "s \"wg0\"\n");
  CHECK(get("Endpoints")[1] == "as 2 \"198.51.100.1:51820/udp\" \"[2001:db8::1]:51820/udp\"\n");
  CHECK(get("LastProbe")[1] == "s \"\"\n");
  CHECK(get("LeakCount")[1] == "t 0\n");
}

TEST_CASE("bad input: an error naming the argument, the daemon alive, nothing changed") {
  Service s;
  auto bad_if = call("SetTunnel", {"sasu", "wg/0", "1", "198.51.100.1:51820", "0"});
  CHECK(bad_if[0] != "0");
  CHECK(bad_if[1].find("interface") != std::string::npos);
  auto bad_ep = call("SetTunnel", {"sasu", "wg0", "1", "198.51.100.1:99999", "0"});
  CHECK(bad_ep[0] != "0");
  CHECK(bad_ep[1].find("endpoints") != std::string::npos);
  auto bad_policy = call("SetPolicy", {"s", "loose"});
  CHECK(bad_policy[0] != "0");
  CHECK(bad_policy[1].find("policy") != std::string::npos);
  auto bad_sig = call("SetPolicy", {"i", "5"});
  CHECK(bad_sig[0] != "0");
  auto bad_sig2 = call("SetTunnel", {"s", "wg0"});
  CHECK(bad_sig2[0] != "0");
  auto no_method = call("Explode");
  CHECK(no_method[0] != "0");
  // 10,000 endpoints in one call: refused by the limit, not by a crash.
  std::vector<std::string> args{"sasu", "wg0", "10000"};
  for (int i = 0; i < 10'000; ++i) args.push_back("198.51.100." + std::to_string(i % 250 + 1) + ":" + std::to_string(1000 + i));
  args.push_back("0");
  auto many = call("SetTunnel", args);
  CHECK(many[0] != "0");
  CHECK(many[1].find("at most 1024") != std::string::npos);
  // Still answering, and a good call reaches the control: nothing before it did.
  CHECK(call("SetPolicy", {"s", "strict"})[0] == "0");
  CHECK(s.control.take() == std::vector<std::string>{"policy strict"});
}

TEST_CASE("as nobody: status yes, changes no. In the control group: changes yes") {
  Service s;
  // What nobody learns: protected or not - not the endpoints, not the exit address.
  auto mine = call("GetStatus", {}, "nobody");
  CHECK(mine[0] == "0");
  CHECK(mine[1].find("secured") != std::string::npos);
  CHECK(mine[1].find("redacted") != std::string::npos);
  CHECK(mine[1].find("198.51.100.1") == std::string::npos);
  CHECK(mine[1].find("203.0.113.66") == std::string::npos);
  // The control: the same call as root and as a member carries them.
  CHECK(call("GetStatus", {}, "root")[1].find("198.51.100.1") != std::string::npos);
  CHECK(call("GetStatus", {}, "nobody+group")[1].find("203.0.113.66") != std::string::npos);
  // The properties (endpoints, the last probe's addresses) are for root and the group only.
  auto prop = get("Endpoints", "nobody");
  CHECK(prop[0] != "0");
  CHECK(prop[1].find("Access denied") != std::string::npos);
  CHECK(get("State", "nobody")[0] != "0");
  CHECK(get("State", "nobody+group")[0] == "0");
  for (auto* m : {"Arm", "Disarm", "ClearTunnel", "Reload", "ProbeNow"}) {
    CAPTURE(m);
    auto r = call(m, {}, "nobody");
    CHECK(r[0] != "0");
    CHECK(r[1].find("Access denied") != std::string::npos);
  }
  CHECK(call("SetPolicy", {"s", "udp"}, "nobody")[1].find("Access denied") != std::string::npos);
  CHECK(call("ReleaseTunnel", {"s", "wg0"}, "nobody")[1].find("Access denied") != std::string::npos);
  CHECK(call("ClaimTunnel", {"sasub", "wg1", "1", "198.51.100.2:51820", "0", "true"}, "nobody")[1].find("Access denied") !=
        std::string::npos);
  // The control group's call is the one that arrives: none of nobody's did. Membership by the
  // primary group counts too: the bus's record of the connection carries it.
  auto grp = call("Arm", {}, "nobody+group");
  CHECK_MESSAGE(grp[0] == "0", grp[1]);
  auto primary = call("Arm", {}, "nobody+primary");
  CHECK_MESSAGE(primary[0] == "0", primary[1]);
  auto calls = s.control.take();
  REQUIRE(calls.size() == 2);
  CHECK(starts(calls[0], "arm by uid 65534"));
}

TEST_CASE("the daemon checks again: with a bus that lets everything through, nobody is still refused") {
  Service s(/*permissive=*/true);
  CHECK(call("Arm", {}, "nobody")[0] != "0");
  CHECK(call("ProbeNow", {}, "nobody")[0] != "0");
  {
    // busctl shows AccessDenied as "Access denied" whoever sent it; the daemon's log says it refused.
    std::lock_guard l(s.log_m);
    REQUIRE(s.log.size() >= 2);
    CHECK(s.log[s.log.size() - 1].find("refused ProbeNow from uid 65534") != std::string::npos);
  }
  // The control group's call is the one that arrives: none of nobody's did.
  CHECK(call("Arm", {}, "nobody+group")[0] == "0");
  auto calls = s.control.take();
  REQUIRE(calls.size() == 1);
  CHECK(starts(calls[0], "arm by uid 65534"));
}

TEST_CASE("signals and PropertiesChanged reach a client") {
  Service s;
  auto conn = sdbus::createSystemBusConnection();
  struct Client : sdbus::ProxyInterfaces<org::leakguard::Daemon1_proxy, sdbus::Properties_proxy> {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> seen;
    Client(sdbus::IConnection& c) : ProxyInterfaces(c, DbusService::kName, DbusService::kPath) { registerProxy(); }
    ~Client() { unregisterProxy(); }
    void add(std::string x) {
      std::lock_guard l(m);
      seen.push_back(std::move(x));
      cv.notify_all();
    }
    void onStateChanged(const std::string& o, const std::string& n, const std::string& r) override { add("state " + o + ">" + n + " " + r); }
    void onLeakDetected(const std::string& i, const std::string& f, const std::string& a, const std::string& sv) override {
      add("leak " + i + " " + f + " " + a + " " + sv);
    }
    void onProbeCompleted(const std::string& v) override { add("probe " + v); }
    void onTableTampered(const std::string& p) override { add("tampered " + p); }
    void onBlocked(const std::string& a, const std::string&, const std::string& d, const std::string&, const uint64_t& n) override {
      add("blocked " + a + " " + d + " " + std::to_string(n));
    }
    void onPropertiesChanged(const std::string&, const std::map<std::string, sdbus::Variant>& changed,
                             const std::vector<std::string>&) override {
      for (const auto& [k, _] : changed) add("prop " + k);
    }
    bool wait_for(std::size_t n) {
      std::unique_lock l(m);
      return cv.wait_for(l, std::chrono::seconds(5), [&] { return seen.size() >= n; });
    }
  } client(*conn);
  conn->enterEventLoopAsync();

  s.on_loop([&] {
    s.control.snap.state = "leaking";
    s.control.snap.leak_count = 1;
    s.service.state_changed("blocking", "leaking", "probe leak");
    s.service.leak_detected("eth0", "ipv4", "203.0.113.2", "203.0.113.3:3478");
    s.service.probe_completed("leak");
    s.service.table_tampered("nft (pid 7)");
    return 0;
  });
  REQUIRE(client.wait_for(6));
  std::lock_guard l(client.m);
  CHECK(client.seen[0] == "state blocking>leaking probe leak");
  CHECK(client.seen[1] == "prop LeakCount");  // one PropertiesChanged; the map arrives sorted
  CHECK(client.seen[2] == "prop State");
  CHECK(client.seen[3] == "leak eth0 ipv4 203.0.113.2 203.0.113.3:3478");
  CHECK(client.seen[4] == "probe leak");
  CHECK(client.seen[5] == "tampered nft (pid 7)");
  conn->leaveEventLoop();
}

TEST_CASE("the bus goes away and comes back: the service re-registers by itself") {
  Service s;
  s.bus.stop();
  CHECK(call("GetStatus")[0] != "0");
  s.bus.restart();
  // Wait (with a deadline) until the name is back on the new bus.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool back = false;
  while (!back && std::chrono::steady_clock::now() < deadline) back = call("GetStatus")[0] == "0";
  CHECK(back);
  CHECK(call("Arm")[0] == "0");
  std::lock_guard l(s.log_m);
  bool logged_loss = false;
  for (const auto& line : s.log) logged_loss |= line.find("connection lost") != std::string::npos;
  CHECK(logged_loss);
}

TEST_CASE("GetStatus: a rate limit per unprivileged uid, LimitsExceeded beyond it, root and the control group exempt") {
  DbusService::Options o{kGroup, std::chrono::milliseconds(100)};
  o.rate_limit = RateLimit{.per_second = 0.001, .burst = 3};  // three calls, then (practically) none
  Service s(false, o);
  for (int i = 0; i < 3; ++i) CHECK(call("GetStatus", {}, "nobody")[0] == "0");
  auto refused = call("GetStatus", {}, "nobody");
  CHECK(refused[0] != "0");
  CHECK_MESSAGE(refused[1].find("uid 65534 calls more than 0.001 times a second") != std::string::npos, refused[1]);
  // The error's name, as a client library sees it.
  {
    auto r = lab::run({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "dbus-send", "--system",
                       "--print-reply", "--dest=org.leakguard.Daemon1", "/org/leakguard/Daemon1",
                       "org.leakguard.Daemon1.GetStatus"},
                      std::chrono::seconds(10));
    CHECK(r.status != 0);
    CHECK_MESSAGE(r.out.find("org.leakguard.Daemon1.Error.LimitsExceeded") != std::string::npos, r.out);
  }
  // Refusals have a budget too (the same: three); beyond it a call goes unanswered, and the
  // caller's own timeout ends it (the bus keeps one of its pending-reply slots meanwhile).
  CHECK(call("GetStatus", {}, "nobody")[1].find("try again later") != std::string::npos);  // the third refusal
  {
    auto r = lab::run({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "busctl", "--system",
                       "--timeout=2", "call", DbusService::kName, DbusService::kPath, DbusService::kName, "GetStatus"},
                      std::chrono::seconds(10));
    CHECK(r.status != 0);
    CHECK_MESSAGE(r.out.find("imed out") != std::string::npos, r.out);
  }
  // Not limited: root, and nobody in the control group (a different uid's budget is not needed:
  // the group exempts the same uid 65534).
  for (int i = 0; i < 10; ++i) CHECK(call("GetStatus")[0] == "0");
  for (int i = 0; i < 5; ++i) CHECK(call("GetStatus", {}, "nobody+group")[0] == "0");
  // Property reads cost the same as a refusal would (served from memory): not limited for the
  // group (nobody outside it may read them at all).
  CHECK(get("State", "nobody+group")[0] == "0");
  // Logged once for the episode, not once per call.
  std::lock_guard l(s.log_m);
  int lines = 0;
  for (const auto& line : s.log) lines += line.find("GetStatus call(s) from uid 65534") != std::string::npos ? 1 : 0;
  CHECK(lines == 1);
}

TEST_CASE("GetStatus is served from a cache: built once for many calls, again after a change") {
  Service s;
  for (int i = 0; i < 5; ++i) CHECK(call("GetStatus")[0] == "0");
  // Five calls within the freshness period (1 s) build it at most twice (a slow machine may cross
  // the second once), never five times.
  CHECK(s.control.status_built.load() <= 2);
  const int built = s.control.status_built.load();
  s.on_loop([&] {
    s.service.properties_changed();  // what every change of state or property calls
    return 0;
  });
  CHECK(call("GetStatus")[0] == "0");
  CHECK(s.control.status_built.load() == built + 1);
}

TEST_CASE("a flood of calls does not keep the loop from its other work: bounded requests per turn") {
  // Every property read costs 300 us (the caches are off, the fake spins as a counter dump would),
  // and a client sends them without waiting for replies faster than that: before the bound, the
  // service handled the bus's queue in one turn for as long as the flood lasted.
  DbusService::Options o{kGroup, std::chrono::milliseconds(100)};
  o.status_max_age = std::chrono::milliseconds(0);
  Service s(false, o, std::chrono::microseconds(300));
  std::atomic<bool> stop{false};
  std::atomic<long> sent{0};
  std::thread flood([&] {
    sd_bus* bus = nullptr;
    if (sd_bus_open_system(&bus) < 0) return;
    while (!stop) {
      sd_bus_message* m = nullptr;
      if (sd_bus_message_new_method_call(bus, &m, DbusService::kName, DbusService::kPath,
                                         "org.freedesktop.DBus.Properties", "Get") < 0 ||
          sd_bus_message_append(m, "ss", DbusService::kName, "State") < 0)
        break;
      sd_bus_message_set_expect_reply(m, 0);
      const int r = sd_bus_send(bus, m, nullptr);
      sd_bus_message_unref(m);
      if (r < 0 && r != -ENOBUFS) break;
      if (++sent % 256 == 0 || r == -ENOBUFS) {
        sd_bus_flush(bus);
        while (sd_bus_process(bus, nullptr) > 0) {
        }
      }
    }
    sd_bus_flush_close_unref(bus);
  });
  // The service is busy with the flood...
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (s.control.snapshots.load() < 500 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s.control.snapshots.load() >= 500);
  // ...and work posted to its loop meanwhile still runs, within a deadline, while the flood goes on.
  std::promise<long> ran;
  auto when = ran.get_future();
  boost::asio::post(s.io, [&] { ran.set_value(sent.load()); });
  const bool in_time = when.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  const long sent_meanwhile = sent.load();
  stop = true;
  flood.join();
  REQUIRE_MESSAGE(in_time, "posted work waited more than 5 s behind the flood");
  // A control: the flood was faster than the service (calls were queued when the work ran).
  MESSAGE("sent " << sent_meanwhile << ", read " << s.control.snapshots.load());
  CHECK(sent_meanwhile > s.control.snapshots.load());
  when.get();
}

TEST_CASE("a GetStatus that asks for no reply costs nothing: no credentials, no document") {
  DbusService::Options o{kGroup, std::chrono::milliseconds(100)};
  o.status_max_age = std::chrono::milliseconds(0);  // no cache: every answered call builds the document
  Service s(false, o);
  auto r = lab::run({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "busctl", "--system",
                     "--expect-reply=no", "call", DbusService::kName, DbusService::kPath, DbusService::kName,
                     "GetStatus"},
                    std::chrono::seconds(10));
  CHECK(r.status == 0);
  // A call after it, with a reply, shows the first was handled (the bus keeps one sender's order)
  // and that only this one built the document.
  CHECK(call("GetStatus", {}, "nobody")[0] == "0");
  CHECK(s.control.status_built.load() == 1);
}
