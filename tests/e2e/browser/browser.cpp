#include "tests/e2e/browser/browser.hpp"

#include <stdexcept>

namespace leakguard::e2e {
namespace {
const std::string kDir = LEAKGUARD_BROWSER_DIR;
}

LeakTestSite::LeakTestSite(const lab::Lab& lab)
    : server_(lab.ns("inet"), {"node", kDir + "/server.js", lab.var("WEB4"), "8080"}) {
  // Ready when the port answers: wait for it, with a deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (lab.run("inet", {"ss", "-Hltn", "sport = :8080"}).out.find("8080") != std::string::npos) return;
    if (!server_.running()) break;
  }
  throw std::runtime_error("the leak-test page server did not start");
}

std::string LeakTestSite::url(const lab::Lab& lab) const {
  return "http://" + lab.var("WEB4") + ":8080/leaktest.html?stun=" + lab.var("STUN4") + ":3478&stun=[" +
         lab.var("STUN6") + "]:3478&expect=" + lab.var("VPN_EXIT4") + "&expect=[" + lab.var("VPN_EXIT6") + "]";
}

PageResult gather(const std::string& ns, const std::string& url, const std::string& screenshot) {
  std::vector<std::string> argv{"ip", "netns", "exec", ns, "node", kDir + "/gather.js", url};
  if (!screenshot.empty()) argv.insert(argv.end(), {"--screenshot", screenshot});
  auto r = lab::run(argv, std::chrono::seconds(60));
  if (r.status != 0) throw std::runtime_error("chromium via gather.js failed (" + std::to_string(r.status) + "):\n" + r.out);
  PageResult p;
  p.raw = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  for (const auto& c : p.raw["candidates"]) {
    ++p.candidates;
    if (c["type"] != "srflx") continue;
    std::string a = c["address"];
    if (a.size() > 2 && a.front() == '[') a = a.substr(1, a.size() - 2);
    p.reflexive.insert(a);
  }
  return p;
}

}  // namespace leakguard::e2e
