#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "common/lan.hpp"

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
    if (c.probe.timeout >= c.probe.interval)
      return error(root["probe"], "probe.timeout",
                   "must be shorter than probe.interval (" + ms_text(c.probe.interval) + ")");
    return c;
  }

 private:
  std::string file_;

  tl::unexpected<Error> error(const YAML::Node& at, const std::string& field, const std::string& what) const {
    const auto m = at ? at.Mark() : YAML::Mark::null_mark();
    std::ostringstream s;
    s << file_;
    if (!m.is_null()) s << ":" << m.line + 1 << ":" << m.column + 1;
    s << ": " << (field.empty() ? "" : field + ": ") << what;
    return tl::unexpected(Error{"load config", s.str()});
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
        return error(it.first, path(parent, key), "unknown setting (expected one of: " + join(names, ", ") + ")");
      }
      if (!seen.insert(key).second) return error(it.first, path(parent, key), "given twice");
    }
    return {};
  }

  Result<std::string> scalar(const YAML::Node& v, const std::string& field, const std::string& expected) const {
    if (!v.IsScalar()) return error(v, field, "expected " + expected);
    return v.Scalar();
  }

  Result<void> attribution(const YAML::Node& v, Attribution& a) const {
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

  // A list of scalars, or a single scalar taken as a list of one.
  template <typename T>
  Result<std::vector<T>> list(const YAML::Node& v, const std::string& field, const std::string& expected,
                              const std::function<Result<T>(const std::string&)>& parse_one) const {
    std::vector<T> out;
    if (v.IsNull()) return out;
    std::vector<YAML::Node> items;
    if (v.IsSequence()) {
      for (auto item : v) items.push_back(item);
    } else {
      items.push_back(v);
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      const auto item_field = field + "[" + std::to_string(i) + "]";
      auto s = scalar(items[i], item_field, expected);
      if (!s) return tl::unexpected(s.error());
      auto parsed = parse_one(*s);
      if (!parsed) return error(items[i], item_field, parsed.error().message + " (expected " + expected + ")");
      out.push_back(*parsed);
    }
    return out;
  }

  Result<void> lan_ranges(const YAML::Node& v, Config& c) const {
    if (v.IsNull()) return {};
    auto r = list<Prefix>(v, "allow_lan_ranges", "an address range like 192.168.178.0/24 or fd00::/64",
                          [](const std::string& s) -> Result<Prefix> {
                            auto p = Prefix::parse(s);
                            if (!p) return p;
                            if (!lan_sized(*p))
                              return fail("parse", "'" + s + "' is wider than /" +
                                                       std::to_string(p->address.family == Family::v4 ? kMinLanPrefixV4
                                                                                                     : kMinLanPrefixV6) +
                                                       ": that is not a local network");
                            if (p->address.is_loopback() || p->address.is_multicast())
                              return fail("parse", "'" + s + "' is not a local network");
                            return p->network();
                          });
    if (!r) return tl::unexpected(r.error());
    c.allow_lan_ranges = *r;
    return {};
  }

  Result<void> tunnel(const YAML::Node& v, Config& c) const {
    if (v.IsNull()) return {};
    if (!v.IsMap()) return error(v, "tunnel", "expected a mapping with interfaces, endpoints, fwmark, endpoint_uid");
    if (auto k = check_keys(v, "tunnel", {"interfaces", "endpoints", "fwmark", "endpoint_uid"}); !k) return k;
    if (auto n = v["interfaces"]) {
      auto r = list<IfnamePattern>(n, "tunnel.interfaces", "an interface name or a prefix ending in '*', like wg*",
                                   [](const std::string& s) { return IfnamePattern::parse(s); });
      if (!r) return tl::unexpected(r.error());
      if (r->empty()) return error(n, "tunnel.interfaces", "must name at least one tunnel interface or pattern");
      c.tunnel_interfaces = *r;
    }
    if (auto n = v["endpoints"]) {
      auto r = list<Endpoint>(n, "tunnel.endpoints", "ADDRESS:PORT[/udp|/tcp], IPv6 in brackets",
                              [](const std::string& s) { return Endpoint::parse(s); });
      if (!r) return tl::unexpected(r.error());
      std::set<Endpoint> unique(r->begin(), r->end());
      if (unique.size() != r->size()) return error(n, "tunnel.endpoints", "lists the same endpoint twice");
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
    if (auto n = v["interval"]; n) {
      if (auto r = duration(n, "probe.interval", std::chrono::seconds(1), p.interval); !r) return r;
    }
    if (auto n = v["timeout"]; n) {
      if (auto r = duration(n, "probe.timeout", std::chrono::milliseconds(100), p.timeout); !r) return r;
    }
    if (auto n = v["families"]) {
      auto r = list<Family>(n, "probe.families", "ipv4 or ipv6", [](const std::string& s) -> Result<Family> {
        if (s == "ipv4") return Family::v4;
        if (s == "ipv6") return Family::v6;
        return fail("family", "'" + s + "' is not a family");
      });
      if (!r) return tl::unexpected(r.error());
      if (r->empty()) return error(n, "probe.families", "must name at least one of ipv4, ipv6");
      p.ipv4 = p.ipv6 = false;
      for (auto f : *r) (f == Family::v4 ? p.ipv4 : p.ipv6) = true;
    }
    if (auto n = v["servers"]) {
      auto r = list<StunServer>(n, "probe.servers", "HOST:PORT[/udp|/tcp], IPv6 in brackets", parse_server);
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

Result<Config> parse(std::string_view yaml, std::string_view filename) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::ostringstream s;
    s << filename;
    if (!e.mark.is_null()) s << ":" << e.mark.line + 1 << ":" << e.mark.column + 1;
    s << ": YAML syntax error: " << e.msg;
    return fail("load config", s.str());
  }
  try {
    return Parser(filename).run(root);
  } catch (const YAML::Exception& e) {  // e.g. aliases to nowhere; never expected, never fatal
    return fail("load config", std::string(filename) + ": " + e.msg);
  }
}

Result<Config> load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("load config", path + ": cannot read the file", errno);
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
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
