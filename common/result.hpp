#pragma once
// Result type for the pure cores: a value, or an Error that names the failed step.
#include <string>
#include <tl/expected.hpp>

namespace leakguard {

/// What went wrong, and in which step (e.g. "parse endpoint", "encode batch").
struct Error {
  std::string step;     ///< the operation that failed, short and lower case
  std::string message;  ///< what was wrong, for a human
  int code = 0;         ///< errno or protocol code where one applies, else 0

  bool operator==(const Error&) const = default;
  /// One-line form: "step: message (code N)".
  std::string str() const {
    std::string s = step.empty() ? message : step + ": " + message;
    if (code != 0) s += " (code " + std::to_string(code) + ")";
    return s;
  }
};

template <typename T>
using Result = tl::expected<T, Error>;

/// Shorthand for returning a failure from a function that returns Result<T>.
inline tl::unexpected<Error> fail(std::string step, std::string message, int code = 0) {
  return tl::unexpected<Error>(Error{std::move(step), std::move(message), code});
}

}  // namespace leakguard
