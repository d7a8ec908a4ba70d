#include "masking/value.h"

#include <gtest/gtest.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace gh::masking {
namespace {

constexpr std::string_view kKey = "0123456789abcdef-test-key";
constexpr std::string_view kOtherKey = "fedcba9876543210-other-key";

constexpr std::uint32_t kBool = 16;
constexpr std::uint32_t kBytea = 17;
constexpr std::uint32_t kName = 19;
constexpr std::uint32_t kInt8 = 20;
constexpr std::uint32_t kInt2 = 21;
constexpr std::uint32_t kInt4 = 23;
constexpr std::uint32_t kText = 25;
constexpr std::uint32_t kOid = 26;
constexpr std::uint32_t kJson = 114;
constexpr std::uint32_t kCidr = 650;
constexpr std::uint32_t kFloat4 = 700;
constexpr std::uint32_t kFloat8 = 701;
constexpr std::uint32_t kUnknown = 705;
constexpr std::uint32_t kInet = 869;
constexpr std::uint32_t kBpchar = 1042;
constexpr std::uint32_t kVarchar = 1043;
constexpr std::uint32_t kDate = 1082;
constexpr std::uint32_t kTime = 1083;
constexpr std::uint32_t kTimestamp = 1114;
constexpr std::uint32_t kTimestamptz = 1184;
constexpr std::uint32_t kNumeric = 1700;
constexpr std::uint32_t kUuid = 2950;
constexpr std::uint32_t kJsonb = 3802;
constexpr std::uint32_t kTextArray = 1009;
constexpr std::uint32_t kVarcharArray = 1015;

const std::vector<std::uint32_t> kTextTypes = {kText, kVarchar, kBpchar, kName, kUnknown};
const std::vector<Strategy> kAllStrategies = {Strategy::Redact, Strategy::Partial, Strategy::Hash, Strategy::KeepDomain,
                                              Strategy::Null,   Strategy::Fixed,   Strategy::Digits};

Spec make(Strategy s) {
  Spec spec;
  spec.strategy = s;
  return spec;
}
Spec partial(int first, int last) {
  Spec s = make(Strategy::Partial);
  s.keep_first = first;
  s.keep_last = last;
  return s;
}
Spec fixed(std::string v) {
  Spec s = make(Strategy::Fixed);
  s.fixed = std::move(v);
  return s;
}

std::optional<std::string> mask(const Spec& spec, std::uint32_t oid, std::string_view value,
                                Format format = Format::Text, std::string_view key = kKey) {
  std::string out;
  if (!mask_value(spec, key, oid, format, value, out)) {
    EXPECT_TRUE(out.empty()) << "a NULL result appends nothing";
    return std::nullopt;
  }
  return out;
}
std::optional<std::string> mask(Strategy s, std::uint32_t oid, std::string_view value, Format format = Format::Text,
                                std::string_view key = kKey) {
  return mask(make(s), oid, value, format, key);
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!is_hex(s.substr(i, 1))) {
      return false;
    }
  }
  return true;
}

bool valid_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  auto y = parse_int(s.substr(0, 4)), m = parse_int(s.substr(5, 2)), d = parse_int(s.substr(8, 2));
  if (!y || !m || !d || *m < 1 || *m > 12 || *d < 1) return false;
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0;
  return *d <= kDays[*m - 1] + (*m == 2 && leap ? 1 : 0);
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || c == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::string be(std::uint64_t v, int width) {
  std::string s;
  for (int i = width - 1; i >= 0; --i) s.push_back(char((v >> (8 * i)) & 0xff));
  return s;
}

