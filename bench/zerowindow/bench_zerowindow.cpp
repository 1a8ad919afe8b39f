// The zero-window benchmark: how many blocked datagrams get through while the firewall changes,
// per kind of change, per million sent. Paced UDP floods (tests/integration/firewall/flood.hpp)
// send blocked datagrams (200,000/s per flow by default) and allowed ones (20,000/s) out of
// "eth0" and "tun0" of a fresh namespace pair while one kind of change is repeated N times; the
// receiver counts what arrived by sequence number.
//
//   bench_zerowindow [--run KINDS:CHANGES[:MAGNIFY]]... [--blocked-rate R] [--allowed-rate R] [--contention T]
//
// Each --run repeats every kind it names (a comma list, or "all") CHANGES times, with the
// magnifier of MAGNIFY rules if given. Without --run: all:10000, then all:300:3000.
//
// Kinds (each with a fresh Firewall in a fresh namespace pair):
//   same       whole-table replace with the same policy (Firewall::reassert(), as the guard does)
//   mode       udp <-> strict (apply)
//   tunnels    the tunnel list changes: [tun0] <-> [tun0, wg*] (apply)
//   endpoints  an endpoint added / removed (apply: set elements)
//   lan        a LAN subnet added / removed with allow_lan (apply: interval set elements)
//   guard      a foreign process adds an endpoint element (owner flag off); the table guard
//              notices and repairs the table in place (the change counted is the guard's repair)
//   recreate   a foreign process adds a chain to our table (owner flag off); the guard cannot
//              repair that in place and makes the table anew, through the handover table
//   takeover   the owning socket closes (the table is orphaned) and a new Firewall takes the
//              table over (owner + persist)
// --contention T runs T busy threads beside the flood and the changes (CI runs tests two at a
// time on two cores). The magnifier widens any window between two chains (class Magnifier):
// what takes a million changes to see without it shows within a thousand. Prints figures;
// asserts nothing. Root; touches only its own namespaces.
#include <netinet/in.h>  // before linux/netfilter.h, which would define in_addr again
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.hpp"
#include "firewall/firewall.hpp"
#include "firewall/netfilter_socket.hpp"
#include "firewall/ruleset_nft.hpp"
#include "firewall/table_guard.hpp"
#include "tests/integration/firewall/flood.hpp"

using namespace leakguard;
using namespace leakguard::firewall;
using namespace fwtest;
namespace lab = leakguard::lab;

namespace {

Policy base(Mode m) {
  Policy p;
  p.mode = m;
  p.tunnels = {*IfnamePattern::parse("tun0")};
  p.endpoints = {*Endpoint::parse("192.0.2.2:5001/udp"), *Endpoint::parse("198.51.100.1:51820")};
  return p;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_zerowindow: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what + ": " + r.error().str());
  return std::move(*r);
}
void must(Result<void> r, const std::string& what) {
  if (!r) die(what + ": " + r.error().str());
}

Firewall open_in(const std::string& ns, Ownership own) {
  lab::NetnsScope in(ns);
  Options o;
  o.ownership = own;
  return must(Firewall::open(o), "open firewall");
}

/// Busy threads: CPU contention beside the flood and the changes.
class Contention {
 public:
  explicit Contention(int threads) {
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this] {
        volatile std::uint64_t x = 0;
        while (!stop_.load(std::memory_order_relaxed)) x = x + 1;
      });
  }
  ~Contention() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

/// A foreign transaction that adds a chain to our table ("intruder", no hook, no rules): harmless
/// to traffic, but nothing a repair in place removes, so the guard must make the table anew.
nft::Batch foreign_chain_batch(std::uint32_t seq) {
  nft::Batch b;
  b.begin_seq = seq;
  b.bytes.resize(4096);
  char* p = reinterpret_cast<char*>(b.bytes.data());
  std::size_t off = 0;
  nlmsghdr* h = nftnl_batch_begin(p, seq++);
  off += NLMSG_ALIGN(h->nlmsg_len);
  h = nftnl_nlmsg_build_hdr(p + off, NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, seq);
  nftnl_chain* c = nftnl_chain_alloc();
  nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, std::string(kTableName).c_str());
  nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, "intruder");
  nftnl_chain_nlmsg_build_payload(h, c);
  nftnl_chain_free(c);
  b.steps.push_back({seq++, NFT_MSG_NEWCHAIN, "add chain intruder", -1, {}});
  off += NLMSG_ALIGN(h->nlmsg_len);
  b.end_seq = seq;
  h = nftnl_batch_end(p + off, seq);
  off += NLMSG_ALIGN(h->nlmsg_len);
  b.bytes.resize(off);
  return b;
}

