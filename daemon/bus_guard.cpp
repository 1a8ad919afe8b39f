#include "daemon/bus_guard.hpp"

#include <algorithm>

namespace leakguard::daemon {

RateLimiter::RateLimiter(RateLimit limit) : limit_(limit) {
  overflow_.tokens = limit_.burst;
}

void RateLimiter::refill(Bucket& b, GuardTime now) const {
  if (now <= b.at) return;  // a clock that stands still (or a caller's older time) adds nothing
  const double seconds = std::chrono::duration<double>(now - b.at).count();
  b.tokens = std::min(limit_.burst, b.tokens + seconds * limit_.per_second);
  b.at = now;
}

RateLimiter::Decision RateLimiter::take(Bucket& b, GuardTime now) {
  refill(b, now);
  Decision d;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return d;
  }
  d.allowed = false;
  ++b.unreported;
  if (!b.reported_at || now - *b.reported_at >= limit_.report_every) {
    d.report = b.unreported;
    b.unreported = 0;
    b.reported_at = now;
  }
  return d;
}

// Drops the buckets that have refilled: they hold nothing a new bucket would not. False if none has.
bool RateLimiter::make_room(GuardTime now) {
  const auto before = buckets_.size();
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    refill(it->second, now);
    if (it->second.tokens >= limit_.burst && it->second.unreported == 0) it = buckets_.erase(it);
    else ++it;
  }
  return buckets_.size() < before;
}

RateLimiter::Decision RateLimiter::take(uid_t uid, GuardTime now) {
  auto it = buckets_.find(uid);
  if (it == buckets_.end()) {
    if (buckets_.size() >= limit_.max_callers && !make_room(now)) return take(overflow_, now);
    Bucket fresh;
    fresh.tokens = limit_.burst;
    fresh.at = now;
    it = buckets_.emplace(uid, fresh).first;
  }
  return take(it->second, now);
}

const Caller* SenderCache::find(const std::string& sender) const {
  auto it = entries_.find(sender);
  return it == entries_.end() ? nullptr : &it->second;
}

const Caller& SenderCache::insert(const std::string& sender, Caller caller) {
  if (auto it = entries_.find(sender); it != entries_.end()) return it->second = std::move(caller);
  while (entries_.size() >= capacity_ && !order_.empty()) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(sender);
  return entries_.emplace(sender, std::move(caller)).first->second;
}

void SenderCache::clear() {
  entries_.clear();
  order_.clear();
}

const std::string& StatusCache::get(GuardTime now, const std::function<std::string()>& build) {
  if (!built_at_ || now < *built_at_ || now - *built_at_ >= max_age_) {
    document_ = build();
    built_at_ = now;
    ++builds_;
  }
  return document_;
}

}  // namespace leakguard::daemon
