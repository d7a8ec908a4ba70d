#pragma once
// Slows down password guessing from one client address, in two ways:
// - one user's password: after kFree failed logins of a user from an address within a minute,
//   every further login attempt of that user from the address (whatever its outcome) is checked
//   only at its turn;
// - many users' passwords (spraying one password over many user names): after failed logins of
//   kFreeUsers different users from an address within a minute, every login attempt from that
//   address is checked only at its turn. Counting distinct users, not failures, keeps one
//   misconfigured client retrying its one wrong password from holding up the other users behind
//   the same address (a NAT, an application server).
// Turns are spaced by a delay that doubles from 250 ms up to the configured maximum, one after
// another, so parallel connections do not guess faster than one (found by adversarial testing:
// 200 parallel guesses were all answered within 5 s when each failure only waited for itself).
// An attempt whose turn would come later than the caller can wait is refused at once, without
// its credentials being checked. One short lock per login, far below the cost of the login.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace gh::proxy {

class LoginThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr unsigned kFree = 3;
  static constexpr unsigned kFreeUsers = 10;
  static constexpr std::chrono::seconds kWindow{60};

  // Before an attempt of `user` from `address` is checked: how long it waits for its turn (zero
  // while there were few recent failures), or nullopt when its turn is more than `max_wait` away.
  std::optional<std::chrono::milliseconds> admit(const std::string& address, const std::string& user,
                                                 Clock::time_point now,
                                                 std::chrono::milliseconds max_delay,
                                                 std::chrono::milliseconds max_wait);
  void on_failure(const std::string& address, const std::string& user, Clock::time_point now);
  void on_success(const std::string& address, const std::string& user);

 private:
  struct Entry {
    unsigned failures = 0;  // per user: failed logins; per address: distinct users that failed
    unsigned waiting = 0;  // attempts given a turn and not ended yet: the next turn is spaced as if they failed
    Clock::time_point window_start;
    Clock::time_point next_turn;  // the turn after the last one given
    std::vector<std::string> users;  // per address: the users that failed (up to kFreeUsers + 64)
  };
  static bool stale(const Entry& e, Clock::time_point now) {
    return now - e.window_start > kWindow && e.next_turn <= now;
  }
  // The turn an attempt would get from `e` (now when there were at most `free` failures).
  static Clock::time_point turn(const Entry& e, unsigned free, Clock::time_point now, std::chrono::milliseconds max_delay);
  void forget_stale(Clock::time_point now);
  std::mutex mu_;
  static std::string key(const std::string& address, const std::string& user) { return address + '\0' + user; }
  std::unordered_map<std::string, Entry> by_key_;      // by key(address, user)
  std::unordered_map<std::string, Entry> by_address_;  // spraying, by address
};

}  // namespace gh::proxy
