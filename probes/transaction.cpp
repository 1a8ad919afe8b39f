#include "probes/transaction.hpp"

#include <cerrno>
#include <cstring>

#include "common/overloaded.hpp"

namespace leakguard::probes {

std::string errno_name(int error) {
  switch (error) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ENODEV: return "ENODEV";
    case ENETDOWN: return "ENETDOWN";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EMSGSIZE: return "EMSGSIZE";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "errno " + std::to_string(error);
  }
}

bool refused_by_firewall(int error) { return error == EPERM || error == EACCES; }

std::string_view kind(const Outcome& o) {
  return std::visit(overloaded{[](const Reflexive&) { return std::string_view("reflexive"); },
                               [](const Blocked&) { return std::string_view("blocked"); },
                               [](const TimedOut&) { return std::string_view("timeout"); },
                               [](const ServerError&) { return std::string_view("error"); },
                               [](const LocalFailure&) { return std::string_view("failed"); }},
                    o);
}

std::string str(const Outcome& o) {
  auto plural = [](int n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); };
  return std::visit(
      overloaded{
          [&](const Reflexive& r) {
            return "reflexive " + r.mapped.str() + (r.legacy ? " (MAPPED-ADDRESS)" : "") + " after " +
                   std::to_string(r.rtt.count()) + " ms (" + plural(r.attempts, "attempt") + ")";
          },
          [](const Blocked& b) {
            return "blocked (" + errno_name(b.error) + (refused_by_firewall(b.error) ? ": refused by the packet filter)" : ")");
          },
          [&](const TimedOut& t) { return "timeout (" + plural(t.attempts, "attempt") + ")"; },
          [](const ServerError& e) {
            std::string s = "error " + std::to_string(e.error.code) + (e.error.reason.empty() ? "" : " " + e.error.reason);
            return s;
          },
          [](const LocalFailure& f) {
            return "failed: " + f.step + ": " + f.message + (f.error ? " (" + errno_name(f.error) + ")" : "");
          }},
      o);
}

std::string_view to_string(Receipt r) {
  switch (r) {
    case Receipt::accepted: return "accepted";
    case Receipt::late: return "late";
    case Receipt::wrong_source: return "wrong source";
    case Receipt::malformed: return "malformed";
    case Receipt::not_a_response: return "not a response";
    case Receipt::wrong_transaction: return "wrong transaction";
  }
  return "?";
}

Transaction::Transaction(stun::TransactionId id, stun::TransportAddress server, TransactionOptions options,
                         TimePoint start, stun::RequestOptions request)
    : id_(id),
      server_(std::move(server)),
      options_(options),
      request_(stun::encode_binding_request(id, request)),
      start_(start),
      deadline_(start + options.total),
      next_send_(start),
      interval_(options.rto) {
  if (options_.max_sends < 1) options_.max_sends = 1;
  if (options_.reliable) {
    options_.max_sends = 1;
    deadline_ = std::min(deadline_, start + options_.reliable_timeout);
  }
}

Transaction::Effect Transaction::next(TimePoint now) {
  if (done_) return Done{&outcome_};
  if (now >= deadline_) {
    finish(TimedOut{sends_});
    return Done{&outcome_};
  }
  if (sends_ < options_.max_sends && now >= next_send_) {
    ++sends_;
    if (sends_ == 1) first_send_ = now;
    if (sends_ == options_.max_sends) {
      // RFC 8489 §6.2.1: after the last of Rc sends, wait Rm * RTO, then give up.
      deadline_ = std::min(deadline_, now + (options_.reliable ? options_.reliable_timeout
                                                                : options_.rto * options_.last_wait_rtos));
    } else {
      // Scheduled from the plan, not from `now`, so a late caller does not stretch the schedule.
      next_send_ += interval_;
      interval_ *= 2;
    }
    return Send{request_, sends_};
  }
  TimePoint until = deadline_;
  if (sends_ < options_.max_sends) until = std::min(until, next_send_);
  return Wait{until};
}

void Transaction::send_failed(TimePoint, int error) {
  if (done_) return;
  if (error == EAGAIN || error == ENOBUFS || error == EINTR) return;
  finish(Blocked{error});
}

void Transaction::abort(LocalFailure failure) {
  if (!done_) finish(std::move(failure));
}

Receipt Transaction::receive(TimePoint now, const stun::TransportAddress& from, std::span<const std::uint8_t> bytes) {
  if (done_) {
    ++ignored_.late;
    return Receipt::late;
  }
  auto ignore = [&](Receipt r, std::size_t& counter, std::string reason) {
    ++counter;
    ignored_.last_reason = std::move(reason);
    return r;
  };
  if (from != server_) return ignore(Receipt::wrong_source, ignored_.wrong_source, "answer from " + from.str());
  auto m = stun::parse(bytes);
  if (!m) return ignore(Receipt::malformed, ignored_.malformed, m.error().str());
  if (m->cls == stun::Class::request || m->cls == stun::Class::indication || m->method != stun::kMethodBinding)
    return ignore(Receipt::not_a_response, ignored_.not_a_response,
                  std::string("a ") + std::string(stun::to_string(m->cls)) + " of method " + std::to_string(m->method));
  if (m->id != id_)
    return ignore(Receipt::wrong_transaction, ignored_.wrong_transaction, "transaction " + m->id.str() + " is not ours");
  // RFC 3489 servers only speak UDP, so MAPPED-ADDRESS alone is acceptable only there.
  auto r = stun::read_binding_response(*m, !options_.reliable);
  if (!r) return ignore(Receipt::malformed, ignored_.malformed, r.error().str());
  if (const auto* ok = std::get_if<stun::BindingSuccess>(&*r)) {
    finish(Reflexive{ok->mapped, ok->legacy, std::chrono::duration_cast<milliseconds>(now - first_send_), sends_});
  } else {
    const auto& e = std::get<stun::BindingError>(*r);
    finish(ServerError{e.error, e.unknown_attributes});
  }
  return Receipt::accepted;
}

void Transaction::finish(Outcome o) {
  done_ = true;
  outcome_ = std::move(o);
}

}  // namespace leakguard::probes
