// Connecting a VPN through the block (issue 16, item 4), in the lab (run as root): the real
// wg-quick (userspace WireGuard, PersistentKeepalive, so the first handshake leaves at once)
// brings up wg0; the time from starting `wg-quick up` to the first answer that comes back through
// the tunnel (a STUN request from a socket bound to wg0, every 5 ms). Three ways, in one run:
//   no leakguard      the configuration without hooks, no daemon
//   armed, PostUp     leakguard blocking; the hook declares the tunnel only once wg0 is up
//   armed, PreUp      the same, plus the pre-up hook: the endpoint declared before WireGuard sends
// And the real OpenVPN (UDP, Debian's openvpn, its server in the VPN namespace): from starting
// it to the first answer through tun0, without leakguard, and armed with the hook's --pre-start
// (as an ExecStartPre= runs it, counted in the time) or without it (OpenVPN's handshake meets the
// block: it never connects; the round ends after 15 s).
// Goal: armed within 100 ms of no leakguard.
//
//   bench_connect [ROUNDS]   default 5
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/report.hpp"
#include "tests/e2e/rig/openvpn.hpp"
#include "tests/e2e/rig/rig.hpp"
#include "tests/lab/lab.hpp"

using namespace std::chrono;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;
namespace lab = leakguard::lab;
namespace bench = leakguard::bench;

namespace {

// Polls the STUN server through `dev` until it answers; milliseconds since `t0`, or -1 by
// `deadline` (also while `dev` does not exist yet).
double first_answer(const Rig& rig, const std::string& dev, steady_clock::time_point t0, milliseconds deadline) {
  lab::NetnsScope in(rig.net.ns("host"));
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const auto end = steady_clock::now() + deadline;
  while (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev.c_str(), static_cast<socklen_t>(dev.size())) != 0) {
    if (steady_clock::now() >= end) {
      ::close(fd);
      return -1;
    }
    ::poll(nullptr, 0, 5);
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(3478);
  inet_pton(AF_INET, "203.0.113.3", &to.sin_addr);
  // A STUN Binding request (RFC 8489 §5): type, length 0, magic cookie, transaction id.
  const unsigned char req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 'l', 'e', 'a', 'k', 'g', 'u', 'a', 'r', 'd', 'c', 'o', 'n'};
  double at = -1;
  while (steady_clock::now() < end) {
    (void)::sendto(fd, req, sizeof req, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5) == 1) {
      unsigned char buf[512];
      if (::recv(fd, buf, sizeof buf, 0) >= 20 && buf[0] == 0x01 && buf[1] == 0x01) {
        at = duration<double, std::milli>(steady_clock::now() - t0).count();
        break;
      }
    }
  }
  ::close(fd);
  return at;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double maximum(const std::vector<double>& v) { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }

// `rounds` times: wg-quick up, the first answer through wg0, wg-quick down. Empty if one failed.
std::vector<double> connect_times(const Rig& rig, Rig::WgHooks hooks, int rounds) {
  const std::string conf = rig.wg_quick_config(hooks);
  std::vector<double> out;
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = steady_clock::now();
    const auto up = rig.wg_quick("up", conf);
    if (up.status != 0) {
      std::fprintf(stderr, "wg-quick up failed:\n%s\n", up.out.c_str());
      return {};
    }
    const double ms = first_answer(rig, "wg0", t0, 15s);
    (void)rig.wg_quick("down", conf);
    if (ms < 0) {
      std::fprintf(stderr, "no answer through wg0 within 15 s\n");
      return {};
    }
    out.push_back(ms);
  }
  return out;
}

enum class OvpnHooks { none, up_down, pre_start };

// `rounds` times: OpenVPN started (after --pre-start, counted), the first answer through tun0,
// OpenVPN stopped. A round without an answer within 15 s counts as -1.
std::vector<double> openvpn_times(const Rig& rig, const leakguard::e2e::OpenvpnProvider& vpn, OvpnHooks hooks, int rounds) {
  const std::string hook = leakguard::e2e::OpenvpnProvider::hook();
  const std::string conf = vpn.client_config("proto udp\nremote 198.51.100.1 1194\n",
                                             hooks == OvpnHooks::none ? "" : "down " + hook + "\n", hooks != OvpnHooks::none);
  std::vector<double> out;
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = steady_clock::now();
    if (hooks == OvpnHooks::pre_start && vpn.pre_start(conf).status != 0) {
      std::fprintf(stderr, "--pre-start failed\n");
      return {};
    }
    auto client = vpn.start_client(conf, rig.dir + "/client.log");
    out.push_back(first_answer(rig, "tun0", t0, 15s));
    client->stop(SIGTERM);
    // Until OpenVPN's down ran: the next round starts from nothing declared.
    if (hooks != OvpnHooks::none) leakguard::e2e::eventually([&] { return rig.status()["tunnel"]["declared"].is_null(); }, 5s);
  }
  return out;
}

