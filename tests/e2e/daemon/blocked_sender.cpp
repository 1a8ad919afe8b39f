// A sender for the attribution test: what a page's or an app's traffic outside the tunnel looks
// like to the kill switch. Run under different names (symlinks: the process name is the name it
// was started as), users and cgroups.
//   blocked_sender udp ADDR PORT COUNT INTERVAL_MS      one socket, COUNT datagrams
//   blocked_sender tcp ADDR PORT COUNT INTERVAL_MS      COUNT connection attempts, each socket
//                                                       held 300 ms after it failed (an app retrying)
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
  if (proto == "udp") {
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    for (int i = 0; i < count; ++i) {
      if (sendto(fd, "leakguard", 9, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) ++refused;
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
