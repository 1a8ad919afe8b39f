// A test-only front end for `leakguardctl candidates`: the same add_candidates_command() that
// leakguardctl registers, without the D-Bus commands, so the probe tests do not depend on them.
#include <CLI/CLI.hpp>

#include "cli/candidates.hpp"

int main(int argc, char** argv) {
  CLI::App app{"leakguardctl candidates (test front end)"};
  app.require_subcommand(1);
  int exit_code = 0;
  leakguard::cli::add_candidates_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;  // help is fine; any parse error is "bad arguments"
  }
  return exit_code;
}
