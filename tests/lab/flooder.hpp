#pragma once
// A local user flooding the daemon's bus name: tests/lab/bus_flooder run as nobody with no groups
// in a namespace, its progress ("sent N") in a log. Shared by e2e/bus_flood_test and
// bench_dbusflood.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/lab/lab.hpp"

namespace leakguard::lab {

struct Flooder {
  std::string log;
  Process process;
  /// `binary`: the bus_flooder executable; `calls`: its arguments (the calls to make).
  Flooder(const std::string& ns, const std::string& binary, const std::string& log_path, const std::vector<std::string>& calls)
      : log(log_path), process(ns, argv(binary, calls), log_path) {}
  static std::vector<std::string> argv(const std::string& binary, const std::vector<std::string>& calls) {
    std::vector<std::string> v{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary};
    v.insert(v.end(), calls.begin(), calls.end());
    return v;
  }
  /// The calls it has sent so far, as it last reported them.
  unsigned long long sent() const {
    std::ifstream in(log);
    unsigned long long n = 0;
    for (std::string line; std::getline(in, line);)
      if (line.rfind("sent ", 0) == 0) n = std::stoull(line.substr(5));
    return n;
  }
};

inline unsigned long long total(const std::vector<std::unique_ptr<Flooder>>& fs) {
  unsigned long long n = 0;
  for (const auto& f : fs) n += f->sent();
  return n;
}

}  // namespace leakguard::lab
