#include "probes/report.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "common/overloaded.hpp"

namespace leakguard::probes {
namespace {

bool in_prefix(const IpAddress& a, std::initializer_list<std::uint8_t> net, unsigned len) {
  std::size_t i = 0;
  for (auto byte : net) {
    const unsigned bits = std::min(8u, len > 8 * i ? len - 8 * static_cast<unsigned>(i) : 0u);
    if (bits == 0) break;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != (byte & mask)) return false;
    ++i;
  }
  return true;
}

std::string describe_source(const ProbeResult& p) {
  if (p.routed) return "route " + std::string(to_string(p.family));
  if (p.address_bound) return p.interface + " " + std::string(to_string(p.family)) + " by address";
  return p.interface + " " + std::string(to_string(p.family));
}

const Reflexive* reflexive_of(const ProbeResult& p) { return std::get_if<Reflexive>(&p.outcome); }

bool contains(const std::vector<IpAddress>& v, const IpAddress& a) { return std::find(v.begin(), v.end(), a) != v.end(); }

std::string join(const std::vector<IpAddress>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : ", ") + a.str();
  return s;
}

std::string pad(std::string s, std::size_t n) {
  if (s.size() < n) s.append(n - s.size(), ' ');
  return s;
}

// RFC 8445 §5.1.2.1: priority = 2^24 * type preference + 2^8 * local preference + (256 - component).
std::uint32_t ice_priority(std::uint32_t type_pref, std::uint32_t local_pref) {
  return (type_pref << 24) + (local_pref << 8) + (256 - 1);
}

// RFC 8445 §5.1.1.3: candidates share a foundation when type, base address, server and transport
// match. Browsers print a CRC-32 of those; so do we.
std::string foundation(std::string_view type, const std::string& base, const std::string& server, Transport t) {
  const std::string key = std::string(type) + "|" + base + "|" + server + "|" + std::string(to_string(t));
  return std::to_string(stun::crc32({reinterpret_cast<const std::uint8_t*>(key.data()), key.size()}));
}

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::ok: return "ok";
    case Verdict::leak: return "leak";
    case Verdict::exposed_host: return "exposed-host";
  }
  return "?";
}

std::string Interface::str() const {
  std::string s = name + " #" + index.str() + " (" + std::string(leakguard::to_string(cls)) + ")";
  for (const auto& a : addresses) s += " " + a.str();
  return s;
}

std::string ProbeResult::str() const {
  std::string s = describe_source(*this);
  if (source) s += " " + source->str();
  s += " -> " + server;
  if (server_address && server.find(server_address->address.str()) == std::string::npos)
    s += " (" + server_address->str() + ")";
  s += ": " + probes::str(outcome);
  if ((routed || address_bound) && !arrival_interface.empty()) s += " via " + arrival_interface;
  if (ignored > 0) s += "; ignored " + std::to_string(ignored) + " (" + ignored_reason + ")";
  return s;
}

