// The network watcher against the real kernel, in namespaces of its own: the model matches what
// `ip -j` reports, each change shows up once and correctly classified, wireguard-go's tunnel comes
// and goes, and an event storm that overflows the socket ends in a model equal to a fresh dump.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "netwatch/watcher.hpp"
#include "tests/lab/lab.hpp"

using namespace leakguard;
using namespace leakguard::netwatch;
using namespace std::chrono_literals;
namespace lab = leakguard::lab;

namespace {

void sh(const lab::Netns& ns, const std::vector<std::string>& argv) {
  auto r = ns.run(argv);
  INFO(r.out);
  REQUIRE(r.status == 0);
}

// Runs the loop until `done()` or the deadline; true if done.
template <typename P>
bool run_until(boost::asio::io_context& io, P done, std::chrono::milliseconds deadline = 5s) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) return false;
    io.run_one_for(end - now);
  }
  return true;
}

std::uint32_t table_number(const nlohmann::json& r) {
  if (!r.contains("table")) return 254;
  const std::string t = r["table"];
  if (t == "main") return 254;
  if (t == "local") return 255;
  if (t == "default") return 253;
  return static_cast<std::uint32_t>(std::stoul(t));
}

std::uint8_t type_number(const nlohmann::json& r) {
  static const std::map<std::string, std::uint8_t> types{{"unicast", 1}, {"local", 2},     {"broadcast", 3},
                                                         {"anycast", 4}, {"multicast", 5}, {"blackhole", 6},
                                                         {"unreachable", 7}, {"prohibit", 8}, {"throw", 9}};
  return r.contains("type") ? types.at(r["type"]) : 1;
}

// The same facts from `ip -j` and from the model, as comparable lines.
struct Facts {
  std::set<std::string> links, addresses, routes;
};

Facts from_ip(const lab::Netns& ns) {
  Facts f;
  auto j = [&](std::vector<std::string> argv) {
    auto r = ns.run(argv);
    REQUIRE(r.status == 0);
    return nlohmann::json::parse(r.out);
  };
  for (const auto& l : j({"ip", "-j", "link", "show"})) {
    const bool up = std::find(l["flags"].begin(), l["flags"].end(), "UP") != l["flags"].end();
    f.links.insert(std::to_string(l["ifindex"].get<int>()) + " " + l["ifname"].get<std::string>() + " mtu " +
                   std::to_string(l["mtu"].get<int>()) + (up ? " up" : " down"));
    }
  for (const auto& l : j({"ip", "-j", "addr", "show"}))
    for (const auto& a : l["addr_info"])
      f.addresses.insert(std::to_string(l["ifindex"].get<int>()) + " " + a["local"].get<std::string>() + "/" +
                         std::to_string(a["prefixlen"].get<int>()));
  std::map<std::string, int> index;
  for (const auto& l : j({"ip", "-j", "link", "show"})) index[l["ifname"]] = l["ifindex"];
  for (const char* fam : {"-4", "-6"})
    for (const auto& r : j({"ip", fam, "-j", "route", "show", "table", "all"})) {
      std::string dst = r["dst"];
      if (dst == "default") dst = fam == std::string("-4") ? "0.0.0.0/0" : "::/0";
      else if (dst.find('/') == std::string::npos) dst += fam == std::string("-4") ? "/32" : "/128";
      f.routes.insert(dst + " dev " + (r.contains("dev") ? std::to_string(index[r["dev"]]) : "-") + " via " +
                      (r.contains("gateway") ? r["gateway"].get<std::string>() : "-") + " metric " +
                      std::to_string(r.value("metric", 0)) + " table " + std::to_string(table_number(r)) + " type " +
                      std::to_string(type_number(r)));
    }
  return f;
}

Facts from_model(const NetModel& m) {
  Facts f;
  for (const auto& [i, l] : m.links())
    f.links.insert(i.str() + " " + l.name + " mtu " + std::to_string(l.mtu) + (l.up() ? " up" : " down"));
  for (const auto& a : m.addresses()) f.addresses.insert(a.index.str() + " " + a.prefix.str());
  for (const auto& r : m.routes())
    f.routes.insert(r.dst.str() + " dev " + (r.oif.value ? r.oif.str() : "-") + " via " +
                    (r.gateway ? r.gateway->str() : "-") + " metric " + std::to_string(r.priority) + " table " +
                    std::to_string(r.table) + " type " + std::to_string(r.type));
  return f;
}

