#pragma once
// Slows down repeated failed logins from one client address: after kFree failures within a
// minute, each further failure is answered only after a delay that doubles from 250 ms up to
// the configured maximum. One short lock per login, far below the cost of the login itself.
#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

namespace gh::proxy {

class LoginThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr unsigned kFree = 3;
  static constexpr std::chrono::seconds kWindow{60};

  // Records a failure and returns how long to wait before answering it.
  std::chrono::milliseconds on_failure(const std::string& address, Clock::time_point now,
                                       std::chrono::milliseconds max_delay);
  void on_success(const std::string& address);

 private:
  struct Entry {
    unsigned failures = 0;
    Clock::time_point window_start;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> by_address_;
};

}  // namespace gh::proxy
