#include "attribution/lookup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

namespace leakguard::attribution {

std::optional<SocketInfo> choose_socket(const std::vector<SocketInfo>& sockets, const LoggedPacket& p) {
  const SocketInfo* best = nullptr;
  int best_score = 0;
  for (const auto& s : sockets) {
    if (s.local_port != p.source_port) continue;
    if (!s.local.is_unspecified() && s.local != p.source) continue;
    int score = 1;
    if (!s.remote.is_unspecified() || s.remote_port != 0) {
      if (s.remote != p.destination || s.remote_port != p.destination_port) continue;  // connected elsewhere
      score += 2;
    }
    if (!s.local.is_unspecified()) score += 1;
    if (score > best_score) best = &s, best_score = score;
  }
  if (!best) return std::nullopt;
  return *best;
}

std::optional<SocketInfo> as_ipv4(const SocketInfo& s) {
  if (s.local.family != Family::v6) return std::nullopt;
  // ::ffff:a.b.c.d -> a.b.c.d; :: -> 0.0.0.0 (where `wildcard_ok`); else none.
  auto v4 = [](const IpAddress& a, bool wildcard_ok) -> std::optional<IpAddress> {
    if (a.is_unspecified()) {
      if (!wildcard_ok) return std::nullopt;
      return IpAddress::v4(0, 0, 0, 0);
    }
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes.data(), kMapped, 12) != 0) return std::nullopt;
    return IpAddress::v4(a.bytes[12], a.bytes[13], a.bytes[14], a.bytes[15]);
  };
  const auto local = v4(s.local, !s.v6only);
  const auto remote = v4(s.remote, true);
  if (!local || !remote) return std::nullopt;
  SocketInfo out = s;
  out.local = *local;
  out.remote = *remote;
  out.v6only = false;
  return out;
}

std::vector<std::int32_t> parse_pids(std::string_view text, std::size_t max) {
  std::vector<std::int32_t> out;
  std::size_t pos = 0;
  while (pos < text.size() && out.size() < max) {
    auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const auto line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty() || line.size() > 9 || line.find_first_not_of("0123456789") != std::string_view::npos) continue;
    out.push_back(static_cast<std::int32_t>(std::stol(std::string(line))));
  }
  return out;
}

std::optional<std::array<std::uint32_t, 4>> parse_status_uids(std::string_view status) {
  std::size_t pos = 0;
  while (pos < status.size()) {
    auto nl = status.find('\n', pos);
    if (nl == std::string_view::npos) nl = status.size();
    std::string_view line = status.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.starts_with("Uid:")) continue;
    line.remove_prefix(4);
    std::array<std::uint32_t, 4> ids{};
    for (auto& id : ids) {
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      std::size_t n = 0;
      std::uint64_t v = 0;
      while (n < line.size() && n < 10 && line[n] >= '0' && line[n] <= '9') v = v * 10 + static_cast<std::uint64_t>(line[n++] - '0');
      if (n == 0 || v > 0xffffffffu) return std::nullopt;
      id = static_cast<std::uint32_t>(v);
      line.remove_prefix(n);
    }
    return ids;
  }
  return std::nullopt;
}

