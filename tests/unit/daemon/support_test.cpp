// Logging destination and format; the sd_notify protocol against a socket of our own.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "daemon/log.hpp"
#include "daemon/notify.hpp"

using namespace leakguard::daemon;

TEST_CASE("log lines: level, message, structured fields") {
  CHECK(format_line(Level::error, "leak via eth0", {{"LEAKGUARD_INTERFACE", "eth0"}, {"LEAKGUARD_FAMILY", "ipv4"}}) ==
        "error: leak via eth0 LEAKGUARD_INTERFACE=eth0 LEAKGUARD_FAMILY=ipv4");
  CHECK(format_line(Level::info, "ready", {}) == "info: ready");
}

TEST_CASE("the journal is used only when stderr really is the journal stream") {
  struct stat st {};
  REQUIRE(fstat(STDERR_FILENO, &st) == 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  unsetenv("JOURNAL_STREAM");
  CHECK_FALSE(stderr_is_journal());
  setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1)).c_str(), 1);
  CHECK_FALSE(stderr_is_journal());  // another stream: stderr was redirected after systemd set it up
  setenv("JOURNAL_STREAM", "garbage", 1);
  CHECK_FALSE(stderr_is_journal());
  setenv("JOURNAL_STREAM", mine.c_str(), 1);
  CHECK(stderr_is_journal());
  unsetenv("JOURNAL_STREAM");
}

namespace {
struct NotifySocket {
  int fd = -1;
  std::string path;
  NotifySocket() {
    path = "/tmp/lgt-notify-" + std::to_string(getpid()) + ".sock";
    unlink(path.c_str());
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{2, 0};  // a deadline for recv, not a sleep
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  }
  ~NotifySocket() {
    close(fd);
    unlink(path.c_str());
  }
  std::string next() {
    char buf[512];
    auto n = recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("<nothing>");
  }
};
}  // namespace

TEST_CASE("sd_notify messages reach NOTIFY_SOCKET, and the watchdog interval is half of WATCHDOG_USEC") {
  NotifySocket sock;
  setenv("NOTIFY_SOCKET", sock.path.c_str(), 1);
  setenv("WATCHDOG_USEC", "3000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  Notifier n;
  CHECK(n.enabled());
  REQUIRE(n.watchdog_interval());
  CHECK(n.watchdog_interval()->count() == 1'500'000);
  n.ready("blocking");
  CHECK(sock.next() == "READY=1\nSTATUS=blocking");
  n.status("secured");
  CHECK(sock.next() == "STATUS=secured");
  n.watchdog();
  CHECK(sock.next() == "WATCHDOG=1");
  n.stopping("keeping the block");
  CHECK(sock.next() == "STOPPING=1\nSTATUS=keeping the block");
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

TEST_CASE("without NOTIFY_SOCKET nothing is sent and no watchdog is asked for") {
  NotifySocket sock;
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  Notifier n;
  CHECK_FALSE(n.enabled());
  CHECK_FALSE(n.watchdog_interval());
  n.ready("x");
  n.status("y");
  // The control: a notifier that knows the socket. Datagrams queue in order, so its message
  // arriving first means the one without NOTIFY_SOCKET sent nothing.
  setenv("NOTIFY_SOCKET", sock.path.c_str(), 1);
  Notifier control;
  control.status("control");
  CHECK(sock.next() == "STATUS=control");
  unsetenv("NOTIFY_SOCKET");
}
