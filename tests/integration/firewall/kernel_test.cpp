// The Firewall against the real nf_tables in a bare namespace: what it installs (compared with
// `nft -f` of the dry-run text), ownership, bad input, missing permission, large sets.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "firewall/firewall.hpp"
#include "firewall/nft_text.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::firewall;
namespace lab = leakguard::lab;

namespace {

Firewall open_in(const std::string& ns, Ownership o = Ownership::automatic, Limits limits = {}) {
  lab::NetnsScope in(ns);
  Options opt;
  opt.ownership = o;
  opt.limits = limits;
  auto fw = Firewall::open(opt);
  REQUIRE_MESSAGE(fw, (fw ? "" : fw.error().str()));
  return std::move(*fw);
}

void apply(Firewall& fw, const Policy& p) {
  auto r = fw.apply(p);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().str()));
}

void expect_in_place(Firewall& fw) {
  auto v = fw.verify();
  REQUIRE_MESSAGE(v, (v ? "" : v.error().str()));
  std::string all;
  for (const auto& d : *v) all += d + "; ";
  CHECK_MESSAGE(v->empty(), all);
}

std::string listing(const lab::Netns& ns) { return ns.run({"nft", "list", "table", "inet", "leakguard"}).out; }

Policy sample(Mode mode, bool lan, std::size_t endpoints) {
  Policy p;
  p.mode = mode;
  p.allow_lan = lan;
  p.tunnels = {*IfnamePattern::parse("wg0"), *IfnamePattern::parse("tun*")};
  p.endpoints = {*Endpoint::parse("198.51.100.1:51820"), *Endpoint::parse("[2001:db8:3::66]:51820/udp"),
                 *Endpoint::parse("203.0.113.9:443/tcp")};
  for (std::size_t i = 0; i < endpoints; ++i)
    p.endpoints.push_back(Endpoint{IpAddress::v4(198, 51, 100, static_cast<std::uint8_t>(i % 250 + 2)),
                                   static_cast<std::uint16_t>(1000 + i), i % 2 ? Transport::tcp : Transport::udp});
  // strict with a mark; udp without, its endpoints only for root's sockets (and the kernel's).
  if (mode == Mode::strict) p.fwmark = FwMark{0xca6c};
  else p.endpoint_uid = 0;
  p.lan_subnets = {*Prefix::parse("192.0.2.0/24"), *Prefix::parse("10.0.0.0/25"), *Prefix::parse("10.0.0.128/25"),
                   *Prefix::parse("2001:db8:2::/64")};
  return p;
}

}  // namespace

TEST_CASE("nft -f accepts the dry-run text and installs exactly what our batch installs") {
  lab::Netns ns("fwtext");
  Firewall fw = open_in(ns.name(), Ownership::off);  // nft itself must be able to replace the table
  const std::string file = "/tmp/" + lab::unique_name("fw") + ".nft";
  // With blocked packets logged for attribution too (limit + log before each block that leaves).
  Policy logged = sample(Mode::strict, false, 0);
  logged.log_blocked = Policy::LogBlocked{19527, 100, 50};
  for (const Policy& p : {sample(Mode::udp, false, 0), sample(Mode::strict, true, 0), sample(Mode::udp, true, 100), logged}) {
    INFO(p.str());
    apply(fw, p);
    expect_in_place(fw);
    const std::string ours = listing(ns);
    REQUIRE(ours.find("table inet leakguard") != std::string::npos);
    if (p.log_blocked) {
      CHECK(ours.find("meta l4proto udp limit rate 100/second burst 50 packets log prefix \"udp-out\" group 19527") != std::string::npos);
      CHECK(ours.find("meta l4proto tcp limit rate 100/second burst 50 packets log prefix \"tcp-out\" group 19527 jump senders") !=
            std::string::npos);
      CHECK(ours.find("update @senders6 { socket cgroupv2 level 8 . ip6 daddr . meta l4proto . th sport . th dport }") != std::string::npos);
    }
    REQUIRE(fw.remove());
    CHECK(ns.run({"nft", "list", "tables"}).out.find("leakguard") == std::string::npos);

    TextOptions o;
    o.replace = true;
    {
      std::ofstream(file) << to_nft_text(build_ruleset(p), o);
    }
    const auto loaded = ns.run({"nft", "-f", file});
    REQUIRE_MESSAGE(loaded.status == 0, loaded.out);
    CHECK(listing(ns) == ours);
    // And the batch replaces what nft installed, in place.
    apply(fw, p);
    expect_in_place(fw);
    CHECK(listing(ns) == ours);
  }
  std::remove(file.c_str());
}

TEST_CASE("the table is owned by our socket and persists - verify sees it in place") {
  lab::Netns ns("fwown");
  Firewall fw = open_in(ns.name());
  REQUIRE_MESSAGE(fw.owns_table(), fw.ownership_note());  // this kernel has owner + persist
  apply(fw, sample(Mode::udp, true, 3));
  expect_in_place(fw);
  const std::string l = listing(ns);
  CHECK(l.find("flags owner") != std::string::npos);
  MESSAGE("ownership: " << fw.ownership_note());
}

