#include "config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "common/lan.hpp"
#include "firewall/policy.hpp"

namespace leakguard::config {

std::string_view to_string(OnStop o) { return o == OnStop::keep ? "keep" : "remove"; }
std::string_view to_string(OnExposure o) { return o == OnExposure::escalate ? "escalate" : "alert"; }

std::string StunServer::str() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" + std::string(to_string(transport));
}

Config defaults() {
  Config c;
  c.tunnel_interfaces = {IfnamePattern{"wg*"}, IfnamePattern{"tun*"}};
  // Public STUN servers, as web pages use them: two over UDP, and one over TCP on port 443 (the
  // way pages reach TURN servers through restrictive networks). Tests always name their own.
  c.probe.servers = {StunServer{"stun.l.google.com", 19302, Transport::udp},
                     StunServer{"stun.cloudflare.com", 3478, Transport::udp},
                     StunServer{"stun.nextcloud.com", 443, Transport::tcp}};
  return c;
}

namespace {

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : std::string(sep)) + x;
  return s;
}

std::string ms_text(std::chrono::milliseconds d) {
  auto n = d.count();
  if (n % 3'600'000 == 0 && n != 0) return std::to_string(n / 3'600'000) + "h";
  if (n % 60'000 == 0 && n != 0) return std::to_string(n / 60'000) + "m";
  if (n % 1000 == 0) return std::to_string(n / 1000) + "s";
  return std::to_string(n) + "ms";
}

// The policies by name, from their one definition (common/mode.hpp).
std::map<std::string, Mode> modes() {
  std::map<std::string, Mode> m;
  for (std::size_t i = 0; i < kModeNames.size(); ++i) m.emplace(kModeNames[i], static_cast<Mode>(i));
  return m;
}

// A DNS name as RFC 1123 allows it: labels of letters, digits and '-', dot-separated.
bool is_hostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const char c = h[i];
    if (c == '.') {
      if (label == 0 || h[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || (label == 0 && c == '-') || ++label > 63) return false;
  }
  return label > 0 && h.back() != '-';
}

// A value from the file as a message shows it: at most kShownBytes of it (a 50 MB scalar must not
// become a 50 MB log line), and every byte that would not show as itself (control characters, a
// stray BOM, any non-ASCII byte) as \xNN: a message is one line of printable ASCII, valid UTF-8
// for D-Bus, whatever the file holds.
constexpr std::size_t kShownBytes = 64;
// Past this, even a message's unquoted text is cut (a value with a stray quote can leave quotes
// unpaired); the longest real message is far shorter.
constexpr std::size_t kMessageBytes = 4096;

void escape_into(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char ch : s) {
    const auto b = static_cast<unsigned char>(ch);
    if (b >= 0x20 && b < 0x7f) out += ch;
    else out += {'\\', 'x', kHex[b >> 4], kHex[b & 0xf]};
  }
}

std::string clipped(std::string_view value) {
  std::string out;
  escape_into(out, value.substr(0, kShownBytes));
  if (value.size() > kShownBytes) out += "\u2026";
  return out;
}

// A message as it leaves the parser: every '...'-quoted value clipped (the common parsers quote
// what they echo, and so does this file; the messages' own words hold no apostrophe), every other
// byte escaped.
std::string tidy(std::string_view what) {
  std::string out;
  std::size_t pos = 0;
  while (pos < what.size() && out.size() < kMessageBytes) {
    const auto open = what.find('\'', pos);
    const auto close = open == std::string_view::npos ? open : what.find('\'', open + 1);
    if (close == std::string_view::npos) {
      escape_into(out, what.substr(pos, kMessageBytes));
      break;
    }
    escape_into(out, what.substr(pos, std::min(open - pos, kMessageBytes)));
    out += "'" + clipped(what.substr(open + 1, close - open - 1)) + "'";
    pos = close + 1;
  }
  if (out.size() > kMessageBytes) out = out.substr(0, kMessageBytes) + "\u2026";
  return out;
}

// "FILE:LINE:COL: FIELD: what", without the position where the mark has none.
tl::unexpected<Error> located(std::string_view file, const YAML::Mark& m, const std::string& field,
                              std::string_view what) {
  std::ostringstream s;
  s << file;
  if (!m.is_null()) s << ":" << m.line + 1 << ":" << m.column + 1;
  s << ": " << (field.empty() ? "" : field + ": ") << tidy(what);
  return tl::unexpected(Error{"load config", s.str()});
}