std::uint64_t from_be(std::string_view s) {
  std::uint64_t v = 0;
  for (char c : s) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

TEST(MaskValue, StrategyNamesRoundTrip) {
  for (Strategy s : kAllStrategies) EXPECT_EQ(strategy_from_name(strategy_name(s)), s);
  EXPECT_EQ(strategy_name(Strategy::KeepDomain), "keep_domain");
  EXPECT_FALSE(strategy_from_name("Redact").has_value());
  EXPECT_FALSE(strategy_from_name("").has_value());
}

TEST(MaskValue, AppendsToOutAndLeavesItAloneOnNull) {
  std::string out = "prefix";
  ASSERT_TRUE(mask_value(make(Strategy::Redact), kKey, kText, Format::Text, "secret", out));
  EXPECT_EQ(out, "prefix****");
  out = "prefix";
  ASSERT_FALSE(mask_value(make(Strategy::Null), kKey, kText, Format::Text, "secret", out));
  EXPECT_EQ(out, "prefix");
  ASSERT_FALSE(mask_value(make(Strategy::Digits), kKey, kInt4, Format::Text, "12x", out));
  EXPECT_EQ(out, "prefix");
}

// ---- text types --------------------------------------------------------------------------

TEST(MaskText, RedactIsFixedForEveryTextTypeAndFormat) {
  for (std::uint32_t oid : kTextTypes)
    for (Format f : {Format::Text, Format::Binary}) {
      EXPECT_EQ(mask(Strategy::Redact, oid, "alice@example.com", f), "****") << oid;
      EXPECT_EQ(mask(Strategy::Redact, oid, "", f), "****");
      EXPECT_EQ(mask(Strategy::Redact, oid, "\xff\xfe", f), "****");
    }
}

TEST(MaskText, PartialKeepsCodePoints) {
  EXPECT_EQ(mask(partial(0, 4), kText, "4111111111111111"), "************1111");
  EXPECT_EQ(mask(partial(2, 2), kVarchar, "abcdefgh"), "ab****gh");
  EXPECT_EQ(mask(partial(1, 0), kText, "secret"), "s*****");
  // Multi-byte characters count as one and are never split.
  EXPECT_EQ(mask(partial(1, 1), kText, "Zoë Müller"), "Z********r");
  EXPECT_EQ(mask(partial(1, 1), kText, "éàüö"), "é**ö");
  EXPECT_EQ(mask(partial(2, 1), kText, "日本語テキスト"), "日本****ト");
  EXPECT_EQ(mask(partial(0, 1), kText, "a😀b😀"), "***😀");
  EXPECT_EQ(mask(partial(0, 4), kText, "Müller", Format::Binary), "**ller");
}

TEST(MaskText, PartialMasksAllWhenNothingWouldBeHidden) {
  EXPECT_EQ(mask(partial(0, 4), kText, "abc"), "***");
  EXPECT_EQ(mask(partial(0, 4), kText, "abcd"), "****");
  EXPECT_EQ(mask(partial(2, 2), kText, "éàüö"), "****");
  EXPECT_EQ(mask(partial(0, 4), kText, ""), "");
  EXPECT_EQ(mask(partial(0, 0), kText, "secret"), "******");
  EXPECT_EQ(mask(partial(-5, -1), kText, "secret"), "******");
  EXPECT_EQ(mask(partial(2147483647, 2147483647), kText, "secret"), "******");
}

TEST(MaskText, PartialOnInvalidUtf8Redacts) {
  // Truncated sequence, lone continuation byte, overlong '/', surrogate, NUL: none is text.
  for (std::string_view bad : {std::string_view("abc\xc3"), std::string_view("ab\x80" "cdefgh"),
                               std::string_view("abcd\xc0\xafxyz"), std::string_view("abcd\xed\xa0\x80xyz"),
                               std::string_view("abcd\0xyz", 8), std::string_view("\xf5\x80\x80\x80zzzzzz")}) {
    EXPECT_EQ(mask(partial(1, 1), kText, bad), "****");
    EXPECT_EQ(mask(Strategy::Digits, kText, bad), "****");
    EXPECT_EQ(mask(Strategy::KeepDomain, kText, bad), "****");
  }
}

TEST(MaskText, HashIsKeyedDeterministicHex) {
  auto a = mask(Strategy::Hash, kText, "alice@example.com");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->size(), 64u);
  EXPECT_TRUE(is_hex(*a));
  EXPECT_EQ(mask(Strategy::Hash, kVarchar, "alice@example.com"), a) << "joins across text types";
  EXPECT_EQ(mask(Strategy::Hash, kText, "alice@example.com", Format::Binary), a) << "joins across formats";
  EXPECT_NE(mask(Strategy::Hash, kText, "alice@example.con"), a);
  EXPECT_NE(mask(Strategy::Hash, kText, "alice@example.com", Format::Text, kOtherKey), a);
  // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") from RFC 4231-style vectors.
  EXPECT_EQ(mask(Strategy::Hash, kText, "The quick brown fox jumps over the lazy dog", Format::Text, "key"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
  EXPECT_TRUE(mask(Strategy::Hash, kText, "").has_value());
  EXPECT_EQ(mask(Strategy::Hash, kText, "\xff").value().size(), 64u);
  // RFC 4231 test cases 1 and 6 (a key longer than the block is hashed first).
  EXPECT_EQ(mask(Strategy::Hash, kText, "Hi There", Format::Text, std::string(20, '\x0b')),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(mask(Strategy::Hash, kText, "Test Using Larger Than Block-Size Key - Hash Key First", Format::Text,
                 std::string(131, '\xaa')),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(MaskText, HashAndDigitsRefuseAnEmptyKey) {
  EXPECT_FALSE(mask(Strategy::Hash, kText, "alice", Format::Text, ""));
  EXPECT_FALSE(mask(Strategy::Digits, kText, "555-1234", Format::Text, ""));
  EXPECT_FALSE(mask(Strategy::Hash, kInt4, "42", Format::Text, ""));
}

TEST(MaskText, KeyChangesBetweenCallsOnOneThread) {
  const auto a1 = mask(Strategy::Hash, kText, "x", Format::Text, kKey);
  const auto b = mask(Strategy::Hash, kText, "x", Format::Text, kOtherKey);
  const auto a2 = mask(Strategy::Hash, kText, "x", Format::Text, kKey);
  EXPECT_EQ(a1, a2);
  EXPECT_NE(a1, b);
}

TEST(MaskText, KeepDomain) {
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "john.doe@example.com"), "****@example.com");
  EXPECT_EQ(mask(Strategy::KeepDomain, kVarchar, "j@mail.münchen.de"), "****@mail.münchen.de");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "not an email"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "a@b@example.com"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "@example.com"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "john@localhost"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "john@exa mple.com"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "jo hn@example.com"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, "john@.example.com"), "****");
  EXPECT_EQ(mask(Strategy::KeepDomain, kText, ""), "****");
}

TEST(MaskText, DigitsPreserveFormat) {
  const auto card = mask(Strategy::Digits, kText, "4111-1111-1111-1111");
  ASSERT_TRUE(card);
  ASSERT_EQ(card->size(), 19u);
  for (std::size_t i = 0; i < card->size(); ++i) {
    if (i == 4 || i == 9 || i == 14)
      EXPECT_EQ((*card)[i], '-');
    else
      EXPECT_TRUE((*card)[i] >= '0' && (*card)[i] <= '9');
  }
  EXPECT_NE(*card, "4111-1111-1111-1111");
  EXPECT_EQ(mask(Strategy::Digits, kText, "4111-1111-1111-1111"), card);
  EXPECT_NE(mask(Strategy::Digits, kText, "4111-1111-1111-1111", Format::Text, kOtherKey), card);
  EXPECT_NE(mask(Strategy::Digits, kText, "4111-1111-1111-1112"), card);
  const auto phone = mask(Strategy::Digits, kText, "+1 (555) 010-9999 ext. ñ");
  ASSERT_TRUE(phone);
  EXPECT_EQ((*phone)[0], '+');
  EXPECT_EQ(phone->substr(2, 2), " (");
  EXPECT_EQ(phone->substr(phone->size() - 8), " ext. ñ");
  // A value without a digit has nothing to preserve: it is redacted rather than shown.
  EXPECT_EQ(mask(Strategy::Digits, kText, "no digits"), "****");
  // Long values draw more than one HMAC block of digits.
  const std::string many(500, '7');
  const auto m = mask(Strategy::Digits, kText, many);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->size(), 500u);
  EXPECT_NE(*m, many);
  EXPECT_EQ(m->find_first_not_of("0123456789"), std::string::npos);
}

