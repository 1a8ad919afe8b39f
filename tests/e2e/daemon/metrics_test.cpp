// The metrics file (docs/metrics.md) from the running daemon in the lab: written once enabled,
// accepted by Prometheus' promtool, saying what `leakguardctl status --json` says, rewritten on a
// policy change, and removed when a reload switches it off.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/e2e/rig/rig.hpp"

using namespace std::chrono_literals;
namespace lab = leakguard::lab;

using leakguard::e2e::eventually;
using leakguard::e2e::read_file;
using leakguard::e2e::Rig;
using leakguard::e2e::RigOptions;

namespace {

// name{labels} -> value.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

std::string value(const std::map<std::string, std::string>& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? "(absent)" : it->second;
}

}  // namespace

TEST_CASE("metrics: the file appears, promtool accepts it, it agrees with status, follows a policy change and goes when switched off") {
  Rig rig;
  const std::string dir = rig.dir + "/node-exporter";
  const std::string file = dir + "/leakguard.prom";
  std::filesystem::create_directory(dir);
  const std::string base = read_file(rig.config);
  std::ofstream(rig.config, std::ios::app) << "metrics:\n  enabled: true\n  textfile: " << file << "\n";
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());

  // Written on the state change: waited for, with a deadline, until it says secured.
  std::string text;
  REQUIRE_MESSAGE(eventually(
                      [&] {
                        text = read_file(file);
                        return value(samples(text), "leakguard_state{state=\"secured\"}") == "1";
                      },
                      20s),
                  "the file: " << text << "\nthe daemon: " << rig.output());
  CHECK(rig.output().find("metrics: writing " + file) != std::string::npos);

  // Prometheus' own checker on the file the daemon wrote.
  const auto check = lab::run({"sh", "-c", "promtool check metrics < " + file});
  INFO("promtool: " << check.out);
  REQUIRE_MESSAGE(check.status != 127, "promtool is missing: install Debian's prometheus package (scripts/deps.sh)");
  CHECK(check.status == 0);
  CHECK(check.out.empty());

  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  // No temporary file left beside it (one may be there for an instant, while a write is under way).
  std::string listing;
  CHECK_MESSAGE(eventually(
                    [&] {
                      listing.clear();
                      for (const auto& e : std::filesystem::directory_iterator(dir)) listing += e.path().filename().string() + " ";
                      return listing == "leakguard.prom ";
                    },
                    10s),
                listing);

  // What the file says is what leakguardctl status --json says.
  auto status = rig.status();
  REQUIRE(status.is_object());
  auto m = samples(read_file(file));
  const std::string state = status["state"].get<std::string>();
  CHECK(state == "secured");
  CHECK(value(m, "leakguard_state{state=\"" + state + "\"}") == "1");
  CHECK(value(m, "leakguard_armed") == (status["armed"].get<bool>() ? "1" : "0"));
  CHECK(value(m, "leakguard_policy{policy=\"" + status["policy"].get<std::string>() + "\"}") == "1");
  CHECK(value(m, "leakguard_policy{policy=\"udp\"}") == "1");
  CHECK(value(m, "leakguard_tunnel_up") == "1");
  CHECK(std::stoull(value(m, "leakguard_probe_rounds_total{verdict=\"ok\"}")) >= 1);
  CHECK(std::stod(value(m, "leakguard_last_probe_timestamp_seconds")) > 1.6e9);
  CHECK(value(m, "leakguard_leaks_total") == std::to_string(status["leak_count"].get<std::uint64_t>()));
  // The firewall's counters are there, per kind, as the kernel counts them.
  CHECK(m.count("leakguard_blocked_packets_total{kind=\"udp\",direction=\"out\"}") == 1);

  // A policy change: the file follows (the rules installed again, the policy gauge moved).
  const std::string applied_before = value(m, "leakguard_rules_applied_total");
  REQUIRE(rig.ctl({"policy", "strict"}).status == 0);
  REQUIRE_MESSAGE(eventually(
                      [&] {
                        m = samples(read_file(file));
                        return value(m, "leakguard_policy{policy=\"strict\"}") == "1";
                      },
                      10s),
                  read_file(file));
  CHECK(value(m, "leakguard_policy{policy=\"udp\"}") == "0");
  CHECK(std::stoull(value(m, "leakguard_rules_applied_total")) > std::stoull(applied_before));
  status = rig.status();
  CHECK(status["policy"] == "strict");

  // Reload with metrics off: the file goes (no stale figures for the collector); the daemon runs on.
  std::ofstream(rig.config, std::ios::trunc) << base << "metrics:\n  enabled: false\n  textfile: " << file << "\n";
  REQUIRE(rig.ctl({"reload"}).status == 0);
  CHECK_MESSAGE(eventually([&] { return !std::filesystem::exists(file); }, 10s), rig.output());
  // The log line follows the unlink: waited for too.
  CHECK_MESSAGE(eventually([&] { return rig.output().find("metrics: no longer writing " + file) != std::string::npos; }, 10s),
                rig.output());
  CHECK(rig.state() != "");
}

TEST_CASE("metrics: a directory that is not there is said once in the log and changes nothing else") {
  Rig rig;
  const std::string file = rig.dir + "/missing/leakguard.prom";
  std::ofstream(rig.config, std::ios::app) << "metrics:\n  enabled: true\n  textfile: " << file << "\n";
  rig.start();
  REQUIRE_MESSAGE(rig.wait_state("secured"), rig.output());
  REQUIRE_MESSAGE(eventually([&] { return rig.output().find("metrics: cannot write " + file) != std::string::npos; }, 10s),
                  rig.output());
  // A probe round and a policy change later (each a write that fails again): still said once.
  REQUIRE(rig.ctl({"probe"}).status >= 0);
  REQUIRE(rig.ctl({"policy", "strict"}).status == 0);
  REQUIRE(rig.ctl({"probe"}).status >= 0);
  const std::string out = rig.output();
  std::size_t said = 0;
  for (auto at = out.find("metrics: cannot write"); at != std::string::npos; at = out.find("metrics: cannot write", at + 1)) ++said;
  CHECK(said == 1);
  CHECK(rig.state() == "secured");
  CHECK_FALSE(std::filesystem::exists(rig.dir + "/missing"));
}
