#pragma once
// The metrics file for node_exporter's textfile collector (docs/metrics.md): the renderer's text
// (daemon/metrics.hpp) written atomically — a temporary file in the same directory, fsync, rename
// — so the collector never reads half a file; rewritten when something it shows changes and every
// kMetricsRefresh for the counters. A failure is logged once (until it works again or fails
// differently) and is never fatal: metrics are no part of the block.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"

namespace leakguard::daemon {

/// How often the file is rewritten when nothing changed (the counters move; the file's age, which
/// node_exporter exports as node_textfile_mtime_seconds, shows a daemon that stopped writing).
inline constexpr std::chrono::milliseconds kMetricsRefresh{15000};

/// Replaces `path` with `text` atomically: PATH.tmp.XXXXXX beside it (which the collector, reading
/// only *.prom, ignores), mode 0644 (node_exporter runs as another user; the unit's umask is 0077),
/// fsync, rename over `path`, fsync of the directory. Nothing is left behind on failure.
Result<void> write_file_atomically(const std::string& path, const std::string& text);

class MetricsWriter {
 public:
  /// `settings`: the configuration's metrics section as it is now (a reload applies at the next
  /// write); `status`: Controller::status_json(); `log(is_error, line)`.
  MetricsWriter(boost::asio::io_context& io, std::function<config::Metrics()> settings,
                std::function<std::string()> status, std::function<void(bool, const std::string&)> log,
                std::chrono::milliseconds every = kMetricsRefresh);
  /// Writes now, then every `every`.
  void start();
  /// Something the file shows changed (state, probe round, policy): written soon, once for a
  /// burst of changes (posted on the loop).
  void changed();

 private:
  void write_now();
  void tick();

  boost::asio::io_context& io_;
  std::function<config::Metrics()> settings_;
  std::function<std::string()> status_;
  std::function<void(bool, const std::string&)> log_;
  std::chrono::milliseconds every_;
  boost::asio::steady_timer timer_;
  bool pending_ = false;
  std::string written_;     // the file this process writes ("" while off)
  std::string last_error_;  // said once
};

}  // namespace leakguard::daemon