TEST(MaskText, DigitsNeverReturnsTheInputForShortValues) {
  for (int d = 0; d <= 99; ++d) {
    const std::string v = std::to_string(d);
    const auto m = mask(Strategy::Digits, kText, v);
    if (m) {
      EXPECT_NE(*m, v);
      EXPECT_EQ(m->size(), v.size());
    }
  }
}

TEST(MaskText, FixedMustBeText) {
  EXPECT_EQ(mask(fixed("n/a"), kText, "secret"), "n/a");
  EXPECT_EQ(mask(fixed(""), kVarchar, "secret"), "");
  EXPECT_EQ(mask(fixed("ünïcode"), kText, "secret", Format::Binary), "ünïcode");
  EXPECT_FALSE(mask(fixed("bad\xff"), kText, "secret"));
  EXPECT_FALSE(mask(fixed(std::string("a\0b", 3)), kText, "secret"));
}

TEST(MaskText, NameStaysWithin63Bytes) {
  const auto h = mask(Strategy::Hash, kName, "postgres");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size(), 63u);
  const auto f = mask(fixed(std::string(62, 'a') + "é"), kName, "x");
  ASSERT_TRUE(f);
  EXPECT_EQ(*f, std::string(62, 'a')) << "cut at a code point boundary";
}

TEST(MaskValue, NullStrategyIsAlwaysNull) {
  for (std::uint32_t oid : {kText, kInt4, kDate, kUuid, kJson, kBytea, kBool, kTimestamp, 12345u})
    for (Format f : {Format::Text, Format::Binary}) EXPECT_FALSE(mask(Strategy::Null, oid, "x", f));
}

// ---- integers ----------------------------------------------------------------------------

struct IntCase {
  std::uint32_t oid;
  std::int64_t min, max;
  int width;
};
const std::vector<IntCase> kInts = {{kInt2, -32768, 32767, 2},
                                    {kInt4, -2147483648LL, 2147483647LL, 4},
                                    {kInt8, INT64_MIN, INT64_MAX, 8},
                                    {kOid, 0, 4294967295LL, 4}};

