#include <doctest/doctest.h>

#include <sys/stat.h>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "firewall/policy.hpp"

using namespace leakguard;
using namespace leakguard::config;
using namespace std::chrono_literals;

TEST_CASE("an empty file means the defaults, and the shipped example equals the defaults") {
  auto empty = parse("", "empty.yaml");
  REQUIRE(empty);
  CHECK(*empty == defaults());
  CHECK(empty->policy == Mode::udp);
  CHECK(empty->armed);
  CHECK(empty->on_stop == OnStop::keep);
  CHECK(empty->probe.on_exposure == OnExposure::escalate);
  CHECK(empty->probe.hops == 3);

  auto example = load(LEAKGUARD_EXAMPLE_CONFIG);
  REQUIRE_MESSAGE(example, (example ? "" : example.error().str()));
  CHECK(*example == defaults());
}

TEST_CASE("a full file is read field by field") {
  auto c = parse(R"(
policy: strict
armed: false
on_stop: remove
allow_lan: true
allow_lan_ranges: [100.64.0.0/10, 198.51.100.77/26, "fd00:1::/64"]
tunnel:
  interfaces: [wg0, "tun*"]
  endpoints:
    - 198.51.100.1:51820/udp
    - "[2001:db8::1]:1194/tcp"
  fwmark: 0xca6c
probe:
  interval: 5m
  timeout: 1500ms
  families: [ipv6]
  servers: ["203.0.113.3:3478", "[2001:db8:3::3]:3478/tcp", stun.example.org:19302]
  on_exposure: alert
  hops: 5
attribution:
  enabled: true
  nflog_group: 4242
)",
                 "full.yaml");
  REQUIRE_MESSAGE(c, (c ? "" : c.error().str()));
  CHECK(c->policy == Mode::strict);
  CHECK_FALSE(c->armed);
  CHECK(c->on_stop == OnStop::remove);
  CHECK(c->allow_lan);
  // Host bits cleared: a range, not an address.
  CHECK(c->allow_lan_ranges == std::vector<Prefix>{*Prefix::parse("100.64.0.0/10"), *Prefix::parse("198.51.100.64/26"),
                                                   *Prefix::parse("fd00:1::/64")});
  REQUIRE(c->tunnel_interfaces.size() == 2);
  CHECK(c->tunnel_interfaces[0].text == "wg0");
  CHECK(c->tunnel_interfaces[1].is_prefix());
  REQUIRE(c->endpoints.size() == 2);
  CHECK(c->endpoints[1].str() == "[2001:db8::1]:1194/tcp");
  REQUIRE(c->fwmark);
  CHECK(c->fwmark->value == 51820);
  CHECK(c->probe.interval == 5min);
  CHECK(c->probe.timeout == 1500ms);
  CHECK_FALSE(c->probe.ipv4);
  CHECK(c->probe.ipv6);
  REQUIRE(c->probe.servers.size() == 3);
  CHECK(c->probe.servers[1] == StunServer{"2001:db8:3::3", 3478, Transport::tcp});
  CHECK(c->probe.servers[2].str() == "stun.example.org:19302/udp");
  CHECK(c->probe.on_exposure == OnExposure::alert);
  CHECK(c->probe.hops == 5);
  CHECK(c->attribution == config::Attribution{true, 4242});
  CHECK(c->str() ==
        "policy=strict armed=no on_stop=remove allow_lan=yes "
        "allow_lan_ranges=[100.64.0.0/10,198.51.100.64/26,fd00:1::/64] tunnels=[wg0,tun*] "
        "endpoints=[198.51.100.1:51820/udp,[2001:db8::1]:1194/tcp] fwmark=51820 endpoint_uid=0 probe={every 5m, timeout 1500ms, "
        "ipv6, servers=[203.0.113.3:3478/udp,[2001:db8:3::3]:3478/tcp,stun.example.org:19302/udp], on_exposure alert, hops 5} attribution=nflog group 4242");
}