// A veth pair standing in for a tunnel (its name makes it one), both ends up.
void add_veth_tunnel(const lab::Netns& ns, const std::string& name) {
  sh(ns, {"ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"});
  sh(ns, {"ip", "link", "set", name + "p", "up"});
  sh(ns, {"ip", "link", "set", name, "up"});
}

// A namespace with an uplink (veth pair, both ends inside), addresses of both families, default
// routes, a policy-routing table and rules, the way wg-quick leaves a host.
void populate(const lab::Netns& ns) {
  // No duplicate address detection in this namespace: its end, a second or so after a link comes
  // up, changes the link-local addresses' flags — a change nobody made, which a slow (sanitized,
  // loaded) run would see land in the middle of a burst it is checking.
  sh(ns, {"sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"});
  sh(ns, {"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "gw0"});
  sh(ns, {"ip", "link", "set", "eth0", "up"});
  sh(ns, {"ip", "link", "set", "gw0", "up"});
  sh(ns, {"ip", "addr", "add", "192.0.2.10/24", "dev", "eth0"});
  sh(ns, {"ip", "addr", "add", "2001:db8:2::10/64", "dev", "eth0", "nodad"});
  sh(ns, {"ip", "route", "add", "default", "via", "192.0.2.1", "metric", "100"});
  sh(ns, {"ip", "-6", "route", "add", "default", "via", "2001:db8:2::1", "dev", "eth0", "metric", "1024"});
  sh(ns, {"ip", "route", "add", "default", "dev", "gw0", "table", "51820"});
  sh(ns, {"ip", "rule", "add", "not", "fwmark", "51820", "table", "51820"});
  sh(ns, {"ip", "rule", "add", "table", "main", "suppress_prefixlength", "0"});
  // The kernel gives eth0 and gw0 their IPv6 link-local addresses (and routes) once it has seen
  // their carrier come up, which it does later, on its own (linkwatch). Wait for both, with a
  // deadline, so that no test sees them arrive in the middle of what it watches.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    const auto r = ns.run({"ip", "-6", "-o", "addr", "show", "scope", "link"});
    if (r.out.find(" eth0 ") != std::string::npos && r.out.find(" gw0 ") != std::string::npos) break;
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "no IPv6 link-local addresses yet:\n" << r.out);
    std::this_thread::sleep_for(20ms);  // the poll interval of a wait with a deadline
  }
}

const Classifier kWg{{*IfnamePattern::parse("wg*")}};

}  // namespace

TEST_CASE("the dumped model matches ip -j of the same namespace") {
  lab::Netns ns("nw");
  populate(ns);
  Result<NetModel> m = [&] {
    lab::NetnsScope in(ns.name());
    return dump_model();
  }();
  REQUIRE(m);
  auto ip = from_ip(ns);
  auto ours = from_model(*m);
  CHECK(ours.links == ip.links);
  CHECK(ours.addresses == ip.addresses);
  CHECK(ours.routes == ip.routes);
  // Unmarked traffic follows the inverted fwmark rule into table 51820 (gw0); marked goes to eth0.
  CHECK(m->link(m->egress(Family::v4))->name == "gw0");
  CHECK(m->link(m->egress(Family::v4, 51820))->name == "eth0");
  CHECK(m->link(m->egress(Family::v6))->name == "eth0");
}