namespace {

constexpr auto kDeadline = std::chrono::milliseconds(200);
constexpr std::size_t kMaxCgroups = 20000;

struct MnlClose {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// At most `max` bytes of a small file (procfs, cgroupfs), read as they come: no buffer of the
// largest size made (and cleared) for every read.
std::string read_small(const std::string& path, std::size_t max = 65536) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string s;
  char buf[4096];
  while (s.size() < max) {
    const ssize_t n = ::read(fd, buf, std::min(sizeof buf, max - s.size()));
    if (n <= 0) break;
    s.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return s;
}

// All sockets of one protocol and family (a dump: unconnected UDP sockets cannot be looked up
// by the packet's four-tuple alone).
std::vector<SocketInfo> dump_sockets(std::uint8_t family, std::uint8_t protocol) {
  std::vector<SocketInfo> out;
  std::unique_ptr<mnl_socket, MnlClose> nl(mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC));
  if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return out;
  char req_buf[256] = {};  // a header and an inet_diag_req_v2
  auto* h = mnl_nlmsg_put_header(req_buf);
  h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  h->nlmsg_seq = 1;
  auto* r = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(h, sizeof(inet_diag_req_v2)));
  r->sdiag_family = family;
  r->sdiag_protocol = protocol;
  r->idiag_states = ~0u;
  if (mnl_socket_sendto(nl.get(), h, h->nlmsg_len) < 0) return out;
  const int fd = mnl_socket_get_fd(nl.get());
  static std::vector<char> buf(32768);  // one loop, one lookup at a time: kept, not made anew each time
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  const std::size_t alen = family == AF_INET ? 4 : 16;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return out;
    const ssize_t n = mnl_socket_recvfrom(nl.get(), buf.data(), buf.size());
    if (n <= 0) return out;
    int len = static_cast<int>(n);
    for (auto* m = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_type == NLMSG_DONE || m->nlmsg_type == NLMSG_ERROR) return out;
      if (m->nlmsg_len < mnl_nlmsg_size(sizeof(inet_diag_msg))) continue;
      const auto* d = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(m));
      // A connection's remains (TIME_WAIT) and half-open requests (NEW_SYN_RECV, 12) are the
      // kernel's, listed with uid 0 and no inode: never a sender to name (they named root).
      if (protocol == IPPROTO_TCP && (d->idiag_state == TCP_TIME_WAIT || d->idiag_state == 12)) continue;
      SocketInfo s;
      s.local.family = s.remote.family = family == AF_INET ? Family::v4 : Family::v6;
      std::memcpy(s.local.bytes.data(), d->id.idiag_src, alen);
      std::memcpy(s.remote.bytes.data(), d->id.idiag_dst, alen);
      s.local_port = ntohs(d->id.idiag_sport);
      s.remote_port = ntohs(d->id.idiag_dport);
      s.uid = d->idiag_uid;
      s.inode = d->idiag_inode;
      struct Acc {
        std::optional<std::uint64_t> cg;
        bool v6only = false;
      } acc;
      mnl_attr_parse(m, sizeof(inet_diag_msg), [](const nlattr* a, void* data) {
        if (mnl_attr_get_type(a) == INET_DIAG_CGROUP_ID && mnl_attr_get_payload_len(a) == 8)
          static_cast<Acc*>(data)->cg = mnl_attr_get_u64(a);
        if (mnl_attr_get_type(a) == INET_DIAG_SKV6ONLY && mnl_attr_get_payload_len(a) >= 1)
          static_cast<Acc*>(data)->v6only = mnl_attr_get_u8(a) != 0;
        return MNL_CB_OK;
      }, &acc);
      s.cgroup_id = acc.cg;
      s.v6only = acc.v6only;
      out.push_back(s);
      if (out.size() > 100000) return out;
    }
  }
}

}  // namespace

std::string cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    const auto dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    std::istringstream f(line.substr(0, dash));
    std::string id, parent, dev, root, mount;
    f >> id >> parent >> dev >> root >> mount;
    return mount;
  }
  return {};
}

SenderLookup::SenderLookup(Options o) : options_(std::move(o)) {
  if (options_.cgroup_root.empty()) options_.cgroup_root = cgroup2_mount();
}

std::optional<SocketInfo> SenderLookup::socket_of(const LoggedPacket& p) {
  const std::uint8_t family = p.source.family == Family::v4 ? AF_INET : AF_INET6;
  // sock_diag knows TCP, UDP and UDP-Lite (SCTP and DCCP only with their diag modules).
  if (p.protocol != IPPROTO_TCP && p.protocol != IPPROTO_UDP && p.protocol != IPPROTO_UDPLITE && p.protocol != IPPROTO_SCTP &&
      p.protocol != IPPROTO_DCCP)
    return std::nullopt;
  if (auto s = choose_socket(dump_sockets(family, p.protocol), p); s || family == AF_INET6) return s;
  // An IPv4 packet from a dual-stack IPv6 socket: found among the IPv6 ones, as IPv4.
  std::vector<SocketInfo> mapped;
  for (const auto& s : dump_sockets(AF_INET6, p.protocol))
    if (auto v4 = as_ipv4(s)) mapped.push_back(*v4);
  return choose_socket(mapped, p);
}

std::string SenderLookup::cgroup_path(std::uint64_t id) {
  if (auto it = cgroups_.find(id); it != cgroups_.end()) return it->second;
  if (options_.cgroup_root.empty()) return {};
  // A walk at most four times a second: a cgroup made since the last one is found then.
  const auto now = std::chrono::steady_clock::now();
  if (now - last_walk_ < options_.min_scan_interval && last_walk_ != std::chrono::steady_clock::time_point{}) {
    walk_refused_ = true;
    return {};
  }
  last_walk_ = now;
  cgroups_.clear();
  namespace fs = std::filesystem;
  std::error_code ec;
  struct stat st{};
  if (::stat(options_.cgroup_root.c_str(), &st) == 0) cgroups_[st.st_ino] = "/";
  fs::recursive_directory_iterator it(options_.cgroup_root, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end && cgroups_.size() < kMaxCgroups; it.increment(ec)) {
    if (!it->is_directory(ec) || it->is_symlink(ec)) {
      continue;
    }
    if (::stat(it->path().c_str(), &st) == 0)
      cgroups_[st.st_ino] = "/" + fs::relative(it->path(), options_.cgroup_root, ec).string();
  }
  auto found = cgroups_.find(id);
  return found == cgroups_.end() ? std::string() : found->second;
}

