// The prober's own mechanics in a bare namespace of the test's (loopback only, no lab): names
// resolved at the start of a round, cancellation, destruction mid-round, callbacks never from
// inside start(). The only server is an in-test responder on 127.0.0.1 inside that namespace.
#include <doctest/doctest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <future>
#include <memory>
#include <optional>

#include "probes/interfaces.hpp"
#include "probes/prober.hpp"
#include "tests/integration/probes/responder.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::probes;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

Plan loopback_plan(const std::string& host, milliseconds timeout) {
  auto interfaces = current_interfaces(netwatch::Classifier{});
  REQUIRE(interfaces);
  Plan p;
  p.interfaces = *interfaces;
  p.servers = {{host, 3478, Transport::udp}};
  p.timeout = timeout;
  return p;
}

}  // namespace

TEST_CASE("a server given by name is resolved when the round starts") {
  lab::Netns ns("pbname");
  lab::NetnsScope in(ns.name());
  asio::io_context io;
  testing::Responder server(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 3478),
                            testing::Behaviour::honest);
  Prober prober(io);
  Report r;
  prober.start(loopback_plan("localhost", 1s), [&](Report report) {
    r = std::move(report);
    io.stop();
  });
  io.run_for(10s);
  MESSAGE(to_text(r));
  const ProbeResult* v4 = nullptr;
  for (const auto& p : r.probes)
    if (p.routed && p.family == Family::v4) v4 = &p;
  REQUIRE(v4);
  CHECK(v4->server == "localhost:3478/udp");
  CHECK(v4->server_address == stun::TransportAddress{IpAddress::v4(127, 0, 0, 1), 3478});
  REQUIRE(std::holds_alternative<Reflexive>(v4->outcome));
  CHECK(std::get<Reflexive>(v4->outcome).mapped.address == IpAddress::v4(127, 0, 0, 1));
  CHECK(v4->arrival_interface == "lo");
  CHECK(server.requests() == 1);
  CHECK(r.verdict == Verdict::ok);  // a server on this machine: nothing left it
}

namespace {
// A mount namespace of this test's process (each test case runs alone) where /etc/resolv.conf
// names a DNS server on 127.0.0.1 that never answers, with `seconds` to wait for it; the caller
// enters its network namespace and binds that server.
void silent_dns_conf(int seconds) {
  char conf[] = "/tmp/lgt-resolv-XXXXXX";
  const int fd = ::mkstemp(conf);
  REQUIRE(fd >= 0);
  const std::string text = "nameserver 127.0.0.1\noptions timeout:" + std::to_string(seconds) + " attempts:1\n";
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  REQUIRE(::unshare(CLONE_NEWNS) == 0);
  REQUIRE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
  REQUIRE(::mount(conf, "/etc/resolv.conf", nullptr, MS_BIND, nullptr) == 0);
  ::unlink(conf);  // the mount keeps it
}
}  // namespace

TEST_CASE("a name whose DNS server never answers: the round ends at its own timeout, not the resolver's") {
  // getaddrinfo runs on asio's resolver thread, where cancel() cannot reach it: it waits out
  // resolv.conf's timeout. Here, in a mount namespace of this test's process (each test case runs
  // alone), /etc/resolv.conf names a DNS server on 127.0.0.1 inside the test's network namespace
  // that never answers, with 3 s to wait; the round's timeout is 500 ms.
  lab::Netns ns("pbdns");
  silent_dns_conf(3);
  lab::NetnsScope in(ns.name());
  asio::io_context io;
  asio::ip::udp::socket dns(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 53));  // silent
  Prober prober(io);
  std::optional<Report> r;
  prober.start(loopback_plan("stun.leakguard-test.invalid", 500ms), [&](Report report) {
    r = std::move(report);
    io.stop();
  });
  io.run_for(20s);
  REQUIRE(r);
  MESSAGE(to_text(*r));
  // The control: the resolver did ask our silent server (its query is waiting in the socket).
  CHECK(dns.available() > 0);
  const ProbeResult* v4 = nullptr;
  for (const auto& p : r->probes)
    if (p.server == "stun.leakguard-test.invalid:3478/udp") v4 = &p;
  REQUIRE(v4);
  REQUIRE(std::holds_alternative<LocalFailure>(v4->outcome));
  const auto& f = std::get<LocalFailure>(v4->outcome);
  CHECK(f.step == "resolve");
  // The round's deadline ended it ("timed out"); the resolver's own answer, 3 s on, would read
  // "Host not found (non-authoritative), try again later".
  CHECK(f.message == "timed out");
}

