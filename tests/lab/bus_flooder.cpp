// bus_flooder: what a local user can do to org.leakguard.Daemon1 with what the bus policy lets
// everyone call — send calls as fast as the bus takes them, asking for no reply (issue 14,
// finding 1). For tests and benchmarks; run it as an unprivileged uid.
//
//   bus_flooder [--reply] [CALL...]   CALL: GetStatus (default), Get (the State property), GetAll, Introspect,
//                                     GetId (the bus's own method, not leakguard's: a benchmark's control)
//
// --reply asks for replies (and reads and drops them); without it no call asks for one. Calls go round-robin to the system bus (DBUS_SYSTEM_BUS_ADDRESS) until the process is killed.
// Every 10,000 calls it prints "sent N" on stdout, so a test can see that the flood is under way.
#include <systemd/sd-bus.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {
constexpr const char* kName = "org.leakguard.Daemon1";
constexpr const char* kPath = "/org/leakguard/Daemon1";

int fail(const char* what, int r) {
  std::fprintf(stderr, "bus_flooder: %s: %s\n", what, std::strerror(-r));
  return 1;
}

// One no-reply call of kind `call`.
int make(sd_bus* bus, const std::string& call, bool reply, sd_bus_message** m) {
  int r;
  if (call == "GetStatus") {
    r = sd_bus_message_new_method_call(bus, m, kName, kPath, kName, "GetStatus");
  } else if (call == "Get") {
    r = sd_bus_message_new_method_call(bus, m, kName, kPath, "org.freedesktop.DBus.Properties", "Get");
    if (r >= 0) r = sd_bus_message_append(*m, "ss", kName, "State");
  } else if (call == "GetAll") {
    r = sd_bus_message_new_method_call(bus, m, kName, kPath, "org.freedesktop.DBus.Properties", "GetAll");
    if (r >= 0) r = sd_bus_message_append(*m, "s", kName);
  } else if (call == "GetId") {
    r = sd_bus_message_new_method_call(bus, m, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId");
  } else if (call == "Introspect") {
    r = sd_bus_message_new_method_call(bus, m, kName, kPath, "org.freedesktop.DBus.Introspectable", "Introspect");
  } else {
    return -EINVAL;
  }
  if (r >= 0) r = sd_bus_message_set_expect_reply(*m, reply ? 1 : 0);
  return r;
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> calls(argv + 1, argv + argc);
  const bool reply = !calls.empty() && calls.front() == "--reply";
  if (reply) calls.erase(calls.begin());
  if (calls.empty()) calls.push_back("GetStatus");
  sd_bus* bus = nullptr;
  if (int r = sd_bus_open_system(&bus); r < 0) return fail("connect", r);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("connected\n");
  for (std::uint64_t n = 0;; ++n) {
    sd_bus_message* m = nullptr;
    if (int r = make(bus, calls[n % calls.size()], reply, &m); r < 0) return fail(calls[n % calls.size()].c_str(), r);
    // sd-bus marks a call sent without a cookie pointer as expecting no reply.
    std::uint64_t cookie = 0;
    int r = sd_bus_send(bus, m, reply ? &cookie : nullptr);
    if (r == -ENOBUFS) {  // sd-bus's own queue is full: wait until the bus takes it, then again
      if (int f = sd_bus_flush(bus); f < 0) return fail("flush", f);
      r = sd_bus_send(bus, m, reply ? &cookie : nullptr);
    }
    sd_bus_message_unref(m);
    if (r < 0) return fail("send", r);
    if (n % 256 == 255) {
      // Block until the bus has taken what is queued (the pace the bus allows), and read what
      // came in (replies, if asked for, and bus signals), so no queue of ours grows.
      if (int f = sd_bus_flush(bus); f < 0) return fail("flush", f);
      for (;;) {
        const int p = sd_bus_process(bus, nullptr);
        if (p < 0) return fail("process", p);
        if (p == 0) break;
      }
    }
    if ((n + 1) % 10'000 == 0) std::printf("sent %llu\n", static_cast<unsigned long long>(n + 1));
  }
}
