// Zero window: while a sender floods blocked and allowed UDP, 10,000 whole-table replaces and
// 10,000 endpoint set updates let no blocked datagram through and refuse no allowed one.
// Allowed datagrams are counted by sequence number at the receiver; receive-buffer drops are
// measured (SO_RXQ_OVFL) and must be zero, so the count is exact.
#include <doctest/doctest.h>

#include <iostream>

#include "firewall/firewall.hpp"
#include "tests/integration/firewall/flood.hpp"

using namespace leakguard;
using namespace leakguard::firewall;
using namespace fwtest;
namespace lab = leakguard::lab;

namespace {

Policy base(Mode m) {
  Policy p;
  p.mode = m;
  p.tunnels = {*IfnamePattern::parse("tun0")};
  if (m == Mode::strict) p.tunnels.push_back(*IfnamePattern::parse("wg*"));
  p.endpoints = {*Endpoint::parse("192.0.2.2:5001/udp"), *Endpoint::parse("198.51.100.1:51820")};
  return p;
}

void check_counts(const Flood& flood) {
  std::cout << flood.report();
  for (std::size_t i = 0; i < flood.flows(); ++i) {
    const auto c = flood.counts(i);
    INFO(flood.spec(i).name);
    CHECK(c.overflow == 0);
    CHECK(c.errors == 0);
    if (flood.spec(i).must_pass) {
      CHECK(c.refused == 0);          // never refused: no moment without the tunnel/endpoint rules
      CHECK(c.received == c.sent);    // every one arrived
      CHECK(c.sent > 1000);
    } else {
      CHECK(c.sent == 0);             // never accepted by the sender's kernel
      CHECK(c.received == 0);         // never arrived
      CHECK(c.refused > 1000);
    }
  }
}

}  // namespace

TEST_CASE("10000 replaces and 10000 set updates under a UDP flood - zero blocked through - zero allowed refused") {
  TwoHosts net;
  Firewall fw = [&] {
    lab::NetnsScope in(net.snd.name());
    auto f = Firewall::open();
    REQUIRE_MESSAGE(f, (f ? "" : f.error().str()));
    return std::move(*f);
  }();
  REQUIRE(fw.apply(base(Mode::udp)));

  Flood flood(net,
              {{"blocked udp via eth0", false, "eth0", "192.0.2.2", 5002},
               {"blocked udp6 via eth0", false, "eth0", "2001:db8:1::2", 5004},
               {"endpoint via eth0", true, "eth0", "192.0.2.2", 5001},
               {"via tunnel", true, "tun0", "100.64.1.2", 5003}},
              4000);
  flood.start();

  const auto t0 = Clock::now();
  for (int i = 0; i < 10000; ++i) {
    auto r = fw.apply(base(i % 2 ? Mode::udp : Mode::strict));
    REQUIRE_MESSAGE(r, (r ? "" : r.error().str()));
    REQUIRE(fw.last_apply().how == ApplyReport::How::replaced);
  }
  const auto t1 = Clock::now();
  Policy p = base(Mode::udp);
  for (int i = 0; i < 10000; ++i) {
    Policy q = p;
    if (i % 2 == 0)
      q.endpoints.push_back(Endpoint{IpAddress::v4(203, 0, 113, static_cast<std::uint8_t>(i / 2 % 250 + 1)),
                                     static_cast<std::uint16_t>(1000 + i), Transport::udp});
    auto r = fw.apply(q);
    REQUIRE_MESSAGE(r, (r ? "" : r.error().str()));
    REQUIRE(fw.last_apply().how == ApplyReport::How::set_elements);
  }
  const auto t2 = Clock::now();
  flood.stop();
  auto v = fw.verify();
  REQUIRE(v);
  CHECK(v->empty());
  std::cout << "10000 replaces: " << std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()
            << " ms, 10000 set updates: " << std::chrono::duration_cast<std::chrono::milliseconds>(t2 - t1).count()
            << " ms\n";
  check_counts(flood);
}
