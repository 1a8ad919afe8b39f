#include "tests/lab/bus.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/lab/lab.hpp"

namespace leakguard::lab {
namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("bus: cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) s.replace(pos, from.size(), to);
}
}  // namespace

PrivateBus::PrivateBus(const std::string& policy_file, const std::string& control_group, bool permissive) {
  char tmpl[] = "/tmp/lgt-bus-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("bus: mkdtemp failed");
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);  // unprivileged test clients must reach the socket
  std::string policy = read_file(policy_file);
  replace_all(policy, "group=\"leakguard\"", "group=\"" + control_group + "\"");
  {
    std::ofstream(dir_ + "/leakguard.conf") << policy;
  }
  const std::string default_policy = permissive ? R"(
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>)"
                                                : R"(
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>)";
  config_ = dir_ + "/bus.conf";
  std::ofstream(config_) << R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=)" + dir_ + R"(/socket</listen>
  <policy context="default">)" + default_policy + R"(
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>)" + dir_ + R"(/leakguard.conf</include>
</busconfig>
)";
  start();
  setenv("DBUS_SYSTEM_BUS_ADDRESS", address_.c_str(), 1);
}

PrivateBus::~PrivateBus() {
  stop();
  unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  run({"rm", "-rf", dir_});
}

void PrivateBus::start() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("bus: pipe failed");
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("bus: fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], 1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 2);
    const std::string cfg = "--config-file=" + config_;
    execlp("dbus-daemon", "dbus-daemon", cfg.c_str(), "--print-address=1", "--nofork", "--nopidfile", nullptr);
    _exit(127);
  }
  close(fds[1]);
  // dbus-daemon prints its address once it listens: wait for that line, with a deadline.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fds[0], POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[256];
    auto n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  if (line.find('\n') == std::string::npos) {
    stop();
    throw std::runtime_error("bus: dbus-daemon did not start (config " + config_ + ")");
  }
  // Without the printed guid: a restarted bus has a new one, and clients must reach it all the same.
  address_ = "unix:path=" + dir_ + "/socket";
}

void PrivateBus::stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  unlink((dir_ + "/socket").c_str());
}

void PrivateBus::restart() {
  stop();
  start();
}

}  // namespace leakguard::lab