TEST(MaskInt, TextStrategies) {
  for (const IntCase& t : kInts) {
    SCOPED_TRACE(t.oid);
    EXPECT_EQ(mask(Strategy::Redact, t.oid, "12345"), "0");
    EXPECT_FALSE(mask(partial(0, 2), t.oid, "12345"));
    EXPECT_FALSE(mask(Strategy::KeepDomain, t.oid, "12345"));
    EXPECT_FALSE(mask(Strategy::Null, t.oid, "12345"));
    for (std::string_view v : {"0", "7", "12345", "31999"}) {
      const auto h = mask(Strategy::Hash, t.oid, v);
      ASSERT_TRUE(h);
      const auto n = parse_int(*h);
      ASSERT_TRUE(n) << *h;
      EXPECT_GE(*n, 0);
      EXPECT_LE(*n, t.max);
      EXPECT_EQ(mask(Strategy::Hash, t.oid, v), h);
      const auto d = mask(Strategy::Digits, t.oid, v);
      ASSERT_TRUE(d) << v;
      const auto dn = parse_int(*d);
      ASSERT_TRUE(dn);
      EXPECT_EQ(d->size(), v.size()) << "same number of digits, no leading zero";
      EXPECT_TRUE(d->size() == 1 || (*d)[0] != '0');
      EXPECT_NE(*d, v);
    }
    // Not an integer (the server never sends these): NULL rather than a guess.
    for (std::string_view bad : {"", "abc", "1.5", "+5", " 5", "5 ", "99999999999999999999999"})
      EXPECT_FALSE(mask(Strategy::Hash, t.oid, bad)) << bad;
  }
}

TEST(MaskInt, DigitsKeepSignAndClampIntoRange) {
  const auto d = mask(Strategy::Digits, kInt4, "-1234");
  ASSERT_TRUE(d);
  EXPECT_EQ((*d)[0], '-');
  EXPECT_EQ(d->size(), 5u);
  // Ten digits may exceed int4: the result is clamped, so it always parses.
  for (std::string_view v : {"2147483647", "-2147483648", "1999999999", "32767", "-32768"}) {
    for (const IntCase& t : kInts) {
      const auto r = mask(Strategy::Digits, t.oid, v);
      if (!r) continue;  // out of the type's range as input
      const auto n = parse_int(*r);
      ASSERT_TRUE(n);
      EXPECT_GE(*n, t.min);
      EXPECT_LE(*n, t.max);
    }
  }
  EXPECT_FALSE(mask(Strategy::Digits, kInt2, "40000"));
  EXPECT_FALSE(mask(Strategy::Digits, kOid, "-1"));
}

TEST(MaskInt, Fixed) {
  EXPECT_EQ(mask(fixed("-1"), kInt4, "5"), "-1");
  EXPECT_EQ(mask(fixed("007"), kInt4, "5"), "7");
  EXPECT_FALSE(mask(fixed("40000"), kInt2, "5"));
  EXPECT_FALSE(mask(fixed("-1"), kOid, "5"));
  EXPECT_FALSE(mask(fixed("n/a"), kInt8, "5"));
  EXPECT_FALSE(mask(fixed(""), kInt8, "5"));
  EXPECT_EQ(mask(fixed("-2"), kInt2, be(5, 2), Format::Binary), std::string("\xff\xfe", 2));
}

TEST(MaskInt, BinaryWidthsAndAgreementWithText) {
  for (const IntCase& t : kInts) {
    SCOPED_TRACE(t.oid);
    const std::string v = be(12345, t.width);
    EXPECT_EQ(mask(Strategy::Redact, t.oid, v, Format::Binary), std::string(std::size_t(t.width), '\0'));
    const auto h = mask(Strategy::Hash, t.oid, v, Format::Binary);
    ASSERT_TRUE(h);
    ASSERT_EQ(h->size(), std::size_t(t.width));
    // The seed is the number, so a text column and a binary column of it hash alike.
    EXPECT_EQ(std::to_string(from_be(*h)), mask(Strategy::Hash, t.oid, "12345"));
    const auto d = mask(Strategy::Digits, t.oid, v, Format::Binary);
    ASSERT_TRUE(d);
    EXPECT_EQ(std::to_string(from_be(*d)), mask(Strategy::Digits, t.oid, "12345"));
    // A value of the wrong width is NULL, never read past.
    for (int w : {0, 1, 3, 5, 7, 9, 16}) {
      if (w == t.width) continue;
      EXPECT_FALSE(mask(Strategy::Redact, t.oid, std::string(std::size_t(w), '\x01'), Format::Binary)) << w;
      EXPECT_FALSE(mask(Strategy::Hash, t.oid, std::string(std::size_t(w), '\x01'), Format::Binary)) << w;
    }
  }
  // Negative binary int4 digits keep the sign.
  const auto d = mask(Strategy::Digits, kInt4, be(std::uint32_t(-1234), 4), Format::Binary);
  ASSERT_TRUE(d);
  EXPECT_LT(std::int32_t(std::uint32_t(from_be(*d))), 0);
}

// ---- numeric / float ---------------------------------------------------------------------

