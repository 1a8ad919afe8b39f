#pragma once
// One line per headline figure, for scripts/bench.sh's Markdown report:
//   RESULT<TAB>figure<TAB>ours<TAB>alternative (measured in the same run, or "")<TAB>ratio (or "")
// Benchmarks print their human-readable lines as before; these lines are extra.
#include <cstdio>
#include <string>

namespace leakguard::bench {

inline void result(const std::string& figure, const std::string& ours, const std::string& alternative = "",
                   const std::string& ratio = "") {
  std::printf("RESULT\t%s\t%s\t%s\t%s\n", figure.c_str(), ours.c_str(), alternative.c_str(), ratio.c_str());
  std::fflush(stdout);
}

/// "1.23 ms"
inline std::string ms(double v) {
  char b[32];
  std::snprintf(b, sizeof b, v < 0.1 ? "%.3f ms" : v < 10 ? "%.2f ms" : "%.0f ms", v);
  return b;
}

/// "31x"
inline std::string times(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1fx", v);
  return b;
}

/// "0.934x": for ratios that differ in the second decimal.
inline std::string times3(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3fx", v);
  return b;
}

}  // namespace leakguard::bench