void SenderLookup::scan_sockets() {
  // Every visible process's socket descriptors, inode -> pid: one pass over /proc, at most four
  // times a second whatever the rate of new senders (a flood of new source ports cannot make the
  // daemon walk /proc for each).
  inode_pid_.clear();
  DIR* procs = ::opendir(options_.proc.c_str());
  if (!procs) return;
  char target[64];
  std::size_t seen = 0;
  for (dirent* p = ::readdir(procs); p && seen < 4096; p = ::readdir(procs)) {
    const std::string_view n = p->d_name;
    if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string_view::npos) continue;
    ++seen;
    const auto pid = static_cast<std::int32_t>(std::stol(std::string(n)));
    const std::string dir = options_.proc + "/" + std::string(n) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;  // another user's, without the privilege to look
    for (dirent* e = ::readdir(d); e; e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const ssize_t len = ::readlinkat(::dirfd(d), e->d_name, target, sizeof target - 1);
      if (len <= 9 || std::memcmp(target, "socket:[", 8) != 0 || target[len - 1] != ']') continue;
      std::uint64_t inode = 0;
      for (ssize_t i = 8; i < len - 1 && target[i] >= '0' && target[i] <= '9'; ++i) inode = inode * 10 + static_cast<std::uint64_t>(target[i] - '0');
      if (inode != 0 && inode_pid_.size() < 1'000'000) inode_pid_.emplace(inode, pid);
    }
    ::closedir(d);
  }
  ::closedir(procs);
}

std::string SenderLookup::comm(std::int32_t pid) const {
  std::string c = read_small(options_.proc + "/" + std::to_string(pid) + "/comm", 64);
  if (!c.empty() && c.back() == '\n') c.pop_back();
  return printable(c, 16);
}

std::vector<std::int32_t> SenderLookup::cgroup_pids(const std::string& cgroup) const {
  return parse_pids(read_small(options_.cgroup_root + (cgroup == "/" ? "" : cgroup) + "/cgroup.procs", 1 << 20));
}

/// The cgroup's processes (`who`: "of uid N " where they are a user's only) stand for the
/// sender, and the note says so after `why`.
static void name_by_cgroup(const std::vector<std::pair<std::int32_t, std::string>>& procs, const std::string& why, const std::string& who,
                           Sender& out) {
  std::set<std::string> names;
  for (const auto& p : procs) names.insert(p.second);
  names.erase("");
  if (procs.size() == 1 && !names.empty()) {
    out.pid = procs.front().first;
    out.process = procs.front().second;
    out.note = why + "the only process " + who + "in its cgroup";
  } else if (names.size() == 1) {
    out.process = *names.begin();
    out.note = why + "one of " + std::to_string(procs.size()) + " processes " + who + "of that name in its cgroup";
  } else {
    out.note = why + std::to_string(procs.size()) + " processes " + who + "in its cgroup";
  }
}

void SenderLookup::process_of(const SocketInfo& s, Sender& out) {
  bool incomplete = false;
  if (const auto pid = holder(s.inode, &incomplete)) {
    out.pid = *pid;
    out.process = comm(*pid);
    if (!out.process.empty()) return;
    out.pid.reset();  // gone since
  }
  if (incomplete) out.ask_again = true;
  // The socket's holder could not be seen (another user's /proc/PID/fd needs privileges the
  // daemon does not have, or the socket is newer than the last scan): the cgroup's processes
  // stand for it, said so.
  if (out.cgroup.empty()) return;
  std::vector<std::pair<std::int32_t, std::string>> procs;
  for (std::int32_t pid : cgroup_pids(out.cgroup)) procs.emplace_back(pid, comm(pid));
  if (!procs.empty()) name_by_cgroup(procs, "", "", out);
}