bool is_public(const IpAddress& a, const ReportOptions& o) {
  if (a.family == Family::v4) {
    struct Net { std::initializer_list<std::uint8_t> net; unsigned len; };
    // RFC 6890 §2.2.2 (and its updates): not globally reachable.
    static const Net special[] = {{{0}, 8},        {{10}, 8},           {{100, 64}, 10},    {{127}, 8},
                                  {{169, 254}, 16}, {{172, 16}, 12},     {{192, 0, 0}, 24},  {{192, 168}, 16},
                                  {{198, 18}, 15},  {{224}, 4},          {{240}, 4}};
    for (const auto& n : special)
      if (in_prefix(a, n.net, n.len)) return false;
    const bool doc = in_prefix(a, {192, 0, 2}, 24) || in_prefix(a, {198, 51, 100}, 24) || in_prefix(a, {203, 0, 113}, 24);
    return !doc || o.documentation_is_public;
  }
  // IPv6: global unicast is 2000::/3 (RFC 4291 §2.4), minus the special-purpose blocks in it.
  if (!in_prefix(a, {0x20}, 3)) return false;
  if (in_prefix(a, {0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48)) return false;  // benchmarking (RFC 5180)
  if (in_prefix(a, {0x20, 0x01, 0x00, 0x10}, 28)) return false;              // ORCHID (RFC 4843)
  if (in_prefix(a, {0x20, 0x01, 0x0d, 0xb8}, 32)) return o.documentation_is_public;  // RFC 3849
  return true;
}

namespace {
// Whether the probe's answer is one of the report's exposures (device-bound TCP, see make_report).
bool is_exposure(const Report& r, const ProbeResult& p) {
  const auto* x = reflexive_of(p);
  return x && !p.routed && !p.address_bound && std::any_of(r.exposures.begin(), r.exposures.end(), [&](const Leak& l) {
           return l.interface == p.interface && l.server == p.server && l.family == p.family && l.reflexive == x->mapped;
         });
}
}  // namespace

std::vector<HostCandidate> Report::exposed() const {
  std::vector<HostCandidate> out;
  for (const auto& h : hosts)
    if (h.exposed) out.push_back(h);
  return out;
}

std::string Report::summary() const {
  std::string s(to_string(verdict));
  if (!leaks.empty()) {
    const auto& l = leaks.front();
    if (l.hop)
      s += ": " + l.hop->str() + " answered a datagram sent out of " + l.interface + " toward " + l.server;
    else
      s += ": " + l.reflexive.address.str() + " seen by " + l.server + " through " + (l.routed ? "the route via " : "") +
           (l.interface.empty() ? "?" : l.interface);
    if (leaks.size() > 1) s += " (+" + std::to_string(leaks.size() - 1) + " more)";
  } else if (verdict == Verdict::exposed_host) {
    auto e = exposed();
    s += ": " + e.front().address.str() + " on " + e.front().interface + " is readable by pages";
    if (e.size() > 1) s += " (+" + std::to_string(e.size() - 1) + " more)";
  }
  if (!exposures.empty()) {
    const auto& e = exposures.front();
    s += std::string(leaks.empty() && verdict != Verdict::exposed_host ? ": " : "; ") + "TCP via " + e.interface +
         " reaches " + e.server + " outside the tunnel (any local process, not a web page)";
    if (exposures.size() > 1) s += " (+" + std::to_string(exposures.size() - 1) + " more)";
  }
  if (!exits4.empty() || !exits6.empty()) {
    std::vector<IpAddress> all = exits4;
    all.insert(all.end(), exits6.begin(), exits6.end());
    s += "; tunnel exit " + join(all);
  }
  std::map<std::string_view, int> counts;
  for (const auto& p : probes) ++counts[kind(p.outcome)];
  s += "; " + std::to_string(probes.size()) + " probes";
  std::string c;
  for (const auto& [k, n] : counts) c += (c.empty() ? "" : ", ") + std::to_string(n) + " " + std::string(k);
  if (!c.empty()) s += " (" + c + ")";
  if (!hops.empty()) {
    std::map<std::string_view, int> hop_counts;
    for (const auto& h : hops) ++hop_counts[kind(h.outcome)];
    std::string hc;
    for (const auto& [k, n] : hop_counts) hc += (hc.empty() ? "" : ", ") + std::to_string(n) + " " + std::string(k);
    s += ", " + std::to_string(hops.size()) + " hop probes (" + hc + ")";
  }
  s += " in " + std::to_string(duration.count()) + " ms";
  return s;
}

Report make_report(const std::vector<Interface>& interfaces, std::vector<ProbeResult> probes, milliseconds duration,
                   const ReportOptions& options, std::vector<HopResult> hops) {
  Report r;
  r.duration = duration;

  // Tunnel exits: what servers saw through tunnel interfaces.
  for (const auto& p : probes) {
    const auto* x = reflexive_of(p);
    if (!x || p.routed || p.address_bound || p.cls != InterfaceClass::tunnel) continue;
    auto& v = p.family == Family::v4 ? r.exits4 : r.exits6;
    if (!contains(v, x->mapped.address)) v.push_back(x->mapped.address);
  }

  // Leaks.
  for (const auto& p : probes) {
    const auto* x = reflexive_of(p);
    if (!x) continue;
    Leak l{printable_ifname(p.interface), p.routed, p.family, x->mapped, p.server, {}, std::nullopt, p.address_bound};
    if (!p.routed && !p.address_bound) {
      if (p.cls == InterfaceClass::tunnel || p.cls == InterfaceClass::loopback) continue;
      if (p.transport == Transport::tcp && !options.strict) {
        l.why = "a TCP connection from a socket bound to " + l.interface + " (" + std::string(leakguard::to_string(p.cls)) +
                ") reached the server, which saw " + x->mapped.address.str() +
                ": any local process can do this, a web page cannot; policy strict closes it";
        r.exposures.push_back(std::move(l));
        continue;
      }
      l.why = "a request from " + l.interface + " (" + std::string(leakguard::to_string(p.cls)) +
              ") reached the server, which saw " + x->mapped.address.str();
    } else {
      // A page's own socket: routed, or bound to an interface's address (then it follows the
      // routes from that source). Judged by the way its answer came, else by the tunnel's exit.
      const auto& exits = r.exits(p.family);
      const std::string what = p.address_bound && p.source
                                   ? "the request from " + p.source->str() + " (bound by address, as a browser binds)"
                                   : "the routed request";
      l.interface = printable_ifname(p.address_bound && p.arrival_interface.empty() ? p.interface : p.arrival_interface);
      // A server on this machine: the request never left it.
      if (p.arrival_class == InterfaceClass::loopback) continue;
      if (p.arrival_class && *p.arrival_class != InterfaceClass::tunnel) {
        l.why = what + " left outside the tunnel: its answer came in through " + printable_ifname(p.arrival_interface);
      } else if (!exits.empty() && !contains(exits, x->mapped.address)) {
        l.why = what + " was seen as " + x->mapped.address.str() + ", not as the tunnel exit " + join(exits);
      } else if (!p.arrival_class && exits.empty()) {
        l.why = what + " was seen as " + x->mapped.address.str() + " and neither its path nor a tunnel exit is known";
      } else {
        continue;
      }
    }
    r.leaks.push_back(std::move(l));
  }

  // Hop probes: an answer from beyond this machine to a datagram sent outside the tunnel. Device-
  // bound like the bound STUN probes, and UDP, which the block stops in every policy: a leak.
  for (const auto& h : hops) {
    const auto* a = std::get_if<HopAnswer>(&h.outcome);
    if (!a || h.cls == InterfaceClass::tunnel || h.cls == InterfaceClass::loopback) continue;
    Leak l{printable_ifname(h.interface), false, h.family, {}, h.target_of, {}, a->from, false};
    l.why = "a datagram sent out of " + l.interface + " (" + std::string(leakguard::to_string(h.cls)) + ") toward " +
            h.target.str() + " with TTL " + std::to_string(a->ttl) + " was answered by " + a->from.str() + " (" +
            icmp_text(h.family, a->icmp_type, a->icmp_code) + "): it left this machine outside the tunnel";
    r.leaks.push_back(std::move(l));
  }

  // Host candidates: what a page enumerates. Browsers leave out loopback and IPv6 link-local.
  for (const auto& itf : interfaces) {
    if (itf.cls == InterfaceClass::loopback) continue;
    for (const auto& a : itf.addresses) {
      if (a.is_loopback() || a.is_multicast() || a.is_unspecified()) continue;
      if (a.family == Family::v6 && a.is_link_local()) continue;
      HostCandidate h{printable_ifname(itf.name), itf.cls, a, 9, is_public(a, options), false};
      bool translated = false;
      bool have_port = false;
      for (const auto& p : probes) {
        if (p.routed || p.address_bound || p.interface != itf.name || !p.source || *p.source != a) continue;
        if (!have_port && p.local_port != 0) {
          h.port = p.local_port;
          have_port = true;
        }
        if (const auto* x = reflexive_of(p); x && x->mapped.address != a) translated = true;
      }
      // A server that saw another address proves this one is not what the internet knows us by.
      h.exposed = h.is_public && !translated && itf.cls != InterfaceClass::tunnel;
      r.hosts.push_back(h);
    }
  }

  r.probes = std::move(probes);
  r.hops = std::move(hops);
  // A report is for people, logs, JSON and D-Bus: every interface name in it is printable (the
  // kernel allows bytes that are not UTF-8, which JSON and D-Bus refuse). Matching by the real
  // names is done above.
  for (auto& p : r.probes) {
    p.interface = printable_ifname(p.interface);
    p.arrival_interface = printable_ifname(p.arrival_interface);
  }
  for (auto& h : r.hops) h.interface = printable_ifname(h.interface);
  if (!r.leaks.empty()) r.verdict = Verdict::leak;
  else if (std::any_of(r.hosts.begin(), r.hosts.end(), [](const HostCandidate& h) { return h.exposed; }))
    r.verdict = Verdict::exposed_host;
  else r.verdict = Verdict::ok;
  return r;
}

std::string to_text(const Report& r) {
  std::string out;
  std::string head(to_string(r.verdict));
  std::transform(head.begin(), head.end(), head.begin(), [](char c) { return c == '-' ? '-' : static_cast<char>(std::toupper(c)); });
  out += "verdict: " + head;
  if (r.verdict == Verdict::leak)
    out += std::all_of(r.leaks.begin(), r.leaks.end(), [](const Leak& l) { return l.hop.has_value(); })
               ? " - a datagram left this machine outside the tunnel (a router answered)"
               : " - a STUN server saw this machine outside the tunnel";
  else if (r.verdict == Verdict::exposed_host) out += " - no reflexive leak, but a page can read a public local address";
  else out += " - no reflexive address came back outside the tunnel";
  out += "\n";
  out += "tunnel exit: ipv4 " + (r.exits4.empty() ? std::string("-") : join(r.exits4)) + ", ipv6 " +
         (r.exits6.empty() ? std::string("-") : join(r.exits6)) + "\n";
  if (!r.leaks.empty()) {
    out += "\nleaks:\n";
    for (const auto& l : r.leaks)
      out += "  " + pad(l.routed ? "route" : l.interface, 8) + pad(std::string(to_string(l.family)), 6) +
             pad(l.hop ? "hop " + l.hop->str() : l.reflexive.address.str(), 18) + " " + l.server + ": " + l.why + "\n";
  }
  if (!r.exposures.empty()) {
    out += "\nexposures (any local process, not a web page; policy strict closes them):\n";
    for (const auto& l : r.exposures)
      out += "  " + pad(l.interface, 8) + pad(std::string(to_string(l.family)), 6) + pad(l.reflexive.address.str(), 18) + " " +
             l.server + ": " + l.why + "\n";
  }
  out += "\nhost candidates (what a page can read):\n";
  if (r.hosts.empty()) out += "  (none)\n";
  for (const auto& h : r.hosts)
    out += "  " + pad(h.interface, 10) + pad(std::string(leakguard::to_string(h.cls)), 10) + pad(h.address.str(), 28) +
           (h.exposed ? "public, EXPOSED" : h.is_public ? "public" : "") + "\n";
  out += "\nprobes:\n";
  for (const auto& p : r.probes) {
    bool leak = std::any_of(r.leaks.begin(), r.leaks.end(), [&](const Leak& l) {
      return l.routed == p.routed && l.address_bound == p.address_bound && l.server == p.server && l.family == p.family && reflexive_of(p) &&
             l.reflexive == reflexive_of(p)->mapped;
    });
    const bool exposure = !leak && is_exposure(r, p);
    out += "  " + p.str() + (leak ? "   <- LEAK" : exposure ? "   <- exposure" : "") + "\n";
  }
  if (!r.hops.empty()) {
    out += "\nhop probes (UDP with TTL 1..n out of each non-tunnel interface; any answer is a path out):\n";
    for (const auto& h : r.hops)
      out += "  " + h.str() + (std::holds_alternative<HopAnswer>(h.outcome) ? "   <- LEAK" : "") + "\n";
  }
  out += "\n" + std::to_string(r.probes.size()) + " probes" +
         (r.hops.empty() ? std::string() : " and " + std::to_string(r.hops.size()) + " hop probes") + " in " +
         std::to_string(r.duration.count()) + " ms\n";
  return out;
}

namespace {
// The fields of the outcomes a STUN probe and a hop probe share.
void put_outcome(nlohmann::json& q, const Blocked& b) {
  q["errno"] = b.error;
  q["error"] = errno_name(b.error);
  q["firewall"] = refused_by_firewall(b.error);
}
void put_outcome(nlohmann::json& q, const LocalFailure& f) {
  q["step"] = f.step;
  q["errno"] = f.error;
  q["message"] = f.message;
}
}  // namespace

nlohmann::json to_json(const Report& r) {
  using nlohmann::json;
  auto addrs = [](const std::vector<IpAddress>& v) {
    json a = json::array();
    for (const auto& x : v) a.push_back(x.str());
    return a;
  };
  json j;
  j["verdict"] = std::string(to_string(r.verdict));
  j["summary"] = r.summary();
  j["duration_ms"] = r.duration.count();
  j["tunnel_exits"] = {{"ipv4", addrs(r.exits4)}, {"ipv6", addrs(r.exits6)}};
  auto findings = [](const std::vector<Leak>& v) {
    json a = json::array();
    for (const auto& l : v)
      a.push_back({{"interface", l.interface},
                   {"routed", l.routed},
                   {"address_bound", l.address_bound},
                   {"family", std::string(to_string(l.family))},
                   {"reflexive", l.hop ? json(nullptr) : json(l.reflexive.address.str())},
                   {"port", l.hop ? json(nullptr) : json(l.reflexive.port)},
                   {"hop", l.hop ? json(l.hop->str()) : json(nullptr)},
                   {"server", l.server},
                   {"why", l.why}});
    return a;
  };
  j["leaks"] = findings(r.leaks);
  j["exposures"] = findings(r.exposures);
  j["hosts"] = json::array();
  for (const auto& h : r.hosts)
    j["hosts"].push_back({{"interface", h.interface},
                          {"class", std::string(leakguard::to_string(h.cls))},
                          {"family", std::string(to_string(h.address.family))},
                          {"address", h.address.str()},
                          {"port", h.port},
                          {"public", h.is_public},
                          {"exposed", h.exposed}});
  j["probes"] = json::array();
  for (const auto& p : r.probes) {
    json q{{"routed", p.routed},
           {"address_bound", p.address_bound},
           {"interface", p.routed ? json(nullptr) : json(p.interface)},
           {"class", p.routed ? json(nullptr) : json(std::string(leakguard::to_string(p.cls)))},
           {"family", std::string(to_string(p.family))},
           {"source", p.source ? json(p.source->str()) : json(nullptr)},
           {"local_port", p.local_port},
           {"server", p.server},
           {"server_address", p.server_address ? json(p.server_address->str()) : json(nullptr)},
           {"transport", std::string(to_string(p.transport))},
           {"outcome", std::string(kind(p.outcome))},
           {"detail", str(p.outcome)},
           {"arrival_interface", p.arrival_interface.empty() ? json(nullptr) : json(p.arrival_interface)},
           {"ignored", p.ignored},
           {"elapsed_ms", p.elapsed.count()}};
    if (!p.ignored_reason.empty()) q["ignored_reason"] = p.ignored_reason;
    std::visit(overloaded{[&](const Reflexive& x) {
                            q["reflexive"] = x.mapped.address.str();
                            q["reflexive_port"] = x.mapped.port;
                            q["legacy"] = x.legacy;
                            q["rtt_ms"] = x.rtt.count();
                            q["attempts"] = x.attempts;
                          },
                          [&](const Blocked& b) { put_outcome(q, b); },
                          [&](const TimedOut& t) { q["attempts"] = t.attempts; },
                          [&](const ServerError& e) {
                            q["code"] = e.error.code;
                            q["reason"] = e.error.reason;
                          },
                          [&](const LocalFailure& f) { put_outcome(q, f); }},
               p.outcome);
    j["probes"].push_back(std::move(q));
  }
  j["hops"] = json::array();
  for (const auto& h : r.hops) {
    json q{{"interface", h.interface},
           {"class", std::string(leakguard::to_string(h.cls))},
           {"family", std::string(to_string(h.family))},
           {"source", h.source ? json(h.source->str()) : json(nullptr)},
           {"target", h.target.str()},
           {"target_of", h.target_of},
           {"max_ttl", h.max_ttl},
           {"sent", h.sent},
           {"outcome", std::string(kind(h.outcome))},
           {"detail", str(h.outcome)},
           {"elapsed_ms", h.elapsed.count()}};
    std::visit(overloaded{[&](const HopAnswer& a) {
                            q["hop"] = a.from.str();
                            q["ttl"] = a.ttl;
                            q["icmp"] = icmp_text(h.family, a.icmp_type, a.icmp_code);
                            q["rtt_ms"] = a.rtt.count();
                          },
                          [&](const Blocked& b) { put_outcome(q, b); },
                          [](const TimedOut&) {},
                          [&](const LocalFailure& f) { put_outcome(q, f); }},
               h.outcome);
    j["hops"].push_back(std::move(q));
  }
  // Two grouped views for renderers: per interface (the routed probe as "route"), and every
  // reflexive address found.
  j["interfaces"] = json::array();
  auto group = [&](const std::string& name, const std::string& cls) -> json& {
    for (auto& g : j["interfaces"])
      if (g["name"] == name) return g;
    j["interfaces"].push_back({{"name", name}, {"class", cls}, {"verdict", "ok"}, {"results", json::array()}});
    return j["interfaces"].back();
  };
  j["reflexive"] = json::array();
  for (const auto& p : r.probes) {
    const std::string name = p.routed ? "route" : p.address_bound ? p.interface + " by address" : p.interface;
    json& g = group(name, p.routed ? "route" : std::string(leakguard::to_string(p.cls)));
    const auto* x = reflexive_of(p);
    const bool leak = x && std::any_of(r.leaks.begin(), r.leaks.end(), [&](const Leak& l) {
      return l.routed == p.routed && l.address_bound == p.address_bound && l.server == p.server && l.family == p.family &&
             l.reflexive == x->mapped;
    });
    const bool exposure = !leak && is_exposure(r, p);
    if (leak) g["verdict"] = "leak";
    else if (exposure && g["verdict"] == "ok") g["verdict"] = "exposure";
    g["results"].push_back({{"family", std::string(to_string(p.family))},
                            {"server", p.server},
                            {"outcome", std::string(kind(p.outcome))},
                            {"detail", str(p.outcome)},
                            {"sent", p.sent},
                            {"reflexive", x ? json(x->mapped.address.str()) : json(nullptr)}});
    if (x)
      j["reflexive"].push_back({{"address", x->mapped.address.str()},
                                {"port", x->mapped.port},
                                {"interface", p.routed          ? (p.arrival_interface.empty() ? "route" : "route via " + p.arrival_interface)
                                              : p.address_bound ? p.interface + " by address"
                                                                : p.interface},
                                {"family", std::string(to_string(p.family))},
                                {"server", p.server},
                                {"rtt_ms", x->rtt.count()},
                                {"leak", leak},
                                {"exposure", exposure}});
  }
  // Hop probes under their interface: one line each, a leak if answered.
  for (const auto& h : r.hops) {
    json& g = group(h.interface, std::string(leakguard::to_string(h.cls)));
    const bool answered = std::holds_alternative<HopAnswer>(h.outcome);
    if (answered) g["verdict"] = "leak";
    g["results"].push_back({{"family", std::string(to_string(h.family))},
                            {"server", "hops toward " + h.target_of},
                            {"outcome", std::string(kind(h.outcome))},
                            {"detail", str(h.outcome)},
                            {"reflexive", nullptr},
                            {"leak", answered}});
  }
  // "ok" is a claim about what was tested: a group whose every probe failed here tested nothing;
  // a tunnel no server answered showed no way through it, and neither did the routed probe when
  // nothing answered it and nothing refused it (refused is the block holding: ok).
  for (auto& g : j["interfaces"]) {
    if (g["verdict"] != "ok") continue;
    const auto& rs = g["results"];
    auto any = [&](const char* outcome) { return std::any_of(rs.begin(), rs.end(), [&](const json& x) { return x["outcome"] == outcome; }); };
    const bool all_failed = std::all_of(rs.begin(), rs.end(), [](const json& x) { return x["outcome"] == "failed"; });
    const bool answered = any("reflexive");
    if (all_failed) g["verdict"] = "not tested";
    else if (g["class"] == "tunnel" && !answered) g["verdict"] = "no answer";
    else if (g["name"] == "route" && !answered && !any("blocked")) g["verdict"] = "no answer";
  }
  return j;
}

std::vector<std::string> ice_candidates(const Report& r) {
  std::vector<std::string> lines;
  // Local preference: the first host address gets the highest, as a browser prefers its first
  // network; it only orders candidates and has no meaning across machines.
  auto local_pref = [&](const std::optional<IpAddress>& base) -> std::uint32_t {
    for (std::size_t i = 0; i < r.hosts.size(); ++i)
      if (base && r.hosts[i].address == *base) return static_cast<std::uint32_t>(65535 - std::min<std::size_t>(i, 65535));
    return 0;
  };
  for (const auto& h : r.hosts) {
    const auto base = std::optional<IpAddress>(h.address);
    lines.push_back("candidate:" + foundation("host", h.address.str(), "", Transport::udp) + " 1 udp " +
                    std::to_string(ice_priority(126, local_pref(base))) + " " + h.address.str() + " " +
                    std::to_string(h.port) + " typ host");
  }
  std::set<std::string> seen;
  for (const auto& p : r.probes) {
    const auto* x = reflexive_of(p);
    if (!x) continue;
    const std::string base = p.source ? p.source->str() : (p.family == Family::v4 ? "0.0.0.0" : "::");
    const std::string proto(to_string(p.transport));
    std::string line = "candidate:" + foundation("srflx", base, p.server, p.transport) + " 1 " + proto + " " +
                       std::to_string(ice_priority(100, local_pref(p.source))) + " " + x->mapped.address.str() + " " +
                       std::to_string(x->mapped.port) + " typ srflx raddr " + base + " rport " +
                       std::to_string(p.local_port);
    if (p.transport == Transport::tcp) line += " tcptype active";  // RFC 6544 §4.5
    if (seen.insert(line).second) lines.push_back(line);
  }
  return lines;
}

}  // namespace leakguard::probes
