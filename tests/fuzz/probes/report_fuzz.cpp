// Fuzz target: every writer that turns interface names from the kernel into JSON, text or D-Bus
// strings (issue 14, finding 7: a non-UTF-8 interface name crashed the daemon on every probe
// round). The input is up to four interface names (NUL-separated, as the kernel would give them:
// 1..15 bytes of anything but NUL); each becomes an interface with addresses and a probe that got
// a reflexive address, the last one also the arrival interface of the routed probe; and a
// per-interface counter and a link of the network model (and interface and application labels of
// the metrics text). Every writer must then give valid UTF-8
// (nlohmann's strict dump() throws otherwise: a finding) that parses back.
// A replay test always; a libFuzzer binary with clang (-DLEAKGUARD_FUZZ=ON).
#include <net/if.h>
#include <linux/if_arp.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/metrics.hpp"
#include "daemon/probe_port.hpp"
#include "firewall/counters.hpp"
#include "netwatch/model.hpp"
#include "probes/report.hpp"

using namespace leakguard;

namespace {

// Strict: throws nlohmann::json::type_error on a string that is not UTF-8.
void must_be_utf8(const nlohmann::json& j) {
  const std::string text = j.dump();
  if (nlohmann::json::parse(text, nullptr, false).is_discarded()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> names;
  std::string cur;
  for (std::size_t i = 0; i < size && names.size() < 4; ++i) {
    if (data[i] == 0) {
      if (!cur.empty()) names.push_back(cur);
      cur.clear();
    } else if (cur.size() < IFNAMSIZ - 1) {
      cur += static_cast<char>(data[i]);
    }
  }
  if (!cur.empty() && names.size() < 4) names.push_back(cur);
  if (names.empty()) return 0;
  const bool doc_public = size > 0 && (data[size - 1] & 1);

  std::vector<probes::Interface> ifs;
  std::vector<probes::ProbeResult> results;
  netwatch::NetModel model;
  std::vector<firewall::InterfaceCounter> counters;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto n = static_cast<std::uint8_t>(i);
    probes::Interface itf;
    itf.name = names[i];
    itf.index = IfIndex{static_cast<std::uint32_t>(i + 2)};
    itf.cls = i == 1 ? InterfaceClass::tunnel : InterfaceClass::physical;
    itf.addresses = {*IpAddress::parse("192.0.2." + std::to_string(10 + n)),
                     *IpAddress::parse("2001:db8::" + std::to_string(10 + n))};
    ifs.push_back(itf);
    probes::ProbeResult p;
    p.interface = names[i];
    p.index = itf.index;
    p.cls = itf.cls;
    p.source = itf.addresses.front();
    p.local_port = static_cast<std::uint16_t>(40000 + n);
    p.server = "203.0.113.3:3478/udp";
    p.outcome = probes::Reflexive{{*IpAddress::parse("203.0.113." + std::to_string(20 + n)), 4000}, false, {}, 1};
    p.arrival_interface = names[i];
    p.arrival_class = itf.cls;
    results.push_back(p);

    netwatch::Link l;
    l.index = itf.index;
    l.name = names[i];
    l.kind = names[(i + 1) % names.size()];
    l.type = ARPHRD_ETHER;
    l.flags = IFF_UP | IFF_RUNNING;
    model.apply(netwatch::Added<netwatch::Link>{l});
    counters.push_back({"ifstat_out", names[i], static_cast<std::uint8_t>(i % 2 ? 6 : 17), 1 + i, 100});
  }
  probes::ProbeResult routed;
  routed.routed = true;
  routed.server = "[2001:db8:3::3]:3478/tcp";
  routed.family = Family::v6;
  routed.outcome = probes::Reflexive{{*IpAddress::parse("2001:db8:3::2"), 4000}, false, {}, 1};
  routed.arrival_interface = names.back();
  routed.arrival_class = InterfaceClass::physical;
  results.push_back(routed);

  // Hop probes out of every interface, the even ones answered by a router (a leak naming it).
  std::vector<probes::HopResult> hops;
  for (std::size_t i = 0; i < ifs.size(); ++i) {
    probes::HopResult h;
    h.interface = ifs[i].name;
    h.cls = ifs[i].cls;
    h.source = ifs[i].addresses.front();
    h.target = *IpAddress::parse("203.0.113.3");
    h.target_of = "203.0.113.3:3478/udp";
    if (i % 2 == 0) h.outcome = probes::HopAnswer{*IpAddress::parse("192.0.2.1"), 1, 11, 0, {}};
    hops.push_back(h);
  }

  // The probe report: JSON, text, summary, candidate lines.
  const auto report =
      probes::make_report(ifs, results, probes::milliseconds{5}, {.documentation_is_public = doc_public, .strict = false}, hops);
  must_be_utf8(probes::to_json(report));
  must_be_utf8(nlohmann::json{probes::to_text(report), report.summary(), probes::ice_candidates(report)});
  // What the daemon makes of it: the log line, the D-Bus LeakDetected arguments, LastProbe.
  const auto outcome = daemon::to_outcome(report);
  nlohmann::json leaks = nlohmann::json::array();
  for (const auto& l : outcome.leaks) leaks.push_back({l.interface, l.family, l.reflexive, l.server, l.hop});
  must_be_utf8(nlohmann::json{outcome.summary, outcome.verdict_text, leaks});
  if (nlohmann::json::parse(outcome.json, nullptr, false).is_discarded()) std::abort();

  // The status: blocked counters per interface, and the network as the daemon sees it.
  const auto c = firewall::make_counters({{"output", "udp-out", 3, 300}}, counters);
  nlohmann::json cj = nlohmann::json::array();
  for (const auto& x : c) cj.push_back({x.kind, x.direction, x.interface_or_scope, x.str()});
  must_be_utf8(nlohmann::json{firewall::summarize(c), cj});
  must_be_utf8(netwatch::to_json(model, netwatch::Classifier{{*IfnamePattern::parse("wg*")}}));

  // The metrics text (daemon/metrics.hpp), the raw names as interface and application labels:
  // valid UTF-8, and every line a comment or one of our samples (no label value broke a line).
  nlohmann::json fw_counters = nlohmann::json::array(), apps = nlohmann::json::array();
  for (const auto& name : names) {
    fw_counters.push_back({{"kind", "udp"}, {"direction", "out"}, {"scope", name}, {"packets", 1}, {"bytes", 1}});
    apps.push_back({{"app", name}, {"unit", name}, {"uid", 0}, {"packets", 1}});
  }
  const std::string prom =
      daemon::render_metrics({{"firewall", {{"counters", fw_counters}}}, {"blocked", {{"apps", apps}}}}, 0);
  must_be_utf8(nlohmann::json{prom});
  for (std::size_t at = 0; at < prom.size();) {
    if (prom.compare(at, 2, "# ") != 0 && prom.compare(at, 10, "leakguard_") != 0) std::abort();
    const auto nl = prom.find('\n', at);
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return 0;
}
