#include "proxy/login_throttle.h"

#include <algorithm>

namespace gh::proxy {

void LoginThrottle::forget_stale(Clock::time_point now) {
  if (by_key_.size() > 100000)  // a scan from many addresses: forget the stale ones
    std::erase_if(by_key_, [&](const auto& kv) {
      return now - kv.second.window_start > kWindow && kv.second.next_turn <= now;
    });
}

std::optional<std::chrono::milliseconds> LoginThrottle::admit(const std::string& address, const std::string& user,
                                                              Clock::time_point now,
                                                              std::chrono::milliseconds max_delay,
                                                              std::chrono::milliseconds max_wait) {
  if (max_delay.count() <= 0) return std::chrono::milliseconds(0);
  std::lock_guard lk(mu_);
  auto it = by_key_.find(key(address, user));
  if (it == by_key_.end()) return std::chrono::milliseconds(0);
  Entry& e = it->second;
  if (now - e.window_start > kWindow && e.next_turn <= now) {  // quiet for a minute: start over
    by_key_.erase(it);
    return std::chrono::milliseconds(0);
  }
  if (e.failures < kFree) return std::chrono::milliseconds(0);
  const unsigned doublings = std::min(e.failures + e.waiting - kFree, 16u);
  const auto delay = std::min(max_delay, std::chrono::milliseconds(250) * (1u << doublings));
  const auto turn = std::max(now, e.next_turn) + delay;
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(turn - now);
  if (wait > max_wait) return std::nullopt;
  e.next_turn = turn;
  ++e.waiting;
  return wait;
}

void LoginThrottle::on_failure(const std::string& address, const std::string& user, Clock::time_point now) {
  std::lock_guard lk(mu_);
  forget_stale(now);
  auto& e = by_key_[key(address, user)];
  if (e.failures == 0 || (now - e.window_start > kWindow && e.next_turn <= now)) {
    e.failures = 0;
    e.window_start = now;
  }
  ++e.failures;
  if (e.waiting > 0) --e.waiting;
}

void LoginThrottle::on_success(const std::string& address, const std::string& user) {
  std::lock_guard lk(mu_);
  by_key_.erase(key(address, user));
}

}  // namespace gh::proxy
