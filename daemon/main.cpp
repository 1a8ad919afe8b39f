// leakguardd: the wiring. One io_context runs everything: the network watcher, the firewall and
// its table guard, the STUN probe, the D-Bus service, the probe timer, signals and the watchdog.
// State and every decision live in the Controller (and its pure state machine); effects in the
// adapters. This file only connects them and arms the timers the Controller asks for.
#include <grp.h>
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <sys/resource.h>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "common/json_text.hpp"
#include "config/config.hpp"
#include "daemon/blocked_port.hpp"
#include "daemon/controller.hpp"
#include "daemon/dbus_service.hpp"
#include "daemon/declaration_file.hpp"
#include "daemon/firewall_port.hpp"
#include "daemon/log.hpp"
#include "daemon/metrics_file.hpp"
#include "daemon/notify.hpp"
#include "daemon/private_bus.hpp"
#include "daemon/probe_port.hpp"
#include "netwatch/watcher.hpp"
#include "netwatch/wireguard.hpp"

namespace lg = leakguard;
namespace d = leakguard::daemon;
namespace asio = boost::asio;

namespace {

// The configuration file, or the defaults when the default file is absent (a package installs it;
// a missing file named on the command line is an error).
lg::Result<lg::config::Config> load_config(const std::string& path, bool explicit_path) {
  if (!explicit_path && !std::filesystem::exists(path)) return lg::config::defaults();
  return lg::config::load(path);
}

// Where the Controller's decisions go: the log, D-Bus signals, the service manager's status, and
// the probe timer.
class Outputs final : public d::Notifications {
 public:
  Outputs(const d::Log& log, const d::Notifier& notifier, std::function<void(d::TimePoint)> arm_probe_timer,
          std::function<void(d::TimePoint)> arm_retry_timer)
      : log_(log),
        notifier_(notifier),
        arm_probe_timer_(std::move(arm_probe_timer)),
        arm_retry_timer_(std::move(arm_retry_timer)) {}
  void attach(d::DbusService* bus) { bus_ = bus; }
  /// Called whenever something the metrics file shows may have changed.
  void on_change(std::function<void()> f) { on_change_ = std::move(f); }