TEST_CASE("only endpoint and LAN changes are set updates - 10000 endpoints in one transaction") {
  lab::Netns ns("fwbig");
  Limits limits;
  limits.max_endpoints = 20000;
  Firewall fw = open_in(ns.name(), Ownership::automatic, limits);
  Policy p = sample(Mode::udp, true, 0);
  p.endpoints.clear();
  for (int i = 0; i < 10000; ++i)
    p.endpoints.push_back(Endpoint{IpAddress::v4(198, 51, static_cast<std::uint8_t>(i / 250), static_cast<std::uint8_t>(i % 250 + 1)),
                                   51820, Transport::udp});
  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::installed);
  MESSAGE("10000 endpoints: " << fw.last_apply().str());
  expect_in_place(fw);

  p.endpoints.push_back(*Endpoint::parse("203.0.113.200:1194"));
  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::set_elements);
  CHECK(fw.last_apply().messages == 1);
  expect_in_place(fw);
  p.endpoints.erase(p.endpoints.begin());
  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::set_elements);
  expect_in_place(fw);
  const auto set = ns.run({"nft", "list", "set", "inet", "leakguard", "endpoints4"}).out;
  CHECK(set.find("203.0.113.200 . udp . 1194") != std::string::npos);
  CHECK(set.find("198.51.0.1 . udp . 51820") == std::string::npos);
  CHECK(set.find("198.51.0.2 . udp . 51820") != std::string::npos);

  // The incremental way: no whole-policy comparison.
  const Endpoint e1 = *Endpoint::parse("203.0.113.201:51820"), e2 = *Endpoint::parse("[2001:db8::201]:51820");
  REQUIRE(fw.update_endpoints({e1, e2}, {*Endpoint::parse("198.51.0.2:51820")}));
  CHECK(fw.last_apply().how == ApplyReport::How::set_elements);
  CHECK(fw.last_apply().messages == 3);  // one delete, one add per family
  expect_in_place(fw);
  REQUIRE(fw.policy());
  CHECK(fw.policy()->endpoints.size() == p.endpoints.size() + 1);
  auto bad = fw.update_endpoints({*Endpoint::parse("0.0.0.0:1")}, {});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("endpoints (added)[0]") == 0);
  p = *fw.policy();

  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::unchanged);
  const Policy was = p;
  const std::string was_listed = listing(ns);
  p.mode = Mode::strict;
  p.tunnels.push_back(*IfnamePattern::parse("wg9"));
  p.fwmark = FwMark{7};
  apply(fw, p);
  CHECK(fw.last_apply().how == ApplyReport::How::replaced);
  REQUIRE(fw.policy());
  CHECK(*fw.policy() == p);  // the change of rules kept what it copied and what it did not
  expect_in_place(fw);
  const std::string now_listed = listing(ns);
  CHECK(now_listed != was_listed);
  // Undone and done again: the chains taken back and the messages copied from the rule memo's
  // older generation make the same table as the changes made the first time.
  for (int i = 0; i < 2; ++i) {
    apply(fw, was);
    CHECK(fw.last_apply().how == ApplyReport::How::replaced);
    CHECK(listing(ns) == was_listed);
    CHECK(*fw.policy() == was);
    expect_in_place(fw);
    apply(fw, p);
    CHECK(listing(ns) == now_listed);
    expect_in_place(fw);
  }
}

TEST_CASE("bad input is refused with the field named and the kernel state unchanged") {
  lab::Netns ns("fwbad");
  Firewall fw = open_in(ns.name());
  const Policy good = sample(Mode::strict, true, 2);
  apply(fw, good);
  const std::string before = ns.run({"nft", "list", "ruleset"}).out;

  struct Bad {
    const char* field;
    Policy p;
  };
  std::vector<Bad> bad;
  auto with = [&](auto f) {
    Policy p = good;
    f(p);
    return p;
  };
  bad.push_back({"tunnels[2]", with([](Policy& p) { p.tunnels.push_back(IfnamePattern{""}); })});
  bad.push_back({"tunnels[2]", with([](Policy& p) { p.tunnels.push_back(IfnamePattern{"sixteen-chars-xx"}); })});
  bad.push_back({"tunnels[2]", with([](Policy& p) { p.tunnels.push_back(IfnamePattern{"wg/0"}); })});
  bad.push_back({"tunnels[2]", with([](Policy& p) { p.tunnels.push_back(IfnamePattern{"wg 0"}); })});
  bad.push_back({"endpoints[5]", with([](Policy& p) {
                   Endpoint e = *Endpoint::parse("198.51.100.77:1");
                   e.port = 0;
                   p.endpoints.push_back(e);
                 })});
  bad.push_back({"endpoints[5]", with([](Policy& p) { p.endpoints.push_back(*Endpoint::parse("0.0.0.0:51820")); })});
  bad.push_back({"endpoints:", with([](Policy& p) { p.endpoints.assign(1025, *Endpoint::parse("198.51.100.1:51820")); })});
  bad.push_back({"fwmark", with([](Policy& p) { p.fwmark = FwMark{0}; })});
  bad.push_back({"lan_subnets[4]", with([](Policy& p) { p.lan_subnets.push_back(*Prefix::parse("0.0.0.0/0")); })});
  // Malformed text never becomes a Policy: the parsers the daemon uses refuse it first.
  CHECK_FALSE(Endpoint::parse("198.51.100.300:51820"));
  CHECK_FALSE(Endpoint::parse("198.51.100.1:65536"));
  CHECK_FALSE(Endpoint::parse("2001:db8::1:51820"));
  CHECK_FALSE(IfnamePattern::parse("wg 0"));

  for (const auto& b : bad) {
    CAPTURE(b.field);
    auto r = fw.apply(b.p);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(b.field) == 0);
    CHECK(ns.run({"nft", "list", "ruleset"}).out == before);
  }
  CHECK(fw.policy() == good);
  expect_in_place(fw);
}

