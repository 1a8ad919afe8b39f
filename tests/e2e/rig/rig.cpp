#include "tests/e2e/rig/rig.hpp"

#include <arpa/inet.h>

#include <fstream>
#include <sys/stat.h>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace leakguard::e2e {

const char* const kControlGroup = "users";

namespace {
std::vector<std::string> as_user(Rig::As as, std::vector<std::string> argv) {
  if (as == Rig::As::root) return argv;
  std::vector<std::string> v{"setpriv", "--reuid=nobody", "--regid=nogroup"};
  if (as == Rig::As::member) v.push_back(std::string("--groups=") + kControlGroup);
  else v.push_back("--clear-groups");
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}
}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    if (f()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Rig::Rig(RigOptions o)
    : net(o.lab),
      bus(LEAKGUARD_DBUS_POLICY, kControlGroup),
      dir("/tmp/" + lab::unique_name("rig")),
      config(dir + "/leakguard.yaml"),
      runtime("rig-run"),
      state_dir(runtime.path()),
      private_socket(state_dir + "/private"),
      daemon_args_(o.daemon_args),
      wrapper_(o.wrapper) {
  lab::run({"mkdir", "-p", "-m", "0755", dir});
  setenv("LEAKGUARD_PRIVATE_SOCKET", private_socket.c_str(), 1);
  std::ofstream(config) << "policy: " << o.policy << "\narmed: " << (o.armed ? "true" : "false") << "\non_stop: keep\ntunnel:\n"
                        << "  interfaces: " << o.tunnel_patterns << "\n"
                        << (o.endpoint ? "  endpoints: [\"198.51.100.1:51820/udp\"]\n  fwmark: 51820\n" : "")
                        << "probe:\n  interval: " << o.interval << "\n  timeout: 1s\n"
                        << "  servers: " << o.servers << "\n  on_exposure: " << o.on_exposure << "\n";
}

Rig::~Rig() {
  daemon_.reset();
  unsetenv("LEAKGUARD_PRIVATE_SOCKET");
  lab::run({"rm", "-rf", dir});
}

void Rig::start() {
  daemon_.reset();
  log_ = dir + "/leakguardd." + std::to_string(++starts_) + ".log";
  std::vector<std::string> argv = wrapper_;
  for (const char* a : {LEAKGUARDD, "--config", config.c_str(), "--control-group", kControlGroup, "--state-dir", state_dir.c_str()})
    argv.emplace_back(a);
  argv.insert(argv.end(), daemon_args_.begin(), daemon_args_.end());
  daemon_ = std::make_unique<lab::Process>(net.ns("host"), std::move(argv), log_);
}

std::string Rig::output() const { return read_file(log_); }

lab::RunResult Rig::ctl(const std::vector<std::string>& args, As as) const {
  std::vector<std::string> argv{LEAKGUARDCTL};
  argv.insert(argv.end(), args.begin(), args.end());
  return lab::run(as_user(as, argv), std::chrono::seconds(20));
}

lab::RunResult Rig::ctl_without_bus(const std::vector<std::string>& args, As as) const {
  std::vector<std::string> argv{"env", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + dir + "/no-bus", LEAKGUARDCTL};
  argv.insert(argv.end(), args.begin(), args.end());
  return lab::run(as_user(as, argv), std::chrono::seconds(20));
}

lab::RunResult Rig::busctl(const std::vector<std::string>& args, As as) const {
  std::vector<std::string> argv{"busctl", "--system", "--timeout=20"};
  argv.insert(argv.end(), args.begin(), args.end());
  return lab::run(as_user(as, argv), std::chrono::seconds(25));
}

nlohmann::json Rig::status() const {
  auto r = ctl({"status", "--json"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json{} : j;
}

std::string Rig::state() const {
  auto s = status();
  return s.contains("state") && s["state"].is_string() ? s["state"].get<std::string>() : "";
}

bool Rig::wait_state(const std::string& want, std::chrono::milliseconds deadline) const {
  return eventually([&] { return state() == want; }, deadline);
}

lab::RunResult Rig::wg_quick_hook(const std::string& action) const {
  const std::string ctl = LEAKGUARDCTL;
  return lab::run({lab::lab_script(), "exec", "--id", net.id(), "host", "env",
                   "PATH=" + ctl.substr(0, ctl.rfind('/')) + ":/usr/sbin:/usr/bin:/sbin:/bin",
                   "DBUS_SYSTEM_BUS_ADDRESS=" + bus.address(), LEAKGUARD_SOURCE_DIR "/systemd/hooks/wg-quick", action,
                   "wg0"});
}

bool Rig::wait_answering(std::chrono::milliseconds deadline) const {
  return eventually([&] { return ctl({"status"}).status == 0; }, deadline);
}

std::string Rig::wg_quick_config(WgHooks hooks, const std::string& name) const {
  const std::string state = net.var("STATE");
  auto first_line = [](const std::string& path) {
    std::string line;
    std::ifstream in(path);
    std::getline(in, line);
    return line;
  };
  const std::string wgdir = dir + "/wg", path = wgdir + "/" + name + ".conf";
  lab::run({"mkdir", "-p", "-m", "0700", wgdir});
  const std::string hook = LEAKGUARD_SOURCE_DIR "/systemd/hooks/wg-quick";
  std::ofstream out(path);
  out << "[Interface]\nPrivateKey = " << first_line(state + "/client.key") << "\n"
      << "Address = 100.64.0.2/24, 2001:db8:100::2/64\n";
  if (hooks == WgHooks::pre_up_down) out << "PreUp = " << hook << " pre-up %i " << path << "\n";
  if (hooks != WgHooks::none) out << "PostUp = " << hook << " up %i\nPreDown = " << hook << " down %i\n";
  out << "\n[Peer]\nPublicKey = " << first_line(state + "/server.pub") << "\n"
      << "Endpoint = 198.51.100.1:51820\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n";
  out.close();
  ::chmod(path.c_str(), 0600);
  return path;
}

lab::RunResult Rig::wg_quick(const std::string& action, const std::string& conf) const {
  const std::string ctl = LEAKGUARDCTL;
  return lab::run({lab::lab_script(), "exec", "--id", net.id(), "host", "env",
                   "PATH=" + ctl.substr(0, ctl.rfind('/')) + ":/usr/sbin:/usr/bin:/sbin:/bin",
                   "DBUS_SYSTEM_BUS_ADDRESS=" + bus.address(), "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go",
                   "WG_HIDE_KEYS=always", "wg-quick", action, conf},
                  std::chrono::seconds(30));
}

std::string Rig::table() const {
  auto r = net.run("host", {"nft", "list", "table", "inet", "leakguard"});
  return r.status == 0 ? r.out : "";
}

std::string Rig::witness(const std::string& server) const {
  // turnutils_stunclient takes a bare address (it would try to resolve "ADDR:PORT" as a name,
  // fail, and look exactly like a blocked request): refuse anything else.
  in6_addr scratch{};
  if (inet_pton(AF_INET, server.c_str(), &scratch) != 1 && inet_pton(AF_INET6, server.c_str(), &scratch) != 1)
    throw std::invalid_argument("Rig::witness: '" + server + "' is not an IP address");
  auto r = net.run("host", {"timeout", "3", "turnutils_stunclient", server});
  auto at = r.out.find("reflexive addr: ");
  if (at == std::string::npos) return "";
  std::string a = r.out.substr(at + 16, r.out.find_first_of(" \n", at + 16) - at - 16);
  // Without the port: "203.0.113.2:33587" -> "203.0.113.2", "2001:db8::1:5000" (no brackets) or
  // "[2001:db8::1]:5000" -> "2001:db8::1".
  if (!a.empty() && a.front() == '[') return a.substr(1, a.find(']') - 1);
  return a.substr(0, a.rfind(':'));
}

}  // namespace leakguard::e2e
