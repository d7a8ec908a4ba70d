#include "masking/value.h"

#include <openssl/sha.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace gh::masking {

namespace {

// PostgreSQL built-in type OIDs (pg_type.dat); anything else is masked to NULL.
enum : std::uint32_t {
  kBool = 16,
  kBytea = 17,
  kName = 19,
  kInt8 = 20,
  kInt2 = 21,
  kInt4 = 23,
  kText = 25,
  kOid = 26,
  kJson = 114,
  kCidr = 650,
  kFloat4 = 700,
  kFloat8 = 701,
  kUnknown = 705,
  kInet = 869,
  kBpchar = 1042,
  kVarchar = 1043,
  kDate = 1082,
  kNumeric = 1700,
  kUuid = 2950,
  kJsonb = 3802,
};

constexpr std::string_view kRedacted = "****";
constexpr std::size_t kNameMax = 63;  // NAMEDATALEN - 1
constexpr char kHex[] = "0123456789abcdef";

using Digest = std::array<unsigned char, 32>;

// HMAC-SHA256 (RFC 2104) from OpenSSL's SHA-256 with the key's inner and outer pad blocks hashed
// once per thread and key: each value then costs copying two hash states and finishing them, not
// a MAC initialisation (EVP_MAC_init re-derives both pads: 250 ns a value, the bulk of masking a
// row with three hashed columns). The low-level SHA256_* calls are deprecated in OpenSSL 3 but
// kept; they are what lets a state be copied as a plain struct, without an allocation. Unit tests
// hold the output to RFC 4231's test vectors.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
struct HmacState {
  std::string key;
  SHA256_CTX inner{};
  SHA256_CTX outer{};
  bool keyed = false;
};

bool hmac_sha256(std::string_view key, std::string_view msg, Digest& out) {
  // An empty key would make hash/digits a plain, dictionary-attackable digest: refuse (NULL).
  if (key.empty()) return false;
  thread_local HmacState st;
  if (!st.keyed || st.key != key) {
    unsigned char block[64] = {};
    if (key.size() > sizeof block) {
      SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), block);
    } else {
      std::memcpy(block, key.data(), key.size());
    }
    unsigned char pad[64];
    for (std::size_t i = 0; i < 64; ++i) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&st.inner);
    SHA256_Update(&st.inner, pad, sizeof pad);
    for (std::size_t i = 0; i < 64; ++i) pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&st.outer);
    SHA256_Update(&st.outer, pad, sizeof pad);
    st.key.assign(key);
    st.keyed = true;
  }
  SHA256_CTX c = st.inner;
  SHA256_Update(&c, msg.data(), msg.size());
  unsigned char inner[32];
  SHA256_Final(inner, &c);
  c = st.outer;
  SHA256_Update(&c, inner, sizeof inner);
  SHA256_Final(out.data(), &c);
  return true;
}
#pragma GCC diagnostic pop

std::uint64_t load_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void append_hex(std::string& out, const unsigned char* p, std::size_t n) {
  const std::size_t at = out.size();
  out.resize(at + 2 * n);
  char* w = out.data() + at;
  for (std::size_t i = 0; i < n; ++i) {
    w[2 * i] = kHex[p[i] >> 4];
    w[2 * i + 1] = kHex[p[i] & 15];
  }
}

void append_be(std::string& out, std::uint64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) out.push_back(char((v >> (8 * i)) & 0xff));
}

std::uint64_t load_be(std::string_view v) {
  std::uint64_t r = 0;
  for (char c : v) r = (r << 8) | static_cast<unsigned char>(c);
  return r;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF) and no NUL: what a
// PostgreSQL text value in a UTF8 database can hold. Counts code points.
bool valid_utf8(std::string_view s, std::size_t* code_points = nullptr) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0, cps = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
    } else if (c >= 0xC2 && c <= 0xDF) {
      if (i + 1 >= n || (p[i + 1] & 0xC0) != 0x80) return false;
      i += 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      if (i + 2 >= n || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80) return false;
      if (c == 0xE0 && p[i + 1] < 0xA0) return false;   // overlong
      if (c == 0xED && p[i + 1] >= 0xA0) return false;  // surrogates
      i += 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      if (i + 3 >= n || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80 || (p[i + 3] & 0xC0) != 0x80)
        return false;
      if (c == 0xF0 && p[i + 1] < 0x90) return false;   // overlong
      if (c == 0xF4 && p[i + 1] >= 0x90) return false;  // above U+10FFFF
      i += 4;
    } else {
      return false;
    }
    ++cps;
  }
  if (code_points != nullptr) *code_points = cps;
  return true;
}

