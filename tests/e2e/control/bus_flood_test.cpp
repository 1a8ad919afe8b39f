// Issue 14, finding 1: local users flooding the bus must not stall the daemon. The real leakguardd
// in the lab on a private system bus with the project's policy; three processes running as nobody
// send calls that everyone may make (GetStatus, and property reads; two ask for no reply, one
// does) as fast as the bus takes them, and keep doing so while root, meanwhile:
//   - declares its tunnel with SetTunnel, which must be answered within a finite deadline;
//   - deletes the tunnel's link, which must bring StateChanged(blocking) within a deadline;
//   - sends SIGTERM, which must end the daemon within a deadline.
// Before the fix the daemon drained the bus's whole queue in one turn of its loop and dumped the
// nftables counters for every GetStatus: all three waits ran out. The deadlines are liveness
// bounds, not performance goals (bench/dbusflood has the figures).
#include <doctest/doctest.h>
#include <signal.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sdbus-c++/sdbus-c++.h>
#include <sstream>
#include <string>
#include <vector>

#include "leakguard_proxy.h"
#include "tests/e2e/rig/rig.hpp"
#include "tests/lab/flooder.hpp"

using namespace std::chrono_literals;
using namespace leakguard::e2e;
namespace lab = leakguard::lab;

namespace {

constexpr const char* kName = "org.leakguard.Daemon1";
constexpr const char* kPath = "/org/leakguard/Daemon1";

// StateChanged as root sees it on the bus.
class Watch final : public sdbus::ProxyInterfaces<org::leakguard::Daemon1_proxy> {
 public:
  explicit Watch(sdbus::IConnection& c) : ProxyInterfaces(c, kName, kPath) { registerProxy(); }
  ~Watch() { unregisterProxy(); }
  bool wait_state(const std::string& s, std::chrono::milliseconds deadline) {
    std::unique_lock l(m_);
    return cv_.wait_for(l, deadline, [&] {
      for (const auto& x : states_)
        if (x == s) return true;
      return false;
    });
  }

 private:
  void onStateChanged(const std::string&, const std::string& to, const std::string&) override {
    std::lock_guard l(m_);
    states_.push_back(to);
    cv_.notify_all();
  }
  void onLeakDetected(const std::string&, const std::string&, const std::string&, const std::string&) override {}
  void onProbeCompleted(const std::string&) override {}
  void onTableTampered(const std::string&) override {}
  void onBlocked(const std::string&, const std::string&, const std::string&, const std::string&, const uint64_t&) override {}
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::string> states_;
};

bool all_running(std::vector<std::unique_ptr<lab::Flooder>>& fs) {
  for (auto& f : fs)
    if (!f->process.running()) return false;
  return true;
}

}  // namespace

TEST_CASE("three unprivileged flooders: root's SetTunnel is answered, tunnel loss blocks, SIGTERM ends the daemon") {
  Rig rig;
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured", 30s), rig.output());

  auto signals = sdbus::createSystemBusConnection();
  Watch watch(*signals);
  signals->enterEventLoopAsync();

  std::vector<std::unique_ptr<lab::Flooder>> flooders;
  flooders.push_back(std::make_unique<lab::Flooder>(rig.net.ns("host"), BUS_FLOODER, rig.dir + "/flood1.log", std::vector<std::string>{"GetStatus"}));
  flooders.push_back(std::make_unique<lab::Flooder>(rig.net.ns("host"), BUS_FLOODER, rig.dir + "/flood2.log", std::vector<std::string>{"GetStatus"}));
  // The third asks for replies: what it gets beyond its budget is LimitsExceeded.
  flooders.push_back(std::make_unique<lab::Flooder>(rig.net.ns("host"), BUS_FLOODER, rig.dir + "/flood3.log",
                                               std::vector<std::string>{"--reply", "GetStatus", "Get", "GetAll"}));
  // The flood is under way: 150,000 calls sent (a few seconds at the bus's pace), every flooder alive.
  const bool flooding = eventually([&] { return lab::total(flooders) >= 150'000 || !all_running(flooders); }, 120s);
  REQUIRE_MESSAGE(flooding, "flooders sent only " << lab::total(flooders));
  REQUIRE_MESSAGE(all_running(flooders), read_file(flooders[0]->log));
  const auto before = lab::total(flooders);

  // Root declares its tunnel: answered, and with success, within 10 s.
  {
    auto conn = sdbus::createSystemBusConnection();
    auto proxy = sdbus::createProxy(*conn, kName, kPath);
    std::string error;
    try {
      proxy->callMethod("SetTunnel")
          .onInterface(kName)
          .withTimeout(10s)
          .withArguments(std::string("wg0"), std::vector<std::string>{"198.51.100.1:51820/udp"}, uint32_t{51820});
    } catch (const sdbus::Error& e) {
      error = e.getName() + ": " + e.getMessage();
    }
    CHECK_MESSAGE(error.empty(), "SetTunnel under the flood: " << error);
  }

  // Root's leakguardctl takes the private socket, where the flood is not (the bus out of its reach).
  const auto via_private = rig.ctl_without_bus({"tunnel", "set", "wg0", "--endpoint", "198.51.100.1:51820/udp", "--fwmark", "51820"});
  CHECK_MESSAGE(via_private.status == 0, via_private.out);

  // The tunnel's link goes away: `blocking` is signalled within 10 s.
  const auto del = rig.net.run("host", {"ip", "link", "del", "wg0"});
  REQUIRE_MESSAGE(del.status == 0, del.out);
  CHECK_MESSAGE(watch.wait_state("blocking", 10s), "no StateChanged(blocking) under the flood");

  // The flood went on all along: the flooders are alive and still sending.
  CHECK(all_running(flooders));
  CHECK(eventually([&] { return lab::total(flooders) >= before + 20'000; }, 30s));

  // SIGTERM ends the daemon within 10 s.
  rig.daemon().stop(SIGTERM, false);
  CHECK_MESSAGE(eventually([&] { return !rig.daemon().running(); }, 10s), "leakguardd did not end after SIGTERM");
  signals->leaveEventLoop();

  // The daemon said whom it refused (once per period, not once per call).
  const std::string out = rig.output();
  CHECK_MESSAGE(out.find("GetStatus call(s) from uid 65534: more than") != std::string::npos,
                out.substr(0, 4000) << read_file(flooders[2]->log).substr(0, 2000));
}
