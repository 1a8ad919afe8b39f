#include "netwatch/rtnl.hpp"

#include <linux/fib_rules.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>

namespace leakguard::netwatch {
namespace {

using Bytes = std::span<const std::uint8_t>;

template <typename T>
T read(Bytes b, std::size_t off = 0) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

constexpr std::size_t align4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

struct Reject {
  std::string why;
};

// Walks the attributes in `b` (type, payload); any length that does not fit is a rejection.
std::optional<Reject> each_attr(Bytes b, const std::function<std::optional<Reject>(std::uint16_t, Bytes)>& f) {
  std::size_t off = 0;
  while (off < b.size()) {
    if (b.size() - off < sizeof(nlattr)) return Reject{"truncated attribute header"};
    const auto len = read<std::uint16_t>(b, off);
    const auto type = static_cast<std::uint16_t>(read<std::uint16_t>(b, off + 2) & NLA_TYPE_MASK);
    if (len < sizeof(nlattr)) return Reject{"attribute " + std::to_string(type) + " has length " + std::to_string(len)};
    if (len > b.size() - off)
      return Reject{"attribute " + std::to_string(type) + " (length " + std::to_string(len) + ") runs past the message"};
    if (auto r = f(type, b.subspan(off + sizeof(nlattr), len - sizeof(nlattr)))) return r;
    off += align4(len);
  }
  return std::nullopt;
}

std::optional<Reject> want_len(Bytes p, std::size_t n, const char* what) {
  if (p.size() != n) return Reject{std::string(what) + " has " + std::to_string(p.size()) + " bytes, not " + std::to_string(n)};
  return std::nullopt;
}

std::optional<Reject> get_string(Bytes p, const char* what, std::string& out, std::size_t max) {
  const auto* nul = static_cast<const std::uint8_t*>(std::memchr(p.data(), 0, p.size()));
  if (!nul) return Reject{std::string(what) + " is not NUL-terminated"};
  const auto len = static_cast<std::size_t>(nul - p.data());
  if (len == 0 || len > max) return Reject{std::string(what) + " has length " + std::to_string(len)};
  out.assign(reinterpret_cast<const char*>(p.data()), len);
  return std::nullopt;
}

std::optional<Family> family_of(std::uint8_t af) {
  if (af == AF_INET) return Family::v4;
  if (af == AF_INET6) return Family::v6;
  return std::nullopt;
}

std::optional<Reject> get_addr(Bytes p, Family f, const char* what, IpAddress& out) {
  const std::size_t n = f == Family::v4 ? 4 : 16;
  if (auto r = want_len(p, n, what)) return r;
  out = IpAddress{};
  out.family = f;
  std::memcpy(out.bytes.data(), p.data(), n);
  return std::nullopt;
}

std::optional<Reject> get_u32(Bytes p, const char* what, std::uint32_t& out) {
  if (auto r = want_len(p, 4, what)) return r;
  out = read<std::uint32_t>(p);
  return std::nullopt;
}

using Out = std::variant<std::monostate, Event, Reject>;

Out parse_link(std::uint16_t type, Bytes p) {
  if (p.size() < sizeof(ifinfomsg)) return Reject{"link message shorter than ifinfomsg"};
  const auto ifi = read<ifinfomsg>(p);
  Link l;
  if (ifi.ifi_index <= 0) return Reject{"link index " + std::to_string(ifi.ifi_index)};
  l.index = IfIndex{static_cast<std::uint32_t>(ifi.ifi_index)};
  l.type = ifi.ifi_type;
  l.flags = ifi.ifi_flags;
  auto r = each_attr(p.subspan(align4(sizeof(ifinfomsg))), [&](std::uint16_t t, Bytes v) -> std::optional<Reject> {
    switch (t) {
      case IFLA_IFNAME: return get_string(v, "IFLA_IFNAME", l.name, IFNAMSIZ - 1);
      case IFLA_MTU: return get_u32(v, "IFLA_MTU", l.mtu);
      case IFLA_OPERSTATE:
        if (auto e = want_len(v, 1, "IFLA_OPERSTATE")) return e;
        l.operstate = v[0];
        return std::nullopt;
      case IFLA_LINKINFO:
        return each_attr(v, [&](std::uint16_t it, Bytes iv) -> std::optional<Reject> {
          if (it == IFLA_INFO_KIND) return get_string(iv, "IFLA_INFO_KIND", l.kind, 64);
          return std::nullopt;
        });
      default: return std::nullopt;
    }
  });
  if (r) return *r;
  if (l.name.empty()) return Reject{"link " + l.index.str() + " without IFLA_IFNAME"};
  if (type == RTM_DELLINK) return Event{Removed<Link>{l}};
  return Event{Added<Link>{l}};
}

Out parse_addr(std::uint16_t type, Bytes p) {
  if (p.size() < sizeof(ifaddrmsg)) return Reject{"address message shorter than ifaddrmsg"};
  const auto ifa = read<ifaddrmsg>(p);
  auto fam = family_of(ifa.ifa_family);
  if (!fam) return std::monostate{};
  Address a;
  a.index = IfIndex{ifa.ifa_index};
  a.scope = ifa.ifa_scope;
  a.flags = ifa.ifa_flags;
  if (ifa.ifa_prefixlen > (*fam == Family::v4 ? 32 : 128)) return Reject{"prefix length " + std::to_string(ifa.ifa_prefixlen)};
  std::optional<IpAddress> local, address;
  auto r = each_attr(p.subspan(align4(sizeof(ifaddrmsg))), [&](std::uint16_t t, Bytes v) -> std::optional<Reject> {
    IpAddress x;
    switch (t) {
      case IFA_LOCAL:
        if (auto e = get_addr(v, *fam, "IFA_LOCAL", x)) return e;
        local = x;
        return std::nullopt;
      case IFA_ADDRESS:
        if (auto e = get_addr(v, *fam, "IFA_ADDRESS", x)) return e;
        address = x;
        return std::nullopt;
      case IFA_FLAGS: return get_u32(v, "IFA_FLAGS", a.flags);
      default: return std::nullopt;
    }
  });
  if (r) return *r;
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
  if (!local && !address) return Reject{"address message without IFA_LOCAL or IFA_ADDRESS"};
  a.prefix = Prefix{local ? *local : *address, ifa.ifa_prefixlen};
  if (a.index.value == 0) return Reject{"address on interface index 0"};
  if (type == RTM_DELADDR) return Event{Removed<Address>{a}};
  return Event{Added<Address>{a}};
}

Out parse_route(std::uint16_t type, std::uint16_t nl_flags, Bytes p) {
  if (p.size() < sizeof(rtmsg)) return Reject{"route message shorter than rtmsg"};
  const auto rtm = read<rtmsg>(p);
  auto fam = family_of(rtm.rtm_family);
  if (!fam) return std::monostate{};
  if (rtm.rtm_dst_len > (*fam == Family::v4 ? 32 : 128)) return Reject{"route prefix length " + std::to_string(rtm.rtm_dst_len)};
  Route rt;
  rt.family = *fam;
  rt.table = rtm.rtm_table;
  rt.type = rtm.rtm_type;
  rt.protocol = rtm.rtm_protocol;
  rt.scope = rtm.rtm_scope;
  rt.tos = rtm.rtm_tos;
  rt.dst = Prefix{IpAddress{}, rtm.rtm_dst_len};
  rt.dst.address.family = *fam;
  auto r = each_attr(p.subspan(align4(sizeof(rtmsg))), [&](std::uint16_t t, Bytes v) -> std::optional<Reject> {
    IpAddress x;
    switch (t) {
      case RTA_DST: return get_addr(v, *fam, "RTA_DST", rt.dst.address);
      case RTA_GATEWAY:
        if (auto e = get_addr(v, *fam, "RTA_GATEWAY", x)) return e;
        rt.gateway = x;
        return std::nullopt;
      case RTA_OIF: return get_u32(v, "RTA_OIF", rt.oif.value);
      case RTA_MULTIPATH: {
        // ECMP (`nexthop via A dev eth0 nexthop via B dev eth1`): the route leaves by its first
        // hop's device (the others are alternatives for other flows).
        if (v.size() < sizeof(rtnexthop)) return Reject{"RTA_MULTIPATH shorter than rtnexthop"};
        const auto nh = read<rtnexthop>(v);
        if (nh.rtnh_len < sizeof(rtnexthop) || nh.rtnh_len > v.size()) return Reject{"RTA_MULTIPATH's first hop has a bad length"};
        if (rt.oif.value == 0) rt.oif.value = static_cast<std::uint32_t>(nh.rtnh_ifindex);
        return std::nullopt;
      }
      case RTA_PRIORITY: return get_u32(v, "RTA_PRIORITY", rt.priority);
      case RTA_TABLE: return get_u32(v, "RTA_TABLE", rt.table);
      default: return std::nullopt;
    }
  });
  if (r) return *r;
  if (type == RTM_DELROUTE) return Event{Removed<Route>{rt}};
  return Event{Added<Route>{rt, (nl_flags & NLM_F_REPLACE) != 0}};
}

Out parse_rule(std::uint16_t type, Bytes p) {
  if (p.size() < sizeof(fib_rule_hdr)) return Reject{"rule message shorter than fib_rule_hdr"};
  const auto frh = read<fib_rule_hdr>(p);
  auto fam = family_of(frh.family);
  if (!fam) return std::monostate{};
  Rule ru;
  ru.family = *fam;
  ru.table = frh.table;
  ru.action = frh.action;
  ru.invert = (frh.flags & FIB_RULE_INVERT) != 0;
  ru.tos = frh.tos;
  const std::uint8_t max_len = *fam == Family::v4 ? 32 : 128;
  if (frh.src_len > max_len || frh.dst_len > max_len) return Reject{"rule prefix length out of range"};
  auto prefix = [&](Bytes v, const char* what, std::uint8_t len, std::optional<Prefix>& out) -> std::optional<Reject> {
    IpAddress a;
    if (auto e = get_addr(v, *fam, what, a)) return e;
    out = Prefix{a, len};
    return std::nullopt;
  };
  auto range16 = [&](Bytes v, const char* what, std::optional<std::pair<std::uint16_t, std::uint16_t>>& out) -> std::optional<Reject> {
    if (auto e = want_len(v, sizeof(fib_rule_port_range), what)) return e;
    const auto pr = read<fib_rule_port_range>(v);
    out = std::pair{pr.start, pr.end};
    return std::nullopt;
  };
  auto r = each_attr(p.subspan(align4(sizeof(fib_rule_hdr))), [&](std::uint16_t t, Bytes v) -> std::optional<Reject> {
    std::uint32_t x = 0;
    switch (t) {
      case FRA_SRC: return prefix(v, "FRA_SRC", frh.src_len, ru.src);
      case FRA_DST: return prefix(v, "FRA_DST", frh.dst_len, ru.dst);
      case FRA_IIFNAME: return get_string(v, "FRA_IIFNAME", ru.iif, IFNAMSIZ - 1);
      case FRA_OIFNAME: return get_string(v, "FRA_OIFNAME", ru.oif, IFNAMSIZ - 1);
      case FRA_UID_RANGE: {
        if (auto e = want_len(v, sizeof(fib_rule_uid_range), "FRA_UID_RANGE")) return e;
        const auto u = read<fib_rule_uid_range>(v);
        // The kernel reports its default, every uid, for a rule without one.
        if (!(u.start == 0 && u.end == 0xffffffff)) ru.uid_range = std::pair{u.start, u.end};
        return std::nullopt;
      }
      case FRA_IP_PROTO:
        if (auto e = want_len(v, 1, "FRA_IP_PROTO")) return e;
        ru.ip_proto = v[0];
        return std::nullopt;
      case FRA_SPORT_RANGE: return range16(v, "FRA_SPORT_RANGE", ru.sport);
      case FRA_DPORT_RANGE: return range16(v, "FRA_DPORT_RANGE", ru.dport);
      case FRA_L3MDEV:
        if (auto e = want_len(v, 1, "FRA_L3MDEV")) return e;
        ru.l3mdev = v[0] != 0;
        return std::nullopt;
      case FRA_FLOW: return get_u32(v, "FRA_FLOW", ru.flow);
      case FRA_TUN_ID: {
        if (auto e = want_len(v, 8, "FRA_TUN_ID")) return e;
        ru.tun_id = read<std::uint64_t>(v);
        return std::nullopt;
      }
      // No selectors: the goto target, who made it, padding, an interface group to suppress.
      case FRA_GOTO:
      case FRA_PROTOCOL:
      case FRA_PAD:
      case FRA_SUPPRESS_IFGROUP: return std::nullopt;
      case FRA_PRIORITY: return get_u32(v, "FRA_PRIORITY", ru.priority);
      case FRA_TABLE: return get_u32(v, "FRA_TABLE", ru.table);
      case FRA_FWMASK: return get_u32(v, "FRA_FWMASK", ru.fwmask);
      case FRA_FWMARK:
        if (auto e = get_u32(v, "FRA_FWMARK", x)) return e;
        ru.fwmark = x;
        return std::nullopt;
      case FRA_SUPPRESS_PREFIXLEN:
        if (auto e = get_u32(v, "FRA_SUPPRESS_PREFIXLEN", x)) return e;
        if (x != 0xffffffff) ru.suppress_prefixlen = x;  // all ones: not set
        return std::nullopt;
      default:
        // A selector of a newer kernel (DSCP, flow label, port masks): the rule matches less than
        // all traffic, in ways this model cannot tell.
        ru.other.push_back(t);
        return std::nullopt;
    }
  });
  if (r) return *r;
  if (type == RTM_DELRULE) return Event{Removed<Rule>{ru}};
  return Event{Added<Rule>{ru}};
}

}  // namespace

std::string Rule::selector_text() const {
  std::string s;
  auto add = [&](const std::string& x) { s += (s.empty() ? "" : " ") + x; };
  if (uid_range) add("uidrange " + std::to_string(uid_range->first) + "-" + std::to_string(uid_range->second));
  if (ip_proto) add("ipproto " + std::to_string(ip_proto));
  auto range = [](const std::pair<std::uint16_t, std::uint16_t>& r) {
    return std::to_string(r.first) + (r.first == r.second ? "" : "-" + std::to_string(r.second));
  };
  if (sport) add("sport " + range(*sport));
  if (dport) add("dport " + range(*dport));
  return s;
}

Parsed parse(std::span<const std::uint8_t> buf) {
  Parsed out;
  std::size_t off = 0;
  while (buf.size() - off >= sizeof(nlmsghdr)) {
    const auto h = read<nlmsghdr>(buf, off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > buf.size() - off) {
      out.rejected.push_back("message of type " + std::to_string(h.nlmsg_type) + " claims " + std::to_string(h.nlmsg_len) +
                             " bytes, " + std::to_string(buf.size() - off) + " left");
      break;  // the framing itself is broken: nothing after this can be trusted
    }
    const Bytes payload = buf.subspan(off + sizeof(nlmsghdr), h.nlmsg_len - sizeof(nlmsghdr));
    Out r;
    switch (h.nlmsg_type) {
      case RTM_NEWLINK:
      case RTM_DELLINK: r = parse_link(h.nlmsg_type, payload); break;
      case RTM_NEWADDR:
      case RTM_DELADDR: r = parse_addr(h.nlmsg_type, payload); break;
      case RTM_NEWROUTE:
      case RTM_DELROUTE: r = parse_route(h.nlmsg_type, h.nlmsg_flags, payload); break;
      case RTM_NEWRULE:
      case RTM_DELRULE: r = parse_rule(h.nlmsg_type, payload); break;
      case NLMSG_DONE: r = Event{Done{}}; break;
      case NLMSG_ERROR:
        if (payload.size() < sizeof(std::int32_t)) r = Reject{"NLMSG_ERROR without an error code"};
        else r = Event{Ack{read<std::int32_t>(payload)}};
        break;
      default: break;  // other message types are not ours to read
    }
    if (auto* e = std::get_if<Event>(&r)) out.events.push_back(*e);
    else if (auto* j = std::get_if<Reject>(&r))
      out.rejected.push_back("type " + std::to_string(h.nlmsg_type) + ": " + j->why);
    off += std::min(align4(h.nlmsg_len), buf.size() - off);
  }
  return out;
}

bool Link::up() const { return (flags & IFF_UP) != 0; }
bool Link::running() const { return (flags & IFF_RUNNING) != 0 || operstate == IF_OPER_UP; }

std::string str(const Link& l) {
  return printable_ifname(l.name) + " (#" + l.index.str() + (l.kind.empty() ? "" : ", " + printable_ifname(l.kind)) + ", " + (l.up() ? "up" : "down") +
         (l.running() ? "" : ", no carrier") + ", mtu " + std::to_string(l.mtu) + ")";
}

std::string str(const Address& a) { return a.prefix.str() + " on #" + a.index.str(); }

std::string str(const Route& r) {
  std::string s = r.is_default() ? "default" : r.dst.str();
  if (r.gateway) s += " via " + r.gateway->str();
  if (r.oif.value) s += " dev #" + r.oif.str();
  if (r.table != RT_TABLE_MAIN) s += " table " + std::to_string(r.table);
  if (r.priority) s += " metric " + std::to_string(r.priority);
  if (r.type != RTN_UNICAST) s += " type " + std::to_string(r.type);
  return std::string(to_string(r.family)) + " " + s;
}

std::string str(const Rule& r) {
  std::string s = std::to_string(r.priority) + ": ";
  if (r.invert) s += "not ";
  // As `ip rule` lists them: every selector, then the table.
  if (r.src) s += "from " + r.src->str() + " ";
  if (r.dst) s += "to " + r.dst->str() + " ";
  if (r.tos) s += "tos " + std::to_string(r.tos) + " ";
  if (r.fwmark) s += "fwmark " + std::to_string(*r.fwmark) + " ";
  if (!r.iif.empty()) s += "iif " + printable_ifname(r.iif) + " ";
  if (!r.oif.empty()) s += "oif " + printable_ifname(r.oif) + " ";
  if (r.l3mdev) s += "l3mdev ";
  if (r.flow) s += "realms " + std::to_string(r.flow) + " ";
  if (r.tun_id) s += "tun_id " + std::to_string(*r.tun_id) + " ";
  if (const auto sel = r.selector_text(); !sel.empty()) s += sel + " ";
  for (auto t : r.other) s += "attribute" + std::to_string(t) + " ";
  s += "lookup " + std::to_string(r.table);
  if (r.suppress_prefixlen) s += " suppress_prefixlength " + std::to_string(*r.suppress_prefixlen);
  return std::string(to_string(r.family)) + " " + s;
}

}  // namespace leakguard::netwatch