TEST(MaskNumber, Text) {
  for (std::uint32_t oid : {kNumeric, kFloat4, kFloat8}) {
    SCOPED_TRACE(oid);
    EXPECT_EQ(mask(Strategy::Redact, oid, "1234.56"), "0");
    const auto h = mask(Strategy::Hash, oid, "1234.56");
    ASSERT_TRUE(h);
    ASSERT_TRUE(parse_int(*h));
    EXPECT_GE(*parse_int(*h), 0);
    EXPECT_LE(*parse_int(*h), oid == kFloat4 ? (1 << 24) : (std::int64_t(1) << 53));
    const auto d = mask(Strategy::Digits, oid, "-1234.56");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->size(), 8u);
    EXPECT_EQ((*d)[0], '-');
    EXPECT_EQ((*d)[5], '.');
    EXPECT_NE(*d, "-1234.56");
    EXPECT_FALSE(mask(partial(1, 1), oid, "1234.56"));
    EXPECT_FALSE(mask(Strategy::Redact, oid, "12,5"));
  }
  EXPECT_EQ(mask(fixed("-1.5"), kNumeric, "3"), "-1.5");
  EXPECT_FALSE(mask(fixed("1.5e3"), kNumeric, "3")) << "a strict subset of numeric_in is accepted";
  EXPECT_EQ(mask(fixed("1.5e3"), kFloat8, "3"), "1.5e3");
  EXPECT_EQ(mask(fixed("NaN"), kFloat8, "3"), "NaN");
  EXPECT_FALSE(mask(fixed("1e999"), kFloat8, "3"));
  EXPECT_FALSE(mask(fixed("1e39"), kFloat4, "3"));
  EXPECT_EQ(mask(Strategy::Digits, kNumeric, "NaN"), "NaN");
}

TEST(MaskNumber, FloatDigitsStayInRange) {
  // Exponent digits are drawn too: a result the type cannot hold becomes NULL.
  for (int i = 0; i < 200; ++i) {
    const std::string v = "3.4e+3" + std::to_string(i % 10);
    const auto r = mask(Strategy::Digits, kFloat4, v);
    if (!r) continue;
    float f = 0;
    auto [p, ec] = std::from_chars(r->data(), r->data() + r->size(), f);
    EXPECT_EQ(ec, std::errc()) << *r;
    EXPECT_EQ(p, r->data() + r->size());
  }
}

TEST(MaskNumber, Binary) {
  EXPECT_EQ(mask(Strategy::Redact, kFloat8, std::string(8, '\x40'), Format::Binary), std::string(8, '\0'));
  EXPECT_EQ(mask(Strategy::Redact, kFloat4, std::string(4, '\x40'), Format::Binary), std::string(4, '\0'));
  EXPECT_FALSE(mask(Strategy::Redact, kFloat4, std::string(8, '\x40'), Format::Binary));
  const auto h = mask(Strategy::Hash, kFloat8, std::string(8, '\x40'), Format::Binary);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size(), 8u);
  EXPECT_FALSE(mask(Strategy::Redact, kNumeric, std::string(8, '\0'), Format::Binary));
  EXPECT_FALSE(mask(Strategy::Digits, kFloat8, std::string(8, '\x40'), Format::Binary));
}

// ---- date --------------------------------------------------------------------------------

TEST(MaskDate, Text) {
  EXPECT_EQ(mask(Strategy::Redact, kDate, "1985-04-12"), "1970-01-01");
  EXPECT_EQ(mask(Strategy::Redact, kDate, "infinity"), "1970-01-01");
  const auto h = mask(Strategy::Hash, kDate, "1985-04-12");
  ASSERT_TRUE(h);
  EXPECT_TRUE(valid_date(*h)) << *h;
  EXPECT_EQ(mask(Strategy::Hash, kDate, "1985-04-12"), h);
  EXPECT_NE(mask(Strategy::Hash, kDate, "1985-04-12", Format::Text, kOtherKey), h);
  for (int day = 1; day <= 28; ++day) {
    const std::string v = "2001-02-" + std::string(day < 10 ? "0" : "") + std::to_string(day);
    const auto r = mask(Strategy::Hash, kDate, v);
    ASSERT_TRUE(r);
    EXPECT_TRUE(valid_date(*r)) << *r;
    const auto y = parse_int(r->substr(0, 4));
    EXPECT_GE(*y, 1900);
    EXPECT_LT(*y, 2100);
  }
  // Other DateStyles, impossible dates: not rewritten.
  for (std::string_view bad : {"04/12/1985", "12.04.1985", "1985-02-30", "1985-13-01", "0000-01-01", "1985-4-12", ""})
    EXPECT_FALSE(mask(Strategy::Redact, kDate, bad)) << bad;
  EXPECT_TRUE(mask(Strategy::Hash, kDate, "0044-03-15 BC"));
  EXPECT_FALSE(mask(Strategy::Digits, kDate, "1985-04-12"));
  EXPECT_FALSE(mask(partial(0, 2), kDate, "1985-04-12"));
  EXPECT_EQ(mask(fixed("2000-02-29"), kDate, "1985-04-12"), "2000-02-29");
  EXPECT_FALSE(mask(fixed("1900-02-29"), kDate, "1985-04-12"));
  EXPECT_FALSE(mask(fixed("today"), kDate, "1985-04-12"));
}

