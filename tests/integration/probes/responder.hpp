#pragma once
// A tiny STUN server for tests and benches, on the caller's io_context: honest, or misbehaving in
// one chosen way. Construct it while the thread is inside the namespace it should live in (its
// socket stays there).
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "probes/stun.hpp"

namespace leakguard::probes::testing {

enum class Behaviour {
  honest,        ///< answers with XOR-MAPPED-ADDRESS = the sender
  silent,        ///< never answers
  garbage,       ///< answers with random bytes, a cut answer and one with a broken FINGERPRINT
  wrong_source,  ///< answers correctly, but from another address
  wrong_id,      ///< answers correctly, but with another transaction id
  error,         ///< answers with a 500 error response
};

class Responder {
 public:
  /// Listens on `at`; `reply_from` is the endpoint wrong_source answers from.
  Responder(boost::asio::io_context& io, const boost::asio::ip::udp::endpoint& at, Behaviour b,
            std::optional<boost::asio::ip::udp::endpoint> reply_from = std::nullopt)
      : socket_(io, at), behaviour_(b) {
    if (reply_from) other_.emplace(io, *reply_from);
    receive();
  }

  /// Binding requests received so far.
  std::size_t requests() const { return requests_; }
  void set_behaviour(Behaviour b) { behaviour_ = b; }
  /// Answers this much later (a stand-in for a round trip: the lab has no netem).
  void set_delay(std::chrono::milliseconds d) { delay_ = d; }

 private:
  void receive() {
    socket_.async_receive_from(boost::asio::buffer(buffer_), sender_, [this](boost::system::error_code ec, std::size_t n) {
      if (ec) return;  // closed
      answer(n);
      receive();
    });
  }

  static IpAddress to_ip(const boost::asio::ip::address& a) {
    IpAddress ip;
    if (a.is_v4()) {
      auto b = a.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), ip.bytes.begin());
    } else {
      ip.family = Family::v6;
      auto b = a.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), ip.bytes.begin());
    }
    return ip;
  }

  void send(boost::asio::ip::udp::socket& from, std::vector<std::uint8_t> bytes) {
    if (delay_.count() > 0) {
      auto timer = std::make_shared<boost::asio::steady_timer>(socket_.get_executor(), delay_);
      timer->async_wait([&from, timer, to = sender_, b = std::move(bytes)](boost::system::error_code ec) {
        if (ec) return;
        boost::system::error_code ignored;
        from.send_to(boost::asio::buffer(b), to, 0, ignored);
      });
      return;
    }
    boost::system::error_code ec;
    from.send_to(boost::asio::buffer(bytes), sender_, 0, ec);  // UDP: never blocks for long
  }

  void answer(std::size_t n) {
    auto m = stun::parse(std::span<const std::uint8_t>(buffer_.data(), n));
    if (!m || m->cls != stun::Class::request || m->method != stun::kMethodBinding) return;
    ++requests_;
    const stun::TransportAddress mapped{to_ip(sender_.address()), sender_.port()};
    switch (behaviour_) {
      case Behaviour::honest: send(socket_, stun::encode_binding_success(m->id, mapped)); break;
      case Behaviour::silent: break;
      case Behaviour::garbage: {
        std::vector<std::uint8_t> noise(40);
        for (auto& b : noise) b = static_cast<std::uint8_t>(rng_());
        send(socket_, noise);
        auto cut = stun::encode_binding_success(m->id, mapped);
        cut.resize(cut.size() - 4);
        send(socket_, cut);
        auto broken = stun::encode_binding_success(m->id, mapped);
        broken[broken.size() - 1] ^= 0x01;
        send(socket_, broken);
        break;
      }
      case Behaviour::wrong_source:
        if (other_) send(*other_, stun::encode_binding_success(m->id, mapped));
        break;
      case Behaviour::wrong_id: send(socket_, stun::encode_binding_success(stun::TransactionId::random(), mapped)); break;
      case Behaviour::error: send(socket_, stun::encode_binding_error(m->id, 500, "Server Error")); break;
    }
  }

  boost::asio::ip::udp::socket socket_;
  std::optional<boost::asio::ip::udp::socket> other_;
  Behaviour behaviour_;
  std::array<std::uint8_t, 2048> buffer_{};
  boost::asio::ip::udp::endpoint sender_;
  std::size_t requests_ = 0;
  std::chrono::milliseconds delay_{0};
  std::minstd_rand rng_{12345};
};

