// Network watcher figures, in a namespace of its own (run as root):
//   latency from a change to its notification (median, p99; the debounce window is part of it),
//   and from a tunnel's own link going down to its notification (published at once, no debounce),
//   CPU per 10,000 events, convergence after a storm that overflows the socket, idle wake-ups.
// The obvious alternative, polling with a full dump, is measured alongside for comparison.
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <vector>

#include "netwatch/watcher.hpp"
#include "bench/report.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace std::chrono;
namespace lab = leakguard::lab;

namespace {

double thread_cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

template <typename P>
bool run_until(boost::asio::io_context& io, P done, milliseconds deadline) {
  const auto end = steady_clock::now() + deadline;
  while (!done() && steady_clock::now() < end) io.run_one_for(end - steady_clock::now());
  return done();
}

void must(const lab::RunResult& r) {
  if (r.status != 0) {
    std::fprintf(stderr, "command failed: %s\n", r.out.c_str());
    std::exit(1);
  }
}

}  // namespace

int main() {
  lab::Netns ns("nwbench");
  must(ns.run({"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "gw0"}));
  must(ns.run({"ip", "link", "set", "eth0", "up"}));
  must(ns.run({"ip", "link", "set", "gw0", "up"}));
  must(ns.run({"ip", "addr", "add", "192.0.2.10/24", "dev", "eth0"}));
  lab::NetnsScope in(ns.name());

  boost::asio::io_context io;
  std::size_t notified = 0;
  steady_clock::time_point last_note;
  netwatch::Watcher::Options o;
  netwatch::Watcher w(io, o, [&](const netwatch::Watcher::Notification&) {
    ++notified;
    last_note = steady_clock::now();
  });
  if (!w.start()) return 1;

  // Latency: one address change at a time, from `ip` returning to the notification.
  std::vector<double> lat;
  for (int i = 0; i < 40; ++i) {
    const std::string a = "198.51.100." + std::to_string(i + 1) + "/32";
    const auto before = notified;
    must(ns.run({"ip", "addr", i % 2 ? "del" : "add", i % 2 ? "198.51.100." + std::to_string(i) + "/32" : a, "dev", "eth0"}));
    const auto t0 = steady_clock::now();
    if (!run_until(io, [&] { return notified > before; }, 2s)) return 1;
    lat.push_back(duration<double, std::milli>(last_note - t0).count());
  }
  std::sort(lat.begin(), lat.end());
  std::printf("change -> notification: median %.1f ms, p99 %.1f ms (debounce %lld ms, verify dump included)\n",
              lat[lat.size() / 2], lat[lat.size() * 99 / 100], static_cast<long long>(o.debounce.count()));
  leakguard::bench::result("network change -> notification, median (50 ms debounce)", leakguard::bench::ms(lat[lat.size() / 2]));

  // CPU per 10,000 events: a burst of 10,000 route changes the socket can hold.
  auto storm = [&](int base, int deletes = 5000) {
    const std::string file = "/tmp/" + lab::unique_name("nwbench") + ".batch";
    std::ofstream b(file);
    for (int i = 0; i < 5000; ++i) b << "route add 100.64." << base + i / 250 << "." << i % 250 + 1 << "/32 dev eth0\n";
    for (int i = 0; i < deletes; ++i) b << "route del 100.64." << base + i / 250 << "." << i % 250 + 1 << "/32 dev eth0\n";
    b.close();
    must(ns.run({"ip", "-batch", file}));
    std::remove(file.c_str());
  };
  const auto events0 = w.stats().events;
  const auto overflows0 = w.stats().overflows;
  storm(0);
  const double cpu0 = thread_cpu_ms();
  const auto t0 = steady_clock::now();
  auto truth = netwatch::dump_model();
  run_until(io, [&] { return w.model() == *truth && w.stats().events - events0 >= 10000; }, 10s);
  const double cpu = thread_cpu_ms() - cpu0;
  const double settled = duration<double, std::milli>(steady_clock::now() - t0).count();
  std::printf("10,000 route events: %.1f ms CPU in the watcher (%.2f us/event), settled %.0f ms after the burst, "
              "%llu overflow(s)\n",
              cpu, cpu * 1e3 / std::max<double>(1, static_cast<double>(w.stats().events - events0)),
              settled, static_cast<unsigned long long>(w.stats().overflows - overflows0));
  leakguard::bench::result("netlink storm: CPU for 10,000 route events", leakguard::bench::ms(cpu));

  // The alternative: poll with a full dump. One dump of the same namespace costs:
  std::vector<double> dumps;
  for (int i = 0; i < 20; ++i) {
    const auto d0 = steady_clock::now();
    auto m = netwatch::dump_model();
    dumps.push_back(duration<double, std::milli>(steady_clock::now() - d0).count());
  }
  std::sort(dumps.begin(), dumps.end());
  std::printf("alternative, polling: one full dump costs %.2f ms (median) and sees a change only at the next poll\n",
              dumps[dumps.size() / 2]);
  leakguard::bench::result("one full rtnetlink dump (the polling alternative's cost per poll)", leakguard::bench::ms(dumps[dumps.size() / 2]));

  // Convergence after an overflow: a storm into a small socket, reader stalled.
  {
    boost::asio::io_context io2;
    netwatch::Watcher::Options small;
    small.receive_buffer = 64 * 1024;
    small.verify = false;
    netwatch::Watcher w2(io2, small, [](const netwatch::Watcher::Notification&) {});
    if (!w2.start()) return 1;
    storm(40, 2500);  // leaves 2,500 routes: the model has to change
    auto truth2 = netwatch::dump_model();
    const auto c0 = steady_clock::now();
    const bool ok = run_until(io2, [&] { return w2.model() == *truth2; }, 10s);
    std::printf("storm with the reader stalled: %llu overflow(s), %s %.1f ms after the reader resumed\n",
                static_cast<unsigned long long>(w2.stats().overflows), ok ? "converged" : "DID NOT converge",
                duration<double, std::milli>(steady_clock::now() - c0).count());
    leakguard::bench::result("netlink storm with the reader stalled: converged after resuming",
                             ok ? leakguard::bench::ms(duration<double, std::milli>(steady_clock::now() - c0).count()) : "no");
  }

  // Idle: no timers run while nothing changes.
  const auto wake0 = w.stats().wakeups;
  run_until(io, [] { return false; }, 2s);
  std::printf("idle for 2 s: %llu wake-ups\n", static_cast<unsigned long long>(w.stats().wakeups - wake0));
  leakguard::bench::result("network watcher idle wake-ups in 2 s", std::to_string(w.stats().wakeups - wake0));

  // A tunnel's own link going down: published at once, the debounce skipped (last, so that the
  // figures above see none of its events).
  {
    must(ns.run({"ip", "link", "add", "wg0", "type", "veth", "peer", "name", "wg0p"}));
    must(ns.run({"ip", "link", "set", "wg0p", "up"}));
    boost::asio::io_context io3;
    netwatch::Watcher::Options t;
    t.is_tunnel = [](const std::string& name) { return name == "wg0"; };
    std::size_t notes = 0;
    steady_clock::time_point at;
    netwatch::Watcher w3(io3, t, [&](const netwatch::Watcher::Notification&) {
      ++notes;
      at = steady_clock::now();
    });
    if (!w3.start()) return 1;
    auto wg0 = [&] { return w3.model().link("wg0"); };
    std::vector<double> down;
    for (int i = 0; i < 40; ++i) {
      must(ns.run({"ip", "link", "set", "wg0", "up"}));
      if (!run_until(io3, [&] { return wg0() && wg0()->up() && wg0()->running(); }, 2s)) return 1;
      const auto before = notes;
      must(ns.run({"ip", "link", "set", "wg0", "down"}));
      const auto d0 = steady_clock::now();
      if (!run_until(io3, [&] { return notes > before && wg0() && !wg0()->up(); }, 2s)) return 1;
      down.push_back(duration<double, std::milli>(at - d0).count());
    }
    std::sort(down.begin(), down.end());
    std::printf("tunnel link down -> notification: median %.2f ms, p99 %.2f ms (%llu of %zu published at once)\n",
                down[down.size() / 2], down[down.size() * 99 / 100],
                static_cast<unsigned long long>(w3.stats().immediate), down.size());
    leakguard::bench::result("tunnel link down -> notification, median (no debounce)", leakguard::bench::ms(down[down.size() / 2]));
    leakguard::bench::result("tunnel link down -> notification, p99", leakguard::bench::ms(down[down.size() * 99 / 100]));
  }
  return 0;
}
