#pragma once
// The network lab for integration and end-to-end tests (see tests/lab/README.md).
// Everything here works inside network namespaces it creates ("lgt-..."), never the root one.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace leakguard::lab {

/// What a finished program left behind.
struct RunResult {
  int status = -1;  ///< exit code; -1 if it could not be started or was killed by a signal
  std::string out;  ///< stdout and stderr, interleaved
};

/// Runs a program (PATH lookup), waits for it at most `timeout`, captures its output.
RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// "<pid>-<random><counter>": unique among the labs and namespaces of live processes.
std::string unique_id();
/// A name "lgt-<unique_id>-<tag>" that no other run uses.
std::string unique_name(std::string_view tag);

/// A bare network namespace with loopback up; on destruction its processes are killed and it is deleted.
class Netns {
 public:
  explicit Netns(std::string_view tag);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }
  /// Runs argv inside the namespace (ip netns exec).
  RunResult run(const std::vector<std::string>& argv) const;

 private:
  std::string name_;
};

/// Moves the calling thread into a named namespace for the scope's lifetime.
class NetnsScope {
 public:
  explicit NetnsScope(const std::string& ns_name);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  int saved_ = -1;
};

/// A background program (inside a namespace when ns_name is not empty), ended by PID on destruction.
/// Its output goes to `log_path` (default: discarded). It also dies if the test process dies.
class Process {
 public:
  Process(const std::string& ns_name, std::vector<std::string> argv, std::string log_path = {});
  ~Process();
  Process(Process&& other) noexcept;
  Process& operator=(Process&&) = delete;
  Process(const Process&) = delete;

  pid_t pid() const { return pid_; }
  /// True while the program has not exited.
  bool running();
  /// Sends a signal; returns the exit status after waiting, if `wait` is set.
  int stop(int signal = 15, bool wait = true);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

/// A fresh directory (mode 0700) on a tmpfs, as a service's runtime directory (/run/NAME) is under
/// systemd: the daemon's --state-dir, so that what it keeps there costs what it costs on a
/// system (on a disk mounted with discard, replacing a file waited for the device: milliseconds).
/// Under /run when that is a tmpfs, else /dev/shm, else /tmp (then on_tmpfs() is false). Removed,
/// with what it holds, on destruction.
class RuntimeDir {
 public:
  explicit RuntimeDir(std::string_view tag);
  ~RuntimeDir();
  RuntimeDir(const RuntimeDir&) = delete;
  RuntimeDir& operator=(const RuntimeDir&) = delete;

  const std::string& path() const { return path_; }
  bool on_tmpfs() const { return on_tmpfs_; }

 private:
  std::string path_;
  bool on_tmpfs_ = false;
};

/// The lab's scenario switches (see lab.sh --help).
struct Options {
  bool tunnel = true;         ///< wg0 up with wg-quick-style routing
  bool ipv6_tunnel = true;    ///< IPv6 goes into the tunnel (false: native via eth0, the classic leak)
  bool split_stun = false;    ///< the STUN server's addresses routed via eth0, outside the tunnel
  bool second_uplink = false; ///< a second physical uplink wlan0 via a second ISP
};

/// The whole lab topology with unique names, built by lab.sh and torn down on destruction.
class Lab {
 public:
  explicit Lab(Options options = {});
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  const std::string& id() const { return id_; }
  /// Namespace name of a role: "host", "isp", "inet", "vpn", "isp2".
  std::string ns(std::string_view role) const;
  /// Flips a switch at run time: tunnel up|down, ipv6 tunnel|native, split-stun on|off, second-uplink on|off.
  void set(std::string_view knob, std::string_view value);
  /// Runs argv inside a role's namespace.
  RunResult run(std::string_view role, const std::vector<std::string>& argv) const;
  /// A value printed by `lab.sh up`, e.g. var("STUN4") == "203.0.113.3".
  std::string var(const std::string& key) const;

 private:
  std::string id_;
  std::map<std::string, std::string> vars_;
};

/// Path of tests/lab/lab.sh.
std::string lab_script();

}  // namespace leakguard::lab
