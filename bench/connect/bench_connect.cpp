// Connecting a VPN through the block (issue 16, item 4), in the lab (run as root): the real
// wg-quick (userspace WireGuard, PersistentKeepalive, so the first handshake leaves at once)
// brings up wg0; the time from starting `wg-quick up` to the first answer that comes back through
// the tunnel (a STUN request from a socket bound to wg0, every 5 ms). Three ways, in one run:
//   no leakguard      the configuration without hooks, no daemon
//   armed, PostUp     leakguard blocking; the hook declares the tunnel only once wg0 is up
//   armed, PreUp      the same, plus the pre-up hook: the endpoint declared before WireGuard sends
// Goal: armed within 100 ms of no leakguard.
//
//   bench_connect [ROUNDS]   default 5
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/report.hpp"
#include "tests/e2e/rig/rig.hpp"
#include "tests/lab/lab.hpp"

using namespace std::chrono;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;
namespace lab = leakguard::lab;
namespace bench = leakguard::bench;

namespace {

// Polls the STUN server through wg0 until it answers; milliseconds since `t0`, or -1 by `deadline`.
double first_answer(const Rig& rig, steady_clock::time_point t0, milliseconds deadline) {
  lab::NetnsScope in(rig.net.ns("host"));
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "wg0", 3) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(3478);
  inet_pton(AF_INET, "203.0.113.3", &to.sin_addr);
  // A STUN Binding request (RFC 8489 §5): type, length 0, magic cookie, transaction id.
  const unsigned char req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 'l', 'e', 'a', 'k', 'g', 'u', 'a', 'r', 'd', 'c', 'o', 'n'};
  const auto end = steady_clock::now() + deadline;
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
    const double ms = first_answer(rig, t0, 15s);
    (void)rig.wg_quick("down", conf);
    if (ms < 0) {
      std::fprintf(stderr, "no answer through wg0 within 15 s\n");
      return {};
    }
    out.push_back(ms);
  }
  return out;
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
  rig.start();
  if (!rig.wait_state("blocking")) {
    std::fprintf(stderr, "leakguardd did not start:\n%s\n", rig.output().c_str());
    return 1;
  }
  const auto post_up = connect_times(rig, Rig::WgHooks::up_down, rounds);
  const auto pre_up = connect_times(rig, Rig::WgHooks::pre_up_down, rounds);
  if (none.empty() || post_up.empty() || pre_up.empty()) return 1;
  auto line = [&](const char* what, const std::vector<double>& v) {
    std::printf("  %-38s median %7.1f ms, max %7.1f ms  (%d rounds)\n", what, median(v), maximum(v), rounds);
  };
  std::printf("wg-quick up -> first answer through wg0:\n");
  line("no leakguard", none);
  line("leakguard armed, PostUp hook only", post_up);
  line("leakguard armed, PreUp + PostUp hooks", pre_up);
  std::fflush(stdout);
  char diff[64];
  std::snprintf(diff, sizeof diff, "%+.0f ms", median(pre_up) - median(none));
  bench::result("wg-quick up -> first answer through the tunnel, armed with the PreUp hook (vs no leakguard; goal <= +100 ms)",
                bench::ms(median(pre_up)), bench::ms(median(none)), diff);
  std::snprintf(diff, sizeof diff, "%+.0f ms", median(post_up) - median(none));
  bench::result("wg-quick up -> first answer through the tunnel, armed with PostUp only (vs no leakguard)",
                bench::ms(median(post_up)), bench::ms(median(none)), diff);
  return 0;
}
