#pragma once
// For log lines that a flood would repeat (refused connections, refused statements, a full
// queue): lets one occurrence a second through and counts the others. Not thread-safe: one owner
// (a worker thread, or a caller holding its own lock).
#include <chrono>
#include <cstdint>
#include <optional>

namespace gh {

class OnceASecond {
 public:
  using Clock = std::chrono::steady_clock;
  // Occurrences held back since the last one let through, once a second has passed since it (they
  // are then taken: the next admit starts a new second). 0 when none, or too early.
  std::uint64_t take_held(Clock::time_point now = Clock::now()) {
    if (held_ == 0 || now - last_ < std::chrono::seconds(1)) return 0;
    last_ = now;
    const auto held = held_;
    held_ = 0;
    return held;
  }
  Clock::time_point last() const { return last_; }

  // When this occurrence may be logged: how many were held back since the last one let through.
  std::optional<std::uint64_t> admit(Clock::time_point now = Clock::now()) {
    if (seen_ && now - last_ < std::chrono::seconds(1)) {
      ++held_;
      return std::nullopt;
    }
    seen_ = true;
    last_ = now;
    const auto held = held_;
    held_ = 0;
    return held;
  }

 private:
  Clock::time_point last_{};
  std::uint64_t held_ = 0;
  bool seen_ = false;
};

}  // namespace gh
