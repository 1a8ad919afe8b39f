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

Result<std::optional<TunnelDeclaration>> load_declaration(const std::string& dir, std::string_view boot_id, bool* ahead) {
  const std::string path = path_in(dir);
  // O_NOFOLLOW: a symbolic link planted in the directory is refused, never followed.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<TunnelDeclaration>{};
    const int e = errno;
    ::unlink(path.c_str());
    return fail("read declaration", path + ": " + errno_text(e));
  }
  auto refuse = [&](const std::string& why) -> Result<std::optional<TunnelDeclaration>> {
    ::close(fd);
    ::unlink(path.c_str());
    return fail("read declaration", path + ": " + why);
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
  auto t = parse_declaration(text, boot_id, ahead);
  if (!t) {
    ::unlink(path.c_str());
    return fail("read declaration", path + ": " + t.error().message);
  }
  return std::optional<TunnelDeclaration>{*t};
}

Result<void> save_declaration(const std::string& dir, const std::optional<TunnelDeclaration>& t, std::string_view boot_id,
                              bool ahead) {
  const std::string path = path_in(dir);
  if (!t) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail("keep declaration", path + ": " + errno_text(errno));
    return {};
  }
  const std::string tmp = path + ".new";
  const std::string text = declaration_text(*t, boot_id, ahead);
  ::unlink(tmp.c_str());  // O_EXCL below: never write through something left there
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail("keep declaration", tmp + ": " + errno_text(errno));
  std::size_t put = 0;
  while (put < text.size()) {
    const ssize_t n = ::write(fd, text.data() + put, text.size() - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail("keep declaration", tmp + ": " + errno_text(e));
    }
    put += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return fail("keep declaration", path + ": " + errno_text(e));
  }
  return {};
}

}  // namespace leakguard::daemon
