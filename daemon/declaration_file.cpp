#include "daemon/declaration_file.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/json_text.hpp"

namespace leakguard::daemon {

namespace {

constexpr int kVersion = 1;
// A declaration holds at most firewall::Limits::max_endpoints endpoints of ~50 bytes each.
constexpr off_t kMaxFileSize = 256 * 1024;

std::string path_in(const std::string& dir) { return dir + "/" + std::string(kDeclarationFile); }

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

std::string declaration_text(const TunnelDeclaration& t, std::string_view boot_id, bool ahead) {
  nlohmann::json j;
  j["version"] = kVersion;
  j["boot_id"] = std::string(boot_id);
  j["interface"] = t.interface;
  j["endpoints"] = nlohmann::json::array();
  for (const auto& e : t.endpoints) j["endpoints"].push_back(e.str());
  j["fwmark"] = t.fwmark ? t.fwmark->value : 0;
  if (ahead) j["ahead"] = true;
  return json_text(j, 2) + "\n";
}

Result<TunnelDeclaration> parse_declaration(std::string_view text, std::string_view boot_id, bool* ahead) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("read declaration", "not a JSON object");
  if (!j.contains("version") || j["version"] != kVersion)
    return fail("read declaration", "not version " + std::to_string(kVersion));
  if (!j.contains("boot_id") || !j["boot_id"].is_string() || boot_id.empty() || j["boot_id"].get<std::string>() != boot_id)
    return fail("read declaration", "written before this boot (stale)");
  if (!j.contains("interface") || !j["interface"].is_string()) return fail("read declaration", "no interface");
  if (!j.contains("endpoints") || !j["endpoints"].is_array()) return fail("read declaration", "no endpoints");
  std::vector<std::string> endpoints;
  for (const auto& e : j["endpoints"]) {
    if (!e.is_string()) return fail("read declaration", "an endpoint that is not a string");
    endpoints.push_back(e.get<std::string>());
  }
  if (!j.contains("fwmark") || !j["fwmark"].is_number_unsigned() || j["fwmark"].get<std::uint64_t>() > 0xffffffffULL)
    return fail("read declaration", "no fwmark (0 for none)");
  if (j.contains("ahead") && !j["ahead"].is_boolean()) return fail("read declaration", "'ahead' is not true or false");
  auto t = check_tunnel(j["interface"].get<std::string>(), endpoints, j["fwmark"].get<std::uint32_t>());
  if (!t) return fail("read declaration", t.error().step + ": " + t.error().message);
  if (ahead) *ahead = j.contains("ahead") && j["ahead"].get<bool>();
  return *t;
}

std::string current_boot_id(const std::string& dir) {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  if (!id.empty()) return id;
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)) return "volatile";
  return "";
}

namespace {

// The checks both kept files pass before their text is read: a regular file (never a link planted
// in the directory), ours or root's, written by no one else, not oversized. nullopt: no file. An
// error (the file is then removed, so that it is not met again) says why it is not trusted.
Result<std::optional<std::string>> read_kept(const std::string& path, const std::string& step) {
  // O_NOFOLLOW: a symbolic link planted in the directory is refused, never followed.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>{};
    const int e = errno;
    ::unlink(path.c_str());
    return fail(step, path + ": " + errno_text(e));
  }
  auto refuse = [&](const std::string& why) -> Result<std::optional<std::string>> {
    ::close(fd);
    ::unlink(path.c_str());
    return fail(step, path + ": " + why);
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) return refuse(errno_text(errno));
  if (!S_ISREG(st.st_mode)) return refuse("not a regular file");
  if (st.st_uid != ::geteuid() && st.st_uid != 0) return refuse("owned by uid " + std::to_string(st.st_uid) + ", not by us or root");
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return refuse("writable by others");
  if (st.st_size > kMaxFileSize) return refuse("larger than " + std::to_string(kMaxFileSize) + " bytes");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  ::close(fd);
  return std::optional<std::string>{std::move(text)};
}

// Written to a temporary file, then renamed: never half a file. nullopt removes the file.
Result<void> write_kept(const std::string& path, const std::optional<std::string>& text, const std::string& step) {
  if (!text) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail(step, path + ": " + errno_text(errno));
    return {};
  }
  const std::string tmp = path + ".new";
  ::unlink(tmp.c_str());  // O_EXCL below: never write through something left there
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(step, tmp + ": " + errno_text(errno));
  std::size_t put = 0;
  while (put < text->size()) {
    const ssize_t n = ::write(fd, text->data() + put, text->size() - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n == 0 ? ENOSPC : errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(step, tmp + ": " + errno_text(e));
    }
    put += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return fail(step, path + ": " + errno_text(e));
  }
  return {};
}

}  // namespace

