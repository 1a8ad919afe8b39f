#include "netwatch/coalescer.hpp"

#include <algorithm>

namespace leakguard::netwatch {

Coalescer::TimePoint Coalescer::arrived(TimePoint now, bool urgent) {
  if (!burst_start_) burst_start_ = now;
  if (urgent && (!last_urgent_ || now - *last_urgent_ >= options_.debounce)) {
    last_urgent_ = now;
    return now;
  }
  return std::min(now + options_.debounce, *burst_start_ + options_.max_delay);
}

}  // namespace leakguard::netwatch