TEST(MaskDate, Binary) {
  // int32 days since 2000-01-01.
  EXPECT_EQ(mask(Strategy::Redact, kDate, be(std::uint32_t(-5000), 4), Format::Binary), be(std::uint32_t(-10957), 4));
  const std::string d1985 = be(std::uint32_t(-5377), 4);  // 1985-04-12
  const auto h = mask(Strategy::Hash, kDate, d1985, Format::Binary);
  ASSERT_TRUE(h);
  ASSERT_EQ(h->size(), 4u);
  // The seed is the ISO date: text and binary agree.
  const auto t = mask(Strategy::Hash, kDate, "1985-04-12");
  const std::int32_t days = std::int32_t(std::uint32_t(from_be(*h)));
  const auto redacted_text = mask(Strategy::Redact, kDate, "1985-04-12");
  EXPECT_EQ(redacted_text, "1970-01-01");
  // Render days back: 2000-01-01 + days.
  std::string rendered;
  {
    std::int64_t z = days + 10957 + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = unsigned(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    std::int64_t y = std::int64_t(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(y), m, d);
    rendered = buf;
  }
  EXPECT_EQ(rendered, t);
  EXPECT_FALSE(mask(Strategy::Redact, kDate, "abc", Format::Binary));
  EXPECT_TRUE(mask(Strategy::Hash, kDate, be(0x7fffffff, 4), Format::Binary));  // infinity
}

// ---- json, bytea, uuid, inet, bool, unsupported -----------------------------------------

TEST(MaskJson, TextAndBinary) {
  for (std::uint32_t oid : {kJson, kJsonb}) {
    EXPECT_EQ(mask(Strategy::Redact, oid, R"({"ssn":"123-45-6789"})"), "\"****\"");
    const auto h = mask(Strategy::Hash, oid, R"({"a":1})");
    ASSERT_TRUE(h);
    ASSERT_EQ(h->size(), 66u);
    EXPECT_EQ(h->front(), '"');
    EXPECT_EQ(h->back(), '"');
    EXPECT_TRUE(is_hex(h->substr(1, 64)));
    EXPECT_FALSE(mask(partial(1, 1), oid, R"("abc")"));
    EXPECT_FALSE(mask(Strategy::Digits, oid, "123"));
    EXPECT_EQ(mask(fixed(R"({"masked": true, "n": [1, -2.5e3, null]})"), oid, "1"),
              R"({"masked": true, "n": [1, -2.5e3, null]})");
    for (std::string_view bad : {"", "{", "[1,]", "'a'", "\"\\u0000\"", "\"\\ud800\"", "01", "nul", "{\"a\" 1}", "1 2"})
      EXPECT_FALSE(mask(fixed(std::string(bad)), oid, "1")) << bad;
    EXPECT_TRUE(mask(fixed("\"\\ud83d\\ude00\""), oid, "1"));
  }
  EXPECT_EQ(mask(Strategy::Redact, kJson, R"({"a":1})", Format::Binary), "\"****\"");
  EXPECT_EQ(mask(Strategy::Redact, kJsonb, "\x01{\"a\":1}", Format::Binary), "\x01\"****\"");
  EXPECT_FALSE(mask(Strategy::Redact, kJsonb, "{\"a\":1}", Format::Binary)) << "no version byte";
  EXPECT_EQ(mask(Strategy::Hash, kJsonb, "\x01{\"a\":1}", Format::Binary), "\x01" + *mask(Strategy::Hash, kJsonb, "{\"a\":1}"));
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_FALSE(mask(fixed(deep), kJson, "1")) << "nesting is bounded";
}

TEST(MaskBytea, TextAndBinary) {
  EXPECT_EQ(mask(Strategy::Redact, kBytea, "\\xdeadbeef"), "\\x");
  EXPECT_EQ(mask(Strategy::Redact, kBytea, "\xde\xad", Format::Binary), "");
  const auto h = mask(Strategy::Hash, kBytea, "\\xdeadbeef");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size(), 66u);
  EXPECT_EQ(h->substr(0, 2), "\\x");
  EXPECT_TRUE(is_hex(h->substr(2)));
  const auto hb = mask(Strategy::Hash, kBytea, "\xde\xad\xbe\xef", Format::Binary);
  ASSERT_TRUE(hb);
  ASSERT_EQ(hb->size(), 32u);
  std::string hex;
  for (unsigned char c : *hb) {
    const char* digits = "0123456789abcdef";
    hex.push_back(digits[c >> 4]);
    hex.push_back(digits[c & 15]);
  }
  EXPECT_EQ("\\x" + hex, *h) << "text and binary hash the same bytes";
  EXPECT_EQ(mask(fixed("\\xCAFE"), kBytea, "\\x00"), "\\xcafe");
  EXPECT_EQ(mask(fixed("\\xcafe"), kBytea, "", Format::Binary), "\xca\xfe");
  EXPECT_FALSE(mask(fixed("\\xcaf"), kBytea, "\\x00"));
  EXPECT_FALSE(mask(fixed("plain"), kBytea, "\\x00"));
  EXPECT_FALSE(mask(Strategy::Digits, kBytea, "\\x1234"));
}