// ::ffff:0:0/96 (RFC 4291 2.5.5.2): IPv4 addresses as a dual-stack socket shows them; no packet
// on the wire carries one, so a rule for them never matches IPv4 traffic.
const Prefix& v4_mapped() {
  static const Prefix p = *Prefix::parse("::ffff:0:0/96");
  return p;
}

// 0.0.0.0/8, "this network" (RFC 1122 3.2.1.3): a source address while booting, never a destination.
bool this_network(const IpAddress& a) { return a.family == Family::v4 && a.bytes[0] == 0; }

// Why an endpoint cannot be one, or "": what the firewall refuses (one definition,
// firewall::endpoint_problem), and addresses no VPN server has.
std::string endpoint_refusal(const Endpoint& e) {
  if (const char* problem = firewall::endpoint_problem(e)) return problem;
  if (e.address == IpAddress::v4(255, 255, 255, 255))
    return "the limited broadcast address (RFC 1122 3.2.1.3) is not an endpoint";
  if (this_network(e.address)) return "0.0.0.0/8 is \"this network\" (RFC 1122 3.2.1.3), never a destination";
  if (v4_mapped().contains(e.address)) {
    const auto& b = e.address.bytes;
    return "an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 2.5.5.2) never matches IPv4 traffic: write " +
           Endpoint{IpAddress::v4(b[12], b[13], b[14], b[15]), e.port, e.transport}.str();
  }
  return "";
}

// Why a range cannot be a LAN, or "".
std::string lan_range_refusal(const Prefix& p) {
  const bool v4 = p.address.family == Family::v4;
  if (!lan_sized(p))
    return "wider than /" + std::to_string(v4 ? kMinLanPrefixV4 : kMinLanPrefixV6) + ": that is not a local network";
  if (p.address.is_loopback() || (!v4 && p.contains(*IpAddress::parse("::1"))))
    return "loopback is not a local network (it is always allowed)";
  if (p.address.is_multicast()) return "multicast is not a local network";
  if (this_network(p.address)) return "0.0.0.0/8 is \"this network\" (RFC 1122 3.2.1.3), not a local network";
  if (intersect(p, v4_mapped()))
    return "IPv4-mapped addresses (::ffff:0:0/96, RFC 4291 2.5.5.2) never match IPv4 traffic: list the IPv4 range";
  return "";
}

// Walks the YAML tree; every error carries FILE:LINE:COL and the dotted field path.
class Parser {
 public:
  explicit Parser(std::string_view filename) : file_(filename) {}

  Result<Config> run(const YAML::Node& root) {
    Config c = defaults();
    if (!root || root.IsNull()) return c;  // an empty file: all defaults
    if (!root.IsMap()) return error(root, "", "the file must be a mapping of settings (key: value)");
    auto keys = check_keys(root, "", {"policy", "armed", "on_stop", "allow_lan", "allow_lan_ranges", "tunnel", "probe", "attribution", "metrics"});
    if (!keys) return tl::unexpected(keys.error());
    for (auto it : root) {
      const auto key = it.first.as<std::string>();
      const YAML::Node& v = it.second;
      Result<void> r;
      if (key == "policy") r = enumerated(v, key, modes(), c.policy);
      else if (key == "armed") r = boolean(v, key, c.armed);
      else if (key == "on_stop") r = enumerated(v, key, {{"keep", OnStop::keep}, {"remove", OnStop::remove}}, c.on_stop);
      else if (key == "allow_lan") r = boolean(v, key, c.allow_lan);
      else if (key == "allow_lan_ranges") r = lan_ranges(v, c);
      else if (key == "tunnel") r = tunnel(v, c);
      else if (key == "probe") r = probe(v, c.probe);
      else if (key == "attribution") r = attribution(v, c.attribution);
      else if (key == "metrics") r = metrics(v, c.metrics);
      if (!r) return tl::unexpected(r.error());
    }
    return c;
  }

 private:
  std::string file_;
  // Empty values ("policy:" and a line break) and their keys: YAML places an empty value where the
  // next token starts, often the next line; an error about it points at its key instead.
  // Filled by check_keys(), which sees every mapping before its values are read.
  mutable std::vector<std::pair<YAML::Node, YAML::Mark>> empty_values_;

