#pragma once
// What a web page learns over WebRTC, measured with real browsers inside a lab namespace: Debian's
// Chromium (driven by playwright-core) and Debian's Firefox ESR (no driver: the page posts its
// result back to the page's server). They gather candidates differently (Firefox also makes
// active ICE-TCP connections), so the proofs run in both.
#include <chrono>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tests/lab/lab.hpp"

namespace leakguard::e2e {

enum class Engine { chromium, firefox };
inline constexpr Engine kEngines[] = {Engine::chromium, Engine::firefox};
std::string_view to_string(Engine e);

struct PageResult {
  nlohmann::json raw;                 ///< everything the page reported
  std::set<std::string> reflexive;    ///< srflx addresses, without brackets
  std::size_t candidates = 0;
  std::size_t relays = 0;             ///< relay candidates (TURN)
};

/// A TURN server over TCP in the lab's internet namespace (coturn, long-term credentials
/// kTurnUser/kTurnPass), on extra addresses of its own, port 443; while it lives.
class TurnServer {
 public:
  static constexpr const char* kUser = "leaktest";
  static constexpr const char* kPass = "leaktest-secret";
  static constexpr const char* kAddress4 = "203.0.113.43";
  static constexpr const char* kAddress6 = "2001:db8:3::43";
  explicit TurnServer(const lab::Lab& lab);
  ~TurnServer();
  TurnServer(const TurnServer&) = delete;
  TurnServer& operator=(const TurnServer&) = delete;
  /// The page's query for this server over TCP, one family or both: "&turn=...&turn_user=...".
  std::string query(bool v4, bool v6) const;
  /// Client addresses the server has logged ("remote ADDR:PORT"), without brackets or ports: who
  /// it saw, whatever the page was told.
  std::set<std::string> seen() const;
  /// seen() once `address` is in it, or after `timeout`: a page's relay candidate can come back
  /// before the server has written the line that names its client.
  std::set<std::string> wait_seen(const std::string& address,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  std::string log_;
  lab::Process server_;
};

/// Serves the leak-test page in the lab's internet namespace while it lives.
class LeakTestSite {
 public:
  explicit LeakTestSite(const lab::Lab& lab);
  ~LeakTestSite();
  LeakTestSite(const LeakTestSite&) = delete;
  LeakTestSite& operator=(const LeakTestSite&) = delete;
  /// The page's URL asking the lab's STUN server over IPv4 and IPv6 (unless `stun` is false);
  /// `expect` marks the VPN exits. `extra` is appended to the query (e.g. TurnServer::query()).
  std::string url(const lab::Lab& lab, const std::string& extra = {}, bool stun = true) const;
  /// Opens the page in `engine` inside the namespace `ns` and waits for gathering to end.
  /// Throws with the browser's output if it could not.
  PageResult open(const std::string& ns, const lab::Lab& lab, Engine engine, const std::string& extra = {},
                  bool stun = true) const;

 private:
  std::string results_;  // where the page's server writes what Firefox's page posted
  lab::Process server_;
};

/// Opens the page in headless Chromium inside the namespace `ns` and waits for gathering to end.
/// Throws with Chromium's output if it could not.
PageResult gather(const std::string& ns, const std::string& url, const std::string& screenshot = {});

/// The same in headless Firefox ESR: the page (opened with ?report=ID) posts its result to the
/// page's server, which writes it to `results_dir`/ID.json.
PageResult gather_firefox(const std::string& ns, const std::string& url, const std::string& results_dir);

}  // namespace leakguard::e2e