TEST(MaskUuid, TextAndBinary) {
  const std::string u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
  EXPECT_EQ(mask(Strategy::Redact, kUuid, u), "00000000-0000-0000-0000-000000000000");
  const auto h = mask(Strategy::Hash, kUuid, u);
  ASSERT_TRUE(h);
  EXPECT_TRUE(is_uuid(*h));
  EXPECT_NE(*h, u);
  EXPECT_EQ(mask(Strategy::Hash, kUuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), h) << "case does not matter";
  const std::string bin("\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11", 16);
  const auto hb = mask(Strategy::Hash, kUuid, bin, Format::Binary);
  ASSERT_TRUE(hb);
  ASSERT_EQ(hb->size(), 16u);
  std::string hb_text;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) hb_text.push_back('-');
    hb_text.push_back("0123456789abcdef"[static_cast<unsigned char>((*hb)[i]) >> 4]);
    hb_text.push_back("0123456789abcdef"[static_cast<unsigned char>((*hb)[i]) & 15]);
  }
  EXPECT_EQ(hb_text, h);
  EXPECT_EQ(mask(Strategy::Redact, kUuid, bin, Format::Binary), std::string(16, '\0'));
  EXPECT_FALSE(mask(Strategy::Redact, kUuid, bin.substr(0, 15), Format::Binary));
  EXPECT_FALSE(mask(Strategy::Hash, kUuid, "not-a-uuid"));
  const auto d = mask(Strategy::Digits, kUuid, u);
  ASSERT_TRUE(d);
  EXPECT_TRUE(is_uuid(*d));
  EXPECT_NE(*d, u);
  EXPECT_EQ(mask(fixed("00000000-0000-0000-0000-000000000001"), kUuid, u), "00000000-0000-0000-0000-000000000001");
  EXPECT_FALSE(mask(fixed("0000000-0000-0000-0000-000000000001"), kUuid, u));
}

TEST(MaskInet, TextAndBinary) {
  EXPECT_EQ(mask(Strategy::Redact, kInet, "192.168.1.20"), "0.0.0.0");
  EXPECT_EQ(mask(Strategy::Redact, kInet, "2001:db8::1"), "0.0.0.0");
  EXPECT_EQ(mask(Strategy::Redact, kCidr, "10.0.0.0/8"), "0.0.0.0/32");
  EXPECT_EQ(mask(Strategy::Redact, kInet, "x", Format::Binary), std::string("\x02\x20\x00\x04\0\0\0\0", 8));
  EXPECT_EQ(mask(Strategy::Redact, kCidr, "x", Format::Binary), std::string("\x02\x20\x01\x04\0\0\0\0", 8));
  EXPECT_FALSE(mask(Strategy::Hash, kInet, "192.168.1.20"));
  EXPECT_EQ(mask(fixed("10.1.2.3/8"), kInet, "1.1.1.1"), "10.1.2.3/8");
  EXPECT_FALSE(mask(fixed("10.1.2.3/8"), kCidr, "1.1.1.1")) << "host bits set";
  EXPECT_EQ(mask(fixed("10.0.0.0/8"), kCidr, "1.1.1.1"), "10.0.0.0/8");
  EXPECT_FALSE(mask(fixed("256.0.0.1"), kInet, "1.1.1.1"));
  EXPECT_FALSE(mask(fixed("1.2.3"), kInet, "1.1.1.1"));
  EXPECT_FALSE(mask(fixed("1.2.3.4/33"), kInet, "1.1.1.1"));
}

TEST(MaskValue, BoolOnlyTakesFixed) {
  for (Strategy s : kAllStrategies)
    if (s != Strategy::Fixed) { EXPECT_FALSE(mask(s, kBool, "t")); }
  EXPECT_EQ(mask(fixed("false"), kBool, "t"), "f");
  EXPECT_EQ(mask(fixed("t"), kBool, "\x00", Format::Binary), "\x01");
  EXPECT_FALSE(mask(fixed("yes please"), kBool, "t"));
}

TEST(MaskValue, UnknownAndUnsupportedTypesBecomeNull) {
  // Time types (DateStyle), arrays, extension types (citext has no fixed OID): NULL.
  for (std::uint32_t oid : {kTime, kTimestamp, kTimestamptz, kTextArray, kVarcharArray, 0u, 12345u, 4294967295u})
    for (Strategy s : kAllStrategies)
      for (Format f : {Format::Text, Format::Binary})
        EXPECT_FALSE(mask(s == Strategy::Fixed ? fixed("x") : make(s), oid, "2024-01-01 10:00:00", f)) << oid;
}

