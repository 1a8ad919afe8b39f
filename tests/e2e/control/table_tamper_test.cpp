// TableTampered end to end: leakguardd in the lab, `nft` run by another process in the same
// namespace against table inet leakguard, and `leakguardctl monitor --json` as the witness.
//  - Without the owner flag (--no-table-owner) the kernel lets a foreign `nft delete table` through:
//    the table guard restores the table and the daemon signals who did it.
//  - With the owner flag (the default, owner+persist on this kernel) the kernel refuses every
//    foreign change to the table with EPERM (delete, flush, add/delete rule, chain, set element);
//    `nft flush ruleset` succeeds but leaves our table alone. Nothing changes, so nothing is signalled.
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
using namespace leakguard::e2e;
namespace lab = leakguard::lab;

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The monitor's lines for one signal, parsed.
std::vector<nlohmann::json> signals_named(const std::string& log, const std::string& name) {
  std::vector<nlohmann::json> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("signal", "") == name) out.push_back(j);
  }
  return out;
}

// Our table's chains and rules as the kernel lists them, without counters (-s) or handles: equal
// before and after means the same rules are in place.
nlohmann::json rules(const Rig& rig) {
  auto r = rig.net.run("host", {"nft", "-j", "-s", "list", "table", "inet", "leakguard"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  nlohmann::json out = nlohmann::json::array();
  if (r.status != 0 || j.is_discarded() || !j.contains("nftables")) return out;
  for (auto& o : j["nftables"]) {
    for (const char* kind : {"chain", "rule"}) {
      if (!o.contains(kind)) continue;
      auto x = o[kind];
      x.erase("handle");
      out.push_back({{kind, x}});
    }
  }
  return out;
}

// Starts the daemon, waits for `secured` with the owner flag as asked, and returns its rules.
nlohmann::json start_secured(Rig& rig, bool owner) {
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  CHECK(rig.status()["firewall"]["owner"] == owner);
  auto r = rules(rig);
  REQUIRE(r.size() > 3);
  return r;
}

// A monitor that is known to be listening: it has shown the answer to a ProbeNow.
struct Monitor {
  const std::string log;
  lab::Process process;
  Monitor(Rig& rig)
      : log(rig.dir + "/monitor.log"), process("", {LEAKGUARDCTL_DIR "/leakguardctl", "monitor", "--json"}, log) {
    REQUIRE(eventually([&] { return rig.ctl({"probe"}).status == 0 && !seen("ProbeCompleted").empty(); }, 10s));
  }
  std::vector<nlohmann::json> seen(const std::string& name) const { return signals_named(read_file(log), name); }
};

}  // namespace

TEST_CASE("owner flag off: a foreign nft delete table is restored and TableTampered names who did it") {
  RigOptions o;
  o.daemon_args = {"--no-table-owner"};
  Rig rig(o);
  const auto before = start_secured(rig, false);
  Monitor monitor(rig);

  auto del = rig.net.run("host", {"nft", "delete", "table", "inet", "leakguard"});
  INFO(del.out);
  REQUIRE(del.status == 0);  // the kernel let it through

  REQUIRE_MESSAGE(eventually([&] { return !monitor.seen("TableTampered").empty(); }, 10s), rig.output());
  const auto tampered = monitor.seen("TableTampered");
  CHECK(tampered.size() == 1);
  const std::string by = tampered.front()["args"][0];
  CHECK_MESSAGE(by.starts_with("nft["), by);  // the process, from the kernel's NEWGEN message
  CHECK(rules(rig) == before);                  // restored: the same rules
  CHECK(has(rig.output(), "table inet leakguard changed by " + by));
  CHECK(rig.daemon().running());
  CHECK_MESSAGE(rig.wait_state("secured"), rig.output());  // repaired: no state change beyond a new probe
}

TEST_CASE("owner flag on: the kernel refuses a foreign change (EPERM), the table stays, nothing is signalled") {
  Rig rig;
  const auto before = start_secured(rig, true);
  Monitor monitor(rig);

  const std::vector<std::vector<std::string>> refused{
      {"nft", "delete", "table", "inet", "leakguard"},
      {"nft", "flush", "table", "inet", "leakguard"},
      {"nft", "delete", "chain", "inet", "leakguard", "output"},
      {"nft", "add", "rule", "inet", "leakguard", "output", "accept"},
      {"nft", "add", "element", "inet", "leakguard", "endpoints4", "{ 203.0.113.9 . udp . 53 }"},
  };
  for (const auto& argv : refused) {
    auto r = rig.net.run("host", argv);
    CAPTURE(argv[1] + " " + argv[2]);
    CAPTURE(r.out);
    CHECK(r.status != 0);
    CHECK(has(r.out, "Operation not permitted"));
  }
  // A foreign flush of the whole ruleset succeeds, but passes over our table.
  CHECK(rig.net.run("host", {"nft", "flush", "ruleset"}).status == 0);
  CHECK(rules(rig) == before);

  // Nothing reached the table, so the guard had nothing to report. The barrier: a probe round asked
  // for after the refused commands; a report of theirs would have been signalled before its end.
  const auto rounds = monitor.seen("ProbeCompleted").size();
  REQUIRE(rig.ctl({"probe"}).status == 0);
  REQUIRE(eventually([&] { return monitor.seen("ProbeCompleted").size() > rounds; }, 10s));
  CHECK(monitor.seen("TableTampered").empty());
  CHECK_FALSE(has(rig.output(), "table inet leakguard changed by"));
  CHECK(rig.state() == "secured");
}
