#include "firewall/nft_text.hpp"

#include <cstdio>

#include "common/overloaded.hpp"

namespace leakguard::firewall {

namespace {

std::string proto_name(std::uint8_t p) {
  switch (p) {
    case kProtoTcp: return "tcp";
    case kProtoUdp: return "udp";
    case kProtoIcmp: return "icmp";
    case kProtoIcmpv6: return "ipv6-icmp";
    case kProtoUdplite: return "udplite";
    case kProtoSctp: return "sctp";
    case kProtoDccp: return "dccp";
    case kProtoL2tp: return "l2tp";
    default: return std::to_string(p);
  }
}

std::string ip_keyword(Family f) { return f == Family::v4 ? "ip" : "ip6"; }

std::string address_text(const Prefix& p) {
  const unsigned full = p.address.family == Family::v4 ? 32 : 128;
  if (p.length == full) return p.address.str();
  return p.network().str();
}

std::string hex_mark(FwMark m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", m.value);
  return buf;
}

std::string match_text(const Match& m) {
  return std::visit(
      overloaded{
          [](const NfprotoIs& x) { return "meta nfproto " + std::string(x.family == Family::v4 ? "ipv4" : "ipv6"); },
          [](const L4protoIs& x) { return "meta l4proto " + proto_name(x.proto); },
          [](const IfnameIs& x) {
            return std::string(x.output ? "oifname" : "iifname") + (x.negated ? " != \"" : " \"") + x.pattern.text + "\"";
          },
          [](const LoopbackIs& x) { return std::string(x.output ? "oif" : "iif") + " \"lo\""; },
          [](const MarkIs& x) { return "meta mark " + hex_mark(x.mark); },
          [](const AddressIs& x) {
            return ip_keyword(x.prefix.address.family) + (x.destination ? " daddr " : " saddr ") + address_text(x.prefix);
          },
          [](const PortsAre& x) {
            std::string s;
            if (x.sport) s += proto_name(x.proto) + " sport " + std::to_string(*x.sport);
            if (x.dport) s += (s.empty() ? "" : " ") + proto_name(x.proto) + " dport " + std::to_string(*x.dport);
            return s;
          },
          [](const Icmpv6TypeIn& x) {
            std::string s = "icmpv6 type " + std::to_string(x.from);
            if (x.to != x.from) s += "-" + std::to_string(x.to);
            return s;
          },
          [](const HoplimitIs& x) { return "ip6 hoplimit " + std::to_string(x.value); },
          [](const CtState& x) {
            return std::string(x.invalid ? "ct state invalid" : x.related ? "ct state established,related" : "ct state established");
          },
          [](const SocketUidIsNot& x) { return "meta skuid != " + std::to_string(x.uid); },
          [](const AddressInSet& x) {
            return ip_keyword(x.family) + (x.destination ? " daddr @" : " saddr @") + x.set;
          },
          [](const EndpointInSet& x) {
            return ip_keyword(x.family) + (x.destination ? " daddr . meta l4proto . th dport @" : " saddr . meta l4proto . th sport @") +
                   x.set;
          },
          [](const PortInSet& x) { return proto_name(x.proto) + (x.destination ? " dport @" : " sport @") + x.set; },
      },
      m);
}

std::string verdict_text(Verdict v) {
  switch (v) {
    case Verdict::none: return "";
    case Verdict::accept: return "accept";
    case Verdict::drop: return "drop";
    case Verdict::reject: return "reject with icmpx admin-prohibited";
    case Verdict::tcp_reset: return "reject with tcp reset";
    case Verdict::jump: return "jump";
  }
  return "";
}

void append(std::string& line, const std::string& part) {
  if (part.empty()) return;
  if (!line.empty()) line += ' ';
  line += part;
}

std::string elements_text(const Set& s) {
  std::string out = "\t\telements = { ";
  for (std::size_t i = 0; i < s.elements.size(); ++i) {
    if (i) out += (i % 4 == 0) ? ",\n\t\t\t     " : ", ";
    out += to_string(s.elements[i]);
  }
  return out + " }\n";
}

}  // namespace

std::string to_nft_text(const Rule& r) {
  std::string line;
  for (const auto& m : r.matches) append(line, match_text(m));
  if (r.count_per_interface) {
    const auto& c = *r.count_per_interface;
    append(line, "update @" + c.set + " { " + (c.output ? "oifname" : "iifname") + " . meta nfproto . meta l4proto }");
  }
  if (r.remember) {
    const auto& x = *r.remember;
    append(line, "update @" + x.set + " { socket cgroupv2 level " + std::to_string(x.level) + " . " + ip_keyword(x.family) +
                     " daddr . meta l4proto . th sport . th dport }");
  }
  if (r.log)
    append(line, "limit rate " + std::to_string(r.log->per_second) + "/second burst " + std::to_string(r.log->burst) +
                     " packets log prefix \"" + r.log->prefix + "\" group " + std::to_string(r.log->group));
  if (r.counter) append(line, "counter");
  append(line, verdict_text(r.verdict));
  if (r.verdict == Verdict::jump) append(line, r.target);
  if (!r.comment.empty()) append(line, "comment \"" + r.comment + "\"");
  return line;
}

std::string to_nft_text(const Ruleset& rs, const TextOptions& options) {
  std::string out;
  if (!options.header.empty()) out += "# " + options.header + "\n";
  if (options.replace) {
    // Creating first makes the delete valid when the table is absent: one transaction either way.
    out += "add table inet " + rs.table + "\n";
    out += "delete table inet " + rs.table + "\n";
  }
  out += "table inet " + rs.table + " {\n";
  for (const auto& s : rs.sets) {
    out += "\tset " + s.name + " {\n";
    out += "\t\ttype " + std::string(nft_type(s.key)) + "\n";
    if (s.datapath_filled()) out += "\t\tsize " + std::to_string(s.size) + "\n";
    if (s.interval) out += "\t\tflags interval\n";
    if (s.counting) out += "\t\tflags dynamic\n\t\tcounter\n";
    if (s.timeout_s) out += "\t\tflags dynamic,timeout\n\t\ttimeout " + std::to_string(s.timeout_s) + "s\n";
    if (!s.elements.empty()) out += elements_text(s);
    out += "\t}\n\n";
  }
  for (std::size_t i = 0; i < rs.chains.size(); ++i) {
    const Chain& c = rs.chains[i];
    out += "\tchain " + c.name + " {\n";
    if (c.base)
      out += "\t\ttype filter hook " + std::string(to_string(c.hook)) + " priority " +
             (c.priority == 0 ? std::string("filter") : std::to_string(c.priority)) + "; policy " +
             (c.policy_drop ? "drop" : "accept") + ";\n";
    for (const auto& r : c.rules) out += "\t\t" + to_nft_text(r) + "\n";
    out += "\t}\n";
    if (i + 1 < rs.chains.size()) out += "\n";
  }
  out += "}\n";
  return out;
}

Result<std::string> dry_run(const Policy& p, const Limits& limits) {
  if (auto ok = validate(p, limits); !ok) return tl::unexpected(ok.error());
  TextOptions o;
  o.header = "leakguard dry run: " + p.str();
  return to_nft_text(build_ruleset(p), o);
}

}  // namespace leakguard::firewall