  tl::unexpected<Error> error(const YAML::Node& at, const std::string& field, const std::string& what) const {
    auto m = at ? at.Mark() : YAML::Mark::null_mark();
    if (at && at.IsNull())
      for (const auto& [value, key_mark] : empty_values_)
        if (value.is(at)) m = key_mark;
    return located(file_, m, field, what);
  }

  static std::string path(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : parent + "." + key;
  }

  // Unknown keys are errors: a typo must never silently weaken a kill switch. So are duplicates.
  Result<void> check_keys(const YAML::Node& map, const std::string& parent, const std::set<std::string>& known) const {
    std::set<std::string> seen;
    for (auto it : map) {
      if (!it.first.IsScalar()) return error(it.first, parent, "keys must be plain words");
      const auto key = it.first.as<std::string>();
      if (!known.contains(key)) {
        std::vector<std::string> names(known.begin(), known.end());
        return error(it.first, path(parent, clipped(key)), "unknown setting (expected one of: " + join(names, ", ") + ")");
      }
      if (!seen.insert(key).second) return error(it.first, path(parent, key), "given twice");
      if (it.second.IsNull() && it.second.Mark().line != it.first.Mark().line)
        empty_values_.emplace_back(it.second, it.first.Mark());
    }
    return {};
  }

  Result<std::string> scalar(const YAML::Node& v, const std::string& field, const std::string& expected) const {
    if (v.IsNull()) return error(v, field, "no value (expected " + expected + ")");
    if (!v.IsScalar()) return error(v, field, "expected " + expected);
    return v.Scalar();
  }