/// One kind of change: prepares its firewall, then makes change number i.
struct Kind {
  std::string name;
  std::string what;
  std::function<void(TwoHosts&)> setup;
  std::function<void(long)> change;
  std::function<void()> teardown;
};

struct Totals {
  std::uint64_t blocked_sent = 0, blocked_through = 0, allowed_sent = 0, allowed_refused = 0, allowed_lost = 0, errors = 0,
                overflow = 0;
};

Totals run_kind(Kind& k, long changes, int blocked_rate, int allowed_rate, int contention, int magnify) {
  TwoHosts net;
  k.setup(net);
  std::optional<Magnifier> slow;
  if (magnify > 0) slow.emplace(net.snd, magnify);
  // Two floods, each with its own sender: the blocked one as fast as asked (the more blocked
  // datagrams meet each change, the smaller the window the bench can see), the allowed one at a
  // rate the receiver can count exactly.
  Flood blocked(net,
                {{"blocked udp via eth0", false, "eth0", "192.0.2.2", 5002},
                 {"blocked udp6 via eth0", false, "eth0", "2001:db8:1::2", 5004}},
                blocked_rate);
  Flood allowed(net,
                {{"endpoint via eth0", true, "eth0", "192.0.2.2", 5001}, {"via tunnel", true, "tun0", "100.64.1.2", 5003}},
                allowed_rate);
  std::optional<Contention> busy;
  if (contention > 0) busy.emplace(contention);
  blocked.start();
  allowed.start();
  const auto t0 = Clock::now();
  for (long i = 0; i < changes; ++i) {
    if (slow) slow->rehook();
    k.change(i);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  busy.reset();
  blocked.stop();
  allowed.stop();
  k.teardown();

  Totals t;
  for (const Flood* flood : {&blocked, &allowed})
    for (std::size_t i = 0; i < flood->flows(); ++i) {
      const auto c = flood->counts(i);
      t.errors += c.errors;
      t.overflow += c.overflow;
      if (flood->spec(i).must_pass) {
        t.allowed_sent += c.sent + c.refused;
        t.allowed_refused += c.refused;
        t.allowed_lost += c.sent - std::min(c.sent, c.received);
      } else {
        t.blocked_sent += c.sent + c.refused;
        t.blocked_through += std::max(c.sent, c.received);
      }
    }
  const double per_million = t.blocked_sent ? 1e6 * static_cast<double>(t.blocked_through) / static_cast<double>(t.blocked_sent) : 0;
  std::printf("%-10s %9ld changes in %7.1f s (%.3f ms each): blocked %llu sent, %llu through (%.3f per million); "
              "allowed %llu sent, %llu refused, %llu lost; other errors %llu, rx overflow %llu\n",
              k.name.c_str(), changes, secs, 1e3 * secs / static_cast<double>(std::max(1L, changes)),
              static_cast<unsigned long long>(t.blocked_sent), static_cast<unsigned long long>(t.blocked_through), per_million,
              static_cast<unsigned long long>(t.allowed_sent), static_cast<unsigned long long>(t.allowed_refused),
              static_cast<unsigned long long>(t.allowed_lost), static_cast<unsigned long long>(t.errors),
              static_cast<unsigned long long>(t.overflow));
  std::fflush(stdout);
  char fig[160], ours[96];
  std::snprintf(fig, sizeof fig, "zero window: %s, %ld changes under a flood%s%s: blocked through per million", k.what.c_str(),
                changes, contention ? ", CPU contention" : "", magnify ? ", magnified" : "");
  std::snprintf(ours, sizeof ours, "%.3f (%llu of %llu)", per_million, static_cast<unsigned long long>(t.blocked_through),
                static_cast<unsigned long long>(t.blocked_sent));
  bench::result(fig, ours);
  return t;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

/// One --run: these kinds, this many changes each, this magnifier (0: none).
struct Run {
  std::vector<std::string> kinds;
  long changes = 0;
  int magnify = 0;
};

const std::vector<std::string> kAllKinds = {"same", "mode", "tunnels", "endpoints", "lan", "guard", "recreate", "takeover"};

/// "KINDS:CHANGES[:MAGNIFY]", KINDS a comma list or "all".
Run parse_run(const std::string& spec) {
  Run r;
  const auto a = spec.find(':');
  if (a == std::string::npos) die("--run " + spec + ": expected KINDS:CHANGES[:MAGNIFY]");
  const auto b = spec.find(':', a + 1);
  const std::string kinds = spec.substr(0, a);
  r.kinds = kinds == "all" ? kAllKinds : split(kinds);
  r.changes = std::stol(spec.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1));
  if (b != std::string::npos) r.magnify = std::stoi(spec.substr(b + 1));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int blocked_rate = 200000, allowed_rate = 20000, contention = 0;
  std::vector<Run> runs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--run") runs.push_back(parse_run(next()));
    else if (a == "--blocked-rate") blocked_rate = std::stoi(next());
    else if (a == "--allowed-rate") allowed_rate = std::stoi(next());
    else if (a == "--contention") contention = std::stoi(next());
    else die("usage: bench_zerowindow [--run KINDS:CHANGES[:MAGNIFY]]... [--blocked-rate R] [--allowed-rate R] [--contention T]");
  }
  // Without --run: every kind 10,000 times, then every kind 300 times magnified (a few minutes).
  if (runs.empty()) runs = {{kAllKinds, 10000, 0}, {kAllKinds, 300, 3000}};
  std::printf("flood: 2 blocked flows x %d datagrams/s (192.0.2.2:5002 and [2001:db8:1::2]:5004 via eth0), 2 allowed flows "
              "x %d datagrams/s (the endpoint 192.0.2.2:5001 via eth0, 100.64.1.2:5003 via tun0); %d busy thread(s) beside it\n",
              blocked_rate, allowed_rate, contention);

  std::optional<Firewall> fw;
  std::optional<NetfilterSocket> foreign;
  std::optional<boost::asio::io_context> io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::unique_ptr<TableGuard> guard;
  std::thread io_thread;
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t repairs = 0;
  std::string ns;

  auto plain_setup = [&](Ownership own, Policy p) {
    return [&, own, p](TwoHosts& net) {
      ns = net.snd.name();
      fw.emplace(open_in(ns, own));
      must(fw->apply(p), "first apply");
    };
  };
  auto plain_teardown = [&] { fw.reset(); };

  std::vector<Kind> all;
  all.push_back({"same", "replace, same policy", plain_setup(Ownership::automatic, base(Mode::udp)),
                 [&](long) { must(fw->reassert(), "reassert"); }, plain_teardown});
  all.push_back({"mode", "udp <-> strict", plain_setup(Ownership::automatic, base(Mode::udp)),
                 [&](long i) { must(fw->apply(base(i % 2 ? Mode::udp : Mode::strict)), "apply mode"); }, plain_teardown});
  all.push_back({"tunnels", "tunnel list change", plain_setup(Ownership::automatic, base(Mode::udp)),
                 [&](long i) {
                   Policy p = base(Mode::udp);
                   if (i % 2 == 0) p.tunnels.push_back(*IfnamePattern::parse("wg*"));
                   must(fw->apply(p), "apply tunnels");
                 },
                 plain_teardown});
  all.push_back({"endpoints", "endpoint add/remove", plain_setup(Ownership::automatic, base(Mode::udp)),
                 [&](long i) {
                   Policy p = base(Mode::udp);
                   if (i % 2 == 0)
                     p.endpoints.push_back(Endpoint{IpAddress::v4(203, 0, 113, static_cast<std::uint8_t>(i / 2 % 250 + 1)),
                                                    static_cast<std::uint16_t>(1000 + i % 50000), Transport::udp});
                   must(fw->apply(p), "apply endpoints");
                 },
                 plain_teardown});
  auto lan = [](long i) {
    Policy p = base(Mode::udp);
    p.allow_lan = true;
    p.lan_subnets = {*Prefix::parse("10.1.0.0/16")};
    if (i % 2 == 0) p.lan_subnets.push_back(Prefix{IpAddress::v4(10, 2, static_cast<std::uint8_t>(i / 2 % 250), 0), 24});
    return p;
  };
  all.push_back({"lan", "LAN subnet add/remove", plain_setup(Ownership::automatic, lan(1)),
                 [&](long i) { must(fw->apply(lan(i)), "apply lan"); }, plain_teardown});
  // The table guard repairing what a foreign socket changed (owner flag off, so the kernel lets
  // the change through): `foreign_change(i)` makes change i, then we wait for the repair.
  auto guard_kind = [&](std::string name, std::string what, ApplyReport::How expect,
                        std::function<nft::Batch(long)> foreign_change) {
    return Kind{std::move(name), std::move(what),
                [&](TwoHosts& net) {
                  ns = net.snd.name();
                  fw.emplace(open_in(ns, Ownership::off));
                  must(fw->apply(base(Mode::udp)), "first apply");
                  {
                    lab::NetnsScope in(ns);
                    foreign.emplace(must(NetfilterSocket::open(), "open foreign socket"));
                    io.emplace();
                    guard = must(TableGuard::start(*io, *fw,
                                                   [&](const TamperEvent& ev) {
                                                     if (!ev.restored) die("guard could not restore: " + ev.str());
                                                     std::lock_guard lock(m);
                                                     if (ev.repaired) ++repairs;
                                                     cv.notify_all();
                                                   }),
                                 "start guard");
                  }
                  work.emplace(io->get_executor());
                  io_thread = std::thread([&] { io->run(); });
                },
                [&, expect, foreign_change](long i) {
                  std::unique_lock lock(m);
                  const std::uint64_t before = repairs;
                  lock.unlock();
                  must(foreign->send(foreign_change(i)), "foreign change");
                  lock.lock();
                  if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return repairs > before; }))
                    die("the guard did not repair the table within 5 s");
                  if (fw->last_apply().how != expect) die("the guard's repair was " + fw->last_apply().str());
                },
                [&] {
                  boost::asio::post(*io, [&] { guard->stop(); });
                  work.reset();
                  io_thread.join();
                  guard.reset();
                  io.reset();
                  foreign.reset();
                  fw.reset();
                }};
  };
  // A foreign element in our endpoint set: harmless to the blocked flows, repaired in place.
  all.push_back(guard_kind("guard", "guard repair after a foreign element", ApplyReport::How::repaired, [&](long i) {
    SetDelta d{"endpoints4", KeyType::endpoint4, false, {}, {}};
    d.add.emplace_back(Endpoint{IpAddress::v4(203, 0, 113, static_cast<std::uint8_t>(i % 250 + 1)), 9, Transport::udp});
    return nft::encode_set_deltas(kTableName, {d}, foreign->seq());
  }));
  // A foreign chain in our table: the repair in place cannot remove it, the table is made anew
  // (through the handover table).
  all.push_back(guard_kind("recreate", "guard recreating the table after a foreign chain", ApplyReport::How::recreated,
                           [&](long) { return foreign_chain_batch(foreign->seq()); }));
  all.push_back({"takeover", "takeover of the orphaned table by a new socket", plain_setup(Ownership::automatic, base(Mode::udp)),
                 [&](long i) {
                   fw.reset();  // the owning socket closes: the table stays, orphaned
                   fw.emplace(open_in(ns, Ownership::automatic));
                   must(fw->apply(base(i % 2 ? Mode::udp : Mode::strict)), "takeover");
                   // Adopted in place (the kernel's orphan adoption), not made anew.
                   if (fw->last_apply().how != ApplyReport::How::installed) die("takeover: " + fw->last_apply().str());
                   if (i % 1000 == 0) {
                     auto diff = must(fw->verify(), "verify");
                     if (!diff.empty()) die("takeover: the table differs: " + diff.front());
                   }
                 },
                 plain_teardown});

  Totals sum;
  for (const Run& run : runs) {
    if (run.magnify) std::printf("magnified: another table's chain of %d rules hooked in between before every change\n", run.magnify);
    for (const auto& name : run.kinds) {
      auto it = std::find_if(all.begin(), all.end(), [&](const Kind& k) { return k.name == name; });
      if (it == all.end()) die("unknown kind " + name);
      const Totals t = run_kind(*it, run.changes, blocked_rate, allowed_rate, contention, run.magnify);
      sum.blocked_sent += t.blocked_sent;
      sum.blocked_through += t.blocked_through;
      sum.allowed_refused += t.allowed_refused;
      sum.allowed_lost += t.allowed_lost;
    }
  }
  std::printf("total: %llu blocked datagrams sent, %llu through; %llu allowed refused, %llu allowed lost\n",
              static_cast<unsigned long long>(sum.blocked_sent), static_cast<unsigned long long>(sum.blocked_through),
              static_cast<unsigned long long>(sum.allowed_refused), static_cast<unsigned long long>(sum.allowed_lost));
  return 0;
}
