#include "proxy/login_throttle.h"

#include <algorithm>

namespace gh::proxy {

void LoginThrottle::forget_stale(Clock::time_point now) {
  // A scan from many addresses: forget the stale entries.
  for (auto* m : {&by_key_, &by_address_})
    if (m->size() > 100000) std::erase_if(*m, [&](const auto& kv) { return stale(kv.second, now); });
}

LoginThrottle::Clock::time_point LoginThrottle::turn(const Entry& e, unsigned free, Clock::time_point now,
                                                     std::chrono::milliseconds max_delay) {
  if (e.failures < free) return now;
  const unsigned doublings = std::min(e.failures + e.waiting - free, 16u);
  const auto delay = std::min(max_delay, std::chrono::milliseconds(250) * (1u << doublings));
  return std::max(now, e.next_turn) + delay;
}

std::optional<std::chrono::milliseconds> LoginThrottle::admit(const std::string& address, const std::string& user,
                                                              Clock::time_point now,
                                                              std::chrono::milliseconds max_delay,
                                                              std::chrono::milliseconds max_wait) {
  if (max_delay.count() <= 0) return std::chrono::milliseconds(0);
  std::lock_guard lk(mu_);
  // Entries quiet for a minute start over.
  Entry* u = nullptr;
  if (auto it = by_key_.find(key(address, user)); it != by_key_.end()) {
    if (stale(it->second, now))
      by_key_.erase(it);
    else
      u = &it->second;
  }
  Entry* a = nullptr;
  if (auto it = by_address_.find(address); it != by_address_.end()) {
    if (stale(it->second, now))
      by_address_.erase(it);
    else
      a = &it->second;
  }
  const auto user_turn = u ? turn(*u, kFree, now, max_delay) : now;
  const auto address_turn = a ? turn(*a, kFreeUsers, now, max_delay) : now;
  const auto at = std::max(user_turn, address_turn);
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
  if (wait > max_wait) return std::nullopt;
  if (u && user_turn > now) {
    u->next_turn = user_turn;
    ++u->waiting;
  }
  if (a && address_turn > now) {
    a->next_turn = address_turn;
    ++a->waiting;
  }
  return wait;
}

void LoginThrottle::on_failure(const std::string& address, const std::string& user, Clock::time_point now) {
  std::lock_guard lk(mu_);
  forget_stale(now);
  auto& e = by_key_[key(address, user)];
  if (e.failures == 0 || stale(e, now)) {
    e.failures = 0;
    e.window_start = now;
  }
  ++e.failures;
  if (e.waiting > 0) --e.waiting;

  auto& a = by_address_[address];
  if (a.users.empty() || stale(a, now)) {
    a.failures = 0;
    a.users.clear();
    a.window_start = now;
  }
  if (a.waiting > 0) --a.waiting;
  if (std::find(a.users.begin(), a.users.end(), user) == a.users.end() && a.users.size() < kFreeUsers + 64) {
    a.users.push_back(user);
    ++a.failures;
  }
}

void LoginThrottle::on_success(const std::string& address, const std::string& user) {
  std::lock_guard lk(mu_);
  by_key_.erase(key(address, user));
  // A login that got through does not forgive the address's failures, but its turn is over.
  if (auto it = by_address_.find(address); it != by_address_.end() && it->second.waiting > 0) --it->second.waiting;
}

}  // namespace gh::proxy