  void state_changed(d::State from, d::State to, const std::string& reason) override {
    const std::string f(d::to_string(from)), t(d::to_string(to));
    const auto level = to == d::State::leaking || to == d::State::error ? d::Level::error : d::Level::info;
    log_.write(level, "state " + f + " -> " + t + ": " + reason, {{"LEAKGUARD_STATE", t}});
    // systemctl status shows STATUS= to every local user: the reason as everyone may read it.
    notifier_.status(t + ": " + d::public_reason(reason));
    changed();
    if (bus_) {
      bus_->state_changed(f, t, reason);
      bus_->properties_changed();
    }
  }
  void leak(const d::LeakFinding& l) override {
    if (!l.hop.empty()) {
      // A hop probe: no server saw us, a router on the way answered a datagram sent outside the tunnel.
      log_.error("LEAK: " + l.interface + " " + l.family + ": " + l.hop + " answered a datagram toward " + l.server +
                     " sent outside the tunnel",
                 {{"LEAKGUARD_LEAK_INTERFACE", l.interface}, {"LEAKGUARD_LEAK_HOP", l.hop}});
      if (bus_) bus_->leak_detected(l.interface, l.family, "", "hop " + l.hop + " toward " + l.server);
      return;
    }
    if (l.connected_only) {
      log_.error("LEAK: " + l.interface + " " + l.family + ": a web page's TCP connection to " + l.server +
                     " was made outside the tunnel (no STUN answer)",
                 {{"LEAKGUARD_LEAK_INTERFACE", l.interface}});
      if (bus_) bus_->leak_detected(l.interface, l.family, "", "connected to " + l.server + " outside the tunnel");
      return;
    }
    if (l.unrefused) {
      // The kernel sent a probe's request out of a non-tunnel device where the rules refuse it.
      log_.error("LEAK: " + l.interface + " " + l.family + ": a request toward " + l.server +
                     " left outside the tunnel although the block refuses it: the block does not hold",
                 {{"LEAKGUARD_LEAK_INTERFACE", l.interface}});
      if (bus_) bus_->leak_detected(l.interface, l.family, "", "sent toward " + l.server + ", not refused by the block");
      return;
    }
    log_.error("LEAK: " + l.interface + " " + l.family + " reflexive address " + l.reflexive + " from " + l.server,
               {{"LEAKGUARD_LEAK_INTERFACE", l.interface}, {"LEAKGUARD_LEAK_ADDRESS", l.reflexive}});
    if (bus_) bus_->leak_detected(l.interface, l.family, l.reflexive, l.server);
  }
  void probe_completed(const d::ProbeOutcome& o) override {
    log_.info("probe: " + o.summary, {{"LEAKGUARD_VERDICT", o.verdict_text}});
    changed();
    if (bus_) {
      bus_->probe_completed(o.verdict_text);
      bus_->properties_changed();
    }
  }
  void table_tampered(const std::string& by, const std::string& what, bool restored) override {
    log_.write(restored ? d::Level::warning : d::Level::error,
               "table inet leakguard changed by " + by + ": " + what + (restored ? " (restored)" : " (NOT restored)"),
               {{"LEAKGUARD_TAMPER_BY", by}});
    changed();
    if (bus_) bus_->table_tampered(by);
  }
  void declaration_changed(const std::optional<d::TunnelDeclaration>& t) override {
    if (on_declaration_) on_declaration_();
    if (state_dir_.empty()) return;
    // Made before its interface exists (PreUp, --pre-start, NetworkManager's uplink): kept across
    // a restart without its interface (restore_declaration).
    const bool ahead = t && link_exists_ && !link_exists_(t->interface);
    kept(declaration_error_, d::save_declaration(state_dir_, t, boot_id_, ahead), "the tunnel declaration");
  }
  void settings_changed(const d::RuntimeSettings& s) override {
    if (state_dir_.empty()) return;
    kept(settings_error_, d::save_settings(state_dir_, s, boot_id_), "what was set at run time");
  }
  /// Where declarations and runtime settings are kept across restarts ("" for nowhere), this
  /// boot's id; `keep_error` hears why the last change could not be kept ("" once it could).
  void keep_declarations_in(std::string dir, std::string boot_id, std::function<bool(const std::string&)> link_exists,
                            std::function<void(std::string)> keep_error) {
    state_dir_ = std::move(dir);
    boot_id_ = std::move(boot_id);
    link_exists_ = std::move(link_exists);
    keep_error_ = std::move(keep_error);
  }
  void blocked(const lg::attribution::BlockedFlows::Change& c) {
    if (bus_) bus_->blocked(c.app, c.user, c.destination, c.interface, c.packets);
  }
  /// Called after every change of what VPN clients declared.
  void on_declaration(std::function<void()> f) { on_declaration_ = std::move(f); }
  void probe_due(d::TimePoint at) override { arm_probe_timer_(at); }
  void retry_due(d::TimePoint at) override { arm_retry_timer_(at); }
  void info(const std::string& line) override {
    log_.info(line);
    changed();  // rules applied, a policy or configuration change
    if (bus_) bus_->properties_changed();
  }
  void error(const std::string& line) override {
    log_.error(line);
    if (bus_) bus_->properties_changed();
  }

 private:
  void changed() {
    if (on_change_) on_change_();
  }

  const d::Log& log_;
  const d::Notifier& notifier_;
  std::function<void(d::TimePoint)> arm_probe_timer_;
  std::function<void(d::TimePoint)> arm_retry_timer_;
  d::DbusService* bus_ = nullptr;
  // A change that could not be kept is said in the journal and in the status (a restarted daemon
  // would not know it: a cleared declaration would come back, a policy go back to the file's).
  void kept(std::string& error, const lg::Result<void>& r, const std::string& what) {
    const std::string now = r ? "" : "cannot keep " + what + " for a restart: " + r.error().str();
    if (!now.empty()) log_.error(now);
    if (now == error) return;
    error = now;
    if (keep_error_) keep_error_(declaration_error_ + (declaration_error_.empty() || settings_error_.empty() ? "" : "; ") + settings_error_);
  }

