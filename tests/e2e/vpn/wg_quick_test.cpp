// The real wg-quick (userspace WireGuard: wireguard-go) with the shipped hook as PreUp, PostUp and
// PreDown, against leakguardd in the lab: what the hook must do whatever state leakguard is in.
// (Up through the block, down, roaming: e2e/control_surface_test.)
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

/// leakguardd blocking in a lab with no tunnel yet; wg* is no tunnel by configuration and no
/// endpoint is configured: only the hooks let WireGuard through.
RigOptions blocking() { return RigOptions{.lab = {.tunnel = false}, .armed = true, .interval = "60s", .tunnel_patterns = "[tun*]", .endpoint = false}; }

/// `conf` with `from` replaced by `to` (once).
void rewrite(const std::string& conf, const std::string& from, const std::string& to) {
  std::ifstream in(conf);
  std::string text(std::istreambuf_iterator<char>(in), {});
  if (const auto at = text.find(from); at != std::string::npos) text.replace(at, from.size(), to);
  std::ofstream(conf) << text;
}

/// wg-quick down at the end, even when a check fails.
struct Down {
  const Rig& rig;
  std::string conf;
  bool up = false;
  ~Down() {
    if (up) (void)rig.wg_quick("down", conf);
  }
};

}  // namespace

TEST_CASE("the real wg-quick goes down while leakguardd is not running: PreDown warns, wg0 is gone") {
  Rig rig(blocking());
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
  Down wg0{rig, rig.wg_quick_config(Rig::WgHooks::pre_up_down)};
  const auto r = rig.wg_quick("up", wg0.conf);
  INFO(r.out);
  REQUIRE(r.status == 0);
  wg0.up = true;
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  rig.daemon().stop(SIGTERM);  // the block stays (on_stop: keep)
  // A failing PreDown would abort wg-quick down and leave wg0 up.
  const auto d = rig.wg_quick("down", wg0.conf);
  INFO(d.out);
  CHECK(d.status == 0);
  CHECK(has(d.out, "leakguardd is not running"));
  CHECK(has(d.out, "leakguard: wg0 not cleared; wg-quick takes it down anyway"));
  CHECK(rig.net.run("host", {"ip", "link", "show", "wg0"}).status != 0);
  wg0.up = rig.net.run("host", {"ip", "link", "show", "wg0"}).status == 0;
}

TEST_CASE("the real wg-quick: a second tunnel is refused while the first is up, and may follow one left behind") {
  Rig rig(blocking());
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
  Down wg0{rig, rig.wg_quick_config(Rig::WgHooks::pre_up_down)};
  auto r = rig.wg_quick("up", wg0.conf);
  INFO(r.out);
  REQUIRE(r.status == 0);
  wg0.up = true;
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  // wg1's PreUp claims the tunnel: were it taken (SetTunnel replaces), wg0 would be out of the rules, dead.
  Down wg1{rig, rig.wg_quick_config(Rig::WgHooks::pre_up_down, "wg1")};
  r = rig.wg_quick("up", wg1.conf);
  INFO(r.out);
  CHECK(r.status != 0);
  CHECK(has(r.out, "one VPN at a time: tunnel wg0 is declared and its interface is there (another VPN is up); take it down first"));
  wg1.up = rig.net.run("host", {"ip", "link", "show", "wg1"}).status == 0;
  CHECK_FALSE(wg1.up);  // wg-quick took it away again
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(rig.witness("203.0.113.3") == "203.0.113.66");  // wg0 still carries the traffic
  // wg0 gone without its PreDown (as after a crash of its client): its declaration is left behind,
  // and the next tunnel replaces it.
  REQUIRE(rig.net.run("host", {"ip", "link", "del", "wg0"}).status == 0);
  wg0.up = false;
  CHECK(rig.status()["tunnel"]["declared"] == "wg0");
  r = rig.wg_quick("up", wg1.conf);
  INFO(r.out);
  CHECK(r.status == 0);
  wg1.up = r.status == 0;
  CHECK(rig.status()["tunnel"]["declared"] == "wg1");
  CHECK(rig.status()["endpoints"] == nlohmann::json::array({"198.51.100.1:51820/udp"}));
  CHECK(has(rig.table(), "\"wg1\""));
}

TEST_CASE("the real wg-quick with a server named by a name DNS cannot give while blocked: PreUp fails at once and says what to do") {
  Rig rig(blocking());
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("blocking"), rig.output());
  Down wg0{rig, rig.wg_quick_config(Rig::WgHooks::pre_up_down)};
  rewrite(wg0.conf, "Endpoint = 198.51.100.1:51820", "Endpoint = dyn.example.test:51820");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = rig.wg_quick("up", wg0.conf);
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO(r.out);
  wg0.up = rig.net.run("host", {"ip", "link", "show", "wg0"}).status == 0;
  CHECK(r.status != 0);
  CHECK(has(r.out, "leakguard: cannot resolve dyn.example.test (Endpoint of wg0): DNS outside the tunnel is blocked; "
                   "name the server by address or give it an /etc/hosts entry"));
  CHECK_FALSE(has(r.out, "names no peer endpoint"));
  CHECK(took < 10s);  // not after wg's own retries (72 s)
  CHECK_FALSE(wg0.up);
  CHECK(rig.status()["tunnel"]["declared"].is_null());
}
