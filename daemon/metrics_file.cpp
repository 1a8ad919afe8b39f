#include "daemon/metrics_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "daemon/metrics.hpp"

namespace leakguard::daemon {

namespace {
tl::unexpected<Error> sys_fail(const std::string& what, int e) {
  return fail("write metrics", what + ": " + std::strerror(e), e);
}
}  // namespace

Result<void> write_file_atomically(const std::string& path, const std::string& text) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) return sys_fail("cannot create a file in " + dir, errno);
  const std::string tmp(name.data());
  auto give_up = [&](const std::string& what) -> Result<void> {
    const int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return sys_fail(what + " " + tmp, e);
  };
  if (::fchmod(fd, 0644) != 0) return give_up("cannot set the mode of");
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return give_up("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return give_up("cannot fsync");
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return sys_fail("cannot close " + tmp, e);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return sys_fail("cannot rename " + tmp + " to " + path, e);
  }
  // The rename itself durable too; a directory that cannot be opened or synced changes nothing
  // the collector sees.
  if (const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
    (void)::fsync(d);
    ::close(d);
  }
  return {};
}

MetricsWriter::MetricsWriter(boost::asio::io_context& io, std::function<config::Metrics()> settings,
                             std::function<std::string()> status, std::function<void(bool, const std::string&)> log,
                             std::chrono::milliseconds every)
    : io_(io),
      settings_(std::move(settings)),
      status_(std::move(status)),
      log_(std::move(log)),
      every_(every),
      timer_(io) {}

void MetricsWriter::start() {
  write_now();
  tick();
}

void MetricsWriter::tick() {
  timer_.expires_after(every_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    write_now();
    tick();
  });
}

void MetricsWriter::changed() {
  if (pending_) return;
  pending_ = true;
  boost::asio::post(io_, [this] {
    pending_ = false;
    write_now();
  });
}

void MetricsWriter::write_now() {
  const config::Metrics m = settings_();
  const std::string want = m.enabled ? m.textfile : "";
  if (want != written_ && !written_.empty()) {
    // Switched off, or moved: no stale figures left for the collector.
    if (::unlink(written_.c_str()) == 0 || errno == ENOENT) log_(false, "metrics: no longer writing " + written_);
    else log_(true, "metrics: cannot remove " + written_ + ": " + std::strerror(errno));
    written_.clear();
    last_error_.clear();
  }
  if (want.empty()) return;
  const auto status = nlohmann::json::parse(status_(), nullptr, false);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto r = write_file_atomically(want, render_metrics(status.is_discarded() ? nlohmann::json::object() : status, now));
  if (!r) {
    const std::string why = r.error().str();
    if (why != last_error_) log_(true, "metrics: cannot write " + want + " (retried every " +
                                           std::to_string(every_.count() / 1000) + " s, said once): " + why);
    last_error_ = why;
    written_ = want;  // what may be there is ours to remove when switched off
    return;
  }
  if (written_ != want || !last_error_.empty()) log_(false, "metrics: writing " + want);
  written_ = want;
  last_error_.clear();
}

}  // namespace leakguard::daemon
