// leakguardctl monitor --notify against a real notification server: dunst under a virtual X
// display (Xvfb), on a session bus of the test's own, beside leakguardd in the lab. The tunnel
// going down, and a STUN request sent outside the tunnel, become desktop notifications, which
// dunst prints as it shows them (-print).
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "attribution/lookup.hpp"
#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
namespace lab = leakguard::lab;
using leakguard::e2e::eventually;
using leakguard::e2e::read_file;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {
bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("monitor --notify: VPN down and a blocked STUN request become notifications on a real server (dunst)") {
  Rig rig(RigOptions{.lab = {.split_stun = true}});
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // The user's session: a bus, a display, a notification server.
  const std::string session = "unix:path=" + rig.dir + "/session";
  lab::Process bus("", {"dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf", "--address=" + session, "--nofork"},
                   rig.dir + "/session-bus.log");
  REQUIRE(eventually([&] { return std::filesystem::exists(rig.dir + "/session"); }, 10s));
  const int display = 100 + static_cast<int>(getpid() % 800);
  const std::string d = ":" + std::to_string(display);
  lab::Process x("", {"Xvfb", d, "-nolisten", "tcp", "-screen", "0", "800x600x24"}, rig.dir + "/xvfb.log");
  REQUIRE_MESSAGE(eventually([&] { return std::filesystem::exists("/tmp/.X11-unix/X" + std::to_string(display)); }, 15s),
                  read_file(rig.dir + "/xvfb.log"));
  const std::string shown = rig.dir + "/dunst.log";
  lab::Process dunst("", {"env", "DISPLAY=" + d, "DBUS_SESSION_BUS_ADDRESS=" + session, "dunst", "-print"}, shown);
  REQUIRE_MESSAGE(eventually([&] { return lab::run({"env", "DBUS_SESSION_BUS_ADDRESS=" + session, "dunstctl", "count"}).status == 0; }, 15s),
                  read_file(shown));

  const std::string printed = rig.dir + "/monitor.log";
  auto both = [&] { return read_file(shown) + "\n--- monitor:\n" + read_file(printed); };
  lab::Process monitor("", {"env", "DBUS_SESSION_BUS_ADDRESS=" + session, LEAKGUARDCTL_DIR "/leakguardctl", "monitor", "--notify"},
                       printed);
  // Listening once a signal shows; a probe round sends one (and, secured as before, notifies nothing).
  REQUIRE(eventually([&] { return rig.ctl({"probe"}).status == 0 && has(read_file(printed), "probe:"); }, 15s));
  CHECK_FALSE(has(read_file(shown), "leakguard"));

  // A STUN request outside the tunnel (the STUN server is routed via eth0), from an application in
  // a scope of its own, as a desktop session starts them: blocked, and named.
  const std::string mount = leakguard::attribution::cgroup2_mount();
  REQUIRE(!mount.empty());
  const std::string scope = mount + "/lgt-notify-" + std::to_string(getpid()) + ".scope";
  std::filesystem::create_directories(scope);
  struct Gone {
    std::string dir;
    ~Gone() { ::rmdir(dir.c_str()); }
  } scope_gone{scope};
  // nsenter, not `ip netns exec` (whose fresh /sys hides the cgroup2 mount).
  const auto stun = lab::run({"nsenter", "--net=/run/netns/" + rig.net.ns("host"), "sh", "-c",
                              "echo $$ > \"$0/cgroup.procs\" && exec turnutils_stunclient 203.0.113.3", scope});
  INFO(stun.out);
  CHECK_FALSE(has(stun.out, "reflexive addr"));

  CHECK_MESSAGE(eventually([&] { return has(read_file(shown), "tried to reach 203.0.113.3:3478 outside the VPN (blocked)"); }, 10s),
                both());
  // Named by its process (15 characters at most), or - where its socket's holder was not seen
  // (one packet, too soon after the last pass over /proc) - by its scope.
  const std::string scope_name = scope.substr(scope.rfind('/') + 1);
  CHECK_MESSAGE((has(read_file(shown), "turnutils_stun") || has(read_file(shown), scope_name + " tried to reach")),
                rig.status()["blocked"].dump(1));

  // The tunnel goes down.
  REQUIRE(lab::run({lab::lab_script(), "set", "--id", rig.net.id(), "tunnel", "down"}).status == 0);
  CHECK_MESSAGE(eventually([&] { return has(read_file(shown), "VPN down: blocked"); }, 10s),
                both());
  CHECK(has(read_file(shown), "appname: 'leakguard'"));
  monitor.stop(SIGTERM);
}
