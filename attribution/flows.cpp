#include "attribution/flows.hpp"

#include <algorithm>
#include <cstdio>

namespace leakguard::attribution {

std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string unit_of_cgroup(std::string_view path) {
  while (!path.empty()) {
    const auto slash = path.rfind('/');
    const std::string_view last = slash == std::string_view::npos ? path : path.substr(slash + 1);
    if (last.ends_with(".scope") || last.ends_with(".service")) return printable(last);
    if (slash == std::string_view::npos) break;
    path = path.substr(0, slash);
  }
  return {};
}

std::string app_of(const Sender& s, const LoggedPacket& p) {
  if (!s.process.empty()) return s.process;
  if (!s.unit.empty()) return s.unit;
  if (s.uid) return "uid " + std::to_string(*s.uid);
  return p.rule.ends_with("-fwd") ? "forwarded" : "kernel";
}

bool sent_by_self(const LoggedPacket& p, const Sender& s, std::uint32_t own_uid, std::int32_t own_pid) {
  // Always the daemon's user's socket (one passed to the daemon in a D-Bus message keeps its
  // owner); then a user of its own (not root's), or the daemon's process as its holder.
  return p.uid == own_uid && (own_uid != 0 || (s.pid && *s.pid == own_pid));
}

namespace {
std::string iso(SystemTime t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
}  // namespace

void BlockedFlows::add(const LoggedPacket& p, const Sender& s, const std::string& interface, SystemTime now) {
  ++packets_;
  const std::string app = app_of(s, p), dest = destination_text(p);
  const std::string key = app + '\n' + (s.uid ? std::to_string(*s.uid) : "-") + '\n' + dest + '\n' + p.rule;
  auto it = flows_.find(key);
  if (it == flows_.end()) {
    if (capacity_ == 0) return;
    if (flows_.size() >= capacity_) {
      auto oldest = std::min_element(flows_.begin(), flows_.end(),
                                     [](const auto& a, const auto& b) { return a.second.last_seen < b.second.last_seen; });
      flows_.erase(oldest);
      ++evicted_;
    }
    Flow f;
    f.app = app;
    f.destination = dest;
    f.protocol = protocol_name(p.protocol);
    f.rule = printable(p.rule, 64);
    f.first_seen = now;
    it = flows_.emplace(key, std::move(f)).first;
  }
  Flow& f = it->second;
  // The latest lookup says most: the process may have gone since, or been found only now.
  f.unit = s.unit;
  f.user = s.user;
  f.process = s.process;
  f.cgroup = s.cgroup;
  f.note = s.note;
  f.uid = s.uid;
  f.pid = s.pid;
  f.gone = s.gone;
  f.interface = printable(interface, 16);
  ++f.packets;
  f.last_seen = now;
}

bool BlockedFlows::pending() const {
  return std::any_of(flows_.begin(), flows_.end(), [](const auto& e) { return e.second.packets > e.second.told; });
}

std::vector<BlockedFlows::Change> BlockedFlows::take_changes(std::size_t max, std::string_view quiet) {
  std::vector<Flow*> changed;
  for (auto& [k, f] : flows_) {
    if (!quiet.empty() && f.app == quiet) f.told = f.packets;
    if (f.packets > f.told) changed.push_back(&f);
  }
  std::sort(changed.begin(), changed.end(), [](const Flow* a, const Flow* b) { return a->packets - a->told > b->packets - b->told; });
  std::vector<Change> out;
  for (Flow* f : changed) {
    if (out.size() == max) break;
    const std::string user = !f->user.empty() ? f->user : f->uid ? "uid " + std::to_string(*f->uid) : "";
    out.push_back(Change{f->app, user, f->destination, f->interface, f->packets - f->told});
    f->told = f->packets;
  }
  return out;
}

nlohmann::json BlockedFlows::to_json(std::size_t top) const {
  nlohmann::json j;
  j["packets"] = packets_;
  j["evicted"] = evicted_;
  std::vector<const Flow*> recent;
  for (const auto& [k, f] : flows_) recent.push_back(&f);
  std::sort(recent.begin(), recent.end(), [](const Flow* a, const Flow* b) {
    return a->last_seen != b->last_seen ? a->last_seen > b->last_seen : a->packets > b->packets;
  });
  j["flows"] = nlohmann::json::array();
  for (std::size_t i = 0; i < recent.size() && i < top; ++i) {
    const Flow& f = *recent[i];
    nlohmann::json x;
    x["app"] = f.app;
    x["process"] = f.process.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.process);
    x["pid"] = f.pid ? nlohmann::json(*f.pid) : nlohmann::json(nullptr);
    x["unit"] = f.unit.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.unit);
    x["cgroup"] = f.cgroup.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.cgroup);
    x["uid"] = f.uid ? nlohmann::json(*f.uid) : nlohmann::json(nullptr);
    x["user"] = f.user.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.user);
    x["gone"] = f.gone;
    if (!f.note.empty()) x["note"] = f.note;
    x["destination"] = f.destination;
    x["protocol"] = f.protocol;
    x["interface"] = f.interface;
    x["rule"] = f.rule;
    x["packets"] = f.packets;
    x["first_seen"] = iso(f.first_seen);
    x["last_seen"] = iso(f.last_seen);
    j["flows"].push_back(std::move(x));
  }
  struct App {
    std::string unit;
    std::optional<std::uint32_t> uid;
    std::uint64_t packets = 0, flows = 0;
  };
  std::map<std::string, App> apps;
  for (const auto& [k, f] : flows_) {
    App& a = apps[f.app];
    if (a.unit.empty()) a.unit = f.unit;
    if (!a.uid) a.uid = f.uid;
    a.packets += f.packets;
    ++a.flows;
  }
  std::vector<std::pair<std::string, App>> sorted(apps.begin(), apps.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second.packets != b.second.packets ? a.second.packets > b.second.packets : a.first < b.first;
  });
  j["apps"] = nlohmann::json::array();
  for (const auto& [name, a] : sorted) {
    j["apps"].push_back({{"app", name},
                         {"unit", a.unit},
                         {"uid", a.uid ? nlohmann::json(*a.uid) : nlohmann::json(nullptr)},
                         {"packets", a.packets},
                         {"flows", a.flows}});
  }
  return j;
}

}  // namespace leakguard::attribution
