// Tampering with table inet leakguard from outside (the nft tool, as firewalld or a
// `flush ruleset` in /etc/nftables.conf would): refused by the kernel (owner flag) or repaired
// by the table guard. Each case prints which, and how long the repair took.
#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

#include "firewall/firewall.hpp"
#include "firewall/table_guard.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::firewall;
namespace lab = leakguard::lab;
using namespace std::chrono_literals;

namespace {

Policy policy(Mode mode = Mode::udp) {
  Policy p;
  p.mode = mode;
  p.tunnels = {*IfnamePattern::parse("wg0")};
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820"), *Endpoint::parse("198.51.100.2:51820")};
  return p;
}

/// A namespace with our table in it and a guard running on its own io_context thread.
struct Rig {
  lab::Netns ns{"fwguard"};
  std::unique_ptr<Firewall> fw;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work = boost::asio::make_work_guard(io);
  std::unique_ptr<TableGuard> guard;
  std::thread thread;
  std::mutex m;
  std::condition_variable cv;
  std::vector<TamperEvent> events;

  explicit Rig(Ownership o, TableGuard::Options go = {}) {
    lab::NetnsScope in(ns.name());
    Options opt;
    opt.ownership = o;
    auto f = Firewall::open(opt);
    REQUIRE_MESSAGE(f, (f ? "" : f.error().str()));
    fw = std::make_unique<Firewall>(std::move(*f));
    REQUIRE(fw->apply(policy()));
    auto g = TableGuard::start(
        io, *fw,
        [this](const TamperEvent& e) {
          std::lock_guard lock(m);
          events.push_back(e);
          cv.notify_all();
        },
        go);
    REQUIRE_MESSAGE(g, (g ? "" : g.error().str()));
    guard = std::move(*g);
    thread = std::thread([this] { io.run(); });
  }
  ~Rig() {
    io.stop();
    thread.join();
    guard.reset();
  }

  /// Waits until `n` events in total have been reported, at most 5 s.
  bool wait_events(std::size_t n) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, 5s, [&] { return events.size() >= n; });
  }
  std::size_t count() {
    std::lock_guard lock(m);
    return events.size();
  }
  TamperEvent event(std::size_t i) {
    std::lock_guard lock(m);
    return events.at(i);
  }
  lab::RunResult nft(const std::string& cmd) { return ns.run({"nft", cmd}); }

  void expect_in_place() {
    auto v = fw->verify();
    REQUIRE_MESSAGE(v, (v ? "" : v.error().str()));
    std::string all;
    for (const auto& d : *v) all += d + "; ";
    CHECK_MESSAGE(v->empty(), all);
  }

  /// The handle of the rule tagged `tag` in chain output.
  std::string handle_of(const std::string& tag) {
    const auto out = ns.run({"nft", "-a", "list", "chain", "inet", "leakguard", "output"}).out;
    const std::string marker = "comment \"" + tag + "\" # handle ";
    const auto at = out.find(marker);
    REQUIRE_MESSAGE(at != std::string::npos, out);
    const auto start = at + marker.size();
    const auto end = out.find_first_not_of("0123456789", start);
    REQUIRE(end > start);
    return out.substr(start, end - start);
  }
};

struct Tamper {
  const char* name;
  std::function<std::string(Rig&)> command;  // computed when run (handles change)
};

std::vector<Tamper> tampers() {
  return {
      {"nft flush ruleset", [](Rig&) { return std::string("flush ruleset"); }},
      {"nft delete table inet leakguard", [](Rig&) { return std::string("delete table inet leakguard"); }},
      {"nft delete rule (the udp-out reject)",
       [](Rig& r) { return "delete rule inet leakguard output handle " + r.handle_of("udp-out"); }},
      {"nft insert rule ... output accept", [](Rig&) { return std::string("insert rule inet leakguard output accept"); }},
      {"nft add element to endpoints4",
       [](Rig&) { return std::string("add element inet leakguard endpoints4 { 203.0.113.99 . udp . 53 }"); }},
  };
}

}  // namespace