  std::string state_dir_, boot_id_;
  std::string declaration_error_, settings_error_;
  std::function<void(std::string)> keep_error_;
  std::function<bool(const std::string&)> link_exists_;
  std::function<void()> on_declaration_;
  std::function<void()> on_change_;
};

/// What a VPN client declared before this daemon (re)started, if it is still to be trusted: a
/// checked file of this boot, for an interface that still exists. Anything else is logged and
/// dropped (the file is removed), never half-trusted.
void restore_declaration(d::Controller& ctl, const d::Log& log, const std::string& dir, const std::string& boot_id,
                         const lg::netwatch::NetModel& network) {
  bool ahead = false;
  auto kept = d::load_declaration(dir, boot_id, &ahead);
  if (!kept) {
    log.warning("ignored the tunnel declaration kept from before the restart: " + kept.error().message);
    return;
  }
  if (!*kept) return;
  const d::TunnelDeclaration& t = **kept;
  const std::string where = dir + "/" + std::string(d::kDeclarationFile);
  if (!network.link(t.interface) && !ahead) {
    // The VPN went down while no daemon ran to hear its hook's ClearTunnel.
    log.warning("ignored the tunnel declaration kept from before the restart (" + where + "): interface " +
                lg::printable_ifname(t.interface) + " is gone");
    (void)d::save_declaration(dir, std::nullopt, boot_id);
    return;
  }
  std::string eps;
  for (const auto& e : t.endpoints) eps += (eps.empty() ? "" : ", ") + e.str();
  log.info("tunnel " + lg::printable_ifname(t.interface) + " as declared before the restart (" + where + ")" +
           (ahead && !network.link(t.interface) ? ", ahead of its interface" : "") + ": endpoints " + eps +
           (t.fwmark ? ", fwmark " + t.fwmark->str() : ""));
  ctl.restore_tunnel(t);
}

/// What was set at run time before this daemon (re)started: a policy or allow_lan over D-Bus, the
/// families an escalation held strict. The restarted daemon is never weaker than it was.
void restore_settings(d::Controller& ctl, const d::Log& log, const std::string& dir, const std::string& boot_id) {
  auto kept = d::load_settings(dir, boot_id);
  if (!kept) {
    log.warning("ignored the settings kept from before the restart: " + kept.error().message);
    return;
  }
  if (!*kept) return;
  log.info("kept from before the restart (" + dir + "/" + std::string(d::kSettingsFile) + "): " + (*kept)->str());
  if (const std::string dropped = ctl.restore_settings(**kept); !dropped.empty())
    log.warning("not kept from before the restart, weaker than the configuration file: " + dropped);
}

// A probe round opens a socket per address, server and way out: on a host with a few hundred
// addresses a soft limit of 1024 ran out in the first round, and the daemon's own sockets (the bus,
// the signal pipe) with it. Outside the unit (which sets LimitNOFILE= and filters setrlimit) the
// soft limit goes up to the hard one.
void raise_open_files_limit(const d::Log& log) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  const rlim_t was = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0 && was < 4096)
    log.warning("open files limited to " + std::to_string(was) +
                ": a probe round on a host with many addresses may run out (LimitNOFILE=)");
}