TEST_CASE("each change is notified once, after its burst, correctly classified") {
  lab::Netns ns("nw");
  populate(ns);
  lab::NetnsScope in(ns.name());
  boost::asio::io_context io;
  std::vector<std::vector<Change>> seen;
  Watcher w(io, {}, [&](const Watcher::Notification& n) {
    CHECK(n.rejected.empty());
    seen.push_back(n.changes);
  });
  REQUIRE(w.start());
  // A change of the test's own after a burst: the kernel reports changes in order, so once the
  // marker's notification is in, everything the burst caused is in too (no quiet time to wait).
  // lo's MTU: one link change, no route or address changes with it.
  int marks = 0;
  auto marker = [&] { sh(ns, {"ip", "link", "set", "lo", "mtu", std::to_string(65536 - ++marks)}); };
  auto marked = [&] {
    for (const auto& n : seen)
      for (const auto& c : n)
        if (c.kind == Change::Kind::link_changed && c.text == "lo changed") return true;
    return false;
  };
  auto step = [&](std::vector<std::vector<std::string>> commands) {
    seen.clear();
    for (auto& c : commands) sh(ns, c);
    REQUIRE(run_until(io, [&] { return !seen.empty(); }));
    marker();
    REQUIRE(run_until(io, marked));
    // Exactly one notification for the burst; the marker's came on its own and carried nothing else.
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].size() == 1);
    return seen[0];
  };
  auto count = [](const std::vector<Change>& cs, Change::Kind k, const std::string& text) {
    return std::count_if(cs.begin(), cs.end(), [&](const Change& c) { return c.kind == k && c.text == text; });
  };

  // A veth pair standing in for a container's link: both ends appear, classified "other".
  auto c = step({{"ip", "link", "add", "veth7", "type", "veth", "peer", "name", "veth7p"}});
  CHECK(count(c, Change::Kind::link_added, "veth7 added (veth)") == 1);
  CHECK(count(c, Change::Kind::link_added, "veth7p added (veth)") == 1);
  CHECK(w.model().classify(*w.model().link("veth7"), kWg) == InterfaceClass::other);

  c = step({{"ip", "addr", "add", "198.51.100.7/26", "dev", "veth7"}, {"ip", "link", "set", "veth7", "up"}});
  CHECK(count(c, Change::Kind::address_added, "198.51.100.7/26 added on veth7") == 1);

  // The IPv4 default route moves to the new link: one default-route change.
  c = step({{"ip", "route", "replace", "default", "via", "198.51.100.1", "dev", "veth7", "metric", "100"}});
  CHECK(std::count_if(c.begin(), c.end(), [](const Change& x) { return x.kind == Change::Kind::default_route_changed; }) == 1);

  c = step({{"ip", "link", "del", "veth7"}});
  CHECK(count(c, Change::Kind::link_removed, "veth7 removed") == 1);
  CHECK(count(c, Change::Kind::link_removed, "veth7p removed") == 1);
  CHECK(count(c, Change::Kind::address_removed, "198.51.100.7/26 removed from veth7") == 1);
  // The kernel dropped the IPv4 default route via veth7 with the link; the model agrees with it.
  auto truth = dump_model();
  REQUIRE(truth);
  CHECK(*truth == w.model());

  // A burst that undoes itself notifies nothing: once the marker made after it is in, the marker
  // is all that was reported (and shows that notifications did arrive).
  seen.clear();
  sh(ns, {"ip", "addr", "add", "198.51.100.9/32", "dev", "eth0"});
  sh(ns, {"ip", "addr", "del", "198.51.100.9/32", "dev", "eth0"});
  marker();
  REQUIRE(run_until(io, marked));
  std::vector<std::string> reported;
  for (const auto& n : seen)
    for (const auto& x : n) reported.push_back(x.text);
  CHECK(reported == std::vector<std::string>{"lo changed"});
  CHECK(w.stats().rejected == 0);
}

TEST_CASE("wireguard-go's tunnel going down and up, classified as a tunnel by name") {
  lab::Lab l;
  lab::NetnsScope in(l.ns("host"));
  boost::asio::io_context io;
  std::vector<Change> changes;
  int notes = 0;
  Watcher w(io, {}, [&](const Watcher::Notification& n) {
    ++notes;
    changes.insert(changes.end(), n.changes.begin(), n.changes.end());
  });
  REQUIRE(w.start());
  const Link* wg = w.model().link("wg0");
  REQUIRE(wg);
  CHECK(wg->kind == "tun");
  CHECK(w.model().classify(*wg, kWg) == InterfaceClass::tunnel);
  CHECK(w.model().classify(*w.model().link("eth0"), kWg) == InterfaceClass::physical);
  CHECK(w.model().link(w.model().egress(Family::v4))->name == "wg0");

  auto has = [&](Change::Kind k, const std::string& text) {
    return std::any_of(changes.begin(), changes.end(), [&](const Change& c) { return c.kind == k && c.text == text; });
  };
  l.set("tunnel", "down");
  REQUIRE(run_until(io, [&] { return has(Change::Kind::link_removed, "wg0 removed"); }));
  CHECK(w.model().link("wg0") == nullptr);
  CHECK(w.model().link(w.model().egress(Family::v4))->name == "eth0");

  changes.clear();
  l.set("tunnel", "up");
  REQUIRE(run_until(io, [&] {
    const Link* x = w.model().link("wg0");
    return has(Change::Kind::link_added, "wg0 added (tun)") && x && x->up() &&
           w.model().link(w.model().egress(Family::v4)) == x;
  }));
  CHECK(w.model().classify(*w.model().link("wg0"), kWg) == InterfaceClass::tunnel);
  CHECK(std::count_if(changes.begin(), changes.end(), [](const Change& c) { return c.text == "wg0 added (tun)"; }) == 1);
  auto truth = dump_model();
  REQUIRE(truth);
  CHECK(*truth == w.model());
  MESSAGE("tunnel down+up: " << notes << " notifications");
}