  Result<void> attribution(const YAML::Node& v, Attribution& a) const {
    if (v.IsNull()) return {};
    if (!v.IsMap()) return error(v, "attribution", "expected a mapping with enabled, nflog_group");
    if (auto k = check_keys(v, "attribution", {"enabled", "nflog_group"}); !k) return k;
    if (auto n = v["enabled"]) {
      if (auto r = boolean(n, "attribution.enabled", a.enabled); !r) return r;
    }
    if (auto n = v["nflog_group"]) {
      auto s = scalar(n, "attribution.nflog_group", "a group number 1..65535");
      if (!s) return tl::unexpected(s.error());
      unsigned group = 0;
      auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), group);
      if (s->empty() || ec != std::errc{} || end != s->data() + s->size() || group < 1 || group > 65535)
        return error(n, "attribution.nflog_group", "'" + *s + "' is not a group number (expected 1..65535)");
      a.nflog_group = static_cast<std::uint16_t>(group);
    }
    return {};
  }

  Result<void> boolean(const YAML::Node& v, const std::string& field, bool& out) const {
    auto s = scalar(v, field, "true or false");
    if (!s) return tl::unexpected(s.error());
    if (*s == "true") out = true;
    else if (*s == "false") out = false;
    else return error(v, field, "expected true or false, not '" + *s + "'");
    return {};
  }

  template <typename E>
  Result<void> enumerated(const YAML::Node& v, const std::string& field, const std::map<std::string, E>& options,
                          E& out) const {
    std::vector<std::string> names;
    for (const auto& [k, _] : options) names.push_back(k);
    auto s = scalar(v, field, "one of: " + join(names, ", "));
    if (!s) return tl::unexpected(s.error());
    auto it = options.find(*s);
    if (it == options.end()) return error(v, field, "'" + *s + "' is not one of: " + join(names, ", "));
    out = it->second;
    return {};
  }

  // How list() reads the entries of one list setting.
  template <typename T>
  struct Entries {
    std::string expected;                                 ///< for messages: what one entry looks like
    std::function<Result<T>(const std::string&)> parse;   ///< text -> value (its error: malformed)
    std::function<std::string(const T&)> refusal = {};   ///< well-formed but refused: why ("" if not)
    std::function<std::string(const T&)> key = {};        ///< equal keys: the same entry given twice
    std::size_t max = std::numeric_limits<std::size_t>::max();
    std::string limit = {};                               ///< whose limit max is, for the message
  };

  // A list of scalars, or a single scalar taken as a list of one. An entry given twice is an error
  // (a typo that duplicates one is likely to have lost another), naming both.
  template <typename T>
  Result<std::vector<T>> list(const YAML::Node& v, const std::string& field, const Entries<T>& rules) const {
    std::vector<T> out;
    if (v.IsNull()) return out;
    std::vector<YAML::Node> items;
    if (v.IsSequence()) {
      for (auto item : v) items.push_back(item);
    } else {
      items.push_back(v);
    }
    std::map<std::string, std::size_t> seen;  // key -> index
    for (std::size_t i = 0; i < items.size(); ++i) {
      const auto item_field = field + "[" + std::to_string(i) + "]";
      if (i == rules.max)
        return error(items[i], item_field,
                     "more than " + std::to_string(rules.max) + " entries (at most " + std::to_string(rules.max) +
                         ": " + rules.limit + ")");
      auto s = scalar(items[i], item_field, rules.expected);
      if (!s) return tl::unexpected(s.error());
      auto parsed = rules.parse(*s);
      if (!parsed) return error(items[i], item_field, parsed.error().message + " (expected " + rules.expected + ")");
      if (rules.refusal) {
        if (auto why = rules.refusal(*parsed); !why.empty()) return error(items[i], item_field, "'" + *s + "': " + why);
      }
      if (rules.key) {
        auto [earlier, fresh] = seen.emplace(rules.key(*parsed), i);
        if (!fresh) {
          const auto m = items[earlier->second].Mark();
          return error(items[i], item_field,
                       "'" + *s + "' is given twice: the same as " + field + "[" + std::to_string(earlier->second) +
                           "] (line " + std::to_string(m.line + 1) + ", column " + std::to_string(m.column + 1) + ")");
        }
      }
      out.push_back(*parsed);
    }
    return out;
  }

  Result<void> lan_ranges(const YAML::Node& v, Config& c) const {
    auto r = list<Prefix>(
        v, "allow_lan_ranges",
        {.expected = "an address range like 192.168.178.0/24 or fd00::/64",
         .parse = [](const std::string& s) -> Result<Prefix> {
           auto p = Prefix::parse(s);
           if (!p) return p;
           return p->network();
         },
         .refusal = lan_range_refusal,
         .key = [](const Prefix& p) { return p.str(); },
         .max = firewall::Limits{}.max_lan_subnets,
         .limit = "the limit the firewall sets for LAN subnets"});
    if (!r) return tl::unexpected(r.error());
    c.allow_lan_ranges = *r;
    return {};
  }

  Result<void> tunnel(const YAML::Node& v, Config& c) const {
    if (v.IsNull()) return {};
    if (!v.IsMap()) return error(v, "tunnel", "expected a mapping with interfaces, endpoints, fwmark, endpoint_uid");
    if (auto k = check_keys(v, "tunnel", {"interfaces", "endpoints", "fwmark", "endpoint_uid"}); !k) return k;
    if (auto n = v["interfaces"]) {
      auto r = list<IfnamePattern>(n, "tunnel.interfaces",
                                   {.expected = "an interface name or a prefix ending in '*', like wg*",
                                    .parse = [](const std::string& s) { return IfnamePattern::parse(s); },
                                    .key = [](const IfnamePattern& p) { return p.text; },
                                    .max = firewall::Limits{}.max_tunnels,
                                    .limit = "the limit the firewall sets for tunnel interfaces and patterns"});
      if (!r) return tl::unexpected(r.error());
      if (r->empty()) return error(n, "tunnel.interfaces", "must name at least one tunnel interface or pattern");
      c.tunnel_interfaces = *r;
    }
    if (auto n = v["endpoints"]) {
      auto r = list<Endpoint>(n, "tunnel.endpoints",
                              {.expected = "ADDRESS:PORT[/udp|/tcp], IPv6 in brackets",
                               .parse = [](const std::string& s) { return Endpoint::parse(s); },
                               .refusal = endpoint_refusal,
                               .key = [](const Endpoint& e) { return e.str(); },
                               .max = firewall::Limits{}.max_endpoints,
                               .limit = "the limit the firewall sets for endpoints"});
      if (!r) return tl::unexpected(r.error());
      c.endpoints = *r;
    }
    if (auto n = v["fwmark"]) {
      auto s = scalar(n, "tunnel.fwmark", "a number 1..4294967295 (decimal or 0x hex)");
      if (!s) return tl::unexpected(s.error());
      std::uint64_t mark = 0;
      std::string_view digits = *s;
      int base = 10;
      if (digits.starts_with("0x") || digits.starts_with("0X")) {
        digits.remove_prefix(2);
        base = 16;
      }
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), mark, base);
      if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || mark == 0 ||
          mark > 0xffffffffULL)
        return error(n, "tunnel.fwmark", "'" + *s + "' is not a mark (expected 1..4294967295, decimal or 0x hex)");
      c.fwmark = FwMark{static_cast<std::uint32_t>(mark)};
    }
    if (auto n = v["endpoint_uid"]) {
      auto s = scalar(n, "tunnel.endpoint_uid", "a user id 0..4294967294, or any");
      if (!s) return tl::unexpected(s.error());
      if (*s == "any") {
        c.endpoint_uid.reset();
      } else {
        std::uint32_t uid = 0;
        auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), uid);
        // (uid_t)-1 is "no user" to the kernel (INVALID_UID).
        if (s->empty() || ec != std::errc{} || end != s->data() + s->size() || uid == 0xffffffffU)
          return error(n, "tunnel.endpoint_uid", "'" + *s + "' is not a user id (expected 0..4294967294, or any)");
        c.endpoint_uid = uid;
      }
    }
    return {};
  }

  Result<void> duration(const YAML::Node& v, const std::string& field, std::chrono::milliseconds min,
                        std::chrono::milliseconds& out) const {
    auto s = scalar(v, field, "a duration like 30s, 500ms or 5m");
    if (!s) return tl::unexpected(s.error());
    auto d = parse_duration(*s);
    if (!d) return error(v, field, d.error().message);
    if (*d < min) return error(v, field, "'" + *s + "' is too short (at least " + ms_text(min) + ")");
    if (*d > std::chrono::hours(24)) return error(v, field, "'" + *s + "' is too long (at most 24h)");
    out = *d;
    return {};
  }

  Result<void> probe(const YAML::Node& v, Probe& p) const {
    if (v.IsNull()) return {};
    if (!v.IsMap()) return error(v, "probe", "expected a mapping with interval, timeout, families, servers, on_exposure, hops");
    if (auto k = check_keys(v, "probe", {"interval", "timeout", "families", "servers", "on_exposure", "hops"}); !k) return k;
    if (auto n = v["hops"]) {
      auto s = scalar(n, "probe.hops", "a number of hops 0..8");
      if (!s) return tl::unexpected(s.error());
      int hops = -1;
      auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), hops);
      if (s->empty() || ec != std::errc{} || end != s->data() + s->size() || hops < 0 || hops > kMaxProbeHops)
        return error(n, "probe.hops", "'" + *s + "' is not a number of hops (expected 0..8; 0 switches hop probes off)");
      p.hops = hops;
    }
    if (auto n = v["on_exposure"]; n) {
      if (auto r = enumerated(n, "probe.on_exposure", {{"escalate", OnExposure::escalate}, {"alert", OnExposure::alert}},
                              p.on_exposure);
          !r)
        return r;
    }
    const YAML::Node interval = v["interval"], timeout = v["timeout"];
    if (interval) {
      if (auto r = duration(interval, "probe.interval", std::chrono::seconds(1), p.interval); !r) return r;
    }
    if (timeout) {
      if (auto r = duration(timeout, "probe.timeout", std::chrono::milliseconds(100), p.timeout); !r) return r;
    }
    // Blame what the file says: the timeout if it gives one, else the interval that leaves the
    // default timeout no room.
    if (p.timeout >= p.interval && timeout)
      return error(timeout, "probe.timeout",
                   "must be shorter than probe.interval (" + ms_text(p.interval) + (interval ? "" : ", the default") + ")");
    if (p.timeout >= p.interval)
      return error(interval, "probe.interval",
                   "must be longer than probe.timeout (" + ms_text(p.timeout) +
                       ", the default): set a longer interval or a shorter probe.timeout");
    if (auto n = v["families"]) {
      auto r = list<Family>(n, "probe.families",
                            {.expected = "ipv4 or ipv6",
                             .parse = [](const std::string& s) -> Result<Family> {
                               if (s == "ipv4") return Family::v4;
                               if (s == "ipv6") return Family::v6;
                               return fail("family", "'" + s + "' is not a family");
                             },
                             .key = [](Family f) { return std::string(to_string(f)); }});
      if (!r) return tl::unexpected(r.error());
      if (r->empty()) return error(n, "probe.families", "must name at least one of ipv4, ipv6");
      p.ipv4 = p.ipv6 = false;
      for (auto f : *r) (f == Family::v4 ? p.ipv4 : p.ipv6) = true;
    }
    if (auto n = v["servers"]) {
      auto r = list<StunServer>(n, "probe.servers",
                                {.expected = "HOST:PORT[/udp|/tcp], IPv6 in brackets",
                                 .parse = parse_server,
                                 // DNS names are case-insensitive (RFC 4343)
                                 .key = [](const StunServer& s) {
                                   StunServer lower = s;
                                   for (auto& ch : lower.host) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                                   return lower.str();
                                 }});
      if (!r) return tl::unexpected(r.error());
      if (r->empty()) return error(n, "probe.servers", "must name at least one STUN server");
      p.servers = *r;
    }
    return {};
  }

  Result<void> metrics(const YAML::Node& v, Metrics& m) const {
    if (v.IsNull()) return {};
    if (!v.IsMap()) return error(v, "metrics", "expected a mapping with enabled, textfile");
    if (auto k = check_keys(v, "metrics", {"enabled", "textfile"}); !k) return k;
    if (auto n = v["enabled"]) {
      if (auto r = boolean(n, "metrics.enabled", m.enabled); !r) return r;
    }
    if (auto n = v["textfile"]) {
      const std::string expected = "an absolute path of a file ending in .prom";
      auto s = scalar(n, "metrics.textfile", expected);
      if (!s) return tl::unexpected(s.error());
      const std::string& f = *s;
      // node_exporter's textfile collector reads only *.prom files in its directory.
      const auto slash = f.rfind('/');
      if (f.empty() || f.front() != '/' || !f.ends_with(".prom") || slash == std::string::npos ||
          f.size() - slash - 1 <= std::string_view(".prom").size())
        return error(n, "metrics.textfile", "'" + f + "' is not " + expected + " (node_exporter reads only *.prom)");
      for (char ch : f)
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
          return error(n, "metrics.textfile", "a control character in the path (expected " + expected + ")");
      m.textfile = f;
    }
    return {};
  }

  static Result<StunServer> parse_server(const std::string& text) {
    auto hp = split_host_port(text);
    if (!hp) return fail("server", hp.error().message);
    auto addr = IpAddress::parse(hp->host);
    if (hp->bracketed && (!addr || addr->family != Family::v6))
      return fail("server", "'" + text + "': only IPv6 addresses go in brackets");
    if (!hp->bracketed && !addr && !is_hostname(hp->host))
      return fail("server", "'" + text + "': '" + hp->host + "' is not a host name or address");
    // The resolver (getaddrinfo) reads what inet_aton(3) accepts as an address before asking DNS:
    // "1234" is 0.0.4.210, "1.2.3" is 1.2.0.3, "010.0.0.1" is 8.0.0.1. Only the literal forms
    // mean what they say.
    if (in_addr a{}; !addr && inet_aton(hp->host.c_str(), &a) != 0) {
      IpAddress read;
      std::memcpy(read.bytes.data(), &a.s_addr, 4);
      return fail("server", "'" + text + "': '" + hp->host + "' is not a host name: a resolver reads it as the address " +
                                read.str() + " (write an address as a.b.c.d, in decimal)");
    }
    return StunServer{hp->host, hp->port, hp->transport};
  }
};

}  // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string quoted = "'" + std::string(text) + "'";
  if (text.empty() || ec != std::errc{} || end == text.data())
    return fail("duration", quoted + " is not a duration (expected e.g. 500ms, 30s, 5m, 1h)");
  if (n < 0) return fail("duration", quoted + " is negative");
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::int64_t factor = 0;
  if (unit == "ms") factor = 1;
  else if (unit == "s" || unit.empty()) factor = 1000;
  else if (unit == "m") factor = 60'000;
  else if (unit == "h") factor = 3'600'000;
  else return fail("duration", quoted + " has an unknown unit (use ms, s, m or h)");
  if (n > 48 * 3'600'000 / factor) return fail("duration", quoted + " is too long");
  return std::chrono::milliseconds(n * factor);
}

