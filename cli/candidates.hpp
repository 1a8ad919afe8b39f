#pragma once
// `leakguardctl candidates`: one probe round run here, without the daemon (see docs/probe.md).
#include <CLI/CLI.hpp>

namespace leakguard::cli {

/// Registers the `candidates` subcommand on `app`. When it runs, `exit_code` becomes 0 (no leak:
/// verdict ok or exposed-host), 1 (leak), 2 (bad arguments) or 6 (unverified: no probe could be
/// sent, e.g. no server's name resolved).
void add_candidates_command(CLI::App& app, int& exit_code);

}  // namespace leakguard::cli
