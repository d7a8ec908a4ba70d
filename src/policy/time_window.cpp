#include "policy/time_window.h"

#include <array>
#include <charconv>
#include <cstdio>

namespace gh::policy {

namespace {

constexpr std::array<std::string_view, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

int day_index(std::string_view s) {
  for (std::size_t i = 0; i < kDays.size(); ++i)
    if (s == kDays[i]) return int(i);
  return -1;
}

bool two_digits(std::string_view s, int& v) {
  if (s.size() != 2) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + 2, v);
  return ec == std::errc() && p == s.data() + 2;
}

// "HH:MM"; allow_24 accepts "24:00" (end of day).
bool clock(std::string_view s, bool allow_24, int& minutes) {
  int h = 0, m = 0;
  if (s.size() != 5 || s[2] != ':' || !two_digits(s.substr(0, 2), h) || !two_digits(s.substr(3, 2), m)) return false;
  if (m > 59) return false;
  if (h > 23 && !(allow_24 && h == 24 && m == 0)) return false;
  minutes = h * 60 + m;
  return true;
}

std::string hhmm(int minutes) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02d:%02d", minutes / 60, minutes % 60);
  return buf;
}

}  // namespace

Result<TimeWindow> TimeWindow::make(std::uint8_t days, int from, int to, int offset) {
  if (days == 0 || days > 0x7f) return fail("", "bad time window: no days");
  if (from < 0 || from >= 24 * 60 || to < 0 || to > 24 * 60) return fail("", "bad time window: hours out of range");
  if (offset < -14 * 60 || offset > 14 * 60) return fail("", "bad time window: UTC offset out of range");
  TimeWindow w;
  w.days_ = days;
  w.from_ = from;
  w.to_ = to;
  w.offset_ = offset;
  return w;
}

Result<std::uint8_t> TimeWindow::parse_days(std::string_view s) {
  if (s == "all" || s == "daily") return std::uint8_t(0x7f);
  if (s == "weekdays") return std::uint8_t(0x1f);
  if (s == "weekend") return std::uint8_t(0x60);
  const auto dash = s.find('-');
  const int a = day_index(s.substr(0, dash));
  const int b = dash == std::string_view::npos ? a : day_index(s.substr(dash + 1));
  if (a < 0 || b < 0)
    return fail("", "bad time window: \"" + std::string(s) +
                        "\" is not a day (mon, tue, wed, thu, fri, sat, sun, a range such as mon-fri, weekdays, "
                        "weekend or all)");
  std::uint8_t bits = 0;
  for (int d = a;; d = (d + 1) % 7) {  // sat-mon wraps over the week end
    bits |= std::uint8_t(1u << d);
    if (d == b) break;
  }
  return bits;
}

Result<std::pair<int, int>> TimeWindow::parse_hours(std::string_view s) {
  const auto dash = s.find('-');
  int from = 0, to = 0;
  if (dash == std::string_view::npos || !clock(s.substr(0, dash), false, from) ||
      !clock(s.substr(dash + 1), true, to))
    return fail("", "bad time window: \"" + std::string(s) + "\" is not HH:MM-HH:MM (for example 09:00-18:00)");
  if (from == to) return fail("", "bad time window: \"" + std::string(s) + "\" is empty (start equals end)");
  return std::pair{from, to};
}

Result<int> TimeWindow::parse_offset(std::string_view s) {
  if (s == "UTC" || s == "Z" || s == "utc") return 0;
  const auto bad = fail("", "bad time window: \"" + std::string(s) + "\" is not a UTC offset such as +02:00, -05:30 or UTC");
  if (s.size() < 3 || (s[0] != '+' && s[0] != '-')) return bad;
  int h = 0, m = 0;
  if (!two_digits(s.substr(1, 2), h)) return bad;
  auto rest = s.substr(3);
  if (!rest.empty() && rest[0] == ':') rest = rest.substr(1);
  if (!rest.empty() && !two_digits(rest, m)) return bad;
  if (h > 14 || m > 59 || h * 60 + m > 14 * 60) return bad;
  return (s[0] == '-' ? -1 : 1) * (h * 60 + m);
}

bool TimeWindow::contains(std::chrono::system_clock::time_point t) const {
  using namespace std::chrono;
  const auto local = floor<minutes>(t) + minutes(offset_);
  const auto day = floor<days>(local);
  const int minute = int((local - day).count());
  // weekday: Sunday = 0 in C++20; our bit 0 is Monday.
  const auto bit = [](sys_days d) { return 1u << ((weekday(d).c_encoding() + 6) % 7); };
  const sys_days today{day};
  if (from_ < to_) return (days_ & bit(today)) && minute >= from_ && minute < to_;
  // Wraps midnight: the evening part belongs to today, the morning part to yesterday's window.
  return ((days_ & bit(today)) && minute >= from_) || ((days_ & bit(today - days(1))) && minute < to_);
}

std::string TimeWindow::describe() const {
  std::string out;
  if (days_ == 0x7f) {
    out = "every day";
  } else {
    for (int d = 0; d < 7; ++d)
      if (days_ & (1u << d)) out += (out.empty() ? "" : ",") + std::string(kDays[std::size_t(d)]);
  }
  out += " " + hhmm(from_) + "-" + hhmm(to_) + " UTC";
  if (offset_ != 0) out += (offset_ < 0 ? "-" : "+") + hhmm(offset_ < 0 ? -offset_ : offset_);
  return out;
}

}  // namespace gh::policy
