// The binding transaction on virtual time: the caller's clock is a number we move by hand.
#include <doctest/doctest.h>

#include <cerrno>
#include <vector>

#include "probes/transaction.hpp"

using namespace leakguard;
using namespace leakguard::probes;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;  // any fixed origin
const stun::TransportAddress kServer{IpAddress::v4(203, 0, 113, 3), 3478};
const stun::TransportAddress kMapped{IpAddress::v4(203, 0, 113, 2), 40000};

// Drives a transaction like the prober does, but on virtual time: whenever it says Wait, jump
// there. Returns the send times (relative to t0) and the time it finished.
struct Run {
  std::vector<milliseconds> sends;
  milliseconds finished{-1};
};
Run drive(Transaction& t, milliseconds limit = 100s) {
  Run r;
  TimePoint now = t0;
  const int before = t.attempts();
  while (now - t0 <= limit) {
    auto e = t.next(now);
    if (auto* s = std::get_if<Transaction::Send>(&e)) {
      r.sends.push_back(std::chrono::duration_cast<milliseconds>(now - t0));
      CHECK(s->attempt == before + static_cast<int>(r.sends.size()));
      continue;
    }
    if (auto* w = std::get_if<Transaction::Wait>(&e)) {
      REQUIRE(w->until > now);  // never a busy loop
      now = w->until;
      continue;
    }
    r.finished = std::chrono::duration_cast<milliseconds>(now - t0);
    break;
  }
  return r;
}

std::vector<milliseconds> ms(std::initializer_list<long> v) {
  std::vector<milliseconds> out;
  for (auto x : v) out.emplace_back(x);
  return out;
}

}  // namespace

TEST_CASE("RFC 8489 schedule when nothing bounds it: 0, 500, 1500, ..., 31500 ms, timeout at 39500 ms") {
  Transaction t(stun::TransactionId::random(), kServer, {.total = 100s}, t0);
  auto r = drive(t);
  CHECK(r.sends == ms({0, 500, 1500, 3500, 7500, 15500, 31500}));
  CHECK(r.finished == 39500ms);
  REQUIRE(t.done());
  CHECK(t.outcome() == Outcome{TimedOut{7}});
}

TEST_CASE("the total timeout bounds the schedule") {
  Transaction t(stun::TransactionId::random(), kServer, {.total = 2000ms}, t0);
  auto r = drive(t);
  CHECK(r.sends == ms({0, 500, 1500}));
  CHECK(r.finished == 2000ms);
  CHECK(t.outcome() == Outcome{TimedOut{3}});
}

TEST_CASE("a shorter RTO and fewer sends follow the same rule") {
  Transaction t(stun::TransactionId::random(), kServer, {.rto = 100ms, .max_sends = 3, .last_wait_rtos = 4, .total = 10s},
                t0);
  auto r = drive(t);
  CHECK(r.sends == ms({0, 100, 300}));
  CHECK(r.finished == 700ms);  // last send + 4 RTO
}

TEST_CASE("TCP: one send, then wait up to the bound") {
  Transaction t(stun::TransactionId::random(), kServer, {.total = 3s, .reliable = true}, t0);
  auto r = drive(t);
  CHECK(r.sends == ms({0}));
  CHECK(r.finished == 3000ms);
  Transaction u(stun::TransactionId::random(), kServer, {.total = 60s, .reliable = true}, t0);
  CHECK(drive(u).finished == 39500ms);  // Ti
}

TEST_CASE("the answer ends it with the reflexive address and the time since the first send") {
  const auto id = stun::TransactionId::random();
  Transaction t(id, kServer, {.total = 3s}, t0);
  REQUIRE(std::holds_alternative<Transaction::Send>(t.next(t0)));
  REQUIRE(std::holds_alternative<Transaction::Wait>(t.next(t0 + 100ms)));
  REQUIRE(std::holds_alternative<Transaction::Send>(t.next(t0 + 500ms)));  // retransmission
  CHECK(t.receive(t0 + 620ms, kServer, stun::encode_binding_success(id, kMapped)) == Receipt::accepted);
  REQUIRE(t.done());
  CHECK(t.outcome() == Outcome{Reflexive{kMapped, false, 620ms, 2}});
  auto e = t.next(t0 + 700ms);
  REQUIRE(std::holds_alternative<Transaction::Done>(e));
  CHECK(std::get<Transaction::Done>(e).outcome == &t.outcome());
  // A duplicate answer afterwards changes nothing.
  CHECK(t.receive(t0 + 800ms, kServer, stun::encode_binding_success(id, kMapped)) == Receipt::late);
}