TEST_CASE("an address new on a tunnel and a new policy rule are published at once, not after the debounce") {
  // Until the block's tunnel_addrs sets hold a new tunnel address, a LAN peer reaches it through
  // eth0 (a review counted 135 SYNs accepted per tunnel up, a debounce long); until a new rule
  // is seen, the family it sends around the tunnel is not escalated (69-81 SYNs out of eth0).
  lab::Netns ns("nwu");
  populate(ns);
  add_veth_tunnel(ns, "wg0");
  // No link-local address for the stand-in (a WireGuard device gets none): it would come on its
  // own, an address new on a tunnel, at a moment this test does not choose.
  sh(ns, {"sysctl", "-qw", "net.ipv6.conf.wg0.disable_ipv6=1"});
  lab::NetnsScope in(ns.name());
  boost::asio::io_context io;
  Watcher::Options o;
  o.debounce = 1h;  // only the immediate path can notify within the test's deadlines
  o.max_delay = 2h;
  o.is_tunnel = [](const std::string& name) { return name == "wg0"; };
  std::vector<Change> seen;
  Watcher w(io, o, [&](const Watcher::Notification& n) { seen.insert(seen.end(), n.changes.begin(), n.changes.end()); });
  REQUIRE(w.start());
  auto saw = [&](Change::Kind k) {
    return std::any_of(seen.begin(), seen.end(), [&](const Change& c) { return c.kind == k; });
  };
  // The control: an address new on a physical interface waits for its debounce (here an hour).
  sh(ns, {"ip", "addr", "add", "192.0.2.77/24", "dev", "eth0"});
  REQUIRE(run_until(io, [&] { return w.pending().addresses_of(w.pending().link("eth0")->index).size() >= 2; }, 10s));
  CHECK(seen.empty());
  CHECK(w.stats().immediate == 0);
  sh(ns, {"ip", "addr", "add", "100.64.0.9/24", "dev", "wg0"});
  REQUIRE(run_until(io, [&] { return saw(Change::Kind::address_added); }, 10s));
  CHECK(w.stats().immediate == 1);
  // Another watcher (the rate limit is one immediate publication per debounce): a new rule.
  std::vector<Change> seen2;
  Watcher w2(io, o, [&](const Watcher::Notification& n) { seen2.insert(seen2.end(), n.changes.begin(), n.changes.end()); });
  REQUIRE(w2.start());
  sh(ns, {"ip", "rule", "add", "uidrange", "65534-65534", "lookup", "main", "priority", "100"});
  REQUIRE(run_until(io, [&] {
    return std::any_of(seen2.begin(), seen2.end(), [](const Change& c) { return c.kind == Change::Kind::rule_changed; });
  }, 10s));
  CHECK(w2.stats().immediate == 1);
}