std::string figure(const std::vector<double>& v) {
  if (std::find(v.begin(), v.end(), -1.0) != v.end()) return "never (15 s)";
  return bench::ms(median(v));
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  if (rounds < 1) {
    std::fprintf(stderr, "usage: bench_connect [ROUNDS]\n");
    return 2;
  }
  // No tunnel in the lab, wg0 no tunnel by configuration, no endpoint configured: only the hooks
  // let the VPN through.
  Rig rig(RigOptions{.lab = {.tunnel = false}, .armed = true, .interval = "60s", .tunnel_patterns = "[tun*]", .endpoint = false});
  const auto none = connect_times(rig, Rig::WgHooks::none, rounds);
  leakguard::e2e::OpenvpnProvider vpn(rig);
  const auto ovpn_none = openvpn_times(rig, vpn, OvpnHooks::none, rounds);
  rig.start();
  if (!rig.wait_state("blocking")) {
    std::fprintf(stderr, "leakguardd did not start:\n%s\n", rig.output().c_str());
    return 1;
  }
  const auto post_up = connect_times(rig, Rig::WgHooks::up_down, rounds);
  const auto pre_up = connect_times(rig, Rig::WgHooks::pre_up_down, rounds);
  const auto ovpn_pre = openvpn_times(rig, vpn, OvpnHooks::pre_start, rounds);
  const auto ovpn_up = openvpn_times(rig, vpn, OvpnHooks::up_down, 1);  // never connects: one round says it
  if (none.empty() || post_up.empty() || pre_up.empty() || ovpn_none.empty() || ovpn_pre.empty() || ovpn_up.empty()) return 1;
  auto line = [&](const char* what, const std::vector<double>& v) {
    std::printf("  %-38s median %7.1f ms, max %7.1f ms  (%d rounds)\n", what, median(v), maximum(v), rounds);
  };
  std::printf("wg-quick up -> first answer through wg0:\n");
  line("no leakguard", none);
  line("leakguard armed, PostUp hook only", post_up);
  line("leakguard armed, PreUp + PostUp hooks", pre_up);
  std::printf("openvpn (UDP) start -> first answer through tun0:\n");
  std::printf("  %-38s %s\n", "no leakguard", figure(ovpn_none).c_str());
  std::printf("  %-38s %s\n", "leakguard armed, --pre-start + up", figure(ovpn_pre).c_str());
  std::printf("  %-38s %s\n", "leakguard armed, up only", figure(ovpn_up).c_str());
  std::fflush(stdout);
  char diff[64];
  std::snprintf(diff, sizeof diff, "%+.0f ms", median(pre_up) - median(none));
  bench::result("wg-quick up -> first answer through the tunnel, armed with the PreUp hook (vs no leakguard; goal <= +100 ms)",
                bench::ms(median(pre_up)), bench::ms(median(none)), diff);
  std::snprintf(diff, sizeof diff, "%+.0f ms", median(post_up) - median(none));
  bench::result("wg-quick up -> first answer through the tunnel, armed with PostUp only (vs no leakguard)",
                bench::ms(median(post_up)), bench::ms(median(none)), diff);
  if (figure(ovpn_none).find("never") == std::string::npos && figure(ovpn_pre).find("never") == std::string::npos) {
    std::snprintf(diff, sizeof diff, "%+.0f ms", median(ovpn_pre) - median(ovpn_none));
    bench::result("openvpn start -> first answer through the tunnel, armed with --pre-start (vs no leakguard; goal <= +100 ms)",
                  bench::ms(median(ovpn_pre)), bench::ms(median(ovpn_none)), diff);
  }
  bench::result("openvpn start -> first answer through the tunnel, armed with up only", figure(ovpn_up), figure(ovpn_none), "");
  return 0;
}