TEST_CASE("the request it sends is a binding request with its id") {
  const auto id = stun::TransactionId::random();
  Transaction t(id, kServer, {}, t0);
  auto e = t.next(t0);
  REQUIRE(std::holds_alternative<Transaction::Send>(e));
  auto m = stun::parse(std::get<Transaction::Send>(e).bytes);
  REQUIRE(m);
  CHECK(m->cls == stun::Class::request);
  CHECK(m->method == stun::kMethodBinding);
  CHECK(m->id == id);
}

TEST_CASE("answers from elsewhere, garbage and other transactions are ignored and counted") {
  const auto id = stun::TransactionId::random();
  Transaction t(id, kServer, {.total = 1500ms}, t0);
  REQUIRE(std::holds_alternative<Transaction::Send>(t.next(t0)));
  const auto good = stun::encode_binding_success(id, kMapped);

  // Right bytes, wrong address; right address, wrong port.
  CHECK(t.receive(t0 + 1ms, {IpAddress::v4(203, 0, 113, 9), 3478}, good) == Receipt::wrong_source);
  CHECK(t.receive(t0 + 1ms, {IpAddress::v4(203, 0, 113, 3), 3479}, good) == Receipt::wrong_source);
  // Garbage and a broken fingerprint.
  const std::vector<std::uint8_t> garbage(48, 0x5a);
  CHECK(t.receive(t0 + 2ms, kServer, garbage) == Receipt::malformed);
  auto broken = good;
  broken[broken.size() - 1] ^= 1;
  CHECK(t.receive(t0 + 2ms, kServer, broken) == Receipt::malformed);
  // Someone else's transaction, and our own request reflected back.
  CHECK(t.receive(t0 + 3ms, kServer, stun::encode_binding_success(stun::TransactionId::random(), kMapped)) ==
        Receipt::wrong_transaction);
  CHECK(t.receive(t0 + 3ms, kServer, t.request()) == Receipt::not_a_response);

  CHECK_FALSE(t.done());
  CHECK(t.ignored().wrong_source == 2);
  CHECK(t.ignored().malformed == 2);
  CHECK(t.ignored().wrong_transaction == 1);
  CHECK(t.ignored().not_a_response == 1);
  CHECK(t.ignored().total() == 6);
  CHECK(t.ignored().last_reason.find("request") != std::string::npos);

  auto r = drive(t);
  CHECK(r.finished == 1500ms);
  CHECK(t.outcome() == Outcome{TimedOut{2}});
}

TEST_CASE("an IPv6 server is matched by address and port too") {
  const auto id = stun::TransactionId::random();
  const stun::TransportAddress server6{*IpAddress::parse("2001:db8:3::3"), 3478};
  Transaction t(id, server6, {}, t0);
  (void)t.next(t0);
  const stun::TransportAddress mapped6{*IpAddress::parse("2001:db8:2::10"), 50000};
  CHECK(t.receive(t0 + 1ms, {*IpAddress::parse("2001:db8:3::4"), 3478}, stun::encode_binding_success(id, mapped6)) ==
        Receipt::wrong_source);
  CHECK(t.receive(t0 + 2ms, server6, stun::encode_binding_success(id, mapped6)) == Receipt::accepted);
  CHECK(std::get<Reflexive>(t.outcome()).mapped == mapped6);
}

TEST_CASE("EPERM on send means blocked at once, transient errors are left to the retransmission") {
  Transaction t(stun::TransactionId::random(), kServer, {.total = 3s}, t0);
  (void)t.next(t0);
  t.send_failed(t0, ENOBUFS);
  t.send_failed(t0, EAGAIN);
  CHECK_FALSE(t.done());
  REQUIRE(std::holds_alternative<Transaction::Send>(t.next(t0 + 500ms)));
  t.send_failed(t0 + 500ms, EPERM);
  REQUIRE(t.done());
  CHECK(t.outcome() == Outcome{Blocked{EPERM}});
  CHECK(std::holds_alternative<Transaction::Done>(t.next(t0 + 501ms)));
  CHECK(str(t.outcome()) == "blocked (EPERM: refused by the packet filter)");
}

