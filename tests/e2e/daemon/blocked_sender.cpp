// A sender for the attribution test: what a page's or an app's traffic outside the tunnel looks
// like to the kill switch. Run under different names (symlinks: the process name is the name it
// was started as), users and cgroups.
//   blocked_sender udp ADDR PORT COUNT INTERVAL_MS      one socket, COUNT datagrams
//   blocked_sender tcp ADDR PORT COUNT INTERVAL_MS      COUNT connection attempts, each socket
//                                                       held 300 ms after it failed (an app retrying)
//   blocked_sender udp46 ADDR PORT COUNT INTERVAL_MS    as udp, from a dual-stack IPv6 socket (no
//                                                       IPV6_V6ONLY) to ::ffff:ADDR, as Go, Java and
//                                                       Node's udp6 send IPv4
// Prints "sent N refused N" at the end; exit 0.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s udp|tcp ADDR PORT COUNT INTERVAL_MS\n", argv[0]);
    return 2;
  }
  const std::string proto = argv[1];
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[3])));
  if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) return 2;
  const int count = std::atoi(argv[4]);
  const auto interval = std::chrono::milliseconds(std::atoi(argv[5]));
  int sent = 0, refused = 0;
  if (proto == "udp" || proto == "udp46") {
    const bool dual = proto == "udp46";
    const int fd = socket(dual ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    sockaddr_in6 to6{};
    if (dual) {
      const int off = 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
      to6.sin6_family = AF_INET6;
      to6.sin6_port = to.sin_port;
      to6.sin6_addr.s6_addr[10] = to6.sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(&to6.sin6_addr.s6_addr[12], &to.sin_addr, 4);
    }
    const auto* dest = dual ? reinterpret_cast<const sockaddr*>(&to6) : reinterpret_cast<const sockaddr*>(&to);
    const socklen_t dest_len = dual ? sizeof to6 : sizeof to;
    for (int i = 0; i < count; ++i) {
      if (sendto(fd, "leakguard", 9, 0, dest, dest_len) < 0) ++refused;
      else ++sent;
      std::this_thread::sleep_for(interval);
    }
    close(fd);
  } else {
    for (int i = 0; i < count; ++i) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) ++refused;
      else ++sent;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      close(fd);
      std::this_thread::sleep_for(interval);
    }
  }
  std::printf("sent %d refused %d\n", sent, refused);
  return 0;
}