TEST_CASE("with the owner flag every foreign change is refused or has no effect on our table") {
  Rig r(Ownership::automatic);
  REQUIRE_MESSAGE(r.fw->owns_table(), r.fw->ownership_note());
  for (const auto& t : tampers()) {
    const auto res = r.nft(t.command(r));
    const bool refused = res.status != 0;
    std::cout << "tamper [owner]: " << t.name << " -> "
              << (refused ? "refused by the kernel: " + res.out.substr(0, res.out.find('\n')) : "accepted, our table untouched")
              << "\n";
    if (refused) CHECK(res.out.find("Operation not permitted") != std::string::npos);
    r.expect_in_place();
  }
  // Nothing reached our table, so the guard had nothing to repair.
  for (std::size_t i = 0; i < r.count(); ++i) CHECK_FALSE(r.event(i).repaired);
}

TEST_CASE("without the owner flag the guard repairs every foreign change in one batch") {
  Rig r(Ownership::off);
  REQUIRE_FALSE(r.fw->owns_table());
  std::size_t n = 0;
  for (const auto& t : tampers()) {
    const auto res = r.nft(t.command(r));
    REQUIRE_MESSAGE(res.status == 0, res.out);
    REQUIRE_MESSAGE(r.wait_events(++n), "no tamper event for " << t.name);
    const TamperEvent e = r.event(n - 1);
    std::cout << "tamper [guard]: " << t.name << " -> " << e.str() << "\n";
    CHECK(e.restored);
    CHECK(e.repaired);
    CHECK(e.by.rfind("nft[", 0) == 0);
    CHECK(e.generation > 0);
    r.expect_in_place();
  }
}

TEST_CASE("the guard ignores our own changes and reacts to the first foreign one after them") {
  Rig r(Ownership::off);
  for (int i = 0; i < 100; ++i) {
    Policy p = policy(i % 2 ? Mode::strict : Mode::udp);  // a replace each time
    REQUIRE(r.fw->apply(p));
    p.endpoints.push_back(Endpoint{IpAddress::v4(203, 0, 113, static_cast<std::uint8_t>(i + 1)), 51820, Transport::udp});
    REQUIRE(r.fw->apply(p));  // a set update
  }
  // Notifications arrive in commit order: once this foreign one is reported, ours were all read.
  REQUIRE(r.nft("add element inet leakguard endpoints4 { 203.0.113.250 . udp . 1 }").status == 0);
  REQUIRE(r.wait_events(1));
  CHECK(r.count() == 1);
  const auto e = r.event(0);
  CHECK(e.what.find("elements added to set endpoints4") != std::string::npos);
  CHECK(e.repaired);
  r.expect_in_place();
}

TEST_CASE("events lost to a full socket buffer (ENOBUFS) make the guard check the table and repair it") {
  TableGuard::Options small;
  small.rcvbuf = 1;  // the kernel's minimum: a few notifications fill it
  Rig r(Ownership::off, small);
  // Stall the guard's thread, overflow its socket with foreign changes elsewhere, then delete
  // our table: that notification is lost, only a dump can tell.
  std::promise<void> release;
  std::promise<void> stalled;
  boost::asio::post(r.io, [&] {
    stalled.set_value();
    release.get_future().wait();
  });
  stalled.get_future().wait();
  std::string many;
  for (int i = 0; i < 64; ++i) many += "add table inet junk" + std::to_string(i) + "; ";
  REQUIRE(r.nft(many).status == 0);
  REQUIRE(r.nft("delete table inet leakguard").status == 0);
  release.set_value();

  // Wait for the repair (there may be an event for the junk too, before it).
  bool repaired = false;
  for (std::size_t n = 1; !repaired && r.wait_events(n); ++n) {
    const auto e = r.event(n - 1);
    std::cout << "after overflow: " << e.str() << "\n";
    if (e.repaired) {
      repaired = true;
      CHECK(e.by == "unknown (events were lost)");
      CHECK(e.restored);
    }
  }
  CHECK(repaired);
  r.expect_in_place();
}
