#pragma once
// Logging: to the journal (with structured fields) when stderr is connected to it, else one line
// per message on stderr. sd_journal_send() reports success even when no journal listens, so the
// choice is made from JOURNAL_STREAM, as systemd documents, never from its return value.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace leakguard::daemon {

enum class Level { debug = 7, info = 6, warning = 4, error = 3 };
std::string_view to_string(Level l);

/// A structured field for the journal, e.g. {"LEAKGUARD_STATE", "leaking"}.
using Field = std::pair<std::string, std::string>;

/// The stderr form: "LEVEL: message [KEY=value ...]" (the journal adds time and pid itself).
std::string format_line(Level level, std::string_view message, const std::vector<Field>& fields);

class Log {
 public:
  /// Decides once where messages go; `verbose` lets debug messages through.
  explicit Log(bool verbose = false);
  void write(Level level, std::string_view message, const std::vector<Field>& fields = {}) const;
  void debug(std::string_view m, const std::vector<Field>& f = {}) const { write(Level::debug, m, f); }
  void info(std::string_view m, const std::vector<Field>& f = {}) const { write(Level::info, m, f); }
  void warning(std::string_view m, const std::vector<Field>& f = {}) const { write(Level::warning, m, f); }
  void error(std::string_view m, const std::vector<Field>& f = {}) const { write(Level::error, m, f); }
  bool to_journal() const { return journal_; }

 private:
  bool journal_ = false;
  bool verbose_ = false;
};

/// True when stderr is the journal stream named by $JOURNAL_STREAM ("DEV:INODE").
bool stderr_is_journal();

}  // namespace leakguard::daemon
