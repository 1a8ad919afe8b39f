#pragma once
// What a web page learns over WebRTC, measured with real Chromium inside a lab namespace.
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/lab/lab.hpp"

namespace leakguard::e2e {

struct PageResult {
  nlohmann::json raw;                 ///< everything the page reported
  std::set<std::string> reflexive;    ///< srflx addresses, without brackets
  std::size_t candidates = 0;
};

/// Serves the leak-test page in the lab's internet namespace while it lives.
class LeakTestSite {
 public:
  explicit LeakTestSite(const lab::Lab& lab);
  /// The page's URL asking the lab's STUN server over IPv4 and IPv6; `expect` marks the VPN exits.
  std::string url(const lab::Lab& lab) const;

 private:
  lab::Process server_;
};

/// Opens the page in headless Chromium inside the namespace `ns` and waits for gathering to end.
/// Throws with Chromium's output if it could not.
PageResult gather(const std::string& ns, const std::string& url, const std::string& screenshot = {});

}  // namespace leakguard::e2e
