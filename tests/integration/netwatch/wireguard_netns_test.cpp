// Following a userspace WireGuard's peers (netwatch/wireguard_read.cpp) with the real wireguard-go:
// its UAPI socket is named by interface alone in /run/wireguard, which network namespaces share,
// so the same name in another namespace must not be taken for ours.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "netwatch/wireguard.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace std::chrono_literals;

TEST_CASE("a userspace WireGuard of the same name in another network namespace is not followed") {
  lab::Netns ours("wgours");
  lab::Netns theirs("wgtheirs");
  // Its own /run/wireguard (bound over the machine's for wireguard-go and wg alone), as two
  // namespaces with a "wg0" each share one: the daemon reads the same path from ours.
  const std::string dir = "/tmp/" + lab::unique_name("wgrun");
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::string d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};
  // In a mount namespace of its own (unshare -m, private): lab::Process only enters the network
  // namespace, and the bind mount must not reach the machine's /run/wireguard.
  const std::string in_dir = "mkdir -p /run/wireguard && mount --bind \"$0\" /run/wireguard && exec \"$@\"";
  lab::Process wg_go(theirs.name(),
                     {"unshare", "--mount", "--propagation", "private", "sh", "-c", in_dir, dir, "wireguard-go", "-f", "lgtwg0"});
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!std::filesystem::exists(dir + "/lgtwg0.sock") && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  REQUIRE_MESSAGE(std::filesystem::exists(dir + "/lgtwg0.sock"), "wireguard-go did not start");
  const std::string keyfile = dir + "/key";
  REQUIRE(lab::run({"sh", "-c", "umask 077 && wg genkey > \"$0\"", keyfile}).status == 0);
  auto pub = lab::run({"sh", "-c", "wg genkey | wg pubkey"});  // a peer's (not the device's own key)
  REQUIRE(pub.status == 0);
  auto set = theirs.run({"unshare", "--mount", "--propagation", "private", "sh", "-c", in_dir, dir, "wg", "set", "lgtwg0", "private-key", keyfile, "peer",
                         pub.out.substr(0, pub.out.find('\n')), "endpoint", "198.51.100.1:51820", "allowed-ips", "0.0.0.0/0"});
  REQUIRE_MESSAGE(set.status == 0, set.out);

  SUBCASE("read from its own namespace (the control): its peer") {
    lab::NetnsScope in(theirs.name());
    auto peers = netwatch::read_wireguard_peers("lgtwg0", "tun", dir);
    REQUIRE_MESSAGE(peers, peers.error().str());
    REQUIRE(*peers);
    REQUIRE((*peers)->size() == 1);
    CHECK((*peers)->front().str() == "198.51.100.1:51820/udp");
  }
  SUBCASE("read from another namespace: refused, naming why") {
    lab::NetnsScope in(ours.name());
    auto peers = netwatch::read_wireguard_peers("lgtwg0", "tun", dir);
    REQUIRE_FALSE(peers);
    CHECK_MESSAGE(peers.error().message.find("served from another network namespace") != std::string::npos, peers.error().str());
  }
}
