#pragma once
// Time-of-week windows for policy conditions. Time is passed in (policy never reads a clock);
// each window is written in UTC or with a fixed UTC offset, so no time-zone database is needed.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace gh::policy {

class TimeWindow {
 public:
  // days: bit 0 = Monday ... bit 6 = Sunday. Minutes are local (UTC + offset) minutes of the day,
  // from inclusive, to exclusive; to <= from wraps past midnight into the next day (22:00-06:00
  // on Friday runs Friday 22:00 to Saturday 06:00).
  [[nodiscard]] static Result<TimeWindow> make(std::uint8_t days, int from_minute, int to_minute, int utc_offset_minutes);

  // "mon", "mon-fri", "sat-sun", "weekdays", "weekend", "all" -> day bits.
  [[nodiscard]] static Result<std::uint8_t> parse_days(std::string_view text);
  // "09:00-18:00", "22:00-06:00", "00:00-24:00" -> {from, to} minutes.
  [[nodiscard]] static Result<std::pair<int, int>> parse_hours(std::string_view text);
  // "UTC", "Z", "+02:00", "-05:30", "+0200" -> minutes east of UTC.
  [[nodiscard]] static Result<int> parse_offset(std::string_view text);

  bool contains(std::chrono::system_clock::time_point t) const;
  std::string describe() const;  // "mon-fri 09:00-18:00 UTC+02:00"

 private:
  std::uint8_t days_ = 0x7f;
  int from_ = 0, to_ = 24 * 60, offset_ = 0;
};

}  // namespace gh::policy