// Length of the code point starting at s[i] in valid UTF-8.
std::size_t cp_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

// A deterministic stream of pseudo-random bytes: HMAC(key, seed), then HMAC(key, previous block).
class ByteStream {
 public:
  ByteStream(std::string_view key) : key_(key) {}
  bool start(std::string_view seed) {
    pos_ = 0;
    return hmac_sha256(key_, seed, block_);
  }
  bool next(unsigned char& b) {
    if (pos_ == block_.size()) {
      const Digest prev = block_;
      if (!hmac_sha256(key_, std::string_view(reinterpret_cast<const char*>(prev.data()), prev.size()), block_))
        return false;
      pos_ = 0;
    }
    b = block_[pos_++];
    return true;
  }
  // Uniform digit in [lo, 9].
  bool digit(int lo, char& d) {
    const int span = 10 - lo;
    const int limit = 256 - 256 % span;
    for (;;) {
      unsigned char b = 0;
      if (!next(b)) return false;
      if (b < limit) {
        d = char('0' + lo + b % span);
        return true;
      }
    }
  }

 private:
  std::string_view key_;
  Digest block_{};
  std::size_t pos_ = 0;
};

// Replaces every ASCII digit of `s` with one drawn from HMAC(key, seed). When `first_nonzero`, a
// leading run of two or more digits starts with 1-9 (a number keeps its digit count without a
// leading zero). A result equal to the input (likely for one-digit values) is drawn again, so the
// raw value is not shown; after a few equal draws the value is refused (NULL).
bool map_digits(std::string_view key, std::string_view seed, std::string_view s, bool first_nonzero,
                std::string& out) {
  std::size_t lead = 0;
  std::size_t start = (!s.empty() && s[0] == '-') ? 1 : 0;
  while (start + lead < s.size() && is_digit(s[start + lead])) ++lead;
  bool has_digit = lead > 0;
  for (char c : s) has_digit = has_digit || is_digit(c);
  ByteStream stream(key);
  if (!stream.start(seed)) return false;
  const std::size_t at = out.size();
  for (int attempt = 0; attempt < 8; ++attempt) {
    out.resize(at);
    out.append(s);
    char* w = out.data() + at;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (!is_digit(s[i])) continue;
      const int lo = (first_nonzero && i == start && lead >= 2) ? 1 : 0;
      if (!stream.digit(lo, w[i])) return false;
    }
    if (!has_digit || std::string_view(out).substr(at) != s) return true;
  }
  out.resize(at);
  return false;
}

// ---- integers ----------------------------------------------------------------------------

struct IntType {
  int width;  // binary width
  std::int64_t min;
  std::int64_t max;
  std::uint64_t hash_mask;  // hash results are non-negative: ids stay looking like ids
};

IntType int_type(std::uint32_t oid) {
  switch (oid) {
    case kInt2: return {2, -32768, 32767, 0x7fff};
    case kInt4: return {4, std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max(), 0x7fffffff};
    case kOid: return {4, 0, 4294967295LL, 0xffffffffULL};
    default: return {8, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(), 0x7fffffffffffffffULL};
  }
}

// Strict decimal integer: -?[0-9]+, in the type's range.
bool parse_int(std::string_view s, const IntType& t, std::int64_t& v) {
  if (s.empty() || s.size() > 40) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') return false;
  auto [p, ec] = std::from_chars(b, e, v);
  return ec == std::errc() && p == e && v >= t.min && v <= t.max;
}

bool decode_binary_int(std::string_view s, const IntType& t, std::int64_t& v) {
  if (s.size() != std::size_t(t.width)) return false;
  const std::uint64_t u = load_be(s);
  if (t.min == 0) {
    v = std::int64_t(u);  // oid: unsigned 32-bit
  } else if (t.width == 2) {
    v = std::int16_t(std::uint16_t(u));
  } else if (t.width == 4) {
    v = std::int32_t(std::uint32_t(u));
  } else {
    v = std::int64_t(u);
  }
  return true;
}