// ---- properties --------------------------------------------------------------------------

TEST(MaskProperties, OutputNeverContainsTheWholeSensitiveValue) {
  const std::vector<std::string> secrets = {"alice.smith@example.com", "4111-1111-1111-1111", "078-05-1120",
                                            "+1 555 010 9999",         "Zoë Müller",          "password123!",
                                            "GB82WEST12345698765432",  "AKIAIOSFODNN7EXAMPLE", "日本語の秘密"};
  for (const std::string& v : secrets)
    for (std::uint32_t oid : kTextTypes)
      for (Format f : {Format::Text, Format::Binary})
        for (Strategy s : kAllStrategies) {
          if (s == Strategy::Fixed) continue;
          Spec spec = make(s);
          spec.keep_first = 2;
          spec.keep_last = 2;
          const auto r = mask(spec, oid, v, f);
          if (!r) continue;
          EXPECT_EQ(r->find(v), std::string::npos) << strategy_name(s) << " " << v << " -> " << *r;
          if (s == Strategy::Hash || s == Strategy::Redact) {
            // Only partial, keep_domain and digits keep parts; hash and redact keep none (5+ bytes).
            for (std::size_t i = 0; i + 5 <= v.size(); ++i)
              EXPECT_EQ(r->find(v.substr(i, 5)), std::string::npos) << v.substr(i, 5);
          }
        }
  const std::vector<std::pair<std::uint32_t, std::string>> typed = {
      {kInt4, "123456789"}, {kInt8, "4111111111111111"}, {kNumeric, "98765.4321"}, {kDate, "1985-04-12"},
      {kUuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {kJson, R"({"ssn":"078-05-1120"})"},
      {kBytea, "\\x0123456789abcdef"}, {kInet, "192.168.100.200"}};
  for (const auto& [oid, v] : typed)
    for (Strategy s : kAllStrategies) {
      if (s == Strategy::Fixed) continue;
      const auto r = mask(s, oid, v);
      if (r) {
        EXPECT_EQ(r->find(v), std::string::npos) << oid << " " << strategy_name(s);
      }
    }
}

// Whatever the bytes, every type/strategy/format gives NULL or something of the right shape.
TEST(MaskProperties, TotalOnArbitraryBytes) {
  std::mt19937 rng(12345);
  const std::vector<std::uint32_t> oids = {kBool,   kBytea, kName, kInt8,   kInt2, kInt4,  kText,       kOid,
                                           kJson,   kCidr,  kFloat4, kFloat8, kUnknown, kInet, kBpchar, kVarchar,
                                           kDate,   kTime,  kTimestamp, kNumeric, kUuid, kJsonb, kTextArray, 99999};
  const std::vector<std::string> alphabet = {"0", "1", "9", "-", ".", "e", "@", "a", "\\", "x", "\"", "{", "}",
                                             "é", "\xff", "\x80", std::string(1, '\0'), ":", "/", " "};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string v;
    const int len = int(rng() % 24);
    for (int k = 0; k < len; ++k) v += alphabet[rng() % alphabet.size()];
    if (rng() % 4 == 0) {
      v.clear();
      for (int k = 0; k < len; ++k) v.push_back(char(rng()));
    }
    for (std::uint32_t oid : oids)
      for (Strategy s : kAllStrategies)
        for (Format f : {Format::Text, Format::Binary}) {
          Spec spec = make(s);
          spec.keep_first = int(rng() % 4) - 1;
          spec.keep_last = int(rng() % 4) - 1;
          spec.fixed = v;
          const auto r = mask(spec, oid, v, f);
          if (!r) continue;
          const bool text_type = oid == kText || oid == kVarchar || oid == kBpchar || oid == kName || oid == kUnknown;
          const bool int_type = oid == kInt2 || oid == kInt4 || oid == kInt8 || oid == kOid;
          if (text_type) { EXPECT_TRUE(valid_utf8(*r)) << oid << " " << strategy_name(s); }
          if (f == Format::Text) {
            if (int_type) { EXPECT_TRUE(parse_int(*r).has_value()) << *r; }
            if (oid == kUuid) { EXPECT_TRUE(is_uuid(*r)) << *r; }
            if (oid == kDate) { EXPECT_TRUE(valid_date(r->substr(0, 10))) << *r; }
          } else {
            std::size_t width = 0;
            if (oid == kInt2) width = 2;
            if (oid == kInt4 || oid == kOid || oid == kDate) width = 4;
            if (oid == kInt8) width = 8;
            if (oid == kUuid) width = 16;
            if (width != 0) { EXPECT_EQ(r->size(), width); }
          }
        }
  }
}

}  // namespace
}  // namespace gh::masking