int run_daemon(const std::string& config_path, bool explicit_path, bool verbose, const std::string& control_group,
               bool table_owner, const std::string& state_dir) {
  d::Log log(verbose);
  d::Notifier notifier;
  raise_open_files_limit(log);
  // A broken or missing file does not stop the start: the Controller fails closed (our table from
  // the last run kept, else the emergency block), says `error` with the file's error, and retries.
  auto cfg = load_config(config_path, explicit_path);
  asio::io_context io;
  // Before anything opens sockets (the first probe round): its pipe must not be what runs out.
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  d::Controller* controller = nullptr;  // set once it exists; nothing reaches it before io.run()
  // The metrics file (docs/metrics.md), as the configuration says at each write (a reload applies).
  d::MetricsWriter metrics(
      io, [&] { return controller->config().metrics; }, [&] { return controller->status_json(); },
      [&](bool is_error, const std::string& line) { log.write(is_error ? d::Level::error : d::Level::info, line); });

  asio::steady_timer probe_timer(io), retry_timer(io);
  Outputs outputs(
      log, notifier,
      [&](d::TimePoint at) {
        probe_timer.expires_at(at);  // cancels the wait for an earlier time
        probe_timer.async_wait([&](const boost::system::error_code& ec) {
          if (!ec) controller->probe_timer();
        });
      },
      [&](d::TimePoint at) {
        retry_timer.expires_at(at);
        retry_timer.async_wait([&](const boost::system::error_code& ec) {
          if (!ec) controller->retry_timer();
        });
      });

  lg::netwatch::Watcher::Options watch;
  // A tunnel's own link going down is published at once: `blocking` must not wait for a debounce.
  watch.is_tunnel = [&](const std::string& ifname) { return controller && controller->is_tunnel(ifname); };
  lg::netwatch::Watcher watcher(io, watch, [&](const lg::netwatch::Watcher::Notification& n) {
    // What changed, of a readable size (it goes into the log and a round's reason): an overflow
    // that removed 750 addresses made a 27 KB line.
    constexpr std::size_t kMaxShown = 20;
    std::string summary;
    for (std::size_t i = 0; i < n.changes.size() && i < kMaxShown; ++i) summary += (summary.empty() ? "" : "; ") + n.changes[i].text;
    if (n.changes.size() > kMaxShown) summary += "; and " + std::to_string(n.changes.size() - kMaxShown) + " more changes";
    if (n.resynced)
      log.warning("network events were lost (socket overflow); resynchronised from a fresh dump: " +
                  (summary.empty() ? std::string("nothing had changed") : summary));
    for (const auto& r : n.rejected) log.warning("network watcher: " + r);
    if (controller) controller->network_changed(n.model, summary);
  });

  lg::firewall::Options fw_options;
  if (!table_owner) fw_options.ownership = lg::firewall::Ownership::off;
  d::NftFirewallPort fw(io, fw_options, [&](const std::string& by, const std::string& what, bool restored) {
    if (controller) controller->table_tampered(by, what, restored);
  });
  d::StunProbePort probe(
      io, [&] { return watcher.model(); },
      [&](const std::string& ifname) { return controller && controller->is_tunnel(ifname); },
      [&] { return controller->config().probe; },
      [&] { return controller->desired().emergency || controller->desired().mode == lg::Mode::strict; },
      [&] { return controller->desired().endpoints; }, [&] { return fw.in_force(); });

  // What our blocking rules log, and who sent it (attribution.*): listened to as the rules in
  // place say, and again after every reload (the group may change or go).
  // The Blocked signal: at most once a second, what was blocked since (the ten busiest flows);
  // the timer runs only while something is being blocked.
  asio::steady_timer blocked_signal(io);
  bool blocked_signal_waiting = false;
  std::function<void()> signal_blocked = [&] {
    if (blocked_signal_waiting) return;
    blocked_signal_waiting = true;
    blocked_signal.expires_after(std::chrono::seconds(1));
    blocked_signal.async_wait([&](const boost::system::error_code& ec) {
      blocked_signal_waiting = false;
      if (ec) return;
      for (const auto& c : controller->blocked_changes(10)) outputs.blocked(c);
      if (controller->blocked_pending()) signal_blocked();  // the rest next second
    });
  };
  d::BlockedPort blocked_port(
      io,
      [&](const lg::attribution::LoggedPacket& p, const lg::attribution::Sender& s, bool own) {
        controller->blocked(p, s, std::chrono::system_clock::now(), own);
        signal_blocked();
      },
      [&](const lg::attribution::LoggedPacket& p) {
        return fw.sender_cgroups(p.destination, p.protocol, p.source_port, p.destination_port);
      });
  std::string blocked_error;
  auto listen_blocked = [&] {
    auto r = blocked_port.listen(controller->desired().emergency ? blocked_port.group() : controller->desired().log_group);
    const std::string error = r ? "" : r.error().str();
    if (!error.empty() && error != blocked_error) log.warning("cannot say who sends blocked packets: " + error);
    blocked_error = error;
  };
  auto reload = [&]() {
    asio::post(io, [&] { listen_blocked(); });
    return load_config(config_path, explicit_path);
  };
  d::Controller ctl(std::move(cfg), fw, probe, outputs, reload);
  controller = &ctl;
  // One VPN at a time is decided on the interface as the kernel has it at the call (a VPN whose
  // interface was just deleted is no longer up, though the watcher may not have said so yet).
  ctl.set_link_exists([](const std::string& ifname) { return ::if_nametoindex(ifname.c_str()) != 0; });

  // Read the network first (a dump: nothing is sent), so the first probe knows the interfaces
  // and the LAN set its subnets. Then the rules, before anything that sends or listens: installed
  // (or an orphaned table taken over) in one transaction.
  if (auto r = watcher.start(); !r) {
    log.error("cannot watch the network: " + r.error().str());
    (void)ctl.start({});  // still block: fail closed, then exit for the service manager to restart us
    return 1;
  }
  if (!state_dir.empty()) {
    const std::string boot_id = d::current_boot_id(state_dir);
    if (boot_id.empty()) {
      log.warning("cannot tell this boot from others (no boot id, and " + state_dir +
                  " is no tmpfs): declarations are not kept across restarts");
    } else {
      outputs.keep_declarations_in(
          state_dir, boot_id, [&](const std::string& ifname) { return watcher.model().link(ifname) != nullptr; },
          [&](std::string why) { ctl.set_keep_error(std::move(why)); });
      restore_declaration(ctl, log, state_dir, boot_id, watcher.model());
      restore_settings(ctl, log, state_dir, boot_id);
    }
  }
  if (auto started = ctl.start(watcher.model()); !started) {
    // Nothing of ours stands between the machine and the network: fail loudly, before READY, so
    // the service manager sees the unit fail (and restarts it) instead of a kill switch that is off.
    // (The controller has said why; this is what it means.)
    log.error("not starting: nothing of leakguard's stands between this machine and the network");
    return 1;
  }
  listen_blocked();

  d::DbusService::Options bus_options;
  if (const group* g = getgrnam(control_group.c_str())) bus_options.control_group = g->gr_gid;
  else log.warning("group '" + control_group + "' does not exist: only root may change anything");
  auto bus_log = [&](bool is_error, const std::string& line) {
    log.write(is_error ? d::Level::error : d::Level::info, line);
  };
  d::DbusService bus(io, ctl, bus_options, bus_log);
  outputs.attach(&bus);
  bus.start();
  outputs.on_change([&] { metrics.changed(); });
  metrics.start();
  // Root's way in that no flood on the system bus can slow (daemon/private_bus.hpp), next to the
  // kept declarations: without it, root's calls go through the bus like everyone's.
  std::optional<d::PrivateBus> private_bus;
  if (!state_dir.empty()) {
    private_bus.emplace(io, bus, state_dir + "/private", bus_log, d::PrivateBus::Options{});
    if (auto r = private_bus->start(); !r) {
      log.warning("no private control socket (root's calls go through the system bus): " + r.error().str());
      private_bus.reset();
    }
  }

  // The declared WireGuard tunnel's peers, read every kPeerPoll while one is declared: WireGuard
  // says nothing when a peer's endpoint changes, and the declaration follows what the device does
  // (Controller::peers_seen). A read that fails is said once, until it works again or fails
  // differently.
  asio::steady_timer peers_timer(io);
  bool peers_waiting = false;
  std::string peers_error;
  std::function<void()> follow_peers = [&] {
    if (peers_waiting || !ctl.follow_peers_of()) return;
    peers_waiting = true;
    peers_timer.expires_after(d::kPeerPoll);
    peers_timer.async_wait([&](const boost::system::error_code& ec) {
      peers_waiting = false;
      if (ec) return;
      const auto ifname = ctl.follow_peers_of();
      if (!ifname) return;  // cleared meanwhile; a new declaration starts the wait again
      // Not there yet (declared before the client made it) or gone: nothing to read.
      if (const auto* link = watcher.model().link(*ifname)) {
        auto peers = lg::netwatch::read_wireguard_peers(*ifname, link->kind);
        std::string error = peers ? "" : peers.error().str();
        if (error != peers_error && !error.empty())
          log.warning("cannot follow the WireGuard peers of " + lg::printable_ifname(*ifname) + ": " + error);
        peers_error = std::move(error);
        if (peers && *peers) ctl.peers_seen(*ifname, **peers);
      }
      follow_peers();
    });
  };
  outputs.on_declaration([&] { follow_peers(); });
  follow_peers();  // a declaration restored from before a restart

  asio::steady_timer watchdog(io);
  std::function<void()> arm_watchdog = [&] {
    if (!notifier.watchdog_interval()) return;
    watchdog.expires_after(*notifier.watchdog_interval());
    watchdog.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      notifier.watchdog();
      arm_watchdog();
    });
  };
  arm_watchdog();

  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        (void)ctl.reload("SIGHUP");  // a refusal is logged by the controller, with file:line:col
        wait_signal();
        return;
      }
      const std::string what = ctl.stop();
      log.info(what);
      notifier.stopping(what);
      io.stop();
    });
  };
  wait_signal();

  // The state with its reason, as every transition says it: `error` alone hid why from systemctl
  // status for as long as it lasted (its retries send no new STATUS=).
  {
    const std::string state(d::to_string(ctl.machine().state()));
    const std::string reason = d::public_reason(ctl.machine().reason());
    notifier.ready(reason.empty() ? state : state + ": " + reason);
  }
  log.info("leakguardd " LEAKGUARD_VERSION " running; state " + std::string(d::to_string(ctl.machine().state())));
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"leakguardd: the VPN kill switch that proves itself (see leakguardd(8), docs/)"};
  app.set_version_flag("--version", std::string("leakguardd ") + LEAKGUARD_VERSION);
  std::string config_path{lg::config::kDefaultPath};
  auto* config_opt = app.add_option("--config,-c", config_path, "Configuration file")->capture_default_str();
  std::string check_path, ruleset_path;
  auto* check_opt = app.add_option("--check-config", check_path,
                                   "Check a configuration file (default: --config) and exit: 0 valid, 2 invalid")
                        ->expected(0, 1);
  auto* ruleset_opt = app.add_option("--print-ruleset", ruleset_path,
                                     "Print, in nft syntax, the ruleset a configuration file would install, "
                                     "without installing it")
                          ->expected(0, 1);
  check_opt->excludes(ruleset_opt);  // each names the file it reads: both at once is ambiguous
  bool print_network = false, json = false, verbose = false, no_table_owner = false;
  std::string control_group = "leakguard";
  app.add_option("--control-group", control_group, "Members of this group may change things over D-Bus (root always may)")
      ->capture_default_str();
  // systemd sets RUNTIME_DIRECTORY for RuntimeDirectory= (the unit's /run/leakguard); it may list
  // several, separated by ':'. Run by hand, nothing is kept unless --state-dir says where.
  std::string state_dir;
  if (const char* rt = std::getenv("RUNTIME_DIRECTORY")) state_dir = std::string(rt).substr(0, std::string(rt).find(':'));
  app.add_option("--state-dir", state_dir,
                 "Keep what VPN clients declare here, for a restarted daemon (default: $RUNTIME_DIRECTORY; '' for nowhere)")
      ->capture_default_str();
  app.add_flag("--no-table-owner", no_table_owner,
               "Never ask the kernel for the table's owner flag; the table guard alone defends it (for tests, and "
               "kernels where the flag misbehaves)");
  app.add_flag("--print-network", print_network, "Print the network as the daemon sees it, classified, and exit");
  app.add_flag("--json", json, "With --print-network: JSON");
  app.add_flag("--verbose,-v", verbose, "Debug messages too");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  const bool check = check_opt->count() > 0, print_ruleset = ruleset_opt->count() > 0;
  if (!check_path.empty()) config_path = check_path;
  if (!ruleset_path.empty()) config_path = ruleset_path;
  const bool explicit_path = config_opt->count() > 0 || !check_path.empty() || !ruleset_path.empty();

  if (check || print_ruleset || print_network) {
    auto cfg = load_config(config_path, explicit_path);
    if (!cfg) {
      std::cerr << "leakguardd: " << cfg.error().str() << "\n";
      return 2;
    }
    const lg::netwatch::Classifier cls{cfg->tunnel_interfaces};
    if (check || print_ruleset) {
      // The network's sets (LAN, the tunnels' addresses, DHCP subnets) as the daemon would fill
      // them right now; without netlink access the ruleset is printed with them empty. A check
      // leaves the network out but translates and validates as the daemon does: what it passes,
      // the daemon accepts.
      d::NetworkSets sets = d::network_sets({}, cls, cfg->allow_lan_ranges);
      if (print_ruleset) {
        if (auto m = lg::netwatch::dump_model()) sets = d::network_sets(*m, cls, cfg->allow_lan_ranges);
      }
      auto text = d::NftFirewallPort::dry_run(*cfg, sets);
      if (!text) {
        std::cerr << "leakguardd: " << text.error().str() << "\n";
        return 2;
      }
      if (check)
        std::cout << (explicit_path || std::filesystem::exists(config_path) ? config_path : "(defaults)") << ": ok\n"
                  << cfg->str() << "\n";
      else
        std::cout << *text;
      return 0;
    }
    auto m = lg::netwatch::dump_model();
    if (!m) {
      std::cerr << "leakguardd: " << m.error().str() << "\n";
      return 1;
    }
    std::cout << (json ? lg::json_text(lg::netwatch::to_json(*m, cls), 2) + "\n" : lg::netwatch::to_text(*m, cls));
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  return run_daemon(config_path, explicit_path, verbose, control_group, !no_table_owner, state_dir);
}
