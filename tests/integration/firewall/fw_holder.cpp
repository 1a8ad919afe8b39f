// A stand-in daemon for the fail-closed test: enters a namespace, installs the table with the
// same policy the test uses, says "ready <portid>" on stdout and holds the table until it is
// killed (or its stdin closes). Usage: fw_holder NETNS
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "firewall/firewall.hpp"

using namespace leakguard;
using namespace leakguard::firewall;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fw_holder NETNS\n");
    return 2;
  }
  const std::string path = std::string("/run/netns/") + argv[1];
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    std::perror(path.c_str());
    return 2;
  }
  close(fd);
  auto fw = Firewall::open();
  if (!fw) {
    std::printf("error %s\n", fw.error().str().c_str());
    return 1;
  }
  Policy p;
  p.tunnels = {*IfnamePattern::parse("tun0")};
  p.endpoints = {*Endpoint::parse("192.0.2.2:5001/udp")};
  if (auto r = fw->apply(p); !r) {
    std::printf("error %s\n", r.error().str().c_str());
    return 1;
  }
  std::printf("ready %u %s\n", fw->portid(), fw->owns_table() ? "owner" : "no-owner");
  std::fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
