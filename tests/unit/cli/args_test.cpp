// leakguardctl's command line, run as the program itself against a system bus that is not there:
// exit 3 (leakguardd not running) means the arguments were accepted and the call was tried,
// exit 2 means they were refused. No root, no network.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/lab/lab.hpp"

namespace {

leakguard::lab::RunResult ctl(std::vector<std::string> args) {
  std::vector<std::string> argv{"env", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/leakguard-test-bus", LEAKGUARDCTL};
  argv.insert(argv.end(), args.begin(), args.end());
  return leakguard::lab::run(argv, std::chrono::seconds(20));
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string join(const std::vector<std::string>& args) {
  std::string s = "leakguardctl";
  for (const auto& a : args) s += " " + a;
  return s;
}

}  // namespace

TEST_CASE("global flags are taken before and after the command") {
  const std::vector<std::vector<std::string>> lines{
      {"--no-color", "status"},  {"status", "--no-color"},       {"status", "--json", "--no-color"},
      {"probe", "--no-color"},   {"monitor", "--no-color"},      {"--no-color", "monitor", "--json"},
      {"arm", "--no-color"},     {"tunnel", "clear", "--no-color"}};
  for (const auto& args : lines) {
    CAPTURE(join(args));
    auto r = ctl(args);
    CAPTURE(r.out);
    CHECK(r.status == 3);
    // The bus is what is missing here, and that is what is said (not "leakguardd is not running").
    CHECK(has(r.out, "cannot reach the system bus (/nonexistent/leakguard-test-bus: "));
    CHECK_FALSE(has(r.out, "not running"));
  }
  auto v = ctl({"status", "--version"});
  CHECK(v.status == 0);
  CHECK(has(v.out, "leakguardctl "));
}

TEST_CASE("what is no option anywhere is still refused, with the word that was wrong") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"status", "--bogus"}, {"--bogus", "status"}, {"arm", "--json"}, {"status", "extra"}, {},
           {"nosuch"}, {"--no-color", "nosuch"}, {"nosuch", "--json"}}) {
    CAPTURE(join(args));
    auto r = ctl(args);
    CAPTURE(r.out);
    CHECK(r.status == 2);
    CHECK_FALSE(has(r.out, "not running"));  // refused before any call
    // A command that does not exist is called unknown, not missing; nothing at all is missing.
    const bool unknown = std::find(args.begin(), args.end(), "nosuch") != args.end();
    CHECK(has(r.out, "unknown subcommand 'nosuch'") == unknown);
    CHECK(has(r.out, "A subcommand is required") == args.empty());
  }
  CHECK(has(ctl({"status", "--bogus"}).out, "--bogus"));
}