namespace {

// Where a second YAML document starts, if the text has one. yaml-cpp's Load() reads the first
// and ignores the rest: "---" before the real settings, or a "..." with more after it, would
// silently leave them all unread.
std::optional<YAML::Mark> second_document(const std::string& yaml) {
  struct Starts final : YAML::EventHandler {
    std::optional<YAML::Mark> at;
    void OnDocumentStart(const YAML::Mark& m) override { at = m; }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  };
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  Starts first, second;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second)) return std::nullopt;
  return second.at.value_or(YAML::Mark::null_mark());
}

}  // namespace

Result<Config> parse(std::string_view yaml, std::string_view filename) {
  const std::string text(yaml);
  YAML::Node root;
  try {
    root = YAML::Load(text);
    if (auto second = second_document(text))
      return located(filename, *second, "",
                     "a second YAML document (after a '---' or '...' line): the file must be one document, "
                     "nothing of it may go unread");
  } catch (const YAML::Exception& e) {
    return located(filename, e.mark, "", "YAML syntax error: " + e.msg);
  }
  try {
    return Parser(filename).run(root);
  } catch (const YAML::Exception& e) {  // e.g. aliases to nowhere; never expected, never fatal
    return located(filename, YAML::Mark::null_mark(), "", e.msg);
  }
}