void emit_int(std::int64_t v, const IntType& t, Format f, std::string& out) {
  if (f == Format::Binary) {
    append_be(out, std::uint64_t(v), t.width);
  } else {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

bool mask_int(const Spec& spec, std::string_view key, std::uint32_t oid, Format f, std::string_view value,
              std::string& out) {
  const IntType t = int_type(oid);
  if (spec.strategy == Strategy::Fixed) {
    std::int64_t v = 0;
    if (!parse_int(spec.fixed, t, v)) return false;
    emit_int(v, t, f, out);
    return true;
  }
  std::int64_t v = 0;
  if (f == Format::Binary ? !decode_binary_int(value, t, v) : !parse_int(value, t, v)) return false;
  char canon[24];
  const auto canon_end = std::to_chars(canon, canon + sizeof canon, v).ptr;
  const std::string_view canonical(canon, std::size_t(canon_end - canon));  // the same seed in text and binary
  switch (spec.strategy) {
    case Strategy::Redact: emit_int(0, t, f, out); return true;
    case Strategy::Hash: {
      Digest d;
      if (!hmac_sha256(key, canonical, d)) return false;
      emit_int(std::int64_t(load_u64(d.data()) & t.hash_mask), t, f, out);
      return true;
    }
    case Strategy::Digits: {
      std::string mapped;
      if (!map_digits(key, canonical, canonical, true, mapped)) return false;
      // At most 20 digits: fits in __int128; clamp into the type's range.
      __int128 m = 0;
      const bool neg = mapped[0] == '-';
      for (char c : mapped)
        if (is_digit(c)) m = m * 10 + (c - '0');
      if (neg) m = -m;
      if (m < t.min) m = t.min;
      if (m > t.max) m = t.max;
      emit_int(std::int64_t(m), t, f, out);
      return true;
    }
    default: return false;
  }
}

// ---- numeric / float ---------------------------------------------------------------------

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

bool is_special_float(std::string_view s) { return s == "NaN" || s == "Infinity" || s == "-Infinity"; }

// numeric_out's shapes: -?digits(.digits)? or NaN/Infinity/-Infinity.
bool numeric_shape(std::string_view s) {
  if (is_special_float(s)) return true;
  if (s.size() > 200000) return false;
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  const auto dot = s.find('.');
  if (dot == std::string_view::npos) return all_digits(s);
  return all_digits(s.substr(0, dot)) && all_digits(s.substr(dot + 1));
}

// A finite float the type's input accepts, or one of its special spellings.
bool float_ok(std::string_view s, bool single) {
  if (is_special_float(s)) return true;
  if (s.empty() || s.size() > 400 || s[0] == '+') return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (single) {
    float v = 0;
    auto [p, ec] = std::from_chars(b, e, v);
    return ec == std::errc() && p == e && std::isfinite(v);
  }
  double v = 0;
  auto [p, ec] = std::from_chars(b, e, v);
  return ec == std::errc() && p == e && std::isfinite(v);
}

bool mask_number(const Spec& spec, std::string_view key, std::uint32_t oid, Format f, std::string_view value,
                 std::string& out) {
  const bool single = oid == kFloat4;
  const bool is_float = oid != kNumeric;
  // Hash results stay integers that a float represents exactly (2^24 / 2^53).
  const std::uint64_t hash_mask = single ? 0xffffffULL : 0x1fffffffffffffULL;
  if (f == Format::Binary) {
    if (!is_float) return false;  // numeric's binary form (base-10000 digits) is not written here
    const std::size_t width = single ? 4 : 8;
    if (spec.strategy == Strategy::Redact) {
      if (value.size() != width) return false;
      out.append(width, '\0');  // +0.0
      return true;
    }
    if (spec.strategy == Strategy::Hash) {
      if (value.size() != width) return false;
      Digest d;
      if (!hmac_sha256(key, value, d)) return false;
      const std::uint64_t h = load_u64(d.data()) & hash_mask;
      if (single) {
        const float x = float(h);
        std::uint32_t bits;
        std::memcpy(&bits, &x, 4);
        append_be(out, bits, 4);
      } else {
        const double x = double(h);
        std::uint64_t bits;
        std::memcpy(&bits, &x, 8);
        append_be(out, bits, 8);
      }
      return true;
    }
    return false;
  }
  auto ok = [&](std::string_view s) { return is_float ? float_ok(s, single) : numeric_shape(s); };
  switch (spec.strategy) {
    case Strategy::Fixed:
      if (!ok(spec.fixed)) return false;
      out.append(spec.fixed);
      return true;
    case Strategy::Redact:
      if (!ok(value)) return false;
      out.push_back('0');
      return true;
    case Strategy::Hash: {
      if (!ok(value)) return false;
      Digest d;
      if (!hmac_sha256(key, value, d)) return false;
      char buf[24];
      auto r = std::to_chars(buf, buf + sizeof buf, load_u64(d.data()) & hash_mask);
      out.append(buf, r.ptr);
      return true;
    }
    case Strategy::Digits: {
      if (!ok(value)) return false;
      const std::size_t at = out.size();
      if (!map_digits(key, value, value, true, out)) return false;
      if (!ok(std::string_view(out).substr(at))) {  // e.g. a float exponent pushed out of range
        out.resize(at);
        return false;
      }
      return true;
    }
    default: return false;
  }
}

// ---- date --------------------------------------------------------------------------------

// Days since 1970-01-01 <-> proleptic Gregorian (H. Hinnant's algorithms).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = unsigned(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + std::int64_t(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = unsigned(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = std::int64_t(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// The ISO DateStyle shape (YYYY-MM-DD, optional " BC") of a real calendar date, or infinity.
// Other DateStyles are not rewritten (NULL): the client expects the session's shape.
bool parse_iso_date(std::string_view s, std::int64_t& days) {
  bool bc = false;
  if (s.size() > 3 && s.substr(s.size() - 3) == " BC") {
    bc = true;
    s.remove_suffix(3);
  }
  const auto dash = s.find('-');
  if (dash == std::string_view::npos || dash < 4 || dash > 7 || s.size() != dash + 6 || s[dash + 3] != '-')
    return false;
  const std::string_view ys = s.substr(0, dash), ms = s.substr(dash + 1, 2), ds = s.substr(dash + 4, 2);
  if (!all_digits(ys) || !all_digits(ms) || !all_digits(ds)) return false;
  std::int64_t y = 0;
  for (char c : ys) y = y * 10 + (c - '0');
  const unsigned m = unsigned((ms[0] - '0') * 10 + (ms[1] - '0'));
  const unsigned d = unsigned((ds[0] - '0') * 10 + (ds[1] - '0'));
  if (y == 0 || m < 1 || m > 12 || d < 1) return false;
  if (bc) y = 1 - y;
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (d > kDays[m - 1] + (m == 2 && leap(y) ? 1 : 0)) return false;
  days = days_from_civil(y, m, d);
  return true;
}

constexpr std::int64_t kPgEpochDays = 10957;  // 2000-01-01 - 1970-01-01

void emit_date(std::int64_t days, Format f, std::string& out) {
  if (f == Format::Binary) {
    append_be(out, std::uint64_t(std::int64_t(days - kPgEpochDays)), 4);
    return;
  }
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  const bool bc = y <= 0;
  if (bc) y = 1 - y;
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u%s", static_cast<long long>(y), m, d, bc ? " BC" : "");
  out.append(buf, std::size_t(n));
}

bool mask_date(const Spec& spec, std::string_view key, Format f, std::string_view value, std::string& out) {
  // PostgreSQL's date range is 4713 BC .. 5874897 AD; inputs from the server are inside it.
  if (spec.strategy == Strategy::Fixed) {
    std::int64_t days = 0;
    if (!parse_iso_date(spec.fixed, days) || days < days_from_civil(-4712, 11, 24) ||
        days > days_from_civil(5874897, 12, 31))
      return false;
    emit_date(days, f, out);
    return true;
  }
  if (spec.strategy != Strategy::Redact && spec.strategy != Strategy::Hash) return false;
  // The hash seed is the ISO text, so text and binary columns of the same date agree.
  std::string seed;
  if (f == Format::Binary) {
    if (value.size() != 4) return false;
    const std::int32_t pg = std::int32_t(std::uint32_t(load_be(value)));
    if (pg == std::numeric_limits<std::int32_t>::max()) {
      seed = "infinity";
    } else if (pg == std::numeric_limits<std::int32_t>::min()) {
      seed = "-infinity";
    } else {
      emit_date(std::int64_t(pg) + kPgEpochDays, Format::Text, seed);
    }
  } else {
    std::int64_t days = 0;
    if (value != "infinity" && value != "-infinity" && !parse_iso_date(value, days)) return false;
    seed.assign(value);
  }
  if (spec.strategy == Strategy::Redact) {
    emit_date(0, f, out);  // 1970-01-01
    return true;
  }
  Digest d;
  if (!hmac_sha256(key, seed, d)) return false;
  const std::int64_t lo = days_from_civil(1900, 1, 1), hi = days_from_civil(2100, 1, 1);
  emit_date(lo + std::int64_t(load_u64(d.data()) % std::uint64_t(hi - lo)), f, out);
  return true;
}

// ---- json --------------------------------------------------------------------------------

// Strict RFC 8259 JSON that both json_in and jsonb_in accept (no \u0000, surrogates paired).
class JsonChecker {
 public:
  explicit JsonChecker(std::string_view s) : s_(s) {}
  bool run() {
    ws();
    if (!value(0)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  bool value(int depth) {
    if (depth > 64 || i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      ws();
      if (peek('}')) return ++i_, true;
      for (;;) {
        ws();
        if (!peek('"') || !string()) return false;
        ws();
        if (!peek(':')) return false;
        ++i_;
        ws();
        if (!value(depth + 1)) return false;
        ws();
        if (peek('}')) return ++i_, true;
        if (!peek(',')) return false;
        ++i_;
      }
    }
    if (c == '[') {
      ++i_;
      ws();
      if (peek(']')) return ++i_, true;
      for (;;) {
        ws();
        if (!value(depth + 1)) return false;
        ws();
        if (peek(']')) return ++i_, true;
        if (!peek(',')) return false;
        ++i_;
      }
    }
    if (c == '"') return string();
    if (c == '-' || is_digit(c)) return number();
    for (std::string_view lit : {"true", "false", "null"}) {
      if (s_.substr(i_, lit.size()) == lit) {
        i_ += lit.size();
        return true;
      }
    }
    return false;
  }
  bool string() {
    ++i_;
    while (i_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') return ++i_, true;
      if (c < 0x20) return false;
      if (c != '\\') {
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      const char e = s_[i_++];
      if (e == 'u') {
        unsigned u = 0;
        if (!hex4(u) || u == 0) return false;
        if (u >= 0xDC00 && u <= 0xDFFF) return false;
        if (u >= 0xD800 && u <= 0xDBFF) {
          unsigned lo = 0;
          if (s_.substr(i_, 2) != "\\u") return false;
          i_ += 2;
          if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
        }
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  }
  bool hex4(unsigned& u) {
    if (i_ + 4 > s_.size()) return false;
    for (int k = 0; k < 4; ++k) {
      const int h = hex_value(s_[i_++]);
      if (h < 0) return false;
      u = u * 16 + unsigned(h);
    }
    return true;
  }
  bool number() {
    if (peek('-')) ++i_;
    if (peek('0')) {
      ++i_;
    } else if (!digits()) {
      return false;
    }
    if (peek('.')) {
      ++i_;
      if (!digits()) return false;
    }
    if (peek('e') || peek('E')) {
      ++i_;
      if (peek('+') || peek('-')) ++i_;
      if (!digits()) return false;
    }
    return true;
  }
  bool digits() {
    const std::size_t from = i_;
    while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    return i_ > from;
  }
  bool peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  std::string_view s_;
  std::size_t i_ = 0;
};

bool mask_json(const Spec& spec, std::string_view key, std::uint32_t oid, Format f, std::string_view value,
               std::string& out) {
  // jsonb's binary form is a version byte (1) and the text.
  const bool versioned = oid == kJsonb && f == Format::Binary;
  if (versioned) {
    if (value.empty() || value[0] != '\x01') return false;
    value.remove_prefix(1);
  }
  switch (spec.strategy) {
    case Strategy::Fixed:
      if (!valid_utf8(spec.fixed) || !JsonChecker(spec.fixed).run()) return false;
      if (versioned) out.push_back('\x01');
      out.append(spec.fixed);
      return true;
    case Strategy::Redact:
      if (versioned) out.push_back('\x01');
      out.append("\"****\"");
      return true;
    case Strategy::Hash: {
      Digest d;
      if (!hmac_sha256(key, value, d)) return false;
      if (versioned) out.push_back('\x01');
      out.push_back('"');
      append_hex(out, d.data(), d.size());
      out.push_back('"');
      return true;
    }
    default: return false;
  }
}

// ---- bytea -------------------------------------------------------------------------------

// "\x" followed by pairs of hex digits (bytea_output = hex).
bool decode_bytea_hex(std::string_view s, std::string* bytes) {
  if (s.size() < 2 || s[0] != '\\' || s[1] != 'x' || s.size() % 2 != 0) return false;
  for (std::size_t i = 2; i < s.size(); i += 2) {
    const int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    if (bytes != nullptr) bytes->push_back(char(hi * 16 + lo));
  }
  return true;
}

bool mask_bytea(const Spec& spec, std::string_view key, Format f, std::string_view value, std::string& out) {
  switch (spec.strategy) {
    case Strategy::Fixed: {
      std::string bytes;
      if (!decode_bytea_hex(spec.fixed, &bytes)) return false;
      if (f == Format::Binary) {
        out.append(bytes);
      } else {
        out.append("\\x");
        append_hex(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
      }
      return true;
    }
    case Strategy::Redact:
      if (f == Format::Text) out.append("\\x");
      return true;
    case Strategy::Hash: {
      // Seed: the bytes themselves (hex text decoded), so both formats agree; an escape-format
      // text value (bytea_output = escape) is hashed as its text.
      std::string bytes;
      std::string_view seed = value;
      if (f == Format::Text && decode_bytea_hex(value, &bytes)) seed = bytes;
      Digest d;
      if (!hmac_sha256(key, seed, d)) return false;
      if (f == Format::Binary) {
        out.append(reinterpret_cast<const char*>(d.data()), d.size());
      } else {
        out.append("\\x");
        append_hex(out, d.data(), d.size());
      }
      return true;
    }
    default: return false;
  }
}

// ---- uuid --------------------------------------------------------------------------------

bool parse_uuid(std::string_view s, unsigned char (&b)[16]) {
  if (s.size() != 36) return false;
  std::size_t k = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
      ++i;
      continue;
    }
    const int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    b[k++] = static_cast<unsigned char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

void format_uuid(const unsigned char* b, std::string& out) {
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 15]);
  }
}

bool mask_uuid(const Spec& spec, std::string_view key, Format f, std::string_view value, std::string& out) {
  auto emit = [&](const unsigned char* b) {
    if (f == Format::Binary)
      out.append(reinterpret_cast<const char*>(b), 16);
    else
      format_uuid(b, out);
  };
  unsigned char b[16] = {};
  if (spec.strategy == Strategy::Fixed) {
    if (!parse_uuid(spec.fixed, b)) return false;
    emit(b);
    return true;
  }
  if (f == Format::Binary) {
    if (value.size() != 16) return false;
    std::memcpy(b, value.data(), 16);
  } else if (!parse_uuid(value, b)) {
    return false;
  }
  std::string canonical;  // lowercase text: the seed in both formats
  canonical.reserve(36);
  format_uuid(b, canonical);
  switch (spec.strategy) {
    case Strategy::Redact: {
      const unsigned char zero[16] = {};
      emit(zero);
      return true;
    }
    case Strategy::Hash: {
      Digest d;
      if (!hmac_sha256(key, canonical, d)) return false;
      emit(d.data());
      return true;
    }
    case Strategy::Digits:
      // Decimal digits replaced, hex letters and dashes kept: still a uuid.
      if (f == Format::Binary) return false;
      return map_digits(key, canonical, canonical, false, out);
    default: return false;
  }
}

// ---- inet / cidr -------------------------------------------------------------------------

// Dotted-quad IPv4 with an optional /0..32; for cidr no bits may be set right of the mask.
bool parse_ipv4(std::string_view s, bool cidr, unsigned char (&a)[4], int& bits) {
  bits = 32;
  const auto slash = s.find('/');
  if (slash != std::string_view::npos) {
    const std::string_view b = s.substr(slash + 1);
    if (b.empty() || b.size() > 2 || !all_digits(b)) return false;
    bits = std::stoi(std::string(b));
    if (bits > 32) return false;
    s = s.substr(0, slash);
  }
  for (int k = 0; k < 4; ++k) {
    const auto dot = k < 3 ? s.find('.') : s.size();
    if (dot == std::string_view::npos) return false;
    const std::string_view part = s.substr(0, dot);
    if (part.empty() || part.size() > 3 || !all_digits(part)) return false;
    const int v = std::stoi(std::string(part));
    if (v > 255) return false;
    a[k] = static_cast<unsigned char>(v);
    s = k < 3 ? s.substr(dot + 1) : std::string_view();
  }
  if (cidr) {
    const std::uint32_t addr = std::uint32_t(load_be(std::string_view(reinterpret_cast<char*>(a), 4)));
    const std::uint32_t host = bits == 32 ? 0 : (0xffffffffU >> bits);
    if ((addr & host) != 0) return false;
  }
  return true;
}

void emit_ipv4(const unsigned char (&a)[4], int bits, bool cidr, Format f, std::string& out) {
  if (f == Format::Binary) {
    // inet_send: family (PGSQL_AF_INET = AF_INET + 0 = 2), bits, is_cidr, address length, address.
    out.push_back('\x02');
    out.push_back(char(bits));
    out.push_back(cidr ? '\x01' : '\x00');
    out.push_back('\x04');
    out.append(reinterpret_cast<const char*>(a), 4);
    return;
  }
  char buf[24];
  int n = std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
  out.append(buf, std::size_t(n));
  if (cidr || bits != 32) {
    n = std::snprintf(buf, sizeof buf, "/%d", bits);
    out.append(buf, std::size_t(n));
  }
}

bool mask_inet(const Spec& spec, std::uint32_t oid, Format f, std::string& out) {
  const bool cidr = oid == kCidr;
  unsigned char a[4] = {};
  int bits = 32;
  if (spec.strategy == Strategy::Fixed) {
    if (!parse_ipv4(spec.fixed, cidr, a, bits)) return false;
  } else if (spec.strategy != Strategy::Redact) {
    return false;
  }
  emit_ipv4(a, bits, cidr, f, out);
  return true;
}

// ---- text --------------------------------------------------------------------------------

bool text_type(std::uint32_t oid) {
  return oid == kText || oid == kVarchar || oid == kBpchar || oid == kName || oid == kUnknown;
}

// local@domain with one '@', a non-empty local part, a dotted domain of letters, digits, '-'
// and non-ASCII (IDN) characters.
bool split_email(std::string_view s, std::string_view& domain) {
  const auto at = s.find('@');
  if (at == std::string_view::npos || at == 0 || s.find('@', at + 1) != std::string_view::npos) return false;
  for (std::size_t i = 0; i < at; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c <= 0x20 || c == 0x7f) return false;
  }
  domain = s.substr(at + 1);
  if (domain.empty() || domain.size() > 253 || domain.front() == '.' || domain.back() == '.' ||
      domain.find('.') == std::string_view::npos || domain.find("..") != std::string_view::npos)
    return false;
  for (char ch : domain) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool ok = c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(ch) || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

void partial(const Spec& spec, std::string_view s, std::size_t cps, std::string& out) {
  const std::size_t kf = spec.keep_first > 0 ? std::size_t(spec.keep_first) : 0;
  const std::size_t kl = spec.keep_last > 0 ? std::size_t(spec.keep_last) : 0;
  if (cps <= kf || cps - kf <= kl) {  // nothing would be hidden: hide it all
    out.append(cps, '*');
    return;
  }
  std::size_t head = 0;
  for (std::size_t k = 0; k < kf; ++k) head += cp_len(static_cast<unsigned char>(s[head]));
  std::size_t tail = s.size();
  for (std::size_t k = 0; k < kl; ++k) {
    do --tail;
    while ((static_cast<unsigned char>(s[tail]) & 0xC0) == 0x80);
  }
  out.append(s.substr(0, head));
  out.append(cps - kf - kl, '*');
  out.append(s.substr(tail));
}

bool mask_text(const Spec& spec, std::string_view key, std::uint32_t oid, std::string_view value, std::string& out) {
  const std::size_t at = out.size();
  std::size_t cps = 0;
  // Only the strategies that keep parts of the input look at it as text.
  const bool keeps = spec.strategy == Strategy::Partial || spec.strategy == Strategy::KeepDomain ||
                     spec.strategy == Strategy::Digits;
  const bool valid = keeps && valid_utf8(value, &cps);
  switch (spec.strategy) {
    case Strategy::Fixed:
      if (!valid_utf8(spec.fixed)) return false;
      out.append(spec.fixed);
      break;
    case Strategy::Redact: out.append(kRedacted); break;
    case Strategy::Hash: {
      Digest d;
      if (!hmac_sha256(key, value, d)) return false;
      append_hex(out, d.data(), d.size());
      break;
    }
    // The strategies that keep parts of the input never keep bytes that are not valid text.
    case Strategy::Partial:
      if (valid)
        partial(spec, value, cps, out);
      else
        out.append(kRedacted);
      break;
    case Strategy::KeepDomain: {
      std::string_view domain;
      out.append(kRedacted);
      if (valid && split_email(value, domain)) {
        out.push_back('@');
        out.append(domain);
      }
      break;
    }
    case Strategy::Digits:
      // A value without digits has no format to preserve and would be shown whole: redact it.
      if (!valid || value.find_first_of("0123456789") == std::string_view::npos) {
        out.append(kRedacted);
      } else if (!map_digits(key, value, value, false, out)) {
        return false;
      }
      break;
    default: return false;
  }
  if (oid == kName && out.size() - at > kNameMax) {
    // name_in truncates at 63 bytes; cut at a code point boundary.
    std::size_t cut = at + kNameMax;
    while (cut > at && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return true;
}

bool mask_bool(const Spec& spec, Format f, std::string& out) {
  if (spec.strategy != Strategy::Fixed) return false;
  bool v;
  if (spec.fixed == "t" || spec.fixed == "true") {
    v = true;
  } else if (spec.fixed == "f" || spec.fixed == "false") {
    v = false;
  } else {
    return false;
  }
  if (f == Format::Binary)
    out.push_back(v ? '\x01' : '\x00');
  else
    out.push_back(v ? 't' : 'f');
  return true;
}

bool dispatch(const Spec& spec, std::string_view key, std::uint32_t oid, Format f, std::string_view value,
              std::string& out) {
  if (spec.strategy == Strategy::Null) return false;
  if (text_type(oid)) return mask_text(spec, key, oid, value, out);  // binary form = the text bytes
  switch (oid) {
    case kInt2:
    case kInt4:
    case kInt8:
    case kOid: return mask_int(spec, key, oid, f, value, out);
    case kNumeric:
    case kFloat4:
    case kFloat8: return mask_number(spec, key, oid, f, value, out);
    case kDate: return mask_date(spec, key, f, value, out);
    case kJson:
    case kJsonb: return mask_json(spec, key, oid, f, value, out);
    case kBytea: return mask_bytea(spec, key, f, value, out);
    case kUuid: return mask_uuid(spec, key, f, value, out);
    case kInet:
    case kCidr: return mask_inet(spec, oid, f, out);
    case kBool: return mask_bool(spec, f, out);
    default: return false;  // time, timestamps, arrays, extension types...: NULL is always valid
  }
}

}  // namespace

bool is_text_type(std::uint32_t type_oid) { return text_type(type_oid); }

std::string_view strategy_name(Strategy s) {
  switch (s) {
    case Strategy::Redact: return "redact";
    case Strategy::Partial: return "partial";
    case Strategy::Hash: return "hash";
    case Strategy::KeepDomain: return "keep_domain";
    case Strategy::Null: return "null";
    case Strategy::Fixed: return "fixed";
    case Strategy::Digits: return "digits";
  }
  return "?";
}

std::optional<Strategy> strategy_from_name(std::string_view name) {
  for (Strategy s : {Strategy::Redact, Strategy::Partial, Strategy::Hash, Strategy::KeepDomain, Strategy::Null,
                     Strategy::Fixed, Strategy::Digits})
    if (strategy_name(s) == name) return s;
  return std::nullopt;
}

bool mask_value(const Spec& spec, std::string_view hmac_key, std::uint32_t type_oid, Format format,
                std::string_view value, std::string& out) {
  const std::size_t at = out.size();
  bool ok = false;
  try {
    ok = dispatch(spec, hmac_key, type_oid, format, value, out);
  } catch (...) {  // std::bad_alloc on a huge value: NULL rather than an exception
    ok = false;
  }
  if (!ok) out.resize(at);
  return ok;
}

}  // namespace gh::masking
