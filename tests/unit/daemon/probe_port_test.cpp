// What the daemon makes of a probe report (daemon/probe_port.cpp): the round's verdict, and the
// report everyone reads headed by it. No root, no network: a report made from values.
#include <doctest/doctest.h>

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
