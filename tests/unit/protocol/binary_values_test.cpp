#include "protocol/binary_values.h"

#include <gtest/gtest.h>

using gh::protocol::binary_value_text;
using gh::protocol::hex_text;

namespace {
std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int c : v) s.push_back(char(c));
  return s;
}
}  // namespace

TEST(BinaryValues, Integers) {
  EXPECT_EQ(binary_value_text(21, bytes({0, 5})), "5");
  EXPECT_EQ(binary_value_text(21, bytes({0xff, 0xfe})), "-2");
  EXPECT_EQ(binary_value_text(23, bytes({0, 0, 1, 0})), "256");
  EXPECT_EQ(binary_value_text(23, bytes({0x80, 0, 0, 0})), "-2147483648");
  EXPECT_EQ(binary_value_text(20, bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})), "-1");
  EXPECT_EQ(binary_value_text(26, bytes({0xff, 0xff, 0xff, 0xff})), "4294967295");
  EXPECT_EQ(binary_value_text(23, bytes({0, 5})), std::nullopt);  // wrong length: not guessed
}

TEST(BinaryValues, FloatsBoolsText) {
  EXPECT_EQ(binary_value_text(701, bytes({0x3f, 0xf8, 0, 0, 0, 0, 0, 0})), "1.5");
  EXPECT_EQ(binary_value_text(700, bytes({0x40, 0x20, 0, 0})), "2.5");
  EXPECT_EQ(binary_value_text(16, bytes({1})), "true");
  EXPECT_EQ(binary_value_text(25, "héllo"), "héllo");
  EXPECT_EQ(binary_value_text(3802, bytes({1, '{', '}'})), "{}");
  EXPECT_EQ(binary_value_text(17, bytes({0xde, 0xad})), "\\xdead");
  EXPECT_EQ(binary_value_text(9999, "x"), std::nullopt);
  EXPECT_EQ(hex_text(""), "\\x");
}

TEST(BinaryValues, Numeric) {
  // 12345.678: ndigits 3, weight 1, sign +, dscale 3; digits 1, 2345, 6780
  EXPECT_EQ(binary_value_text(1700, bytes({0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c})), "12345.678");
  // -0.05: ndigits 1, weight -1, sign -, dscale 2; digits 500
  EXPECT_EQ(binary_value_text(1700, bytes({0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4})), "-0.05");
  // 0: no digits
  EXPECT_EQ(binary_value_text(1700, bytes({0, 0, 0, 0, 0, 0, 0, 0})), "0");
  // 10000 (trailing zero group dropped): ndigits 1, weight 1, digit 1
  EXPECT_EQ(binary_value_text(1700, bytes({0, 1, 0, 1, 0, 0, 0, 0, 0, 1})), "10000");
  EXPECT_EQ(binary_value_text(1700, bytes({0, 0, 0, 0, 0xc0, 0, 0, 0})), "NaN");
  EXPECT_EQ(binary_value_text(1700, bytes({0, 2, 0, 0, 0, 0, 0, 0, 0})), std::nullopt);  // truncated
}

TEST(BinaryValues, DatesAndTimes) {
  EXPECT_EQ(binary_value_text(1082, bytes({0, 0, 0, 0})), "2000-01-01");
  EXPECT_EQ(binary_value_text(1082, bytes({0xff, 0xff, 0xff, 0xff})), "1999-12-31");
  EXPECT_EQ(binary_value_text(1082, bytes({0, 0, 0x25, 0x39})), "2026-02-02");  // 9529 days
  // 2000-01-02 03:04:05.5 = 97445.5 s after the epoch
  const std::int64_t us = 97445500000LL;
  std::string b;
  for (int i = 7; i >= 0; --i) b.push_back(char((us >> (8 * i)) & 0xff));
  EXPECT_EQ(binary_value_text(1114, b), "2000-01-02 03:04:05.5");
  EXPECT_EQ(binary_value_text(1184, b), "2000-01-02 03:04:05.5+00");
  EXPECT_EQ(binary_value_text(2950, bytes({0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78,
                                           0x9a, 0xbc, 0xde, 0xf0})),
            "12345678-9abc-def0-1234-56789abcdef0");
}
