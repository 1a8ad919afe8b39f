#include "netwatch/model.hpp"

#include <linux/fib_rules.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/rtnetlink.h>

#include <algorithm>

#include "common/overloaded.hpp"

namespace leakguard::netwatch {

std::string_view to_string(Change::Kind k) {
  switch (k) {
    case Change::Kind::link_added: return "link-added";
    case Change::Kind::link_removed: return "link-removed";
    case Change::Kind::link_up: return "link-up";
    case Change::Kind::link_down: return "link-down";
    case Change::Kind::link_changed: return "link-changed";
    case Change::Kind::address_added: return "address-added";
    case Change::Kind::address_removed: return "address-removed";
    case Change::Kind::default_route_changed: return "default-route-changed";
    case Change::Kind::route_changed: return "route-changed";
    case Change::Kind::rule_changed: return "rule-changed";
  }
  return "?";
}

bool Classifier::is_tunnel(const std::string& name) const {
  return std::any_of(tunnels.begin(), tunnels.end(), [&](const IfnamePattern& p) { return p.matches(name); });
}

namespace {
// The kernel identifies an IPv4 route by table, destination, tos and metric; IPv6 also by next hop
// (equal-cost siblings are separate routes).
bool same_route(const Route& a, const Route& b) {
  if (a.family != b.family || a.table != b.table || a.dst != b.dst || a.tos != b.tos || a.priority != b.priority) return false;
  return a.family == Family::v4 || (a.gateway == b.gateway && a.oif == b.oif);
}

template <typename Set, typename Pred>
void erase_if_in(Set& s, Pred p) {
  for (auto it = s.begin(); it != s.end();) it = p(*it) ? s.erase(it) : std::next(it);
}

// Routes are ordered by family, table and destination first: the routes of one destination sit
// together, and this is where they start (every other field at its least).
Route first_route(Family f, std::uint32_t table, const Prefix& dst) {
  Route first;
  first.family = f;
  first.table = table;
  first.dst = dst;
  first.gateway.reset();
  first.oif = IfIndex{};
  first.priority = 0;
  first.type = 0;
  first.protocol = 0;
  first.scope = 0;
  first.tos = 0;
  return first;
}

// The routes a new one can replace, found in O(log n) rather than by a scan (storms of thousands
// of routes).
// `replace` (NLM_F_REPLACE): the new route takes the place of the one with the same key whatever
// its next hop - for IPv6 too, where the kernel then sends no delete for the old one (`ip -6 route
// replace` with another gateway: one RTM_NEWROUTE, the old route gone from the table).
template <typename OnErase>
void erase_same_route(std::set<Route>& routes, const Route& r, OnErase on_erase, bool replace = false) {
  for (auto it = routes.lower_bound(first_route(r.family, r.table, r.dst));
       it != routes.end() && it->family == r.family && it->table == r.table && it->dst == r.dst;)
    if (same_route(*it, r) || (replace && it->tos == r.tos && it->priority == r.priority)) {
      on_erase(*it);
      it = routes.erase(it);
    } else {
      ++it;
    }
}

// Addresses are ordered by interface and prefix first: the same lookup for them.
void erase_same_address(std::set<Address>& addresses, const Address& a) {
  Address first;
  first.index = a.index;
  first.prefix = a.prefix;
  first.scope = 0;
  first.flags = 0;
  for (auto it = addresses.lower_bound(first); it != addresses.end() && it->index == a.index && it->prefix == a.prefix;)
    it = addresses.erase(it);
}
}  // namespace

bool NetModel::apply(const Event& e) {
  return std::visit(
      overloaded{
          [&](const Added<Link>& x) {
            auto old = links_.find(x.value.index);
            // IPv4 drops the routes of an interface that goes down without telling anyone.
            if (old != links_.end() && old->second.up() && !x.value.up())
              erase_if_in(routes_, [&](const Route& r) {
                const bool gone = r.family == Family::v4 && r.oif == x.value.index;
                if (gone) route_erased(r);
                return gone;
              });
            links_[x.value.index] = x.value;
            return true;
          },
          [&](const Removed<Link>& x) {
            links_.erase(x.value.index);
            erase_if_in(addresses_, [&](const Address& a) { return a.index == x.value.index; });
            erase_if_in(routes_, [&](const Route& r) {
              const bool gone = r.oif == x.value.index;
              if (gone) route_erased(r);
              return gone;
            });
            return true;
          },
          [&](const Added<Address>& x) {
            erase_same_address(addresses_, x.value);
            addresses_.insert(x.value);
            return true;
          },
          [&](const Removed<Address>& x) {
            erase_same_address(addresses_, x.value);
            return true;
          },
          [&](const Added<Route>& x) {
            erase_same_route(routes_, x.value, [&](const Route& r) { route_erased(r); }, x.replace);
            if (routes_.insert(x.value).second) route_added(x.value);
            return true;
          },
          [&](const Removed<Route>& x) {
            erase_same_route(routes_, x.value, [&](const Route& r) { route_erased(r); });
            return true;
          },
          [&](const Added<Rule>& x) {
            rules_.insert(x.value);
            return true;
          },
          [&](const Removed<Rule>& x) {
            rules_.erase(x.value);
            return true;
          },
          [&](const Done&) { return false; },
          [&](const Ack&) { return false; },
      },
      e);
}

void NetModel::route_added(const Route& r) {
  if (r.is_default()) ++default_oifs_[r.oif];
}

void NetModel::route_erased(const Route& r) {
  if (!r.is_default()) return;
  auto it = default_oifs_.find(r.oif);
  if (it != default_oifs_.end() && --it->second == 0) default_oifs_.erase(it);
}

void NetModel::apply(const std::vector<Event>& events) {
  for (const auto& e : events) apply(e);
}

const Link* NetModel::link(IfIndex i) const {
  auto it = links_.find(i);
  return it == links_.end() ? nullptr : &it->second;
}

const Link* NetModel::link(const std::string& name) const {
  for (const auto& [_, l] : links_)
    if (l.name == name) return &l;
  return nullptr;
}

std::vector<Address> NetModel::addresses_of(IfIndex i) const {
  std::vector<Address> v;
  for (const auto& a : addresses_)
    if (a.index == i) v.push_back(a);
  return v;
}

std::vector<Route> NetModel::default_routes(Family f) const {
  std::vector<Route> v;
  for (const auto& r : routes_)
    if (r.family == f && r.is_default() && r.type == RTN_UNICAST) v.push_back(r);
  std::stable_sort(v.begin(), v.end(), [](const Route& a, const Route& b) {
    return a.table != b.table ? a.table < b.table : a.priority < b.priority;
  });
  return v;
}

InterfaceClass NetModel::classify(const Link& l, const Classifier& c) const {
  if (l.flags & IFF_LOOPBACK) return InterfaceClass::loopback;
  if (c.is_tunnel(l.name)) return InterfaceClass::tunnel;
  if (l.kind.empty() && l.type == ARPHRD_ETHER) return InterfaceClass::physical;  // real hardware: Ethernet, Wi-Fi
  if (default_oifs_.contains(l.index)) return InterfaceClass::physical;  // an uplink, whatever it is made of
  return InterfaceClass::other;
}

// A table's route to the internet: its best default route - unless both halves of the address
// space have a /1 route of their own, which win over /0 for every destination by longest prefix
// (OpenVPN's redirect-gateway def1: 0.0.0.0/1 and 128.0.0.0/1 via tun0, the default route left in
// place; ::/1 and 8000::/1 for IPv6). With /1 routes for only one half the internet leaves two
// ways; the default route's is the one reported, as before.
const Route* NetModel::internet_route(Family f, std::uint32_t table) const {
  const Route* best = nullptr;
  const Route* half[2] = {nullptr, nullptr};
  // Routes sort by family, table and destination: /0 and the lower /1 sit where the table's
  // destinations start at the all-zero address, the upper /1 where they reach 128.0.0.0 or 8000::.
  // Two short walks, not a scan of every route (a full routing table holds a million).
  auto walk = [&](std::uint8_t first_byte) {
    Prefix start;
    start.address.family = f;
    start.address.bytes[0] = first_byte;
    for (auto it = routes_.lower_bound(first_route(f, table, start)); it != routes_.end() && it->family == f && it->table == table; ++it) {
      const Route& r = *it;
      const auto& b = r.dst.address.bytes;
      if (b[0] != first_byte || std::any_of(b.begin() + 1, b.end(), [](std::uint8_t x) { return x != 0; })) break;
      if (r.dst.length > 1) break;  // longer prefixes of this address follow: none is a way to everything
      if (r.type != RTN_UNICAST) continue;
      const Route** slot = r.is_default() ? &best : &half[first_byte ? 1 : 0];
      if (!*slot || r.priority < (*slot)->priority) *slot = &r;
    }
  };
  walk(0);
  walk(0x80);
  if (half[0] && half[1]) return half[0];
  return best ? best : (half[0] ? half[0] : half[1]);
}

IfIndex NetModel::egress(Family f, std::uint32_t mark) const {
  std::vector<Rule> rules;
  for (const auto& r : rules_)
    if (r.family == f) rules.push_back(r);
  if (rules.empty()) {  // no rule information: the kernel's default is the main table
    const Route* r = internet_route(f, RT_TABLE_MAIN);
    return r ? r->oif : IfIndex{};
  }
  std::stable_sort(rules.begin(), rules.end(), [](const Rule& a, const Rule& b) { return a.priority < b.priority; });
  // Traffic an unbound socket sends to the internet: a rule for a source or destination prefix, a
  // device, or only some users, protocols or ports does not decide it (side_egresses() has those).
  for (const auto& rule : rules)
    if (const Route* r = decides_all(f, rule, mark)) return r->oif;
  return IfIndex{};
}

// Whether `rule` matches all such traffic (then the table's way to the internet, if it has one):
// the kernel inverts the match of all the rule's selectors together (fib_rule_match), so an
// inverted rule whose selectors that traffic does not all meet - a prefix, a device, some users
// ("not uidrange 1000-1000 lookup main": everyone else) - matches it.
const Route* NetModel::decides_all(Family f, const Rule& rule, std::uint32_t mark) const {
  if (!rule.local_traffic() || rule.selective()) {
    if (!rule.invert || rule.action != FR_ACT_TO_TBL) return nullptr;
    return table_route(f, rule);
  }
  return decides(f, rule, mark);
}

const Route* NetModel::decides(Family f, const Rule& rule, std::uint32_t mark) const {
  bool match = !rule.fwmark || ((mark & rule.fwmask) == *rule.fwmark);
  if (rule.invert) match = !match;
  if (!match || rule.action != FR_ACT_TO_TBL) return nullptr;
  return table_route(f, rule);
}

const Route* NetModel::table_route(Family f, const Rule& rule) const {
  const Route* r = internet_route(f, rule.table);
  if (!r) return nullptr;
  if (rule.suppress_prefixlen && r->dst.length <= *rule.suppress_prefixlen) return nullptr;
  return r;
}

std::vector<NetModel::SideEgress> NetModel::side_egresses(Family f, std::uint32_t mark) const {
  std::vector<SideEgress> out;
  const IfIndex main = egress(f, mark);
  std::vector<Rule> rules;
  for (const auto& r : rules_)
    if (r.family == f) rules.push_back(r);
  std::stable_sort(rules.begin(), rules.end(), [](const Rule& a, const Rule& b) { return a.priority < b.priority; });
  for (const auto& rule : rules) {
    if (decides_all(f, rule, mark)) break;  // the rule that decides egress(): nothing after it is reached
    // (An inverted one that selects some users, protocols or ports lets those through to later
    // rules; where they then go is not followed here.)
    if (!rule.selective() || rule.invert || !rule.local_traffic()) continue;
    const Route* r = decides(f, rule, mark);
    if (r && r->oif != main) out.push_back({rule.selector_text(), r->oif, rule.may_carry_pages()});
  }
  return out;
}

namespace {
std::string name_of(const NetModel& a, const NetModel& b, IfIndex i) {
  if (auto* l = b.link(i)) return printable_ifname(l->name);
  if (auto* l = a.link(i)) return printable_ifname(l->name);
  return "#" + i.str();
}

std::string route_text(const NetModel& m, const Route& r) {
  std::string s = r.gateway ? "via " + r.gateway->str() + " " : "";
  s += "dev " + (r.oif.value ? name_of(m, m, r.oif) : std::string("?"));
  if (r.table != RT_TABLE_MAIN) s += " table " + std::to_string(r.table);
  if (r.priority) s += " metric " + std::to_string(r.priority);
  return s;
}
}  // namespace

std::string link_lost(const NetModel& m, const Event& e) {
  const Link* after = nullptr;
  IfIndex index;
  if (const auto* a = std::get_if<Added<Link>>(&e)) {
    after = &a->value;
    index = a->value.index;
  } else if (const auto* r = std::get_if<Removed<Link>>(&e)) {
    index = r->value.index;
  } else {
    return "";
  }
  const Link* before = m.link(index);
  if (!before || !before->up() || !before->running()) return "";
  if (after && after->up() && after->running()) return "";
  return before->name;
}

bool urgent(const NetModel& m, const Event& e, const std::function<bool(const std::string&)>& is_tunnel) {
  if (const std::string lost = link_lost(m, e); !lost.empty()) return is_tunnel(lost);
  if (const auto* a = std::get_if<Added<Address>>(&e)) {
    const Link* l = m.link(a->value.index);
    if (!l || !is_tunnel(l->name)) return false;
    const auto had = m.addresses_of(a->value.index);  // (its flags may change: DAD done, renewed)
    return std::none_of(had.begin(), had.end(), [&](const Address& x) { return x.prefix == a->value.prefix; });
  }
  if (const auto* r = std::get_if<Added<Rule>>(&e)) return !m.rules().contains(r->value);
  return false;
}

std::vector<Change> diff(const NetModel& a, const NetModel& b) {
  using K = Change::Kind;
  std::vector<Change> out;
  for (const auto& [i, l] : b.links()) {
    const Link* old = a.link(i);
    if (!old) {
      out.push_back({K::link_added, i, printable_ifname(l.name) + " added" + (l.kind.empty() ? "" : " (" + printable_ifname(l.kind) + ")")});
      continue;
    }
    if (old->up() != l.up() || old->running() != l.running()) {
      const bool now = l.up() && l.running();
      out.push_back({now ? K::link_up : K::link_down, i, printable_ifname(l.name) + (now ? " up" : l.up() ? " lost carrier" : " down")});
    }
    if (old->name != l.name) out.push_back({K::link_changed, i, printable_ifname(old->name) + " renamed to " + printable_ifname(l.name)});
    else if (old->mtu != l.mtu || old->kind != l.kind) out.push_back({K::link_changed, i, printable_ifname(l.name) + " changed"});
  }
  for (const auto& [i, l] : a.links())
    if (!b.link(i)) out.push_back({K::link_removed, i, printable_ifname(l.name) + " removed"});
  for (const auto& x : b.addresses())
    if (!a.addresses().contains(x))
      out.push_back({K::address_added, x.index, x.prefix.str() + " added on " + name_of(a, b, x.index)});
  for (const auto& x : a.addresses())
    if (!b.addresses().contains(x))
      out.push_back({K::address_removed, x.index, x.prefix.str() + " removed from " + name_of(a, b, x.index)});
  for (Family f : {Family::v4, Family::v6}) {
    auto da = a.default_routes(f), db = b.default_routes(f);
    if (da != db) {
      auto text = [](const NetModel& m, const std::vector<Route>& v) {
        std::string s;
        for (const auto& r : v) s += (s.empty() ? "" : ", ") + route_text(m, r);
        return s.empty() ? std::string("none") : s;
      };
      out.push_back({K::default_route_changed, db.empty() ? IfIndex{} : db.front().oif,
                     std::string(to_string(f)) + " default route: " + text(a, da) + " -> " + text(b, db)});
    }
  }
  // Other routes and rules: one line per family/table with counts.
  std::map<std::pair<Family, std::uint32_t>, std::pair<int, int>> routes;
  for (const auto& r : b.routes())
    if (!r.is_default() && !a.routes().contains(r)) ++routes[{r.family, r.table}].first;
  for (const auto& r : a.routes())
    if (!r.is_default() && !b.routes().contains(r)) ++routes[{r.family, r.table}].second;
  for (const auto& [k, n] : routes)
    out.push_back({K::route_changed, IfIndex{},
                   std::string(to_string(k.first)) + " routes in table " + std::to_string(k.second) + ": +" +
                       std::to_string(n.first) + " -" + std::to_string(n.second)});
  for (Family f : {Family::v4, Family::v6}) {
    int added = 0, removed = 0;
    for (const auto& r : b.rules()) added += r.family == f && !a.rules().contains(r);
    for (const auto& r : a.rules()) removed += r.family == f && !b.rules().contains(r);
    if (added || removed)
      out.push_back({K::rule_changed, IfIndex{},
                     std::string(to_string(f)) + " rules: +" + std::to_string(added) + " -" + std::to_string(removed)});
  }
  return out;
}

namespace {
std::string scope_text(std::uint8_t s) {
  switch (s) {
    case RT_SCOPE_UNIVERSE: return "global";
    case RT_SCOPE_LINK: return "link";
    case RT_SCOPE_HOST: return "host";
    default: return std::to_string(s);
  }
}
}  // namespace

nlohmann::json to_json(const NetModel& m, const Classifier& c) {
  nlohmann::json j;
  j["links"] = nlohmann::json::array();
  for (const auto& [i, l] : m.links()) {
    nlohmann::json lj{{"index", i.value}, {"name", printable_ifname(l.name)}, {"kind", printable_ifname(l.kind)}, {"class", to_string(m.classify(l, c))},
                      {"up", l.up()}, {"running", l.running()}, {"mtu", l.mtu}};
    lj["addresses"] = nlohmann::json::array();
    for (const auto& a : m.addresses_of(i))
      lj["addresses"].push_back({{"family", to_string(a.prefix.address.family)}, {"address", a.prefix.address.str()},
                                 {"prefix", a.prefix.length}, {"scope", scope_text(a.scope)}});
    j["links"].push_back(lj);
  }
  j["default_routes"] = nlohmann::json::array();
  for (Family f : {Family::v4, Family::v6})
    for (const auto& r : m.default_routes(f)) {
      const Link* l = m.link(r.oif);
      j["default_routes"].push_back({{"family", to_string(f)},
                                     {"table", r.table},
                                     {"gateway", r.gateway ? nlohmann::json(r.gateway->str()) : nlohmann::json(nullptr)},
                                     {"interface", l ? nlohmann::json(printable_ifname(l->name)) : nlohmann::json(nullptr)},
                                     {"metric", r.priority}});
    }
  for (Family f : {Family::v4, Family::v6}) {
    const Link* l = m.link(m.egress(f));
    j["egress"][std::string(to_string(f))] = l ? nlohmann::json(printable_ifname(l->name)) : nlohmann::json(nullptr);
    auto& side = j["side_egress"][std::string(to_string(f))];
    side = nlohmann::json::array();
    for (const auto& s : m.side_egresses(f)) {
      const Link* sl = m.link(s.oif);
      side.push_back({{"selector", s.selector}, {"interface", sl ? nlohmann::json(printable_ifname(sl->name)) : nlohmann::json(nullptr)}});
    }
  }
  j["routes"] = m.routes().size();
  j["rules"] = m.rules().size();
  return j;
}

std::string to_text(const NetModel& m, const Classifier& c) {
  std::string s;
  for (const auto& [i, l] : m.links()) {
    s += printable_ifname(l.name) + " (" + std::string(to_string(m.classify(l, c))) + (l.kind.empty() ? "" : ", " + printable_ifname(l.kind)) + ") " +
         (l.up() ? (l.running() ? "up" : "up, no carrier") : "down") + ", mtu " + std::to_string(l.mtu) + "\n";
    for (const auto& a : m.addresses_of(i)) s += "    " + a.prefix.str() + " scope " + scope_text(a.scope) + "\n";
  }
  for (Family f : {Family::v4, Family::v6}) {
    for (const auto& r : m.default_routes(f)) s += std::string(to_string(f)) + " default " + route_text(m, r) + "\n";
    const Link* out = m.link(m.egress(f));
    s += std::string(to_string(f)) + " traffic leaves via " + (out ? printable_ifname(out->name) : std::string("nothing (no route)")) + "\n";
  }
  return s;
}

}  // namespace leakguard::netwatch
