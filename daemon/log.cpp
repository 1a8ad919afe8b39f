#include "daemon/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace leakguard::daemon {

std::string_view to_string(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warning: return "warning";
    case Level::error: return "error";
  }
  return "?";
}

std::string format_line(Level level, std::string_view message, const std::vector<Field>& fields) {
  std::string line(to_string(level));
  line += ": ";
  line += message;
  for (const auto& [k, v] : fields) line += " " + k + "=" + v;
  return line;
}

bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

Log::Log(bool verbose) : journal_(stderr_is_journal()), verbose_(verbose) {}

void Log::write(Level level, std::string_view message, const std::vector<Field>& fields) const {
  if (level == Level::debug && !verbose_) return;
  if (journal_) {
    std::vector<std::string> items;
    items.push_back("MESSAGE=" + std::string(message));
    items.push_back("PRIORITY=" + std::to_string(static_cast<int>(level)));
    items.push_back("SYSLOG_IDENTIFIER=leakguardd");
    for (const auto& [k, v] : fields) items.push_back(k + "=" + v);
    std::vector<iovec> iov;
    for (auto& s : items) iov.push_back({s.data(), s.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0) return;
  }
  const std::string line = format_line(level, message, fields) + "\n";
  // One write() per line so lines from concurrent writers never interleave.
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace leakguard::daemon
