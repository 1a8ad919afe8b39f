#include "tests/e2e/browser/browser.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>

namespace leakguard::e2e {
namespace {
const std::string kDir = LEAKGUARD_BROWSER_DIR;

std::string make_temp_dir(const char* prefix) {
  std::string t = "/tmp/" + std::string(prefix) + "XXXXXX";
  if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp failed");
  return t;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

PageResult parse(const std::string& text) {
  PageResult p;
  p.raw = nlohmann::json::parse(text.substr(text.find('{')));
  for (const auto& c : p.raw["candidates"]) {
    ++p.candidates;
    if (c["type"] == "relay") ++p.relays;
    if (c["type"] != "srflx") continue;
    std::string a = c["address"];
    if (a.size() > 2 && a.front() == '[') a = a.substr(1, a.size() - 2);
    p.reflexive.insert(a);
  }
  return p;
}

// Firefox's own traffic kept to the page's: no first-run pages, updates, telemetry, captive-portal
// or connectivity checks, safe browsing. WebRTC itself as shipped.
const char* kFirefoxPrefs = R"(user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("startup.homepage_welcome_url", "");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("app.update.enabled", false);
user_pref("app.normandy.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("network.proxy.type", 0);
)";
}  // namespace

std::string_view to_string(Engine e) { return e == Engine::chromium ? "chromium" : "firefox"; }

LeakTestSite::LeakTestSite(const lab::Lab& lab)
    : results_(make_temp_dir("lgt-pageresults-")),
      server_(lab.ns("inet"), {"node", kDir + "/server.js", lab.var("WEB4"), "8080", results_}) {
  // Ready when the port answers: wait for it, with a deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (lab.run("inet", {"ss", "-Hltn", "sport = :8080"}).out.find("8080") != std::string::npos) return;
    if (!server_.running()) break;
  }
  throw std::runtime_error("the leak-test page server did not start");
}

LeakTestSite::~LeakTestSite() {
  std::error_code ignored;
  std::filesystem::remove_all(results_, ignored);
}

std::string LeakTestSite::url(const lab::Lab& lab, const std::string& extra, bool stun) const {
  const std::string servers = stun ? "stun=" + lab.var("STUN4") + ":3478&stun=[" + lab.var("STUN6") + "]:3478&" : "";
  return "http://" + lab.var("WEB4") + ":8080/leaktest.html?" + servers + "expect=" + lab.var("VPN_EXIT4") + "&expect=[" +
         lab.var("VPN_EXIT6") + "]" + extra;
}

PageResult LeakTestSite::open(const std::string& ns, const lab::Lab& lab, Engine engine, const std::string& extra,
                              bool stun) const {
  const std::string u = url(lab, extra, stun);
  return engine == Engine::chromium ? gather(ns, u) : gather_firefox(ns, u, results_);
}

namespace {
std::string turn_log_path() {
  std::string t = "/tmp/lgt-turn-XXXXXX";
  const int fd = mkstemp(t.data());
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  ::close(fd);
  return t;
}
}  // namespace

TurnServer::TurnServer(const lab::Lab& lab)
    : log_(turn_log_path()),
      server_(lab.ns("inet"), [&] {
        // Addresses of its own on the internet's bridge (kept if an earlier server added them).
        const std::string have = lab.run("inet", {"ip", "-o", "addr", "show", "dev", "br0"}).out;
        for (const auto& [a, len, dad] : {std::tuple{std::string(kAddress4), "/24", false}, std::tuple{std::string(kAddress6), "/64", true}}) {
          if (have.find(" " + a + "/") != std::string::npos) continue;
          std::vector<std::string> add{"ip", "addr", "add", a + len, "dev", "br0"};
          if (dad) add.push_back("nodad");
          if (lab.run("inet", add).status != 0) throw std::runtime_error("cannot add the TURN server's address " + a);
        }
        // -n: no configuration file (Debian's /etc/turnserver.conf would change it); TCP only.
        return std::vector<std::string>{"turnserver", "-n", "--lt-cred-mech", "--user", std::string(kUser) + ":" + kPass,
                                        "--realm", "leakguard.test", "--listening-ip", kAddress4, "--listening-ip",
                                        kAddress6, "--listening-port", "443", "--relay-ip", kAddress4, "--relay-ip",
                                        kAddress6, "--no-udp", "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout",
                                        "--simple-log", "--verbose"};
      }(),
              log_) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto listening = lab.run("inet", {"ss", "-Hltn", "sport = :443"}).out;
    if (listening.find(kAddress4) != std::string::npos && listening.find(kAddress6) != std::string::npos) return;
    if (!server_.running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("the TURN server did not start:\n" + slurp(log_));
}

TurnServer::~TurnServer() {
  server_.stop(SIGKILL);
  std::error_code ignored;
  std::filesystem::remove(log_, ignored);
}

std::string TurnServer::query(bool v4, bool v6) const {
  std::string q;
  if (v4) q += std::string("&turn=") + kAddress4 + ":443";
  if (v6) q += std::string("&turn=[") + kAddress6 + "]:443";
  return q + "&turn_user=" + kUser + "&turn_pass=" + kPass;
}

std::set<std::string> TurnServer::seen() const {
  std::set<std::string> out;
  std::istringstream in(slurp(log_));
  for (std::string line; std::getline(in, line);) {
    for (auto at = line.find("remote "); at != std::string::npos; at = line.find("remote ", at + 1)) {
      std::string a = line.substr(at + 7);
      a = a.substr(0, a.find_first_of(" ,"));
      if (!a.empty() && a.front() == '[') a = a.substr(1, a.find(']') - 1);
      else if (a.find(':') != std::string::npos && a.find(':') == a.rfind(':')) a = a.substr(0, a.find(':'));
      if (!a.empty()) out.insert(a);
    }
  }
  return out;
}

std::set<std::string> TurnServer::wait_seen(const std::string& address, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto out = seen();
    if (out.contains(address) || std::chrono::steady_clock::now() >= deadline) return out;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

PageResult gather(const std::string& ns, const std::string& url, const std::string& screenshot) {
  std::vector<std::string> argv{"ip", "netns", "exec", ns, "node", kDir + "/gather.js", url};
  if (!screenshot.empty()) argv.insert(argv.end(), {"--screenshot", screenshot});
  auto r = lab::run(argv, std::chrono::seconds(60));
  if (r.status != 0) throw std::runtime_error("chromium via gather.js failed (" + std::to_string(r.status) + "):\n" + r.out);
  return parse(r.out);
}

PageResult gather_firefox(const std::string& ns, const std::string& url, const std::string& results_dir) {
  const std::string profile = make_temp_dir("lgt-firefox-");
  std::ofstream(profile + "/user.js") << kFirefoxPrefs;
  const std::string id = std::filesystem::path(profile).filename().string();
  const std::string result = results_dir + "/" + id + ".json";
  const std::string log = profile + ".log";
  std::string error;
  {
    // HOME in the profile: Firefox as root keeps nothing outside it.
    lab::Process firefox(ns, {"env", "HOME=" + profile, "MOZ_HEADLESS=1", "firefox-esr", "--headless", "--no-remote",
                              "--profile", profile, url + "&report=" + id},
                         log);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!std::filesystem::exists(result)) {
      if (!firefox.running()) {
        error = "firefox-esr exited before the page reported";
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        error = "the page in firefox-esr did not report within 60 s";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Firefox runs several processes, all in the group the Process started (its own, by PID).
    if (firefox.pid() > 0) ::kill(-firefox.pid(), SIGKILL);
  }
  const std::string output = slurp(log);
  std::error_code ignored;
  std::filesystem::remove_all(profile, ignored);
  std::filesystem::remove(log, ignored);
  if (!error.empty()) throw std::runtime_error(error + ":\n" + output);
  return parse(slurp(result));
}

}  // namespace leakguard::e2e
