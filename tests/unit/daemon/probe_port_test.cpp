// What the daemon makes of a probe report (daemon/probe_port.cpp): the round's verdict, and the
// report everyone reads headed by it. No root, no network: a report made from values.
#include <doctest/doctest.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "daemon/probe_port.hpp"
#include "probes/report.hpp"

using namespace leakguard;

TEST_CASE("a round the tunnel did not answer: unverified, and the report says so first - the prober's ok beside it") {
  // Nothing probed, nothing leaked: the prober's verdict is ok, but no VPN exit was seen.
  const auto o = daemon::to_outcome(probes::make_report({}, {}, probes::milliseconds{5}));
  CHECK(o.verdict == daemon::ProbeVerdict::unverified);
  CHECK(o.verdict_text == "unverified");
  const auto j = nlohmann::json::parse(o.json);
  CHECK(j["verdict"] == "unverified");  // what ProbeNow, LastProbe and GetStatus carry
  CHECK(j["report_verdict"] == "ok");   // the prober's own
}

TEST_CASE("a round whose probes could not be made (out of file descriptors) is unverified, not ok") {
  using probes::ProbeResult;
  const std::vector<probes::Interface> itfs = {
      {"eth0", IfIndex{2}, InterfaceClass::physical, {*IpAddress::parse("192.0.2.10")}},
      {"wg0", IfIndex{3}, InterfaceClass::tunnel, {*IpAddress::parse("100.64.0.2")}},
  };
  auto probe = [](const char* itf, InterfaceClass cls, const char* source, probes::Outcome o) {
    ProbeResult p;
    p.interface = itf;
    p.cls = cls;
    p.source = *IpAddress::parse(source);
    p.family = Family::v4;
    p.server = "203.0.113.3:3478/udp";
    p.outcome = std::move(o);
    return p;
  };
  const probes::Reflexive exit{{*IpAddress::parse("203.0.113.66"), 50000}, false, probes::milliseconds{3}, 1};
  // A round whose tunnel answered, with eth0's probe ending as `eth0`.
  auto round = [&](probes::Outcome eth0) {
    return daemon::to_outcome(probes::make_report(
        itfs, {probe("wg0", InterfaceClass::tunnel, "100.64.0.2", exit), probe("eth0", InterfaceClass::physical, "192.0.2.10", eth0)},
        probes::milliseconds{5}));
  };
  // The control: eth0's probe was refused by the firewall - ok.
  CHECK(round(probes::Blocked{EPERM}).verdict == daemon::ProbeVerdict::ok);
  // eth0's probe never existed: nothing is known of that path.
  const auto starved = round(probes::LocalFailure{"open socket", EMFILE, "Too many open files"});
  CHECK(starved.verdict == daemon::ProbeVerdict::unverified);
  CHECK(starved.summary.rfind("1 probe could not be made (Too many open files)", 0) == 0);
  CHECK(nlohmann::json::parse(starved.json)["verdict"] == "unverified");
  // Another local failure (a device gone) is not a blind spot of this machine's making.
  const auto other = round(probes::LocalFailure{"bind to device", ENODEV, "No such device"});
  CHECK(other.verdict == daemon::ProbeVerdict::ok);
}