/// How a STUN server over TCP misbehaves (RFC 8489 §6.2.2 framing).
enum class TcpBehaviour {
  honest,    ///< answers with XOR-MAPPED-ADDRESS = the peer
  silent,    ///< accepts and never answers, never closes
  garbage,   ///< answers with bytes that cannot start a STUN message
  half,      ///< sends the first half of a correct answer, then closes
  flood,     ///< sends well-framed answers with other ids, 4 MiB of them, without end in sight
};

/// A STUN server over TCP for tests, on the caller's io_context (construct it inside its namespace).
class TcpResponder {
 public:
  TcpResponder(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at, TcpBehaviour b)
      : acceptor_(io, at), behaviour_(b) {
    accept();
  }
  std::size_t connections() const { return connections_; }
  /// Bytes written to clients so far (the flood's size).
  std::size_t sent() const { return sent_; }

 private:
  struct Conn {
    explicit Conn(boost::asio::ip::tcp::socket s) : socket(std::move(s)) {}
    boost::asio::ip::tcp::socket socket;
    std::array<std::uint8_t, 2048> buffer{};
    std::vector<std::uint8_t> out;
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;  // closed
      ++connections_;
      auto c = std::make_shared<Conn>(std::move(s));
      boost::asio::async_read(c->socket, boost::asio::buffer(c->buffer.data(), stun::kHeaderSize),
                              [this, c](boost::system::error_code e, std::size_t) {
                                if (!e) answer(c);
                              });
      accept();
    });
  }

  void write(const std::shared_ptr<Conn>& c, std::vector<std::uint8_t> bytes, std::function<void()> then) {
    c->out = std::move(bytes);
    boost::asio::async_write(c->socket, boost::asio::buffer(c->out), [this, c, then](boost::system::error_code e, std::size_t n) {
      sent_ += n;
      if (!e && then) then();
    });
  }

  void answer(const std::shared_ptr<Conn>& c) {
    // The header is enough: the id is in it (the request's attributes are not needed here).
    stun::TransactionId id;
    std::copy(c->buffer.begin() + 8, c->buffer.begin() + 20, id.bytes.begin());
    boost::system::error_code ignored;
    const auto peer = c->socket.remote_endpoint(ignored);
    IpAddress ip;
    if (peer.address().is_v4()) {
      auto b = peer.address().to_v4().to_bytes();
      std::copy(b.begin(), b.end(), ip.bytes.begin());
    } else {
      ip.family = Family::v6;
      auto b = peer.address().to_v6().to_bytes();
      std::copy(b.begin(), b.end(), ip.bytes.begin());
    }
    const stun::TransportAddress mapped{ip, peer.port()};
    switch (behaviour_) {
      case TcpBehaviour::honest: write(c, stun::encode_binding_success(id, mapped), [c] {}); break;
      case TcpBehaviour::silent: held_.push_back(c); break;
      case TcpBehaviour::garbage: write(c, std::vector<std::uint8_t>(64, 0xee), [this, c] { held_.push_back(c); }); break;
      case TcpBehaviour::half: {
        auto answer = stun::encode_binding_success(id, mapped);
        answer.resize(answer.size() / 2);
        write(c, std::move(answer), [c] {
          boost::system::error_code e;
          c->socket.shutdown(boost::asio::ip::tcp::socket::shutdown_send, e);
        });
        break;
      }
      case TcpBehaviour::flood: flood(c, 4u << 20); break;
    }
  }

  void flood(const std::shared_ptr<Conn>& c, std::size_t left) {
    if (left == 0) {
      held_.push_back(c);
      return;
    }
    std::vector<std::uint8_t> chunk;
    const stun::TransportAddress mapped{IpAddress::v4(198, 51, 100, 99), 9};
    while (chunk.size() < 64 * 1024) {
      auto m = stun::encode_binding_success(stun::TransactionId::random(), mapped);
      chunk.insert(chunk.end(), m.begin(), m.end());
    }
    const std::size_t n = chunk.size();
    write(c, std::move(chunk), [this, c, left, n] { flood(c, left > n ? left - n : 0); });
  }

  boost::asio::ip::tcp::acceptor acceptor_;
  TcpBehaviour behaviour_;
  std::size_t connections_ = 0;
  std::size_t sent_ = 0;
  std::vector<std::shared_ptr<Conn>> held_;  // open and idle until the responder goes
};

}  // namespace leakguard::probes::testing