TEST_CASE("a tunnel's own link going down or away is published at once, not after the debounce") {
  lab::Netns ns("nw");
  populate(ns);
  add_veth_tunnel(ns, "wg0");
  // Its carrier comes up later, on the kernel's own (linkwatch, slower under load): wait for it,
  // with a deadline, so that the watcher's dump sees the link running.
  auto wait_carrier = [&](const std::string& name) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      const auto r = ns.run({"ip", "-o", "link", "show", name});
      if (r.out.find("LOWER_UP") != std::string::npos && r.out.find(" state UP ") != std::string::npos) break;  // carrier, operstate
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, name << " has no carrier yet:\n" << r.out);
      std::this_thread::sleep_for(20ms);  // the poll interval of a wait with a deadline
    }
  };
  wait_carrier("wg0");
  lab::NetnsScope in(ns.name());
  boost::asio::io_context io;
  Watcher::Options o;
  // A debounce far longer than the test's deadlines: only the immediate path can notify in time.
  o.debounce = 1h;
  o.max_delay = 2h;
  o.is_tunnel = [](const std::string& name) { return name == "wg0"; };
  std::vector<std::vector<Change>> seen;
  Watcher w(io, o, [&](const Watcher::Notification& n) { seen.push_back(n.changes); });
  REQUIRE(w.start());
  REQUIRE(w.model().link("wg0"));
  REQUIRE(w.model().link("wg0")->running());

  auto has = [&](Change::Kind k, const std::string& text) {
    for (const auto& cs : seen)
      for (const auto& c : cs)
        if (c.kind == k && c.text == text) return true;
    return false;
  };
  sh(ns, {"ip", "link", "set", "wg0", "down"});
  REQUIRE(run_until(io, [&] { return has(Change::Kind::link_down, "wg0 down"); }, 10s));
  CHECK(w.stats().immediate == 1);
  CHECK_FALSE(w.model().link("wg0")->up());

  // Within the rate limit (one immediate publication per debounce, here an hour) a second loss is
  // not immediate: a flapping tunnel coalesces like any other burst.
  sh(ns, {"ip", "link", "set", "wg0", "up"});
  sh(ns, {"ip", "link", "del", "wg0"});
  REQUIRE(run_until(io, [&] { return w.pending().link("wg0") == nullptr; }, 10s));  // the removal was read
  CHECK(w.stats().immediate == 1);
  CHECK(seen.size() == 1);

  // Another watcher, another tunnel going away outright: at once.
  add_veth_tunnel(ns, "wg1");
  wait_carrier("wg1");  // as for wg0 (seen failing once in a cold run: the dump came first)
  o.is_tunnel = [](const std::string& name) { return name == "wg1"; };
  std::size_t notes = 0;
  bool removed = false;
  Watcher w2(io, o, [&](const Watcher::Notification& n) {
    ++notes;
    for (const auto& c : n.changes) removed = removed || (c.kind == Change::Kind::link_removed && c.text == "wg1 removed");
  });
  REQUIRE(w2.start());
  REQUIRE(run_until(io, [&] { return w2.model().link("wg1") && w2.model().link("wg1")->running(); }, 10s));
  sh(ns, {"ip", "link", "del", "wg1"});
  REQUIRE(run_until(io, [&] { return w2.stats().immediate == 1 && notes > 0; }, 10s));
  const Link* wg1 = w2.model().link("wg1");
  CHECK((removed || (wg1 && !wg1->up())));  // gone, or (the verify dump was quicker) going
}

TEST_CASE("a tunnel's link lost is published before the dump that verifies it, and the dump follows") {
  lab::Netns ns("nw");
  populate(ns);
  add_veth_tunnel(ns, "wg0");
  lab::NetnsScope in(ns.name());
  boost::asio::io_context io;
  Watcher::Options o;
  o.debounce = 300ms;  // the verification's delay after the immediate publication
  o.is_tunnel = [](const std::string& name) { return name == "wg0"; };
  std::optional<bool> loss_verified;  // whether the notification of the loss came after a dump
  Watcher w(io, o, [&](const Watcher::Notification& n) {
    for (const auto& c : n.changes)
      if ((c.text == "wg0 removed" || c.text == "wg0 down") && !loss_verified) loss_verified = n.verified;
  });
  REQUIRE(w.start());
  REQUIRE(w.model().link("wg0"));
  const auto before = w.stats();
  sh(ns, {"ip", "link", "del", "wg0"});
  REQUIRE(run_until(io, [&] { return loss_verified.has_value(); }, 10s));
  CHECK(w.stats().immediate == before.immediate + 1);
  CHECK_FALSE(*loss_verified);  // told at once, with the events as read: no dump in between
  // The control: the verification does come, a debounce later, and the model agrees with the kernel.
  REQUIRE(run_until(io, [&] { return w.stats().verifications > before.verifications; }, 10s));
  auto truth = dump_model();
  REQUIRE(truth);
  CHECK(*truth == w.model());
  CHECK(w.model().link("wg0") == nullptr);
}

