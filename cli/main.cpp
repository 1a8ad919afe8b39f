// leakguardctl: status, control and monitoring of leakguardd over D-Bus, and the standalone
// `candidates` probe. Human output by default, --json for machines. Exit statuses: see
// docs/leakguardctl.md (0 ok, 1 leak, 2 invalid, 3 not running or no bus, 4 access denied, 5 failed,
// 6 not proven).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/candidates.hpp"
#include "cli/control_client.hpp"
#include "common/mode.hpp"

namespace cli = leakguard::cli;

namespace {

int finish(const cli::Outcome& o) {
  if (!o.out.empty()) std::cout << o.out << (o.out.back() == '\n' ? "" : "\n");
  if (!o.err.empty()) std::cerr << o.err << (o.err.back() == '\n' ? "" : "\n");
  return o.exit;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"leakguardctl: query and steer leakguardd, the VPN kill switch that proves itself"};
  app.require_subcommand(1);
  // Global flags work where people type them, before or after the command: every subcommand
  // (added below, which inherits this) hands the options it does not know to its parent.
  app.fallthrough();
  app.set_version_flag("--version", std::string("leakguardctl ") + LEAKGUARD_VERSION);
  bool no_color = false;
  app.add_flag("--no-color", no_color, "Plain output even on a terminal");

  int exit_code = cli::kOk;
  auto style = [&] { return cli::Style{.color = !no_color && isatty(STDOUT_FILENO) != 0}; };

  bool json = false;
  auto* status = app.add_subcommand("status", "Show the state, the rules, the network and the last probe");
  status->add_flag("--json", json, "Print the daemon's JSON status");
  status->callback([&] { exit_code = finish(cli::status(json, style())); });

  auto* blocked = app.add_subcommand("blocked", "Show who sent what the block stopped: application, user, destination");
  blocked->add_flag("--json", json, "Print the daemon's JSON");
  blocked->callback([&] { exit_code = finish(cli::blocked(json, style())); });

  auto* probe = app.add_subcommand("probe", "Ask the daemon for a probe round now and show its report");
  probe->add_flag("--json", json, "Print the report as JSON");
  probe->callback([&] { exit_code = finish(cli::probe(json, style())); });

  app.add_subcommand("arm", "Install the kill switch (needs root or group leakguard)")
      ->callback([&] { exit_code = finish(cli::arm()); });
  app.add_subcommand("disarm", "Remove the kill switch (needs root or group leakguard)")
      ->callback([&] { exit_code = finish(cli::disarm()); });

  auto* tunnel = app.add_subcommand("tunnel", "Declare or clear the VPN tunnel (for VPN client hooks)");
  tunnel->require_subcommand(1);
  std::string tun_if;
  std::vector<std::string> endpoints;
  std::uint32_t fwmark = 0;
  auto* tset = tunnel->add_subcommand("set", "Declare IF as the tunnel, with its endpoints");
  // Also as --interface=IF: the hooks pass it so, since an interface name may begin with '-'.
  tset->add_option("interface,--interface", tun_if, "Tunnel interface, e.g. wg0")->required();
  tset->add_option("--endpoint,-e", endpoints, "VPN server ADDR:PORT[/udp|tcp], repeatable");
  tset->add_option("--fwmark", fwmark, "Allow endpoints only for packets with this mark (0: any)");
  bool exclusive = false;
  tset->add_flag("--exclusive", exclusive,
                 "Refuse (exit 7) while another VPN's tunnel is declared and its interface exists: one VPN at a time");
  bool ahead = false;
  tset->add_flag("--ahead", ahead,
                 "A declaration ahead of any VPN (NetworkManager's placeholder): refused (exit 7) while any other tunnel is declared");
  tset->callback([&] { exit_code = finish(cli::tunnel_set(tun_if, endpoints, fwmark, exclusive, ahead)); });
  std::string clear_if;
  auto* tclear = tunnel->add_subcommand("clear", "Clear the declaration (only if IF is the declared tunnel)");
  tclear->add_option("interface,--interface", clear_if, "Tunnel interface; omitted: whatever is declared");
  tclear->callback([&] {
    exit_code = finish(cli::tunnel_clear(clear_if.empty() ? std::nullopt : std::optional<std::string>(clear_if)));
  });

  std::string lan;
  auto* allow_lan = app.add_subcommand("allow-lan", "Allow or block the local network outside the tunnel");
  allow_lan->add_option("value", lan, "on or off")->required()->check(CLI::IsMember({"on", "off"}));
  allow_lan->callback([&] { exit_code = finish(cli::allow_lan(lan == "on")); });

  std::string pol;
  auto* policy = app.add_subcommand("policy", "Block UDP only (the WebRTC leak) or all IP outside the tunnel");
  policy->add_option("policy", pol, "udp or strict")
      ->required()
      ->check(CLI::IsMember(std::vector<std::string>(leakguard::kModeNames.begin(), leakguard::kModeNames.end())));
  policy->callback([&] { exit_code = finish(cli::policy(pol)); });

  app.add_subcommand("reload", "Make the daemon re-read its configuration file")
      ->callback([&] { exit_code = finish(cli::reload()); });

  auto* monitor = app.add_subcommand("monitor", "Follow state changes, leaks, probes and tampering live");
  monitor->add_flag("--json", json, "One JSON object per line");
  bool notify = false;
  monitor->add_flag("--notify", notify,
                    "Also show them as desktop notifications (org.freedesktop.Notifications on the session bus)");
  monitor->callback([&] { exit_code = notify ? cli::monitor_notify(json, style()) : cli::monitor(json, style()); });

  cli::add_candidates_command(app, exit_code);

  // The first word that is no option is the command (the global flags take no values). CLI11 would
  // say "A subcommand is required" for one it does not know.
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.starts_with("-")) continue;
    if (app.get_subcommands([&](CLI::App* c) { return c->get_name() == word; }).empty()) {
      std::string known;
      for (const auto* c : app.get_subcommands([](CLI::App*) { return true; })) known += (known.empty() ? "" : ", ") + c->get_name();
      std::cerr << "leakguardctl: unknown subcommand '" << word << "' (one of: " << known << "; see --help)\n";
      return cli::kInvalid;
    }
    break;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and usage hint
    return cli::kInvalid;
  }
  return exit_code;
}