TEST_CASE("a single value where a list is expected is a list of one") {
  auto c = parse("tunnel:\n  interfaces: wg0\n  endpoints: 198.51.100.1:51820\n", "one.yaml");
  REQUIRE(c);
  CHECK(c->tunnel_interfaces.size() == 1);
  CHECK(c->endpoints.size() == 1);
}

TEST_CASE("tunnel.endpoint_uid: root by default, another user's id, or any") {
  CHECK(defaults().endpoint_uid == 0u);
  CHECK(parse("policy: udp\n", "d.yaml")->endpoint_uid == 0u);
  CHECK(parse("tunnel:\n  endpoint_uid: 998\n", "u.yaml")->endpoint_uid == 998u);
  CHECK_FALSE(parse("tunnel:\n  endpoint_uid: any\n", "a.yaml")->endpoint_uid.has_value());
}

struct Broken {
  const char* yaml;
  const char* where;  // "FILE:LINE:COL: field" prefix of the message
  const char* what;   // a phrase the message must contain
};

TEST_CASE("broken files are refused with file:line:column, the field, and what is expected") {
  const std::vector<Broken> cases = {
      {"policy: strct\n", "bad.yaml:1:9: policy:", "'strct' is not one of: strict, udp"},
      {"policy:\n  - udp\n", "bad.yaml:2:3: policy:", "expected one of: strict, udp"},
      {"armed: maybe\n", "bad.yaml:1:8: armed:", "expected true or false"},
      {"allow_lan: 1\n", "bad.yaml:1:12: allow_lan:", "expected true or false"},
      {"allow_lan_ranges: [10.0.0.0/24, 0.0.0.0/0]\n", "bad.yaml:1:33: allow_lan_ranges[1]:", "wider than /8"},
      {"allow_lan_ranges: [\"fd00::/12\"]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "wider than /16"},
      {"allow_lan_ranges: 10.0.0.0/33\n", "bad.yaml:1:19: allow_lan_ranges[0]:", "expected an address range"},
      {"allow_lan_ranges: [224.0.0.0/8]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "not a local network"},
      {"on_stop: delete\n", "bad.yaml:1:10: on_stop:", "is not one of: keep, remove"},
      {"probe:\n  on_exposure: block\n", "bad.yaml:2:16: probe.on_exposure:", "is not one of: alert, escalate"},
      {"probe:\n  hops: 9\n", "bad.yaml:2:9: probe.hops:", "expected 0..8"},
      {"probe:\n  hops: -1\n", "bad.yaml:2:9: probe.hops:", "expected 0..8"},
      {"probe:\n  hops: three\n", "bad.yaml:2:9: probe.hops:", "not a number of hops"},
      {"attribution:\n  nflog_group: 0\n", "bad.yaml:2:16: attribution.nflog_group:", "expected 1..65535"},
      {"attribution:\n  nflog_group: 65536\n", "bad.yaml:2:16: attribution.nflog_group:", "expected 1..65535"},
      {"attribution:\n  enabled: maybe\n", "bad.yaml:2:12: attribution.enabled:", "expected true or false"},
      {"attribution:\n  group: 5\n", "bad.yaml:2:3: attribution.group:", "unknown setting"},
      {"attribution: on\n", "bad.yaml:1:14: attribution:", "expected a mapping"},
      {"armd: true\n", "bad.yaml:1:1: armd:", "unknown setting"},
      {"probe:\n  intervall: 30s\n", "bad.yaml:2:3: probe.intervall:", "unknown setting"},
      {"policy: udp\npolicy: strict\n", "bad.yaml:2:1: policy:", "given twice"},
      {"- policy\n- udp\n", "bad.yaml:1:1: ", "must be a mapping"},
      {"tunnel: wg0\n", "bad.yaml:1:9: tunnel:", "expected a mapping"},
      {"tunnel:\n  interfaces: []\n", "bad.yaml:2:15: tunnel.interfaces:", "at least one"},
      {"tunnel:\n  interfaces: [wg0, \"w*g\"]\n", "bad.yaml:2:21: tunnel.interfaces[1]:", "only allowed at the end"},
      {"tunnel:\n  interfaces: [abcdefghijklmnop]\n", "bad.yaml:2:16: tunnel.interfaces[0]:", "longer than 15"},
      {"tunnel:\n  interfaces: [\"eth 0\"]\n", "bad.yaml:2:16: tunnel.interfaces[0]:", "white space"},
      {"tunnel:\n  interfaces: [\"*\"]\n", "bad.yaml:2:16: tunnel.interfaces[0]:", "every interface"},
      {"tunnel:\n  endpoints: [198.51.100.1:99999/udp]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "not a port"},
      {"tunnel:\n  endpoints: [198.51.100.300:51820]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "not an IP address"},
      {"tunnel:\n  endpoints: [\"2001:db8::1:51820\"]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "go in brackets"},
      {"tunnel:\n  endpoints: [198.51.100.1:51820/sctp]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "udp or tcp"},
      {"tunnel:\n  endpoints: [198.51.100.1:51820, 198.51.100.1:51820/udp]\n", "bad.yaml:2:35: tunnel.endpoints[1]:",
       "'198.51.100.1:51820/udp' is given twice: the same as tunnel.endpoints[0] (line 2, column 15)"},
      {"tunnel:\n  fwmark: 0\n", "bad.yaml:2:11: tunnel.fwmark:", "expected 1..4294967295"},
      {"tunnel:\n  fwmark: -5\n", "bad.yaml:2:11: tunnel.fwmark:", "is not a mark"},
      {"tunnel:\n  fwmark: 0x100000000\n", "bad.yaml:2:11: tunnel.fwmark:", "is not a mark"},
      {"tunnel:\n  endpoint_uid: -1\n", "bad.yaml:2:17: tunnel.endpoint_uid:", "is not a user id"},
      {"tunnel:\n  endpoint_uid: 4294967295\n", "bad.yaml:2:17: tunnel.endpoint_uid:", "is not a user id"},
      {"tunnel:\n  endpoint_uid: root\n", "bad.yaml:2:17: tunnel.endpoint_uid:", "expected 0..4294967294, or any"},
      {"probe:\n  interval: -10s\n", "bad.yaml:2:13: probe.interval:", "negative"},
      {"probe:\n  interval: 10 minutes\n", "bad.yaml:2:13: probe.interval:", "unknown unit"},
      {"probe:\n  interval: 200ms\n", "bad.yaml:2:13: probe.interval:", "too short (at least 1s)"},
      {"probe:\n  interval: 30s\n  timeout: 45s\n", "bad.yaml:3:12: probe.timeout:", "shorter than probe.interval (30s)"},
      {"probe:\n  families: [ipv5]\n", "bad.yaml:2:14: probe.families[0]:", "expected ipv4 or ipv6"},
      {"probe:\n  servers: []\n", "bad.yaml:2:12: probe.servers:", "at least one STUN server"},
      {"probe:\n  servers: [stun.example.org]\n", "bad.yaml:2:13: probe.servers[0]:", "port is missing"},
      {"probe:\n  servers: [\"stun_x.example.org:3478\"]\n", "bad.yaml:2:13: probe.servers[0]:", "not a host name"},
      {"probe:\n  servers: [\"2001:db8::3:3478\"]\n", "bad.yaml:2:13: probe.servers[0]:", "in brackets"},
      {"policy: [udp\n", "bad.yaml:2:1: YAML syntax error", "end of sequence"},
      {"tunnel:\n  endpoints: {a: b\n", "bad.yaml:3:1: YAML syntax error", "end of map"},
      {"probe:\n\tinterval: 30s\n", "bad.yaml:2:10: YAML syntax error", "illegal map value"},  // a tab indent
      {"metrics: true\n", "bad.yaml:1:10: metrics:", "expected a mapping with enabled, textfile"},
      {"metrics:\n  enabled: yes\n", "bad.yaml:2:12: metrics.enabled:", "expected true or false"},
      {"metrics:\n  textfile: leakguard.prom\n", "bad.yaml:2:13: metrics.textfile:", "absolute path"},
      {"metrics:\n  textfile: /var/lib/x/leakguard.txt\n", "bad.yaml:2:13: metrics.textfile:", "reads only *.prom"},
      {"metrics:\n  textfile: /var/lib/x/.prom\n", "bad.yaml:2:13: metrics.textfile:", "ending in .prom"},
      {"metrics:\n  textfile: \"/var/lib/x\\nleakguard.prom\"\n", "bad.yaml:2:13: metrics.textfile:", "control character"},
      {"metrics:\n  textfile: [/a.prom]\n", "bad.yaml:2:13: metrics.textfile:", "expected an absolute path"},
      {"metrics:\n  path: /a.prom\n", "bad.yaml:2:3: metrics.path:", "unknown setting (expected one of: enabled, textfile)"},
      // More than one document: nothing of the file may go unread.
      {"---\n---\npolicy: strict\n", "bad.yaml:2:1: ", "a second YAML document"},
      {"policy: strict\n...\npolicy: udp\n", "bad.yaml:3:1: ", "a second YAML document"},
      {"policy: strict\n---\n", "bad.yaml:2:1: ", "the file must be one document"},
      // What the firewall refuses, refused here with the place.
      {"tunnel:\n  endpoints: [0.0.0.0:51820]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "the unspecified address"},
      {"tunnel:\n  endpoints: [\"[::]:51820\"]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "the unspecified address"},
      {"tunnel:\n  endpoints: [198.51.100.1:1, 127.0.0.1:51820]\n", "bad.yaml:2:31: tunnel.endpoints[1]:", "a loopback address"},
      {"tunnel:\n  endpoints: [\"[::1]:51820\"]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "a loopback address"},
      {"tunnel:\n  endpoints: [224.0.0.251:5353]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "a multicast address"},
      {"tunnel:\n  endpoints: [\"[ff02::fb]:5353\"]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "a multicast address"},
      {"tunnel:\n  endpoints: [255.255.255.255:51820]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "limited broadcast"},
      {"tunnel:\n  endpoints: [0.1.2.3:51820]\n", "bad.yaml:2:15: tunnel.endpoints[0]:", "\"this network\""},
      {"tunnel:\n  endpoints: [\"[::ffff:198.51.100.1]:51820/tcp\"]\n", "bad.yaml:2:15: tunnel.endpoints[0]:",
       "IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 2.5.5.2) never matches IPv4 traffic: write 198.51.100.1:51820/tcp"},
      {"allow_lan_ranges: [\"::ffff:0:0/96\"]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "IPv4-mapped addresses"},
      {"allow_lan_ranges: [\"::ffff:192.168.1.0/120\"]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "IPv4-mapped addresses"},
      {"allow_lan_ranges: [\"::/16\"]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "loopback"},
      {"allow_lan_ranges: [0.0.0.0/8]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "\"this network\""},
      {"allow_lan_ranges: [0.0.0.0/24]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "\"this network\""},
      {"allow_lan_ranges: [127.0.0.0/8]\n", "bad.yaml:1:20: allow_lan_ranges[0]:", "loopback"},
      // Host names the resolver would read as an address (inet_aton's forms).
      {"probe:\n  servers: [\"1234:3478\"]\n", "bad.yaml:2:13: probe.servers[0]:", "reads it as the address 0.0.4.210"},
      {"probe:\n  servers: [\"1.2.3:3478\"]\n", "bad.yaml:2:13: probe.servers[0]:", "reads it as the address 1.2.0.3"},
      {"probe:\n  servers: [\"010.0.0.1:3478\"]\n", "bad.yaml:2:13: probe.servers[0]:", "reads it as the address 8.0.0.1"},
      {"probe:\n  servers: [\"0x7f.1:3478\"]\n", "bad.yaml:2:13: probe.servers[0]:", "reads it as the address 127.0.0.1"},
      // Every list refuses an entry given twice, naming both.
      {"tunnel:\n  interfaces: [wg0, tun*, wg0]\n", "bad.yaml:2:27: tunnel.interfaces[2]:",
       "'wg0' is given twice: the same as tunnel.interfaces[0] (line 2, column 16)"},
      {"probe:\n  servers: [a.example:3478, \"A.example:3478/udp\"]\n", "bad.yaml:2:29: probe.servers[1]:",
       "the same as probe.servers[0] (line 2, column 13)"},
      {"probe:\n  families: [ipv6, ipv6]\n", "bad.yaml:2:20: probe.families[1]:", "the same as probe.families[0]"},
      {"allow_lan_ranges:\n  - 100.64.0.0/10\n  - 100.64.1.1/10\n", "bad.yaml:3:5: allow_lan_ranges[1]:",
       "'100.64.1.1/10' is given twice: the same as allow_lan_ranges[0] (line 2, column 5)"},
      // Blame what the file says, where it says it.
      {"probe: {interval: 1s}\n", "bad.yaml:1:19: probe.interval:", "must be longer than probe.timeout (3s, the default)"},
      {"probe:\n  timeout: 2m\n", "bad.yaml:2:12: probe.timeout:", "shorter than probe.interval (1m, the default)"},
      {"policy:\narmed: true\n", "bad.yaml:1:1: policy:", "no value (expected one of: strict, udp)"},
      {"tunnel:\n  fwmark:\n\n", "bad.yaml:2:3: tunnel.fwmark:", "no value"},
      {"policy: ~\n", "bad.yaml:1:9: policy:", "no value"},
  };
  for (const auto& c : cases) {
    const std::string yaml = c.yaml;
    CAPTURE(yaml);
    auto r = parse(yaml, "bad.yaml");
    CHECK_FALSE(r);
    if (r) continue;
    const auto msg = r.error().message;
    CAPTURE(msg);
    CHECK(r.error().step == "load config");
    CHECK(msg.starts_with(c.where));
    CHECK(msg.find(c.what) != std::string::npos);
  }
}

TEST_CASE("metrics: off by default into Debian's textfile directory, on and elsewhere when the file says so") {
  auto d = parse("", "m.yaml");
  REQUIRE(d);
  CHECK_FALSE(d->metrics.enabled);
  CHECK(d->metrics.textfile == "/var/lib/prometheus/node-exporter/leakguard.prom");
  CHECK(d->str().find("metrics") == std::string::npos);

  auto on = parse("metrics:\n  enabled: true\n", "m.yaml");
  REQUIRE(on);
  CHECK(on->metrics.enabled);
  CHECK(on->metrics.textfile == "/var/lib/prometheus/node-exporter/leakguard.prom");
  CHECK(on->str().ends_with(" metrics=/var/lib/prometheus/node-exporter/leakguard.prom"));
  CHECK_FALSE(*on == defaults());

  auto elsewhere = parse("metrics:\n  enabled: true\n  textfile: /run/metrics/lg.prom\n", "m.yaml");
  REQUIRE(elsewhere);
  CHECK(elsewhere->metrics.textfile == "/run/metrics/lg.prom");

  auto empty = parse("metrics:\n", "m.yaml");
  REQUIRE(empty);
  CHECK(empty->metrics == Metrics{});
}

TEST_CASE("load: a missing file or a directory is an error naming the path and the system's reason") {
  auto r = load("/nonexistent/leakguard.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "/nonexistent/leakguard.yaml: cannot read the file: No such file or directory");
  CHECK(r.error().code == ENOENT);

  // Read as an empty file, a directory would have meant all defaults.
  auto dir = load(LEAKGUARD_CONFIG_DIR);
  REQUIRE_FALSE(dir);
  CHECK(dir.error().message == std::string(LEAKGUARD_CONFIG_DIR) + ": cannot read the file: Is a directory");
  CHECK(dir.error().code == EISDIR);
}

TEST_CASE("load: a FIFO, a device or an oversized file is refused at once, never waited on nor read whole") {
  // A FIFO with no writer: open(2) without O_NONBLOCK waits for one for ever (the daemon's start,
  // before any block; or its one loop, on SIGHUP).
  std::string dir = (std::filesystem::temp_directory_path() / "lgt-cfg-XXXXXX").string();
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  const std::string fifo = dir + "/leakguard.yaml";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto f = load(fifo);
  REQUIRE_FALSE(f);
  CHECK(f.error().message == fifo + ": not a regular file");
  // /dev/zero: endless; read whole it took all the memory the daemon may have, and crashed it.
  auto z = load("/dev/zero");
  REQUIRE_FALSE(z);
  CHECK(z.error().message == "/dev/zero: not a regular file");
  // A regular file larger than any configuration; the control: one just under the limit is read
  // (and parsed: a YAML comment).
  const std::string big = dir + "/big.yaml";
  std::filesystem::remove(fifo);
  {
    std::ofstream out(big);
    out << "# " << std::string(static_cast<std::size_t>(kMaxConfigBytes) - 3, 'x') << "\n";
  }
  CHECK(load(big));
  {
    std::ofstream out(big, std::ios::app);
    out << "#\n";
  }
  auto large = load(big);
  REQUIRE_FALSE(large);
  CHECK(large.error().code == EFBIG);
  std::filesystem::remove_all(dir);
}

TEST_CASE("null sections are empty sections, every one of them") {
  for (const char* section : {"tunnel", "probe", "attribution", "metrics", "allow_lan_ranges"}) {
    CAPTURE(section);
    for (const char* null : {": ~\n", ":\n", ": null\n"}) {
      auto c = parse(std::string(section) + null, "n.yaml");
      REQUIRE_MESSAGE(c, (c ? "" : c.error().str()));
      CHECK(*c == defaults());
    }
  }
}

// "KEY:\n  - ENTRY(0)\n  - ENTRY(1)..." with n entries.
template <typename F>
std::string yaml_list(const std::string& head, std::size_t n, F&& entry) {
  std::string y = head;
  for (std::size_t i = 0; i < n; ++i) y += "  - " + entry(i) + "\n";
  return y;
}

TEST_CASE("the lists are bounded by the firewall's limits: the first entry past one is refused where it stands") {
  const firewall::Limits limits;
  const auto v4 = [](std::size_t i) {
    return "198." + std::to_string(18 + i / 65536) + "." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256);
  };
  const auto endpoint = [&](std::size_t i) { return v4(i) + ":51820"; };
  const auto iface = [](std::size_t i) { return "wg" + std::to_string(i); };
  const auto range = [&](std::size_t i) { return v4(i * 256) + "/24"; };
  struct Limit {
    std::string head;
    std::function<std::string(std::size_t)> entry;
    std::size_t max;
    std::string field;
  };
  const std::vector<Limit> cases = {
      {"tunnel:\n endpoints:\n", endpoint, limits.max_endpoints, "tunnel.endpoints"},
      {"tunnel:\n interfaces:\n", iface, limits.max_tunnels, "tunnel.interfaces"},
      {"allow_lan_ranges:\n", range, limits.max_lan_subnets, "allow_lan_ranges"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.field);
    auto at_limit = parse(yaml_list(c.head, c.max, c.entry), "many.yaml");
    REQUIRE_MESSAGE(at_limit, (at_limit ? "" : at_limit.error().str()));
    auto past = parse(yaml_list(c.head, c.max + 1, c.entry), "many.yaml");
    REQUIRE_FALSE(past);
    const auto where = (c.head == "allow_lan_ranges:\n" ? 2 : 3) + c.max;
    CHECK(past.error().message == "many.yaml:" + std::to_string(where) + ":5: " + c.field + "[" + std::to_string(c.max) +
                                      "]: more than " + std::to_string(c.max) + " entries (at most " +
                                      std::to_string(c.max) + ": the limit the firewall sets for " +
                                      (c.field == "tunnel.endpoints" ? "endpoints"
                                       : c.field == "tunnel.interfaces" ? "tunnel interfaces and patterns"
                                                                        : "LAN subnets") +
                                      ")");
  }
}

TEST_CASE("every endpoint the loader accepts, the firewall accepts") {
  for (const char* text : {"0.0.0.0:1", "[::]:1", "127.0.0.1:1", "[::1]:1", "224.0.0.1:1", "239.255.255.250:1900",
                           "[ff02::1]:1", "255.255.255.255:1", "[::ffff:127.0.0.1]:1", "[::ffff:0.0.0.0]:1",
                           "198.51.100.1:1", "[2001:db8::1]:1/tcp", "[::0.0.0.1]:1"}) {
    CAPTURE(text);
    auto c = parse(std::string("tunnel:\n  endpoints: [\"") + text + "\"]\n", "e.yaml");
    if (!c) continue;
    firewall::Policy p;
    p.tunnels = c->tunnel_interfaces;
    p.endpoints = c->endpoints;
    auto ok = firewall::validate(p);
    CHECK_MESSAGE(ok, (ok ? "" : ok.error().str()));
  }
}

TEST_CASE("messages show values clipped and escaped: no 50 MB line, no invisible byte") {
  const std::string huge(50 * 1024 * 1024, 'x');
  auto r = parse("policy: " + huge + "\n", "big.yaml");
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "big.yaml:1:9: policy: '" + std::string(64, 'x') + "\u2026' is not one of: strict, udp");

  // A value the common parsers echo (twice: whole, and its port) is clipped wherever it shows.
  auto port = parse("tunnel:\n  endpoints: [\"198.51.100.1:" + std::string(100, '9') + "\"]\n", "p.yaml");
  REQUIRE_FALSE(port);
  CHECK(port.error().message.size() < 400);
  CHECK(port.error().message.find(std::string(65, '9')) == std::string::npos);
  CHECK(port.error().message.find(std::string(64, '9') + "\u2026'") != std::string::npos);

  // A BOM in mid-file (a paste from a Windows editor) and a control character.
  auto bom = parse("policy: \xef\xbb\xbfstrict\n", "bom.yaml");
  REQUIRE_FALSE(bom);
  CHECK(bom.error().message == "bom.yaml:1:9: policy: '\\xef\\xbb\\xbfstrict' is not one of: strict, udp");
  auto tab = parse("tunnel:\n  interfaces: [\"wg\\u00010\"]\n", "c.yaml");
  REQUIRE_FALSE(tab);
  CHECK(tab.error().message.find("\\x01") != std::string::npos);

  // An unknown key is clipped too.
  auto key = parse(std::string(200, 'k') + ": 1\n", "k.yaml");
  REQUIRE_FALSE(key);
  CHECK(key.error().message.starts_with("k.yaml:1:1: " + std::string(64, 'k') + "\u2026: unknown setting"));
}

TEST_CASE("durations") {
  CHECK(parse_duration("250ms").value() == 250ms);
  CHECK(parse_duration("3s").value() == 3s);
  CHECK(parse_duration("3").value() == 3s);
  CHECK(parse_duration("5m").value() == 5min);
  CHECK(parse_duration("1h").value() == 1h);
  CHECK_FALSE(parse_duration(""));
  CHECK_FALSE(parse_duration("s"));
  CHECK_FALSE(parse_duration("1.5s"));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK_FALSE(parse_duration("99999999999h"));
}