TEST_CASE("a live owner's table cannot be taken over - after its socket is gone it can") {
  lab::Netns ns("fwtake");
  auto first = std::make_unique<Firewall>(open_in(ns.name()));
  apply(*first, sample(Mode::udp, false, 1));
  const std::string l1 = listing(ns);

  Firewall second = open_in(ns.name());
  auto r = second.apply(sample(Mode::strict, false, 1));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == EPERM);
  CHECK(r.error().message.find("owned by another process") != std::string::npos);
  MESSAGE("refused: " << r.error().str());
  CHECK(listing(ns) == l1);
  expect_in_place(*first);

  first.reset();  // the owner's socket closes: the table stays (persist), orphaned
  const std::string orphan = listing(ns);
  CHECK(orphan.find("flags owner") == std::string::npos);
  CHECK(orphan.find("chain output") != std::string::npos);
  apply(second, sample(Mode::strict, false, 1));
  CHECK(second.last_apply().how == ApplyReport::How::installed);  // adopted in place, not made anew
  expect_in_place(second);
  CHECK(listing(ns).find("flags owner") != std::string::npos);
  REQUIRE(second.remove());
  CHECK(ns.run({"nft", "list", "tables"}).out.find("leakguard") == std::string::npos);
  REQUIRE(second.remove());  // removing what is not there is fine
}

TEST_CASE("what the first apply finds: a table by hand (no persist) is made anew owned - a handover table left behind goes") {
  lab::Netns ns("fwfind");
  // `nft -f` of our own dry run: a table without flags, which the kernel will not give an owner.
  TextOptions o;
  o.replace = true;
  const std::string file = "/tmp/" + lab::unique_name("fw") + ".nft";
  {
    std::ofstream(file) << to_nft_text(build_ruleset(sample(Mode::udp, false, 1)), o);
  }
  REQUIRE(ns.run({"nft", "-f", file}).status == 0);
  std::remove(file.c_str());
  // As if a daemon had died between the steps of a recreation.
  REQUIRE(ns.run({"nft", "add", "table", "inet", "leakguard-handover"}).status == 0);

  Firewall fw = open_in(ns.name());
  apply(fw, sample(Mode::strict, false, 1));
  CHECK(fw.last_apply().how == ApplyReport::How::recreated);
  expect_in_place(fw);  // ours, with the owner flag
  CHECK(ns.run({"nft", "list", "tables"}).out.find("leakguard-handover") == std::string::npos);

  // The daemon restarts: the orphan is adopted in place, a leftover handover table goes with it.
  REQUIRE(ns.run({"nft", "add", "table", "inet", "leakguard-handover"}).status == 0);
  {
    Firewall gone = std::move(fw);
  }
  Firewall next = open_in(ns.name());
  apply(next, sample(Mode::strict, false, 1));
  CHECK(next.last_apply().how == ApplyReport::How::installed);
  expect_in_place(next);
  CHECK(ns.run({"nft", "list", "tables"}).out.find("leakguard-handover") == std::string::npos);
}

TEST_CASE("without CAP_NET_ADMIN open() fails with a clear error instead of crashing") {
  lab::Netns ns("fwperm");
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    std::string msg;
    try {
      // Into the namespace for good (this process only lives for this check), then become
      // nobody: no capabilities left after the uid change.
      const int nsfd = open(("/run/netns/" + ns.name()).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) _exit(2);
      if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(3);
      auto fw = Firewall::open();
      msg = fw ? "opened" : fw.error().str();
    } catch (const std::exception& e) {
      msg = std::string("exception: ") + e.what();
    }
    (void)!write(fds[1], msg.data(), msg.size());
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  MESSAGE(out);
  CHECK(out.find("check nf_tables: permission denied") == 0);
  CHECK(out.find("CAP_NET_ADMIN") != std::string::npos);
}