TEST_CASE("one round on its own (leakguardctl candidates): it returns at the round's timeout, not after the resolver's") {
  // probes::probe() owns its io_context; destroying it would join asio's resolver thread, which
  // sits in getaddrinfo for resolv.conf's 30 s here. The round's timeout is 500 ms; the wait for
  // probe() to return has a deadline of 10 s, and its result is checked.
  lab::Netns ns("pbdns1");
  silent_dns_conf(30);
  auto result = std::async(std::launch::async, [&] {
    lab::NetnsScope in(ns.name());
    asio::io_context io;
    asio::ip::udp::socket dns(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 53));  // silent
    Report r = probe(loopback_plan("stun.leakguard-test.invalid", 500ms));
    return std::make_pair(std::move(r), dns.available());
  });
  REQUIRE(result.wait_for(10s) == std::future_status::ready);
  auto [r, asked] = result.get();
  CHECK(asked > 0);  // the control: the resolver did ask the silent server
  const ProbeResult* p = nullptr;
  for (const auto& x : r.probes)
    if (x.server == "stun.leakguard-test.invalid:3478/udp") p = &x;
  REQUIRE(p);
  REQUIRE(std::holds_alternative<LocalFailure>(p->outcome));
  CHECK(std::get<LocalFailure>(p->outcome).message == "timed out");
}

// A silent server on 127.0.0.1:3478, on an io_context of its own: it hears the round's requests
// (the proof that the round was under way), and it never keeps the prober's io_context busy.
struct SilentServer {
  asio::io_context io;
  testing::Responder responder{io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 3478),
                               testing::Behaviour::silent};
  /// Takes in what has arrived so far; the requests heard.
  std::size_t requests() {
    io.poll();
    return responder.requests();
  }
};

TEST_CASE("cancel: the callback never runs and nothing is left waiting") {
  lab::Netns ns("pbcancel");
  lab::NetnsScope in(ns.name());
  std::optional<SilentServer> silent(std::in_place);
  asio::io_context io;
  // The server never answers: the round would retransmit until its 30 s timeout.
  Prober prober(io);
  bool called = false;
  bool cancelled = false;
  prober.start(loopback_plan("127.0.0.1", 30s), [&](Report) { called = true; });
  CHECK(prober.running());
  asio::steady_timer t(io, 100ms);
  t.async_wait([&](boost::system::error_code) {
    prober.cancel();
    cancelled = true;
  });
  // run_for returns early once no socket or timer is left; at its deadline io.stopped() stays
  // false, so io.stopped() is the check that the cancelled round left nothing waiting.
  io.run_for(10s);
  REQUIRE(cancelled);
  CHECK(silent->requests() >= 1);  // the round was really under way when it was cancelled
  CHECK(io.stopped());
  CHECK_FALSE(called);
  CHECK_FALSE(prober.running());
  // A fresh round on the same io_context works.
  silent.reset();
  testing::Responder server(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 3478),
                            testing::Behaviour::honest);
  bool again = false;
  io.restart();
  prober.start(loopback_plan("127.0.0.1", 1s), [&](Report r) {
    again = r.probes.size() == 1 && std::holds_alternative<Reflexive>(r.probes[0].outcome);
    io.stop();
  });
  io.run_for(5s);
  CHECK(again);
}

TEST_CASE("destroying the prober mid-round is safe and silent") {
  lab::Netns ns("pbdestroy");
  lab::NetnsScope in(ns.name());
  SilentServer silent;
  asio::io_context io;
  auto prober = std::make_unique<Prober>(io);
  bool called = false;
  bool destroyed = false;
  prober->start(loopback_plan("127.0.0.1", 30s), [&](Report) { called = true; });
  asio::steady_timer t(io, 100ms);
  t.async_wait([&](boost::system::error_code) {
    prober.reset();
    destroyed = true;
  });
  io.run_for(10s);  // as above: io.stopped() only if nothing of the round was left
  REQUIRE(destroyed);
  CHECK(silent.requests() >= 1);  // destroyed mid-round, not before it began
  CHECK(io.stopped());
  CHECK_FALSE(called);
}

TEST_CASE("start() never calls back from inside itself, even when every probe fails at once") {
  lab::Netns ns("pbfail");
  lab::NetnsScope in(ns.name());
  asio::io_context io;
  Plan p;
  // An interface the kernel does not have: binding to it fails before anything is sent.
  p.interfaces = {{"nosuch0", IfIndex{999}, InterfaceClass::physical, {*IpAddress::parse("198.51.100.77")}}};
  p.servers = {{"203.0.113.3", 3478, Transport::udp}};
  p.routed = false;
  p.address_bound = false;  // binding an address the kernel does not have fails too: one failure is enough
  Prober prober(io);
  std::optional<Report> r;
  prober.start(p, [&](Report report) { r = std::move(report); });
  CHECK_FALSE(r);
  io.run_for(5s);
  REQUIRE(r);
  REQUIRE(r->probes.size() == 1);
  const auto* f = std::get_if<LocalFailure>(&r->probes[0].outcome);
  REQUIRE(f);
  CHECK(f->step == "bind to device");
  CHECK(f->error == ENODEV);
  CHECK(r->verdict == Verdict::ok);
}