TEST_CASE("no route is blocked too, but not by a firewall") {
  Transaction t(stun::TransactionId::random(), kServer, {}, t0);
  (void)t.next(t0);
  t.send_failed(t0, ENETUNREACH);
  CHECK(t.outcome() == Outcome{Blocked{ENETUNREACH}});
  CHECK_FALSE(refused_by_firewall(ENETUNREACH));
  CHECK(refused_by_firewall(EPERM));
}

TEST_CASE("an error response ends it with the code") {
  const auto id = stun::TransactionId::random();
  Transaction t(id, kServer, {}, t0);
  (void)t.next(t0);
  CHECK(t.receive(t0 + 5ms, kServer, stun::encode_binding_error(id, 500, "Server Error")) == Receipt::accepted);
  CHECK(t.outcome() == Outcome{ServerError{{500, "Server Error"}, {}}});
  CHECK(kind(t.outcome()) == "error");
}

TEST_CASE("a legacy MAPPED-ADDRESS answer is taken over UDP, not over TCP") {
  const auto id = stun::TransactionId::random();
  // Binding success with only MAPPED-ADDRESS 203.0.113.2:40000, no FINGERPRINT (an RFC 3489 server).
  std::vector<std::uint8_t> legacy = {
      0x01, 0x01, 0x00, 0x0c,  // Binding success, 12 bytes
      0x21, 0x12, 0xa4, 0x42,  // magic cookie (RFC 3489 servers echo it as part of the id)
  };
  legacy.insert(legacy.end(), id.bytes.begin(), id.bytes.end());
  const std::uint8_t mapped[] = {
      0x00, 0x01, 0x00, 0x08,  // MAPPED-ADDRESS
      0x00, 0x01, 0x9c, 0x40,  // IPv4, port 40000
      0xcb, 0x00, 0x71, 0x02,  // 203.0.113.2
  };
  for (auto b : mapped) legacy.push_back(b);
  Transaction udp(id, kServer, {}, t0);
  (void)udp.next(t0);
  CHECK(udp.receive(t0 + 1ms, kServer, legacy) == Receipt::accepted);
  CHECK(std::get<Reflexive>(udp.outcome()).legacy);
  Transaction tcp(id, kServer, {.reliable = true}, t0);
  (void)tcp.next(t0);
  CHECK(tcp.receive(t0 + 1ms, kServer, legacy) == Receipt::malformed);
  CHECK_FALSE(tcp.done());
}

TEST_CASE("a late caller does not stretch the schedule or the deadline") {
  Transaction t(stun::TransactionId::random(), kServer, {.total = 2s}, t0);
  REQUIRE(std::holds_alternative<Transaction::Send>(t.next(t0)));
  // The caller oversleeps to 1200 ms: one send now (the one due at 500), the next still at 1500.
  REQUIRE(std::holds_alternative<Transaction::Send>(t.next(t0 + 1200ms)));
  auto w = t.next(t0 + 1200ms);
  REQUIRE(std::holds_alternative<Transaction::Wait>(w));
  CHECK(std::get<Transaction::Wait>(w).until == t0 + 1500ms);
  // Past the deadline: done, whatever was scheduled.
  CHECK(std::holds_alternative<Transaction::Done>(t.next(t0 + 5s)));
  CHECK(t.outcome() == Outcome{TimedOut{2}});
}

TEST_CASE("abort records a local failure once") {
  Transaction t(stun::TransactionId::random(), kServer, {}, t0);
  t.abort({"receive", ECONNRESET, "connection reset"});
  t.abort({"other", 1, "ignored"});
  CHECK(t.outcome() == Outcome{LocalFailure{"receive", ECONNRESET, "connection reset"}});
  CHECK(str(t.outcome()) == "failed: receive: connection reset (ECONNRESET)");
}
