#include "proxy/login_throttle.h"

#include <gtest/gtest.h>

namespace gh::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = LoginThrottle::Clock;
constexpr auto kMaxDelay = std::chrono::milliseconds(5000);
constexpr auto kMaxWait = std::chrono::milliseconds(30000);

TEST(LoginThrottle, OneUsersFailuresSlowThatUserOnly) {
  LoginThrottle t;
  const auto now = Clock::now();
  for (unsigned i = 0; i < LoginThrottle::kFree; ++i) {
    EXPECT_EQ(t.admit("10.0.0.1", "alice", now, kMaxDelay, kMaxWait), 0ms);
    t.on_failure("10.0.0.1", "alice", now);
  }
  EXPECT_EQ(t.admit("10.0.0.1", "alice", now, kMaxDelay, kMaxWait), 250ms);
  EXPECT_EQ(t.admit("10.0.0.1", "alice", now, kMaxDelay, kMaxWait), 750ms);  // parallel: the next turn, spaced
  EXPECT_EQ(t.admit("10.0.0.1", "bob", now, kMaxDelay, kMaxWait), 0ms);      // another user behind the address
  EXPECT_EQ(t.admit("10.0.0.2", "alice", now, kMaxDelay, kMaxWait), 0ms);    // the user from elsewhere
  t.on_success("10.0.0.1", "alice");
  EXPECT_EQ(t.admit("10.0.0.1", "alice", now, kMaxDelay, kMaxWait), 0ms);
}

TEST(LoginThrottle, ARetryingClientDoesNotHoldUpItsAddress) {
  LoginThrottle t;
  auto now = Clock::now();
  for (int i = 0; i < 200; ++i, now += 100ms) t.on_failure("10.0.0.1", "app", now);  // one broken client
  EXPECT_EQ(t.admit("10.0.0.1", "bob", now, kMaxDelay, kMaxWait), 0ms);
}

TEST(LoginThrottle, SprayingManyUsersFromOneAddressIsSlowed) {
  LoginThrottle t;
  auto now = Clock::now();
  for (unsigned i = 0; i < LoginThrottle::kFreeUsers; ++i) {
    const std::string user = "user" + std::to_string(i);
    EXPECT_EQ(t.admit("10.0.0.9", user, now, kMaxDelay, kMaxWait), 0ms) << i;
    t.on_failure("10.0.0.9", user, now);
  }
  // Every user from that address now waits for a turn, spaced as parallel guesses would be.
  EXPECT_EQ(t.admit("10.0.0.9", "fresh1", now, kMaxDelay, kMaxWait), 250ms);
  EXPECT_EQ(t.admit("10.0.0.9", "fresh2", now, kMaxDelay, kMaxWait), 750ms);
  t.on_failure("10.0.0.9", "fresh1", now);
  t.on_failure("10.0.0.9", "fresh2", now);
  // Each new user that fails doubles the spacing, up to the maximum.
  EXPECT_EQ(t.admit("10.0.0.9", "fresh3", now, kMaxDelay, kMaxWait), 750ms + 1000ms);
  // An attempt whose turn is further away than the caller can wait is refused unchecked.
  EXPECT_EQ(t.admit("10.0.0.9", "fresh4", now, kMaxDelay, 100ms), std::nullopt);
  // Other addresses are not affected; a minute without failures starts over.
  EXPECT_EQ(t.admit("10.0.0.8", "fresh5", now, kMaxDelay, kMaxWait), 0ms);
  EXPECT_EQ(t.admit("10.0.0.9", "fresh6", now + 2min, kMaxDelay, kMaxWait), 0ms);
}

TEST(LoginThrottle, OffWhenTheDelayIsZero) {
  LoginThrottle t;
  const auto now = Clock::now();
  for (int i = 0; i < 50; ++i) t.on_failure("10.0.0.1", "u" + std::to_string(i % 20), now);
  EXPECT_EQ(t.admit("10.0.0.1", "u1", now, 0ms, kMaxWait), 0ms);
}

}  // namespace
}  // namespace gh::proxy
