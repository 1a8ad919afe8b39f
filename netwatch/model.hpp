#pragma once
// The network as the kernel describes it: links, addresses, routes (all tables), rules. A value:
// apply() events to it, diff() two of them, ask it where traffic goes. Pure.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/iface.hpp"
#include "netwatch/rtnl.hpp"

namespace leakguard::netwatch {

/// Which interface names are tunnels (configured patterns and interfaces VPN clients declared).
struct Classifier {
  std::vector<IfnamePattern> tunnels;
  bool is_tunnel(const std::string& name) const;
};

class NetModel {
 public:
  /// Applies one event; returns false for events that change nothing here (Done, Ack).
  bool apply(const Event& e);
  void apply(const std::vector<Event>& events);

  const std::map<IfIndex, Link>& links() const { return links_; }
  const std::set<Address>& addresses() const { return addresses_; }
  const std::set<Route>& routes() const { return routes_; }
  const std::set<Rule>& rules() const { return rules_; }

  const Link* link(IfIndex i) const;
  const Link* link(const std::string& name) const;
  std::vector<Address> addresses_of(IfIndex i) const;
  /// Default routes of a family in every table, best (lowest metric) first per table.
  std::vector<Route> default_routes(Family f) const;

  /// loopback; tunnel (by name); physical (hardware with no kind, or carrying a default route);
  /// other (bridges, container veths, ...: still listed, a page sees their addresses too).
  InterfaceClass classify(const Link& l, const Classifier& c) const;

  /// The interface an unmarked packet to the internet leaves by, following the rules and the
  /// default routes as the kernel would (suppress_prefixlength and fwmark rules included).
  /// 0 if there is no way out.
  IfIndex egress(Family f, std::uint32_t mark = 0) const;
  /// Where some of this host's traffic leaves instead of egress(f): a rule before the one that
  /// decides egress() that selects by user, protocol or port (`ip rule add uidrange 1000-1000
  /// lookup main`) and sends it to a table whose route to the internet goes by another device.
  struct SideEgress {
    std::string selector;  ///< "uidrange 1000-1000"
    IfIndex oif;
    bool pages = true;     ///< a web page's TCP can be among it (Rule::may_carry_pages())
    bool operator==(const SideEgress&) const = default;
  };
  std::vector<SideEgress> side_egresses(Family f, std::uint32_t mark = 0) const;

  bool operator==(const NetModel&) const = default;

 private:
  const Route* internet_route(Family f, std::uint32_t table) const;
  /// The table's route to the internet if `rule` sends a packet with `mark` there, else nullptr.
  const Route* decides(Family f, const Rule& rule, std::uint32_t mark) const;
  /// The same if `rule` matches all that an unbound socket sends to the internet (inverted
  /// selectors included).
  const Route* decides_all(Family f, const Rule& rule, std::uint32_t mark) const;
  /// The route to the internet of `rule`'s table, unless its suppress_prefixlength hides it.
  const Route* table_route(Family f, const Rule& rule) const;
  std::map<IfIndex, Link> links_;
  std::set<Address> addresses_;
  std::set<Route> routes_;
  std::set<Rule> rules_;
  // How many default routes each interface carries: classify() asks this for every link and every
  // address on every change, and a router's or a blocklist's 200,000 routes made each question a
  // scan (seconds per event, a tunnel loss seen 41 s late). Kept with routes_ by apply().
  std::map<IfIndex, std::size_t> default_oifs_;
  void route_added(const Route& r);
  void route_erased(const Route& r);
};

/// One difference between two models, for notifications and logs.
struct Change {
  enum class Kind {
    link_added, link_removed, link_up, link_down, link_changed,
    address_added, address_removed, default_route_changed, route_changed, rule_changed,
  };
  Kind kind;
  IfIndex index;      ///< the interface concerned, where there is one
  std::string text;   ///< e.g. "wg0 down", "192.0.2.10/24 added on eth0"
  bool operator==(const Change&) const = default;
};
std::string_view to_string(Change::Kind k);

/// The name of the interface `e` takes down or away: a link up and running in `m` that after `e`
/// is not, or is gone. "" for any other event.
std::string link_lost(const NetModel& m, const Event& e);

/// Whether `e`, applied to `m`, must reach the consumer at once rather than a debounce later (a
/// burst's urgent event, coalescer.hpp): a tunnel's link lost (link_lost); an address new on a
/// tunnel (until the block knows it, that address answers on eth0 too: CVE-2019-14899, the
/// firewall's `tunnel_addrs` sets); a policy rule new (it may send a family's traffic around the
/// tunnel, which an escalation closes).
bool urgent(const NetModel& m, const Event& e, const std::function<bool(const std::string&)>& is_tunnel);

/// What changed from `before` to `after`, links first, then addresses, then routes and rules.
/// Non-default route and rule changes are summarised (one entry per table and family).
std::vector<Change> diff(const NetModel& before, const NetModel& after);

/// The model for people and for machines.
std::string to_text(const NetModel& m, const Classifier& c);
nlohmann::json to_json(const NetModel& m, const Classifier& c);

}  // namespace leakguard::netwatch