std::optional<std::int32_t> SenderLookup::holder(std::uint64_t inode, bool* incomplete) {
  auto it = inode_pid_.find(inode);
  const auto now = std::chrono::steady_clock::now();
  const bool may_scan = now - last_scan_ >= options_.min_scan_interval || last_scan_ == std::chrono::steady_clock::time_point{};
  // The last scan may be older than the process it names: a PID is used only while it still
  // holds the socket (a PID reused since by another process holds other descriptors).
  if (it == inode_pid_.end() || !holds(it->second, inode)) {
    if (!may_scan) {
      if (incomplete) *incomplete = true;
      return std::nullopt;
    }
    last_scan_ = now;
    scan_sockets();
    it = inode_pid_.find(inode);
    if (it == inode_pid_.end() || !holds(it->second, inode)) return std::nullopt;
  }
  return it->second;
}

bool SenderLookup::holds(std::int32_t pid, std::uint64_t inode) const {
  const std::string dir = options_.proc + "/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return false;
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  char target[64];
  bool found = false;
  for (dirent* e = ::readdir(d); e && !found; e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const ssize_t len = ::readlinkat(::dirfd(d), e->d_name, target, sizeof target - 1);
    found = len == static_cast<ssize_t>(want.size()) && std::memcmp(target, want.data(), want.size()) == 0;
  }
  ::closedir(d);
  return found;
}

void SenderLookup::processes_in_cgroup(std::optional<std::uint32_t> uid, Sender& out) {
  // The socket is closed; its cgroup (remembered by the firewall) is what is left. Its processes
  // of the socket's user stand for the sender, said so.
  std::vector<std::pair<std::int32_t, std::string>> theirs;
  std::size_t unseen = 0;
  for (std::int32_t pid : cgroup_pids(out.cgroup)) {
    const auto ids = parse_status_uids(read_small(options_.proc + "/" + std::to_string(pid) + "/status", 8192));
    if (!ids) {
      ++unseen;  // exited, or hidden from us (ProtectProc=invisible)
      continue;
    }
    if (uid && std::find(ids->begin(), ids->end(), *uid) == ids->end()) continue;
    theirs.emplace_back(pid, comm(pid));
    if (theirs.size() >= 4096) break;
  }
  const std::string who = uid ? "of uid " + std::to_string(*uid) + " " : "";
  if (theirs.empty() && unseen) {
    out.gone = false;  // not known: what is in its cgroup is hidden from us
    out.note = "its socket closed before the lookup; the processes in its cgroup are hidden from leakguardd";
    return;
  }
  if (theirs.empty()) {
    out.note = "its socket closed before the lookup, and no process " + who + "is left in its cgroup";
    return;
  }
  out.gone = false;  // the socket is, its sender is not
  name_by_cgroup(theirs, "its socket closed before the lookup; ", who, out);
}

std::string SenderLookup::user_name(std::uint32_t uid) {
  if (auto it = users_.find(uid); it != users_.end()) return it->second;
  passwd pw{}, *res = nullptr;
  std::vector<char> buf(4096);
  std::string name;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) name = printable(res->pw_name, 64);
  if (users_.size() > 1024) users_.clear();
  users_[uid] = name;
  return name;
}

Sender SenderLookup::find(const LoggedPacket& p, const Cgroups& cgroups_of) {
  Sender s;
  s.uid = p.uid;
  const auto sock = socket_of(p);
  if (!sock) {
    s.gone = p.uid.has_value();  // a local socket sent it (the log has its owner) and is closed now
    // The deepest of the cgroups remembered for the flow is the socket's own (the others are its
    // ancestors: the firewall remembers every level).
    walk_refused_ = false;
    for (std::uint64_t id : cgroups_of && s.gone ? cgroups_of() : std::vector<std::uint64_t>{}) {
      const std::string path = cgroup_path(id);
      if (std::count(path.begin(), path.end(), '/') > std::count(s.cgroup.begin(), s.cgroup.end(), '/') || s.cgroup.empty())
        s.cgroup = path;
    }
    if (walk_refused_) s.ask_again = true;
    if (!s.cgroup.empty() && s.gone) {
      s.unit = unit_of_cgroup(s.cgroup);
      processes_in_cgroup(p.uid, s);
    }
  } else {
    s.uid = sock->uid;
    if (sock->cgroup_id) {
      walk_refused_ = false;
      s.cgroup = cgroup_path(*sock->cgroup_id);
      s.unit = unit_of_cgroup(s.cgroup);
      if (walk_refused_) s.ask_again = true;
    }
    process_of(*sock, s);
  }
  if (s.uid) s.user = user_name(*s.uid);
  if (!s.cgroup.empty()) s.cgroup = printable(s.cgroup, 512);
  return s;
}

}  // namespace leakguard::attribution
