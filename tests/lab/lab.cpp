#include "tests/lab/lab.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iomanip>
#include <random>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace leakguard::lab {
namespace {

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> v;
  for (const auto& a : argv) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

[[noreturn]] void child_fail(const char* what) {
  dprintf(2, "lab: %s: %s\n", what, std::strerror(errno));
  _exit(127);
}

void enter_netns_or_die(const std::string& ns_name) {
  if (ns_name.empty()) return;
  const std::string path = "/run/netns/" + ns_name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) child_fail(path.c_str());
  close(fd);
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  RunResult r;
  int fds[2];
  if (argv.empty() || pipe2(fds, O_CLOEXEC) != 0) return r;
  auto args = c_argv(argv);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return r;
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvp(args[0], args.data());
    child_fail(args[0]);
  }
  close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    r.out.append(buf, static_cast<std::size_t>(got));
  }
  close(fds[0]);
  if (timed_out) {
    kill(pid, SIGKILL);
    r.out += "\nlab: '" + join(argv) + "' timed out after " + std::to_string(timeout.count()) + " ms\n";
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.status = (!timed_out && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string unique_id() {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  std::ostringstream s;
  s << getpid() << "-" << std::hex << std::setw(4) << std::setfill('0') << (rd() & 0xffff) << std::dec << counter++;
  return s.str();
}

std::string unique_name(std::string_view tag) { return "lgt-" + unique_id() + "-" + std::string(tag); }

Netns::Netns(std::string_view tag) : name_(unique_name(tag)) {
  auto r = lab::run({"ip", "netns", "add", name_});
  if (r.status != 0) throw std::runtime_error("lab: cannot create namespace " + name_ + ": " + r.out);
  r = lab::run({"ip", "-n", name_, "link", "set", "lo", "up"});
  if (r.status != 0) {
    lab::run({"ip", "netns", "del", name_});
    throw std::runtime_error("lab: cannot bring up lo in " + name_ + ": " + r.out);
  }
}

Netns::~Netns() {
  // Every process in the namespace was started by this test; end them by PID so the namespace can go.
  auto pids = lab::run({"ip", "netns", "pids", name_});
  std::istringstream in(pids.out);
  for (pid_t pid; in >> pid;) kill(pid, SIGKILL);
  lab::run({"ip", "netns", "del", name_});
}

RunResult Netns::run(const std::vector<std::string>& argv) const {
  std::vector<std::string> full{"ip", "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return lab::run(full);
}

NetnsScope::NetnsScope(const std::string& ns_name) {
  saved_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const std::string path = "/run/netns/" + ns_name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (saved_ < 0 || fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    if (saved_ >= 0) close(saved_);
    throw std::runtime_error("lab: cannot enter " + path + ": " + std::strerror(err));
  }
  close(fd);
}

NetnsScope::~NetnsScope() {
  if (setns(saved_, CLONE_NEWNET) != 0) {
    // Staying in a test namespace would make later code touch the wrong network: stop hard.
    dprintf(2, "lab: cannot return to the original network namespace: %s\n", std::strerror(errno));
    std::abort();
  }
  close(saved_);
}

Process::Process(const std::string& ns_name, std::vector<std::string> argv, std::string log_path) {
  if (argv.empty()) throw std::invalid_argument("lab: Process needs a program");
  auto args = c_argv(argv);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("lab: fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    setpgid(0, 0);
    enter_netns_or_die(ns_name);
    const char* out = log_path.empty() ? "/dev/null" : log_path.c_str();
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (fd < 0 || in < 0) child_fail(out);
    dup2(in, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execvp(args[0], args.data());
    child_fail(args[0]);
  }
}

Process::Process(Process&& other) noexcept : pid_(std::exchange(other.pid_, -1)), status_(other.status_) {}

Process::~Process() {
  if (pid_ > 0) stop(SIGKILL, true);
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = status;
    pid_ = -1;
    return false;
  }
  return r == 0;
}

int Process::stop(int signal, bool wait) {
  if (pid_ <= 0) return status_;
  kill(pid_, signal);
  if (!wait) return -1;
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = status;
  pid_ = -1;
  return status_;
}

std::string lab_script() { return LEAKGUARD_LAB_SCRIPT; }

Lab::Lab(Options o) : id_(unique_id()) {
  std::vector<std::string> argv{lab_script(), "up", "--id", id_,
                                "--tunnel", o.tunnel ? "up" : "down",
                                "--ipv6", o.ipv6_tunnel ? "tunnel" : "native",
                                "--split-stun", o.split_stun ? "on" : "off",
                                "--second-uplink", o.second_uplink ? "on" : "off"};
  auto r = lab::run(argv, std::chrono::seconds(60));
  if (r.status != 0) {
    lab::run({lab_script(), "down", "--id", id_});
    throw std::runtime_error("lab: 'lab.sh up' failed:\n" + r.out);
  }
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("LAB_")) continue;
    auto eq = line.find('=');
    if (eq != std::string::npos) vars_[line.substr(4, eq - 4)] = line.substr(eq + 1);
  }
}

RuntimeDir::RuntimeDir(std::string_view tag) {
  auto tmpfs = [](const char* dir) {
    struct statfs s {};
    return ::statfs(dir, &s) == 0 && s.f_type == TMPFS_MAGIC;
  };
  std::string base = "/tmp";
  for (const char* d : {"/run", "/dev/shm"}) {
    if (tmpfs(d)) {
      base = d;
      on_tmpfs_ = true;
      break;
    }
  }
  path_ = base + "/" + unique_name(tag);
  if (::mkdir(path_.c_str(), 0700) != 0)
    throw std::runtime_error("lab: cannot create " + path_ + ": " + std::strerror(errno));
}

RuntimeDir::~RuntimeDir() { lab::run({"rm", "-rf", "--", path_}); }

Lab::~Lab() { lab::run({lab_script(), "down", "--id", id_}); }

std::string Lab::ns(std::string_view role) const { return "lgt-" + id_ + "-" + std::string(role); }

void Lab::set(std::string_view knob, std::string_view value) {
  auto r = lab::run({lab_script(), "set", "--id", id_, std::string(knob), std::string(value)});
  if (r.status != 0) throw std::runtime_error("lab: 'lab.sh set " + std::string(knob) + " " + std::string(value) + "' failed:\n" + r.out);
}

RunResult Lab::run(std::string_view role, const std::vector<std::string>& argv) const {
  std::vector<std::string> full{"ip", "netns", "exec", ns(role)};
  full.insert(full.end(), argv.begin(), argv.end());
  return lab::run(full);
}

std::string Lab::var(const std::string& key) const {
  auto it = vars_.find(key);
  if (it == vars_.end()) throw std::out_of_range("lab: no variable LAB_" + key);
  return it->second;
}

}  // namespace leakguard::lab