TEST_CASE("a storm that overflows the socket is resynchronised and reported") {
  lab::Netns ns("nw");
  populate(ns);
  lab::NetnsScope in(ns.name());
  boost::asio::io_context io;
  Watcher::Options o;
  o.receive_buffer = 64 * 1024;  // small on purpose: the storm must overflow it
  o.verify = false;              // prove the ENOBUFS path alone converges
  bool resynced = false;
  std::size_t notes = 0;
  Watcher w(io, o, [&](const Watcher::Notification& n) {
    ++notes;
    resynced = resynced || n.resynced;
  });
  REQUIRE(w.start());

  // 10,000 route changes and 1,000 address changes in one `ip -batch`, while this thread (the
  // reader) is busy waiting for it: the kernel has to drop events.
  const std::string batch = "/tmp/" + lab::unique_name("storm") + ".batch";
  {
    std::ofstream b(batch);
    for (int i = 0; i < 5000; ++i)
      b << "route add 100.64." << i / 250 << "." << i % 250 + 1 << "/32 dev eth0\n";
    for (int i = 0; i < 2500; ++i) b << "route del 100.64." << i / 250 << "." << i % 250 + 1 << "/32 dev eth0\n";
    for (int i = 0; i < 2500; ++i) b << "route add 2001:db8:ff:" << std::hex << i << std::dec << "::/64 dev eth0\n";
    for (int i = 0; i < 700; ++i) b << "addr add 100.65." << i / 250 << "." << i % 250 + 1 << "/32 dev eth0\n";
    for (int i = 0; i < 300; ++i) b << "addr del 100.65." << i / 250 << "." << i % 250 + 1 << "/32 dev eth0\n";
  }
  auto r = ns.run({"ip", "-batch", batch});
  std::remove(batch.c_str());
  INFO(r.out);
  REQUIRE(r.status == 0);

  auto truth = dump_model();
  REQUIRE(truth);
  REQUIRE(run_until(io, [&] { return w.model() == *truth; }, 10s));
  CHECK(w.stats().overflows >= 1);
  CHECK(resynced);
  CHECK(w.stats().rejected == 0);
  CHECK(w.model().routes().size() == truth->routes().size());
  MESSAGE("storm: " << w.stats().events << " events applied, " << w.stats().overflows << " overflows, " << notes
                    << " notifications, " << w.model().routes().size() << " routes, " << w.model().addresses().size()
                    << " addresses");
}

TEST_CASE("policy rules with selectors and a multipath route, from the kernel's own dump") {
  lab::Netns ns("nwsel");
  populate(ns);
  auto dumped = [&] {
    lab::NetnsScope in(ns.name());
    auto m = dump_model();
    REQUIRE(m);
    return *m;
  };
  // The control: wg-quick-like rules send the internet into table 51820 (gw0).
  CHECK(dumped().link(dumped().egress(Family::v4))->name == "gw0");
  // A LAN excluded from the tunnel, a source rule, a device rule: none decides the internet's way.
  sh(ns, {"ip", "rule", "add", "to", "192.0.2.0/24", "lookup", "main", "priority", "100"});
  sh(ns, {"ip", "rule", "add", "oif", "eth0", "lookup", "main", "priority", "101"});
  sh(ns, {"ip", "rule", "add", "iif", "gw0", "lookup", "main", "priority", "102"});
  auto m = dumped();
  CHECK(m.link(m.egress(Family::v4))->name == "gw0");
  CHECK(m.side_egresses(Family::v4).empty());
  // One user kept out of the tunnel: the others' way is the tunnel, theirs is eth0.
  sh(ns, {"ip", "rule", "add", "uidrange", "65534-65534", "lookup", "main", "priority", "103"});
  sh(ns, {"ip", "-6", "rule", "add", "ipproto", "tcp", "dport", "443", "lookup", "main", "priority", "103"});
  m = dumped();
  CHECK(m.link(m.egress(Family::v4))->name == "gw0");
  auto side = m.side_egresses(Family::v4);
  REQUIRE(side.size() == 1);
  CHECK(side[0].selector == "uidrange 65534-65534");
  CHECK(m.link(side[0].oif)->name == "eth0");
  // IPv6's main table is its egress already (no tunnel rule for IPv6 here): no side way.
  CHECK(m.side_egresses(Family::v6).empty());
  // Deleting one of two rules at the same priority leaves the other (they are told apart).
  sh(ns, {"ip", "rule", "del", "to", "192.0.2.0/24", "lookup", "main", "priority", "100"});
  sh(ns, {"ip", "rule", "del", "uidrange", "65534-65534", "lookup", "main", "priority", "103"});
  sh(ns, {"ip", "rule", "del", "not", "fwmark", "51820", "table", "51820"});
  // A multipath default route (ECMP, multi-WAN): its first hop's device is the way out.
  sh(ns, {"ip", "route", "replace", "default", "metric", "100", "nexthop", "via", "192.0.2.1", "dev", "eth0", "nexthop", "via",
          "192.0.2.2", "dev", "eth0"});
  m = dumped();
  const Link* out = m.link(m.egress(Family::v4));
  REQUIRE_MESSAGE(out, to_text(m, kWg));
  CHECK(out->name == "eth0");
}
