#include "proxy/login_throttle.h"

#include <algorithm>

namespace gh::proxy {

std::chrono::milliseconds LoginThrottle::on_failure(const std::string& address, Clock::time_point now,
                                                    std::chrono::milliseconds max_delay) {
  std::lock_guard lk(mu_);
  if (by_address_.size() > 100000)  // a scan from many addresses: forget the stale ones
    std::erase_if(by_address_, [&](const auto& kv) { return now - kv.second.window_start > kWindow; });
  auto& e = by_address_[address];
  if (e.failures == 0 || now - e.window_start > kWindow) {
    e.failures = 0;
    e.window_start = now;
  }
  ++e.failures;
  if (e.failures <= kFree || max_delay.count() <= 0) return std::chrono::milliseconds(0);
  const unsigned doublings = std::min(e.failures - kFree - 1, 16u);
  return std::min(max_delay, std::chrono::milliseconds(250) * (1u << doublings));
}

void LoginThrottle::on_success(const std::string& address) {
  std::lock_guard lk(mu_);
  by_address_.erase(address);
}

}  // namespace gh::proxy