Result<Config> load(const std::string& path) {
  // open(2) and read(2), not an ifstream: that opens a directory and reads it as an empty file
  // (all defaults). O_NONBLOCK: a FIFO in the file's place must not hold the daemon (at start,
  // before any block is in place, or on SIGHUP, with the one event loop waiting) - only a regular
  // file of a configuration's size is read; anything else is refused, and the daemon fails closed.
  const auto cannot_read = [&](int err) {
    return fail("load config", path + ": cannot read the file: " + std::generic_category().message(err), err);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return cannot_read(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return cannot_read(err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    if (S_ISDIR(st.st_mode)) return cannot_read(EISDIR);
    return fail("load config", path + ": not a regular file", EINVAL);
  }
  if (st.st_size > kMaxConfigBytes) {
    ::close(fd);
    return fail("load config", path + ": larger than " + std::to_string(kMaxConfigBytes) + " bytes: not a configuration", EFBIG);
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return cannot_read(err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > static_cast<std::size_t>(kMaxConfigBytes)) {  // grown while read
      ::close(fd);
      return fail("load config", path + ": larger than " + std::to_string(kMaxConfigBytes) + " bytes: not a configuration", EFBIG);
    }
  }
  ::close(fd);
  return parse(text, path);
}

std::string Config::str() const {
  std::vector<std::string> tunnels, eps, servers, lan;
  for (const auto& t : tunnel_interfaces) tunnels.push_back(t.text);
  for (const auto& r : allow_lan_ranges) lan.push_back(r.str());
  for (const auto& e : endpoints) eps.push_back(e.str());
  for (const auto& s : probe.servers) servers.push_back(s.str());
  std::string fam = probe.ipv4 && probe.ipv6 ? "ipv4+ipv6" : probe.ipv4 ? "ipv4" : "ipv6";
  return "policy=" + std::string(to_string(policy)) + " armed=" + (armed ? "yes" : "no") +
         " on_stop=" + std::string(to_string(on_stop)) + " allow_lan=" + (allow_lan ? "yes" : "no") +
         (lan.empty() ? "" : " allow_lan_ranges=[" + join(lan, ",") + "]") + " tunnels=[" + join(tunnels, ",") + "] endpoints=[" + join(eps, ",") + "]" +
         (fwmark ? " fwmark=" + fwmark->str() : "") +
         " endpoint_uid=" + (endpoint_uid ? std::to_string(*endpoint_uid) : std::string("any")) + " probe={every " + ms_text(probe.interval) + ", timeout " +
         ms_text(probe.timeout) + ", " + fam + ", servers=[" + join(servers, ",") + "], on_exposure " +
         std::string(to_string(probe.on_exposure)) + ", hops " + std::to_string(probe.hops) + "}" +
         " attribution=" + (attribution.enabled ? "nflog group " + std::to_string(attribution.nflog_group) : std::string("off")) +
         (metrics.enabled ? " metrics=" + metrics.textfile : "");
}

}  // namespace leakguard::config
