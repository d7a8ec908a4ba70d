#include "protocol/binary_values.h"

#include <cstring>

#include <fmt/format.h>

namespace gh::protocol {

namespace {

std::uint64_t be(std::string_view b) {
  std::uint64_t v = 0;
  for (const unsigned char c : b) v = (v << 8) | c;
  return v;
}

// Days since 2000-01-01 to a civil date (Howard Hinnant's algorithm).
std::string date_text(std::int64_t days) {
  std::int64_t z = days + 10957 + 719468;  // to days since 0000-03-01
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = yoe + era * 400;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  if (y <= 0) return fmt::format("{:04}-{:02}-{:02} BC", 1 - y, m, d);
  return fmt::format("{:04}-{:02}-{:02}", y, m, d);
}

std::string time_text(std::int64_t us) {
  const std::int64_t s = us / 1000000, frac = us % 1000000;
  std::string out = fmt::format("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  if (frac) {
    auto f = fmt::format("{:06}", frac);
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out;
}

std::string timestamp_text(std::int64_t us) {
  if (us == INT64_MAX) return "infinity";
  if (us == INT64_MIN) return "-infinity";
  constexpr std::int64_t kDay = 86400LL * 1000000;
  std::int64_t days = us / kDay, rest = us % kDay;
  if (rest < 0) {
    rest += kDay;
    --days;
  }
  return date_text(days) + " " + time_text(rest);
}

std::optional<std::string> numeric_text(std::string_view b) {
  if (b.size() < 8) return std::nullopt;
  const auto ndigits = std::uint16_t(be(b.substr(0, 2)));
  const auto weight = std::int16_t(std::uint16_t(be(b.substr(2, 2))));
  const auto sign = std::uint16_t(be(b.substr(4, 2)));
  const auto dscale = std::uint16_t(be(b.substr(6, 2)));
  if (b.size() != 8u + 2u * ndigits) return std::nullopt;
  if (sign == 0xC000) return "NaN";
  if (sign == 0xD000) return "Infinity";
  if (sign == 0xF000) return "-Infinity";
  if (sign != 0 && sign != 0x4000) return std::nullopt;
  auto digit = [&](int i) -> int {
    if (i < 0 || i >= ndigits) return 0;
    return int(be(b.substr(8 + 2 * std::size_t(i), 2)));
  };
  std::string out = sign == 0x4000 ? "-" : "";
  // integer part: groups 0..weight
  if (weight < 0) {
    out += "0";
  } else {
    for (int i = 0; i <= weight; ++i) {
      const int d = digit(i);
      if (d > 9999) return std::nullopt;
      out += i == 0 ? fmt::format("{}", d) : fmt::format("{:04}", d);
    }
  }
  if (dscale > 0) {
    std::string frac;
    for (int i = weight + 1; int(frac.size()) < dscale; ++i) {
      const int d = digit(i);
      if (d > 9999) return std::nullopt;
      frac += fmt::format("{:04}", d);
    }
    out += "." + frac.substr(0, dscale);
  }
  return out;
}

}  // namespace

std::string hex_text(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + 2 * bytes.size());
  for (const unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::optional<std::string> binary_value_text(std::uint32_t oid, std::string_view b) {
  switch (oid) {
    case 16:  // bool
      if (b.size() != 1) return std::nullopt;
      return std::string(b[0] ? "true" : "false");
    case 17:  // bytea
      return hex_text(b);
    case 21:  // int2
      if (b.size() != 2) return std::nullopt;
      return fmt::format("{}", std::int16_t(std::uint16_t(be(b))));
    case 23:  // int4
      if (b.size() != 4) return std::nullopt;
      return fmt::format("{}", std::int32_t(std::uint32_t(be(b))));
    case 26:  // oid
      if (b.size() != 4) return std::nullopt;
      return fmt::format("{}", std::uint32_t(be(b)));
    case 20:  // int8
      if (b.size() != 8) return std::nullopt;
      return fmt::format("{}", std::int64_t(be(b)));
    case 700: {  // float4
      if (b.size() != 4) return std::nullopt;
      const auto bits = std::uint32_t(be(b));
      float f;
      std::memcpy(&f, &bits, 4);
      return fmt::format("{}", f);
    }
    case 701: {  // float8
      if (b.size() != 8) return std::nullopt;
      const auto bits = be(b);
      double d;
      std::memcpy(&d, &bits, 8);
      return fmt::format("{}", d);
    }
    case 1700:
      return numeric_text(b);
    case 18: case 19: case 25: case 114: case 142: case 1042: case 1043:  // char, name, text, json, xml, bpchar, varchar
      return std::string(b);
    case 3802:  // jsonb: a version byte, then the text
      if (b.empty() || b[0] != 1) return std::nullopt;
      return std::string(b.substr(1));
    case 2950: {  // uuid
      if (b.size() != 16) return std::nullopt;
      const auto h = hex_text(b).substr(2);
      return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
    }
    case 1082: {  // date
      if (b.size() != 4) return std::nullopt;
      const auto d = std::int32_t(std::uint32_t(be(b)));
      if (d == INT32_MAX) return "infinity";
      if (d == INT32_MIN) return "-infinity";
      return date_text(d);
    }
    case 1083:  // time
      if (b.size() != 8) return std::nullopt;
      return time_text(std::int64_t(be(b)));
    case 1114:  // timestamp
      if (b.size() != 8) return std::nullopt;
      return timestamp_text(std::int64_t(be(b)));
    case 1184:  // timestamptz: microseconds since 2000-01-01 UTC
      if (b.size() != 8) return std::nullopt;
      return timestamp_text(std::int64_t(be(b))) + "+00";
    default:
      return std::nullopt;
  }
}

}  // namespace gh::protocol