Result<std::optional<TunnelDeclaration>> load_declaration(const std::string& dir, std::string_view boot_id, bool* ahead) {
  const std::string path = path_in(dir);
  auto text = read_kept(path, "read declaration");
  if (!text) return tl::unexpected(text.error());
  if (!*text) return std::optional<TunnelDeclaration>{};
  auto t = parse_declaration(**text, boot_id, ahead);
  if (!t) {
    ::unlink(path.c_str());
    return fail("read declaration", path + ": " + t.error().message);
  }
  return std::optional<TunnelDeclaration>{*t};
}

Result<void> save_declaration(const std::string& dir, const std::optional<TunnelDeclaration>& t, std::string_view boot_id,
                              bool ahead) {
  return write_kept(path_in(dir), t ? std::optional<std::string>{declaration_text(*t, boot_id, ahead)} : std::nullopt,
                    "keep declaration");
}

std::string settings_text(const RuntimeSettings& s, std::string_view boot_id) {
  nlohmann::json j;
  j["version"] = kVersion;
  j["boot_id"] = std::string(boot_id);
  j["policy"] = s.policy ? nlohmann::json(to_string(*s.policy)) : nlohmann::json(nullptr);
  j["allow_lan"] = s.allow_lan ? nlohmann::json(*s.allow_lan) : nlohmann::json(nullptr);
  j["escalated"] = nlohmann::json::array();
  for (Family f : s.escalated) j["escalated"].push_back(to_string(f));
  return json_text(j, 2) + "\n";
}

Result<RuntimeSettings> parse_settings(std::string_view text, std::string_view boot_id) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("read settings", "not a JSON object");
  if (!j.contains("version") || j["version"] != kVersion) return fail("read settings", "not version " + std::to_string(kVersion));
  if (!j.contains("boot_id") || !j["boot_id"].is_string() || boot_id.empty() || j["boot_id"].get<std::string>() != boot_id)
    return fail("read settings", "written before this boot (stale)");
  RuntimeSettings s;
  if (j.contains("policy") && !j["policy"].is_null()) {
    auto m = j["policy"].is_string() ? parse_mode(j["policy"].get<std::string>()) : fail("read settings", "");
    if (!m) return fail("read settings", "'policy' is not udp, strict or null");
    s.policy = *m;
  }
  if (j.contains("allow_lan") && !j["allow_lan"].is_null()) {
    if (!j["allow_lan"].is_boolean()) return fail("read settings", "'allow_lan' is not true, false or null");
    s.allow_lan = j["allow_lan"].get<bool>();
  }
  if (!j.contains("escalated") || !j["escalated"].is_array()) return fail("read settings", "no 'escalated' list");
  for (const auto& f : j["escalated"]) {
    if (f != "ipv4" && f != "ipv6") return fail("read settings", "'escalated' holds something else than ipv4 and ipv6");
    s.escalated.push_back(f == "ipv4" ? Family::v4 : Family::v6);
  }
  return s;  // (the Controller keeps its list sorted, each once: restore_settings)
}

Result<std::optional<RuntimeSettings>> load_settings(const std::string& dir, std::string_view boot_id) {
  const std::string path = dir + "/" + std::string(kSettingsFile);
  auto text = read_kept(path, "read settings");
  if (!text) return tl::unexpected(text.error());
  if (!*text) return std::optional<RuntimeSettings>{};
  auto s = parse_settings(**text, boot_id);
  if (!s) {
    ::unlink(path.c_str());
    return fail("read settings", path + ": " + s.error().message);
  }
  return std::optional<RuntimeSettings>{*s};
}

Result<void> save_settings(const std::string& dir, const RuntimeSettings& s, std::string_view boot_id) {
  // Nothing set at run time: no file (as after a reload).
  const bool none = !s.policy && !s.allow_lan && s.escalated.empty();
  return write_kept(dir + "/" + std::string(kSettingsFile),
                    none ? std::nullopt : std::optional<std::string>{settings_text(s, boot_id)}, "keep settings");
}

}  // namespace leakguard::daemon
