// The main of every doctest program. Built with LEAKGUARD_TEST_SKIP_UNLESS_ROOT=CODE (integration,
// e2e and lab tiers: they create network namespaces), a run without root exits with CODE, the
// tests' SKIP_RETURN_CODE, so that ctest reports a skip instead of an obscure failure. Listing the
// test cases (what doctest_discover_tests does at build time) and --help work for anyone.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <string_view>

namespace {

// doctest's options that only print something: -ltc/--list-test-cases, --count, --help, ...,
// each also with the "dt-" prefix.
[[maybe_unused]] bool only_lists(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    const auto name = a.find_first_not_of('-');
    if (name == 0 || name == std::string_view::npos) continue;  // not an option
    a.remove_prefix(name);
    if (a.starts_with("dt-")) a.remove_prefix(3);
    a = a.substr(0, a.find('='));
    for (std::string_view q : {"list-test-cases", "ltc", "list-test-suites", "lts", "list-reporters", "lr", "count",
                               "c", "help", "h", "?", "version", "v"})
      if (a == q) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef LEAKGUARD_TEST_SKIP_UNLESS_ROOT
  if (geteuid() != 0 && !only_lists(argc, argv)) {
    std::printf("%s: skipped: this test needs root (it creates network namespaces)\n", argv[0]);
    return LEAKGUARD_TEST_SKIP_UNLESS_ROOT;
  }
#endif
  doctest::Context context(argc, argv);
  return context.run();
}
