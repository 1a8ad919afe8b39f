#include "probes/own_ports.hpp"

#include <map>
#include <mutex>
#include <tuple>

namespace leakguard::probes {
namespace {
using Key = std::tuple<std::uint8_t, Family, std::uint16_t>;
std::mutex mu;
std::map<Key, std::chrono::steady_clock::time_point> ports;
}  // namespace

void note_own_port(std::uint8_t protocol, Family family, std::uint16_t port) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu);
  if (ports.size() > 4096)
    std::erase_if(ports, [&](const auto& e) { return now - e.second > kOwnPortMemory; });
  ports[{protocol, family, port}] = now;
}

bool is_own_port(std::uint8_t protocol, Family family, std::uint16_t port) {
  std::lock_guard lock(mu);
  auto it = ports.find({protocol, family, port});
  return it != ports.end() && std::chrono::steady_clock::now() - it->second <= kOwnPortMemory;
}

}  // namespace leakguard::probes
