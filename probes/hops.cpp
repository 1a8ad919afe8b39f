#include "probes/hops.hpp"

#include <algorithm>

#include "common/overloaded.hpp"

namespace leakguard::probes {

std::string_view kind(const HopOutcome& o) {
  return std::visit(overloaded{[](const HopAnswer&) { return std::string_view("answered"); },
                               [](const Blocked&) { return std::string_view("blocked"); },
                               [](const TimedOut&) { return std::string_view("silent"); },
                               [](const LocalFailure&) { return std::string_view("failed"); }},
                    o);
}

std::string icmp_text(Family f, std::uint8_t type, std::uint8_t code) {
  if (f == Family::v4) {
    if (type == 11) return "time exceeded";
    if (type == 3) {
      switch (code) {
        case 0: return "network unreachable";
        case 1: return "host unreachable";
        case 3: return "port unreachable";
        case 9:
        case 10:
        case 13: return "admin prohibited";
        default: return "unreachable (code " + std::to_string(code) + ")";
      }
    }
  } else {
    if (type == 3) return "time exceeded";
    if (type == 1) {
      switch (code) {
        case 0: return "no route";
        case 1: return "admin prohibited";
        case 3: return "address unreachable";
        case 4: return "port unreachable";
        default: return "unreachable (code " + std::to_string(code) + ")";
      }
    }
  }
  return "type " + std::to_string(type) + " code " + std::to_string(code);
}

std::string str(const HopOutcome& o) {
  return std::visit(
      overloaded{[](const HopAnswer& a) {
                   return "answered by " + a.from.str() + " at TTL " + std::to_string(a.ttl) + " (" +
                          icmp_text(a.from.family, a.icmp_type, a.icmp_code) + ") after " + std::to_string(a.rtt.count()) +
                          " ms";
                 },
                 [](const Blocked& b) { return probes::str(Outcome{b}); },
                 [](const TimedOut&) { return std::string("silent (no hop answered)"); },
                 [](const LocalFailure& f) { return probes::str(Outcome{f}); }},
      o);
}

std::string HopResult::str() const {
  std::string s = interface + " " + std::string(to_string(family));
  if (source) s += " " + source->str();
  s += " -> " + target.str();
  if (target_of != target.str()) s += " (" + target_of + ")";
  s += ", TTL 1-" + std::to_string(max_ttl) + ": " + probes::str(outcome);
  return s;
}

int ttl_of_port(std::uint16_t port, int max_ttl, std::uint16_t port_base) {
  if (port < port_base) return 0;
  const int ttl = port - port_base + 1;
  return ttl <= max_ttl ? ttl : 0;
}

std::uint16_t pick_hop_port_base(std::span<const std::uint16_t> udp_ports, int max_ttl) {
  auto clashes = [&](int b) {
    return std::any_of(udp_ports.begin(), udp_ports.end(), [&](std::uint16_t p) { return p >= b && p < b + max_ttl; });
  };
  for (int b = kHopPortBase; b + max_ttl <= 65535; b += 100)
    if (!clashes(b)) return static_cast<std::uint16_t>(b);
  return kHopPortBase;  // an endpoint port in each of the ~320 ranges: not a real configuration
}

HopSignal classify(const QueuedError& e, std::span<const IpAddress> local, int max_ttl, std::uint16_t port_base) {
  if (!e.icmp || !e.offender || ttl_of_port(e.port, max_ttl, port_base) == 0) return HopSignal::ignored;
  const IpAddress& from = *e.offender;
  // Our own reject (nft `reject` in output) answers from this machine; so does the kernel for a
  // datagram it could not route. Neither means the datagram left.
  if (from.is_loopback() || from.is_unspecified() || std::find(local.begin(), local.end(), from) != local.end())
    return HopSignal::refused_here;
  return HopSignal::answered;
}

}  // namespace leakguard::probes
