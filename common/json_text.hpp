#pragma once
// JSON text for anything that may carry kernel or user strings. The kernel allows any byte but
// '/', ':', NUL and white space in an interface name, and nlohmann::json::dump() throws on bytes
// that are not UTF-8: one such name crashed the daemon on every probe round. Interface names are
// escaped where they enter a report (printable_ifname()); this is the net under every writer, so a
// string that was missed comes out with U+FFFD instead of an exception.
#include <nlohmann/json.hpp>
#include <string>

namespace leakguard {

inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace leakguard
