#pragma once
// The daemon's metrics as Prometheus text (exposition format 0.0.4, what node_exporter's textfile
// collector reads), from what GetStatus shows: Controller::status_json() with the firewall's
// counters in it (docs/metrics.md lists every metric). Pure: no I/O, no clock — the caller says
// what time it is; daemon/metrics_file.hpp writes the file.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace leakguard::daemon {

/// leakguard_blocked_app_packets_total carries at most this many applications (the busiest);
/// the rest are summed into app="other".
inline constexpr std::size_t kMetricsMaxApps = 20;

/// The exposition of `status` (status_json(), parsed); `now_unix` (seconds since the epoch) dates
/// the last probe round, which the status gives as "how long ago". Every metric is present, with
/// its HELP and TYPE, whatever the status lacks (a missing figure is 0).
std::string render_metrics(const nlohmann::json& status, double now_unix);

/// A label value as the text format wants it: backslash, double quote and line feed escaped, bytes
/// that are not UTF-8 replaced by U+FFFD (node_exporter refuses the whole file otherwise).
std::string escape_label_value(std::string_view v);

}  // namespace leakguard::daemon
