#include "audit/record.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <type_traits>
#include <utility>
#include <cstring>
#include <ctime>
#include <limits>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "audit/event.h"

namespace gh::audit {

namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 14> kTypeNames = {
    "start", "stop", "reload", "connect", "connect_failed", "disconnect", "statement",
    "result", "admin", "approval", "grant", "retention", "checkpoint", "cancel"};

bool raw_from_hex(std::string_view hex_text, unsigned char* out, std::size_t n) {
  if (hex_text.size() != n * 2) return false;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const int hi = val(hex_text[2 * i]), lo = val(hex_text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

void two_digits(char* p, int v) {
  p[0] = char('0' + v / 10);
  p[1] = char('0' + v % 10);
}

// "2026-12-04T21:46:42.123456Z". The date and time of day change once a second: gmtime_r runs
// then, not per record.
std::string rfc3339(std::int64_t us) {
  std::int64_t secs = us / 1'000'000, frac = us % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  thread_local std::int64_t cached_secs = std::numeric_limits<std::int64_t>::min();
  thread_local char cached[20];  // "YYYY-MM-DDTHH:MM:SS"
  if (secs != cached_secs) {
    const std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    const int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999) {
      char buf[96];  // room for any int fields, so the compiler can see nothing is cut
      std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year, tm.tm_mon + 1, tm.tm_mday,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, int(frac));
      return buf;
    }
    two_digits(cached, year / 100);
    two_digits(cached + 2, year % 100);
    cached[4] = '-';
    two_digits(cached + 5, tm.tm_mon + 1);
    cached[7] = '-';
    two_digits(cached + 8, tm.tm_mday);
    cached[10] = 'T';
    two_digits(cached + 11, tm.tm_hour);
    cached[13] = ':';
    two_digits(cached + 14, tm.tm_min);
    cached[16] = ':';
    two_digits(cached + 17, tm.tm_sec);
    cached[19] = '.';
    cached_secs = secs;
  }
  std::string out(27, 'Z');
  std::memcpy(out.data(), cached, 20);
  int f = int(frac);
  for (int i = 25; i >= 20; --i) {
    out[std::size_t(i)] = char('0' + f % 10);
    f /= 10;
  }
  return out;
}

using policy::action_name;

std::string relation_name(const sql::Relation& r) { return r.schema.empty() ? r.name : r.schema + "." + r.name; }

// Cut at a UTF-8 boundary no later than `max` bytes.
std::string_view cut(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// Canonical JSON, written directly: keys in byte order (each object below emits its keys in
// sorted order by construction; unit tests compare with a sorted re-encoding), no whitespace,
// integers in decimal, strings escaped as RFC 8259 requires with invalid UTF-8 replaced by
// U+FFFD. Hand-written because building a DOM first cost ~15 µs per record (ADR 0005).
// Output goes through a cursor into the string's own storage (grown by doubling, trimmed by
// finish() or the destructor): per-character std::string appends were a third of sealing.
class Canonical {
 public:
  explicit Canonical(std::string& out) : out_(out), used_(out.size()) {
    if (out_.capacity() > out_.size()) out_.resize(out_.capacity());
  }
  ~Canonical() { finish(); }
  Canonical(const Canonical&) = delete;
  Canonical& operator=(const Canonical&) = delete;
  // Trims the string to what was written; further writes may follow.
  void finish() { out_.resize(used_); }

  // Bytes written so far (an offset into the output), and: the next member follows another.
  std::size_t pos() const { return used_; }
  void after_member() { first_ = false; }

  void open() { sep(); put('{'); first_ = true; }
  void close() { put('}'); first_ = false; }
  void open_array() { sep(); put('['); first_ = true; }
  void close_array() { put(']'); first_ = false; }
  void key(std::string_view k) {
    sep();
    str_raw(k);
    put(':');
    first_ = true;  // the value follows without a comma
  }
  void str(std::string_view v) { sep(); str_raw(v); }
  void num(std::int64_t v) {
    sep();
    room(24);
    auto [p, ec] = std::to_chars(out_.data() + used_, out_.data() + used_ + 24, v);
    used_ = std::size_t(p - out_.data());
  }
  void null() { sep(); put("null"); }
  // Whether a string written since the last call had invalid UTF-8 replaced (and forget it).
  bool take_replaced() { return std::exchange(replaced_, false); }
  // Bytes already encoded (a span of another body), as they are.
  void raw(std::string_view v) { put(v); }
  // Members encoded before (by another writer, "a":1,"b":2), as the next ones; "" writes nothing.
  void members(std::string_view encoded) {
    if (encoded.empty()) return;
    sep();
    put(encoded);
  }
  template <class T>
  void member(std::string_view k, const T& v) {
    key(k);
    if constexpr (std::is_integral_v<T>)
      num(std::int64_t(v));
    else
      str(v);
  }
  void strings(std::string_view k, const std::vector<std::string>& v) {
    key(k);
    open_array();
    for (const auto& x : v) str(x);
    close_array();
  }

 private:
  [[gnu::always_inline]] void room(std::size_t n) {
    if (out_.size() - used_ < n) [[unlikely]] grow(n);
  }
  [[gnu::noinline]] void grow(std::size_t n) { out_.resize(std::max(out_.size() * 2, used_ + n + 256)); }
  [[gnu::always_inline]] void put(char c) {
    room(1);
    out_[used_++] = c;
  }
  [[gnu::always_inline]] void put(std::string_view v) {
    room(v.size());
    std::memcpy(out_.data() + used_, v.data(), v.size());
    used_ += v.size();
  }
  void sep() {
    if (!first_) put(',');
    first_ = false;
  }
  // Bytes copied as they are: printable ASCII other than '"' and '\'.
  static constexpr std::array<bool, 256> kPlain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x80; ++c) t[std::size_t(c)] = c != '"' && c != '\\';
    return t;
  }();
  // Whether any of the 8 bytes in x is not copied as it is: a control character (< 0x20), a
  // byte >= 0x80, '"' or '\\'. Exact ("has a zero byte" tests), so a false answer is never wrong.
  static bool needs_care(std::uint64_t x) {
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    auto has_zero = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
    return ((x & highs) | has_zero(x ^ (ones * '"')) | has_zero(x ^ (ones * '\\')) | ((x - ones * 0x20) & ~x & highs)) !=
           0;
  }
  void str_raw(std::string_view s) {
    // Room for the quotes and every byte copied as it is; an escape makes its own room.
    room(s.size() + 2);
    out_[used_++] = '"';
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
      std::size_t j = i;
      // Eight bytes at a time while none needs escaping (most statement text): a quarter of
      // sealing went to this loop byte by byte.
      for (std::uint64_t x; j + 8 <= n; j += 8) {
        std::memcpy(&x, p + j, 8);
        if (needs_care(x)) break;
      }
      while (j < n && kPlain[p[j]]) ++j;
      if (j > i) {
        put(s.substr(i, j - i));
        i = j;
        if (i == n) break;
      }
      const unsigned char c = p[i];
      if (c < 0x80) {
        switch (c) {
          case '"': put("\\\""); break;
          case '\\': put("\\\\"); break;
          case '\b': put("\\b"); break;
          case '\f': put("\\f"); break;
          case '\n': put("\\n"); break;
          case '\r': put("\\r"); break;
          case '\t': put("\\t"); break;
          default: {
            static constexpr char digits[] = "0123456789abcdef";
            const char u[6] = {'\\', 'u', '0', '0', digits[c >> 4], digits[c & 15]};
            put(std::string_view(u, 6));
          }
        }
        ++i;
        continue;
      }
      const std::size_t len = utf8_length(p + i, n - i);
      if (len == 0) {
        put("\xEF\xBF\xBD");  // U+FFFD for an invalid byte
        replaced_ = true;
        ++i;
      } else {
        put(s.substr(i, len));
        i += len;
      }
    }
    put('"');
  }
  // Length of a well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), else 0.
  static std::size_t utf8_length(const unsigned char* p, std::size_t avail) {
    const unsigned char c = p[0];
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (avail < len) return 0;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (p[k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    return len;
  }

  std::string& out_;
  std::size_t used_;
  bool first_ = true;
  bool replaced_ = false;  // str_raw wrote U+FFFD for invalid UTF-8
};

// `s` as it reads back from a body: invalid UTF-8 replaced by U+FFFD.
constexpr std::string_view kBinaryHead = "<binary ", kBinaryTail = " bytes>";

std::string utf8_clean(std::string_view s) {
  bool ascii = true;
  for (unsigned char c : s) ascii &= c < 0x80;
  if (ascii) return std::string(s);
  std::string quoted;
  {
    Canonical w(quoted);
    w.str(s);
  }
  return nlohmann::json::parse(quoted).get<std::string>();
}

// key, and when cut: key_length and key_sha256 (they sort right after key). A text that is not
// UTF-8 (a client_encoding such as LATIN1) is kept with U+FFFD for what cannot be shown, and with
// key_sha256 of its bytes as sent, so that two statements that differ only there stay told apart
// (found by adversarial testing: 'Müller' and 'Mäller' were recorded alike).
void put_text(Canonical& w, std::string_view key, std::string_view text, std::size_t max) {
  if (text.size() <= max) {
    w.take_replaced();
    w.member(key, text);
    if (w.take_replaced()) w.member(std::string(key) + "_sha256", sha256_hex(text));
    return;
  }
  w.member(key, cut(text, max));
  w.member(std::string(key) + "_length", std::int64_t(text.size()));
  w.member(std::string(key) + "_sha256", sha256_hex(text));
}

std::string joined_list(const std::vector<std::string>& items) {
  if (items.empty()) return {};
  std::string out = ",";
  for (const auto& v : items) {
    out += v;
    out += ',';
  }
  return out;
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

// Parts of a Statement record that are the same for every execution of one prepared statement,
// encoded once per thread and reused while the same objects come back (the cache holds them, so
// an address cannot be taken by another object while it is cached).
constexpr std::size_t kPartSlots = 32;

std::size_t slot_of(const void* a, const void* b = nullptr) {
  auto h = reinterpret_cast<std::uintptr_t>(a) ^ (reinterpret_cast<std::uintptr_t>(b) >> 3);
  h ^= h >> 7;
  h ^= h >> 13;
  return std::size_t(h) % kPartSlots;
}

// "decision":{...} and its search columns.
struct DecisionPart {
  std::shared_ptr<const policy::Decision> decision;
  std::string encoded, action, rule;
};

const DecisionPart& decision_part(const std::shared_ptr<const policy::Decision>& decision) {
  thread_local std::array<DecisionPart, kPartSlots> cache;
  auto& p = cache[slot_of(decision.get())];
  if (p.decision == decision) return p;
  p.decision = decision;
  p.encoded.clear();
  const auto& d = *decision;
  {
    Canonical w(p.encoded);
    w.key("decision");
    w.open();
    w.member("action", action_name(d.action));
    if (!d.approval.empty()) w.member("approval", d.approval);  // the approval request it ran or was held under
    if (!d.would_have.empty()) {
      w.key("audit_only");
      w.open_array();
      for (const auto& dr : d.would_have) {
        w.open();
        w.member("action", action_name(dr.action));
        w.member("reason", dr.reason);
        w.member("rule", dr.rule);
        w.close();
      }
      w.close_array();
    }
    if (!d.mask_tags.empty()) w.strings("mask_tags", d.mask_tags);
    if (!d.matched_rules.empty()) w.strings("matched_rules", d.matched_rules);
    if (!d.reason.empty()) w.member("reason", d.reason);
    w.member("rule", d.rule);
    w.close();
  }
  p.action = std::string(action_name(d.action));
  p.rule = utf8_clean(d.rule);
  return p;
}

// What a parsed statement text says: "statements":[...] and "tags":[...], the text shown when the
// event has none, and the search columns.
struct AnalysisPart {
  std::shared_ptr<const sql::Analysis> analysis;
  std::shared_ptr<const policy::Policy> policy;
  std::size_t max_text = 0;
  std::string encoded, text, kinds, relations, tags;
  bool secret = false, tagged = false;
};

void encode_statements(AnalysisPart& p) {
  std::vector<std::string> tags;
  if (p.policy) tags = p.policy->touched_tags(*p.analysis);
  p.tagged = !tags.empty();
  std::vector<std::string> kinds, rels;
  {
    Canonical w(p.encoded);
    // Past kMaxStatementsInRecord, the statements of one text are summed up in one last element
    // (how many, their kinds and relations), so that the search columns still cover them: a
    // 4 MB text of 455,555 statements made a 43 MB record (found by adversarial testing).
    constexpr std::size_t kMaxStatementsInRecord = 1000;
    std::vector<std::string> more_kinds, more_rels;
    std::int64_t more = 0;
    w.key("statements");
    w.open_array();
    std::size_t index = 0;
    for (const auto& st : p.analysis->statements) {
      if (!p.text.empty()) p.text += "; ";
      p.text += st.secret ? st.normalized : st.text;  // a password stays out of the trail
      p.secret |= st.secret;
      if (index++ >= kMaxStatementsInRecord) {
        ++more;
        for (auto k : st.kinds) {
          add_unique(kinds, std::string(sql::kind_name(k)));
          add_unique(more_kinds, std::string(sql::kind_name(k)));
        }
        for (const auto& r : st.relations) {
          const auto name = relation_name(r);
          add_unique(rels, name);
          add_unique(more_rels, name);
        }
        continue;
      }
      w.open();
      char fp[16];
      static constexpr char digits[] = "0123456789abcdef";
      for (int k = 0; k < 16; ++k) fp[k] = digits[(st.fingerprint >> (60 - 4 * k)) & 15];
      w.member("fingerprint", std::string_view(fp, 16));
      if (!st.functions.empty()) w.strings("functions", st.functions);
      w.key("kinds");
      w.open_array();
      for (auto k : st.kinds) {
        w.str(sql::kind_name(k));
        add_unique(kinds, std::string(sql::kind_name(k)));
      }
      w.close_array();
      put_text(w, "normalized", st.normalized, p.max_text);
      w.key("relations");
      w.open_array();
      for (const auto& r : st.relations) {
        const auto name = relation_name(r);
        w.str(name);
        add_unique(rels, name);
      }
      w.close_array();
      w.close();
    }
    if (more > 0) {
      w.open();
      w.strings("kinds", more_kinds);
      w.member("omitted", more);
      w.strings("relations", more_rels);
      w.close();
    }
    w.close_array();
    if (!tags.empty()) w.strings("tags", tags);
  }
  p.kinds = joined_list(kinds);
  p.relations = utf8_clean(joined_list(rels));
  p.tags = utf8_clean(joined_list(tags));
}

// Only small statements are cached: a slot holds the analysis and two copies of its text, and a
// large text (a 3.5 MB INSERT) held by 32 slots of each thread kept a gigabyte alive (found by
// adversarial testing); those are encoded into `scratch` each time, as before the cache.
constexpr std::size_t kMaxCachedText = 4096;

const AnalysisPart& analysis_part(const Event& e, const SealOptions& o, AnalysisPart& scratch) {
  thread_local std::array<AnalysisPart, kPartSlots> cache;
  auto* slot = &cache[slot_of(e.analysis.get(), e.policy.get())];
  if (slot->analysis == e.analysis && slot->policy == e.policy && slot->max_text == o.max_text) return *slot;
  std::size_t size = 0;
  for (const auto& st : e.analysis->statements) size += st.text.size() + st.normalized.size();
  auto& p = size <= kMaxCachedText ? *slot : scratch;
  p = AnalysisPart{};
  p.analysis = e.analysis;
  p.policy = e.policy;
  p.max_text = o.max_text;
  encode_statements(p);
  return p;
}

// The "sql" object of a Statement record; fills the search columns it implies.
void write_sql(Canonical& w, const Event& e, const SealOptions& o, RecordIndex& x) {
  const bool parsed = e.analysis && !e.analysis->error;
  AnalysisPart scratch;
  const AnalysisPart* parts = parsed ? &analysis_part(e, o, scratch) : nullptr;
  w.key("sql");
  w.open();
  if (e.decision) {
    const auto& d = decision_part(e.decision);
    w.members(d.encoded);
    if (o.index) {
      x.decision = d.action;
      x.rule = d.rule;
    }
  }
  if (!e.params.empty() && o.params != SealOptions::Params::None) {
    // Values of statements that touch classified columns are not kept (which parameter feeds
    // which column is not known for every statement shape): only their size.
    // A statement the proxy could not read (SQL PREPARE, refused Parse, unknown portal) may touch
    // anything: its values are masked too.
    const bool mask = o.params == SealOptions::Params::Masked && (!parts || parts->tagged);
    w.key("params");
    w.open_array();
    // A binary value is its placeholder (binary_param): masked, it gives the value's size (found
    // by adversarial testing: it said the placeholder's 16 bytes).
    auto size_of = [&](const std::string& v) -> std::size_t {
      if (e.params_binary)
        if (auto n = binary_param_size(v)) return *n;
      return v.size();
    };
    constexpr std::size_t kMaxParam = 1024;
    for (const auto& p : e.params) {
      if (!p)
        w.null();
      else if (mask)
        w.str("<masked " + std::to_string(size_of(*p)) + " bytes>");
      else if (p->size() <= kMaxParam)
        w.str(*p);
      else  // cut, and says so (an auditor could not tell)
        w.str(std::string(cut(*p, kMaxParam)) + "... (" + std::to_string(p->size()) + " bytes)");
    }
    w.close_array();
  }
  if (e.analysis && e.analysis->error) w.member("parse_error", e.analysis->error->message);
  const char protocol = e.protocol ? e.protocol : '?';
  w.member("protocol", std::string_view(&protocol, 1));
  if (parts) {
    w.members(parts->encoded);
    if (o.index) {
      x.kinds = parts->kinds;
      x.relations = parts->relations;
      x.tags = parts->tags;
    }
  }
  // The event's own text unless it could show a password a statement of it carries.
  const std::string_view shown =
      parts && (e.text.empty() || parts->secret) ? std::string_view(parts->text) : std::string_view(e.text);
  put_text(w, "text", shown, o.max_text);
  if (o.index) x.text = utf8_clean(cut(shown, o.max_text));
  w.close();
}

std::string joined(const json& arr) {
  if (!arr.is_array() || arr.empty()) return {};
  std::string out = ",";
  for (const auto& v : arr)
    if (v.is_string()) out += v.get<std::string>() + ",";
  return out;
}

std::string str_at(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t int_at(const json& j, const char* key, std::int64_t dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : dflt;
}

RecordIndex index_of_json(const nlohmann::json& j);

}  // namespace

std::string_view type_name(EventType t) { return kTypeNames[static_cast<std::size_t>(t)]; }

std::optional<EventType> type_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kTypeNames.size(); ++i)
    if (kTypeNames[i] == name) return static_cast<EventType>(i);
  return std::nullopt;
}

std::string binary_param(std::size_t bytes) {
  return std::string(kBinaryHead) + std::to_string(bytes) + std::string(kBinaryTail);
}

std::optional<std::size_t> binary_param_size(std::string_view v) {
  if (v.size() <= kBinaryHead.size() + kBinaryTail.size() || !v.starts_with(kBinaryHead) || !v.ends_with(kBinaryTail))
    return std::nullopt;
  const auto digits = v.substr(kBinaryHead.size(), v.size() - kBinaryHead.size() - kBinaryTail.size());
  std::size_t n = 0;
  if (std::from_chars(digits.data(), digits.data() + digits.size(), n).ptr != digits.data() + digits.size())
    return std::nullopt;
  return n;
}

std::string hex(std::string_view raw) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(raw.size() * 2, '0');
  for (std::size_t i = 0; i < raw.size(); ++i) {
    out[2 * i] = digits[static_cast<unsigned char>(raw[i]) >> 4];
    out[2 * i + 1] = digits[static_cast<unsigned char>(raw[i]) & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return hex(std::string_view(reinterpret_cast<const char*>(md), n));
}

std::string chain_hash(std::string_view prev_hex, std::string_view body) {
  unsigned char prev[32];
  if (!raw_from_hex(prev_hex, prev, sizeof prev)) return {};
  // One digest context per thread, and SHA-256 fetched once: EVP_sha256() in an init looks the
  // algorithm up (under a lock) every time, and a context per call is an allocation.
  struct Ctx {
    EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() {
      EVP_MD_CTX_free(ctx);
      EVP_MD_free(md);
    }
  };
  thread_local Ctx c;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!c.md || !c.ctx || !EVP_DigestInit_ex2(c.ctx, c.md, nullptr) || !EVP_DigestUpdate(c.ctx, prev, sizeof prev) ||
      !EVP_DigestUpdate(c.ctx, body.data(), body.size()) || !EVP_DigestFinal_ex(c.ctx, md, &n))
    return {};
  return hex(std::string_view(reinterpret_cast<const char*>(md), n));
}

struct Draft {
  // Where the outcome goes in the body: the byte offsets (of a body encoded without it) at which
  // duration_us, message and sqlstate are inserted, and the span from node to seq that is
  // written again (outcome, prev, rows and seq change).
  struct Marks {
    std::size_t duration = 0, message = 0, node_begin = 0, seq_end = 0, sqlstate = 0;
  };
  std::string body;  // encoded as record 0 after the genesis hash, without an outcome
  RecordIndex index;
  Marks marks;
};

namespace {

using Marks = Draft::Marks;

}  // namespace

// A session's members of every record body it makes, and the search columns they imply.
struct SessionParts {
  std::string head;                // application_name, client, database
  std::string environment_member;  // environment
  std::string identity;            // "identity":{...}
  std::string session_member, target_member;
  std::string client, database, environment, subject, email, groups, kind, target;
};

namespace {

std::shared_ptr<const SessionParts> encode_session(const SessionContext& s) {
  auto p = std::make_shared<SessionParts>();
  {
    Canonical w(p->head);
    if (!s.application_name.empty()) w.member("application_name", s.application_name);
    w.member("client", s.client_address);
    if (!s.database.empty()) w.member("database", s.database);
  }
  if (!s.environment.empty()) Canonical(p->environment_member).member("environment", s.environment);
  {
    const auto& id = s.identity;
    Canonical w(p->identity);
    w.key("identity");
    w.open();
    if (!id.client_id.empty()) w.member("client_id", id.client_id);
    w.member("email", id.email);
    w.strings("groups", id.groups);
    if (!id.issuer.empty()) w.member("issuer", id.issuer);
    w.member("kind", id.kind == identity::Kind::Agent ? std::string_view("agent") : std::string_view("human"));
    if (!id.method.empty()) w.member("method", id.method);
    if (!id.display_name.empty()) w.member("name", id.display_name);
    w.member("subject", id.subject);
    if (!s.user.empty()) w.member("user", s.user);
    w.close();
    p->subject = utf8_clean(id.subject);
    p->email = utf8_clean(id.email);
    p->groups = utf8_clean(joined_list(id.groups));
    p->kind = id.kind == identity::Kind::Agent ? "agent" : "human";
  }
  Canonical(p->session_member).member("session", std::int64_t(s.session));
  if (!s.target.empty()) Canonical(p->target_member).member("target", s.target);
  p->client = utf8_clean(s.client_address);
  p->database = utf8_clean(s.database);
  p->environment = utf8_clean(s.environment);
  p->target = utf8_clean(s.target);
  return p;
}

// Encoded by the session's first record (a race between two threads encodes it twice, alike).
std::shared_ptr<const SessionParts> session_parts(const SessionContext& s) {
  auto p = s.encoded.get();
  if (!p) {
    p = encode_session(s);
    s.encoded.set(p);
  }
  return p;
}

// The canonical body of `e` as record `seq` chained to `prev`, and its index; `marks`, when
// given, receives the splice points above.
// A server error can quote a Bind parameter's value ("invalid input syntax for type integer:
// \"123-45-6789\"", "Key (ssn)=(123-45-6789) already exists"): where a record masks the
// parameters, its message masks them too (found by an audit trial: the value was in the store and
// every search output). Values of four bytes or more are masked wherever they appear; shorter ones
// only where the server quotes them, so that "1" does not mask every digit of the message.
bool params_masked(const Event& e, const SealOptions& o) {
  if (e.params.empty() || o.params != SealOptions::Params::Masked) return false;
  if (!e.analysis || e.analysis->error) return true;  // as write_sql: what cannot be read may touch anything
  AnalysisPart scratch;
  return analysis_part(e, o, scratch).tagged;
}

std::string masked_message(const Event& e) {
  std::string out = e.message;
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (std::size_t at = out.find(from); at != std::string::npos; at = out.find(from, at + to.size()))
      out.replace(at, from.size(), to);
  };
  for (const auto& p : e.params) {
    if (!p || p->empty()) continue;
    if (e.params_binary && binary_param_size(*p)) continue;  // a placeholder, not the value
    if (p->size() >= 4) {
      replace_all(*p, "<masked>");
    } else {
      replace_all("\"" + *p + "\"", "\"<masked>\"");
      replace_all("(" + *p + ")", "(<masked>)");
      replace_all("'" + *p + "'", "'<masked>'");
    }
  }
  return out;
}

std::string encode(const Event& e, std::uint64_t seq, std::string_view prev, const SealOptions& o, RecordIndex& x,
                   Marks* marks) {
  const std::int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(e.time.time_since_epoch()).count();
  x.time = rfc3339(us);
  x.time_us = us;
  x.type = std::string(type_name(e.type));
  x.node = utf8_clean(o.node);
  x.statement = std::int64_t(e.statement);
  if (o.index) {
    x.outcome = utf8_clean(e.outcome);
    x.sqlstate = utf8_clean(e.sqlstate);
  }
  x.rows = e.rows;
  x.duration_us = e.duration_us;
  const SessionContext* s = e.session.get();
  const auto sp = s ? session_parts(*s) : nullptr;
  std::string out;
  out.reserve(1536);  // a statement's record is ~1 KB: one allocation
  Canonical w(out);
  w.open();
  if (sp) {
    w.members(sp->head);
    if (o.index) {
      x.client = sp->client;
      x.database = sp->database;
    }
  }
  if (marks) marks->duration = w.pos();
  if (e.duration_us >= 0) w.member("duration_us", e.duration_us);
  if (sp) {
    w.members(sp->environment_member);
    if (o.index) x.environment = sp->environment;
  }
  if (!e.fields.empty()) {
    auto fields = e.fields;
    std::sort(fields.begin(), fields.end());
    w.key("fields");
    w.open();
    for (const auto& [k, v] : fields) w.member(k, v);
    w.close();
  }
  if (sp) {
    w.members(sp->identity);
    if (o.index) {
      x.subject = sp->subject;
      x.email = sp->email;
      x.groups = sp->groups;
      x.kind = sp->kind;
    }
  }
  if (marks) marks->message = w.pos();
  if (!e.masked.empty()) w.strings("masked", e.masked);  // "masked" < "message"
  if (!e.message.empty()) {
    const std::string message = params_masked(e, o) ? masked_message(e) : e.message;
    put_text(w, "message", message, o.max_text);
    if (o.index) x.text = utf8_clean(cut(message, o.max_text));
  }
  if (marks) marks->node_begin = w.pos();
  w.member("node", o.node);
  if (!e.outcome.empty()) w.member("outcome", e.outcome);
  w.member("prev", prev);
  if (e.rows >= 0) w.member("rows", e.rows);
  w.member("seq", std::int64_t(seq));
  if (marks) marks->seq_end = w.pos();
  if (sp) {
    w.members(sp->session_member);
    x.session = std::int64_t(s->session);
  }
  if (e.type == EventType::Statement) write_sql(w, e, o, x);
  if (marks) marks->sqlstate = w.pos();
  if (!e.sqlstate.empty()) w.member("sqlstate", e.sqlstate);
  if (e.statement) w.member("statement", std::int64_t(e.statement));
  if (sp) {
    w.members(sp->target_member);
    if (o.index) x.target = sp->target;
  }
  w.member("time", x.time);
  w.member("time_us", us);
  // How the client connected, on the records of its logins (not repeated on every statement).
  if (s && (e.type == EventType::Connect || e.type == EventType::ConnectFailed))
    w.member("tls", s->tls.empty() ? std::string_view("none") : std::string_view(s->tls));
  w.member("type", x.type);
  w.member("v", 1);
  w.close();
  w.finish();
  return out;
}

}  // namespace

Record seal(const Event& e, ChainHead& head, const SealOptions& o) {
  if (e.draft) return seal_draft(*e.draft, e, head, o);
  Record r;
  r.seq = head.seq + 1;
  r.prev = head.hash;
  r.body = encode(e, r.seq, r.prev, o, r.index, nullptr);
  r.hash = chain_hash(r.prev, r.body);
  head.seq = r.seq;
  head.hash = r.hash;
  return r;
}

std::shared_ptr<Draft> draft(const Event& e, const SealOptions& o) {
  // Only what encode() leaves for the end may differ at the end: an event that already has an
  // outcome is sealed the ordinary way.
  if ((e.type != EventType::Statement && e.type != EventType::Result) || !e.session || !e.outcome.empty() ||
      !e.message.empty() || !e.sqlstate.empty() || !e.masked.empty() ||
      e.rows >= 0 || e.duration_us >= 0)
    return nullptr;
  auto d = std::make_shared<Draft>();
  d->body = encode(e, 0, kGenesisHash, o, d->index, &d->marks);
  return d;
}

std::string_view draft_body(const Draft& d) { return d.body; }

Sealing prepare_draft(const Draft& d, const Event& e, const SealOptions& o) {
  Sealing s;
  Record& r = s.record;
  if (o.index) {
    r.index = d.index;
  } else {
    r.index.time_us = d.index.time_us;
    r.index.type = d.index.type;
    r.index.node = d.index.node;
    r.index.session = d.index.session;
    r.index.statement = d.index.statement;
  }
  RecordIndex& x = r.index;
  if (o.index) {
    x.outcome = utf8_clean(e.outcome);
    x.sqlstate = utf8_clean(e.sqlstate);
  }
  x.rows = e.rows;
  x.duration_us = e.duration_us;
  // The text column is the message, unless the record is a statement's (then it is the SQL's), as
  // encode() makes it (a Result record sealed from its draft had an empty text column, which
  // verify took for an edited column: found by differential testing).
  const std::string message = !e.message.empty() && params_masked(e, o) ? masked_message(e) : e.message;
  if (o.index && !message.empty() && e.type != EventType::Statement) x.text = utf8_clean(cut(message, o.max_text));
  // The draft's bytes with the outcome spliced in: each inserted member follows another (client
  // always precedes), so it is written as ,"key":value. Cut in two where the chain's values go:
  // the body up to prev's digits, and the rest (with the offset of seq's digits in it).
  const std::string_view b = d.body;
  const Marks& m = d.marks;
  std::size_t masked_size = 0;
  for (const auto& c : e.masked) masked_size += c.size() + 4;
  r.body.reserve(b.size() + 160 + message.size() + masked_size + 64 + 24);
  {
    Canonical w(r.body);
    auto copy = [&](std::size_t from, std::size_t to) { w.raw(b.substr(from, to - from)); };
    copy(0, m.duration);
    w.after_member();
    if (e.duration_us >= 0) w.member("duration_us", e.duration_us);
    copy(m.duration, m.message);
    w.after_member();
    if (!e.masked.empty()) w.strings("masked", e.masked);
    if (!message.empty()) put_text(w, "message", message, o.max_text);
    copy(m.message, m.node_begin);
    w.after_member();
    w.member("node", o.node);
    if (!e.outcome.empty()) w.member("outcome", e.outcome);
    w.key("prev");
    w.raw("\"");  // the hex digits need no escaping
  }
  s.rest.reserve(64 + (b.size() - m.seq_end) + e.sqlstate.size());
  Canonical w(s.rest);
  auto copy = [&](std::size_t from, std::size_t to) { w.raw(b.substr(from, to - from)); };
  w.raw("\"");
  w.after_member();
  if (e.rows >= 0) w.member("rows", e.rows);
  w.key("seq");
  s.seq_at = w.pos();
  w.after_member();
  copy(m.seq_end, m.sqlstate);
  w.after_member();
  if (!e.sqlstate.empty()) w.member("sqlstate", e.sqlstate);
  copy(m.sqlstate, b.size());
  return s;
}

void link(Sealing& s, ChainHead& head) {
  Record& r = s.record;
  r.seq = head.seq + 1;
  r.prev = head.hash;
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, r.seq);
  const std::string_view rest = s.rest;
  r.body.reserve(r.body.size() + r.prev.size() + rest.size() + std::size_t(end - digits));
  r.body += r.prev;
  r.body += rest.substr(0, s.seq_at);
  r.body.append(digits, end);
  r.body += rest.substr(s.seq_at);
  r.hash = chain_hash(r.prev, r.body);
  head.seq = r.seq;
  head.hash = r.hash;
}

Record seal_draft(const Draft& d, const Event& e, ChainHead& head, const SealOptions& o) {
  Sealing s = prepare_draft(d, e, o);
  link(s, head);
  return std::move(s.record);
}

Result<Record> seal_unfinished(std::string_view intent_body, std::string_view message, ChainHead& head) {
  json j = json::parse(intent_body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("", "an audit intent is not a JSON object");
  Record r;
  r.seq = head.seq + 1;
  r.prev = head.hash;
  j["outcome"] = "unknown";
  j["message"] = std::string(message);
  j["seq"] = std::int64_t(r.seq);
  j["prev"] = r.prev;
  j.erase("sqlstate");
  // nlohmann's objects keep keys sorted and its compact dump is the canonical encoding (a unit
  // test holds the two writers to the same bytes).
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  r.hash = chain_hash(r.prev, r.body);
  r.index = index_of_json(j);
  head.seq = r.seq;
  head.hash = r.hash;
  return r;
}

namespace {

// index_of_json's reading of a body, from the parser's events instead of a document: the readers
// derive the index of every record they search, report on or verify, and building (and freeing)
// the document was most of that (measured: a report over 1.5 M records spent 70% of its time in
// nlohmann's parse). Same values for every body, a unit test holds them equal to index_of_json's
// on real and mangled bodies: a member given twice counts as the last one (as in the document),
// a value of the wrong type as absent, and members anywhere else are ignored.
class IndexReader final : public json::json_sax_t {
 public:
  RecordIndex x;
  std::uint64_t seq = 0;
  std::string prev;
  bool bad_seq = false, bad_prev = false;  // present, of a type record_of's document read refuses

  bool finish() {
    if (!root_object_) return false;
    x.text = sql_object_ ? sql_text_ : message_;
    if (statements_array_) {
      x.kinds = joined(kinds_);
      x.relations = joined(rels_);
    }
    return true;
  }

  bool null() override { return scalar(Value{}); }
  bool boolean(bool b) override { return scalar(Value{Value::Bool, {}, 0, 0, 0, b}); }
  bool number_integer(number_integer_t v) override { return scalar(Value{Value::Int, {}, v, 0, 0, false}); }
  bool number_unsigned(number_unsigned_t v) override { return scalar(Value{Value::Uint, {}, 0, v, 0, false}); }
  bool number_float(number_float_t v, const string_t&) override {
    return scalar(Value{Value::Float, {}, 0, 0, v, false});
  }
  bool string(string_t& v) override {
    Value val{Value::String, {}, 0, 0, 0, false};
    val.str = std::move(v);
    return scalar(std::move(val));
  }
  bool binary(binary_t&) override { return scalar(Value{}); }

  bool start_object(std::size_t) override {
    const Slot s = take_slot();
    container_at(s);
    Ctx c = Ctx::Ignored;
    if (stack_.empty()) {
      root_object_ = true;
      c = Ctx::Root;
    } else if (s == Slot::Identity) {
      c = Ctx::Identity;
    } else if (s == Slot::Sql) {
      sql_object_ = true;
      c = Ctx::Sql;
    } else if (s == Slot::StatementItem) {
      item_kinds_ = {}, item_rels_ = {};
      c = Ctx::Statement;
    } else if (s == Slot::Decision) {
      c = Ctx::Decision;
    }
    stack_.push_back(Frame{c, Slot::None});
    return true;
  }
  bool key(string_t& k) override {
    auto& f = stack_.back();
    f.slot = slot_of(f.ctx, k);
    reset(f.slot);  // the last of two same members counts, as in a document
    return true;
  }
  bool end_object() override {
    const Ctx c = stack_.back().ctx;
    stack_.pop_back();
    if (c == Ctx::Statement) {  // merged as index_of_json merges the statements' lists
      merge(kinds_, item_kinds_);
      merge(rels_, item_rels_);
    }
    return true;
  }
  bool start_array(std::size_t) override {
    const Slot s = take_slot();
    container_at(s);
    Ctx c = Ctx::Ignored;
    if (s == Slot::Groups) {
      groups_ = List{true, {}, false, false};
      c = Ctx::Groups;
    } else if (s == Slot::Statements) {
      statements_array_ = true;
      c = Ctx::Statements;
    } else if (s == Slot::Kinds) {
      item_kinds_ = List{true, {}, false, true};
      c = Ctx::Kinds;
    } else if (s == Slot::Relations) {
      item_rels_ = List{true, {}, false, true};
      c = Ctx::Relations;
    } else if (s == Slot::Tags) {
      tags_ = List{true, {}, false, false};
      c = Ctx::Tags;
    }
    stack_.push_back(Frame{c, Slot::None});
    return true;
  }
  bool end_array() override {
    const Ctx c = stack_.back().ctx;
    stack_.pop_back();
    if (c == Ctx::Groups) x.groups = joined(groups_);
    if (c == Ctx::Tags) x.tags = joined(tags_);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  enum class Ctx { Root, Identity, Groups, Sql, Statements, Statement, Kinds, Relations, Tags, Decision, Ignored };
  enum class Slot {
    None, Time, TimeUs, Type, Node, Session, StatementNo, Identity, Client, Target, Environment, Database,
    Outcome, Sqlstate, Rows, Duration, Message, Sql, Seq, Prev, Subject, Email, Groups, Kind, SqlText,
    Statements, StatementItem, Kinds, Relations, Tags, Decision, Action, Rule, Item
  };
  struct Frame {
    Ctx ctx;
    Slot slot;  // what the value after the last key is, in an object
  };
  struct Value {
    enum Kind { Null, Bool, Int, Uint, Float, String } kind = Null;
    std::string str;
    std::int64_t i = 0;
    std::uint64_t u = 0;
    double d = 0;
    bool b = false;
    bool is_integer() const { return kind == Int || kind == Uint; }
    std::int64_t as_int() const { return kind == Int ? i : std::int64_t(u); }
  };
  // A JSON array as index_of_json keeps it: whether there is one, and its distinct strings in
  // order (a non-string item keeps the array non-empty, which joined() writes as ",").
  struct List {
    bool present = false;
    std::vector<std::string> strings;
    bool any = false;
    bool distinct = false;  // kinds and relations keep each string once; groups and tags as they are
  };

  // The members the index reads, by the object they are in.
  static Slot slot_of(Ctx c, std::string_view k) {
    struct Member {
      Ctx ctx;
      std::string_view key;
      Slot slot;
    };
    static constexpr Member kMembers[] = {
        {Ctx::Root, "time", Slot::Time}, {Ctx::Root, "time_us", Slot::TimeUs},
        {Ctx::Root, "type", Slot::Type}, {Ctx::Root, "node", Slot::Node},
        {Ctx::Root, "session", Slot::Session}, {Ctx::Root, "statement", Slot::StatementNo},
        {Ctx::Root, "identity", Slot::Identity}, {Ctx::Root, "client", Slot::Client},
        {Ctx::Root, "target", Slot::Target}, {Ctx::Root, "environment", Slot::Environment},
        {Ctx::Root, "database", Slot::Database}, {Ctx::Root, "outcome", Slot::Outcome},
        {Ctx::Root, "sqlstate", Slot::Sqlstate}, {Ctx::Root, "rows", Slot::Rows},
        {Ctx::Root, "duration_us", Slot::Duration}, {Ctx::Root, "message", Slot::Message},
        {Ctx::Root, "sql", Slot::Sql}, {Ctx::Root, "seq", Slot::Seq},
        {Ctx::Root, "prev", Slot::Prev}, {Ctx::Identity, "subject", Slot::Subject},
        {Ctx::Identity, "email", Slot::Email}, {Ctx::Identity, "groups", Slot::Groups},
        {Ctx::Identity, "kind", Slot::Kind}, {Ctx::Sql, "text", Slot::SqlText},
        {Ctx::Sql, "statements", Slot::Statements}, {Ctx::Sql, "tags", Slot::Tags},
        {Ctx::Sql, "decision", Slot::Decision}, {Ctx::Statement, "kinds", Slot::Kinds},
        {Ctx::Statement, "relations", Slot::Relations}, {Ctx::Decision, "action", Slot::Action},
        {Ctx::Decision, "rule", Slot::Rule},
    };
    for (const auto& m : kMembers)
      if (m.ctx == c && m.key == k) return m.slot;
    return Slot::None;
  }

  // Forgets what an earlier member of the same name set.
  void reset(Slot s) {
    switch (s) {
      case Slot::Time: x.time.clear(); break;
      case Slot::TimeUs: x.time_us = 0; break;
      case Slot::Type: x.type.clear(); break;
      case Slot::Node: x.node.clear(); break;
      case Slot::Session: x.session = 0; break;
      case Slot::StatementNo: x.statement = 0; break;
      case Slot::Identity: x.subject.clear(), x.email.clear(), x.groups.clear(), x.kind.clear(); break;
      case Slot::Client: x.client.clear(); break;
      case Slot::Target: x.target.clear(); break;
      case Slot::Environment: x.environment.clear(); break;
      case Slot::Database: x.database.clear(); break;
      case Slot::Outcome: x.outcome.clear(); break;
      case Slot::Sqlstate: x.sqlstate.clear(); break;
      case Slot::Rows: x.rows = -1; break;
      case Slot::Duration: x.duration_us = -1; break;
      case Slot::Message: message_.clear(); break;
      case Slot::Sql:
        sql_object_ = false, sql_text_.clear(), statements_array_ = false, kinds_ = {}, rels_ = {};
        x.tags.clear(), x.decision.clear(), x.rule.clear();
        break;
      case Slot::Seq: seq = 0, bad_seq = false; break;
      case Slot::Prev: prev.clear(), bad_prev = false; break;
      case Slot::Subject: x.subject.clear(); break;
      case Slot::Email: x.email.clear(); break;
      case Slot::Groups: x.groups.clear(); break;
      case Slot::Kind: x.kind.clear(); break;
      case Slot::SqlText: sql_text_.clear(); break;
      case Slot::Statements: statements_array_ = false, kinds_ = {}, rels_ = {}; break;
      case Slot::Kinds: item_kinds_ = {}; break;
      case Slot::Relations: item_rels_ = {}; break;
      case Slot::Tags: x.tags.clear(); break;
      case Slot::Decision: x.decision.clear(), x.rule.clear(); break;
      case Slot::Action: x.decision.clear(); break;
      case Slot::Rule: x.rule.clear(); break;
      default: break;
    }
  }

  // What the value about to come is for: its object's member, or an item of a list the index keeps.
  Slot take_slot() {
    if (stack_.empty()) return Slot::None;
    auto& f = stack_.back();
    switch (f.ctx) {
      case Ctx::Groups: case Ctx::Kinds: case Ctx::Relations: case Ctx::Tags: return Slot::Item;
      case Ctx::Statements: return Slot::StatementItem;
      case Ctx::Ignored: return Slot::None;
      default: return std::exchange(f.slot, Slot::None);
    }
  }
  // An object or array where the index reads a value: an item of a list that is not a string,
  // a seq or prev the document read refuses.
  void container_at(Slot s) {
    if (s == Slot::Item) current_list()->any = true;
    if (s == Slot::Seq) bad_seq = true;
    if (s == Slot::Prev) bad_prev = true;
  }
  List* current_list() {
    if (stack_.empty()) return nullptr;
    switch (stack_.back().ctx) {
      case Ctx::Groups: return &groups_;
      case Ctx::Kinds: return &item_kinds_;
      case Ctx::Relations: return &item_rels_;
      case Ctx::Tags: return &tags_;
      default: return nullptr;
    }
  }

  bool scalar(Value v) {
    if (stack_.empty()) return true;  // a body that is not an object: finish() fails it
    const Slot s = take_slot();
    const bool str = v.kind == Value::String;
    switch (s) {
      case Slot::Item: {
        List* l = current_list();
        l->any = true;
        if (str && (!l->distinct || std::find(l->strings.begin(), l->strings.end(), v.str) == l->strings.end()))
          l->strings.push_back(std::move(v.str));
        break;
      }
      case Slot::Time: if (str) x.time = std::move(v.str); break;
      case Slot::TimeUs: if (v.is_integer()) x.time_us = v.as_int(); break;
      case Slot::Type: if (str) x.type = std::move(v.str); break;
      case Slot::Node: if (str) x.node = std::move(v.str); break;
      case Slot::Session: if (v.is_integer()) x.session = v.as_int(); break;
      case Slot::StatementNo: if (v.is_integer()) x.statement = v.as_int(); break;
      case Slot::Client: if (str) x.client = std::move(v.str); break;
      case Slot::Target: if (str) x.target = std::move(v.str); break;
      case Slot::Environment: if (str) x.environment = std::move(v.str); break;
      case Slot::Database: if (str) x.database = std::move(v.str); break;
      case Slot::Outcome: if (str) x.outcome = std::move(v.str); break;
      case Slot::Sqlstate: if (str) x.sqlstate = std::move(v.str); break;
      case Slot::Rows: if (v.is_integer()) x.rows = v.as_int(); break;
      case Slot::Duration: if (v.is_integer()) x.duration_us = v.as_int(); break;
      case Slot::Message: if (str) message_ = std::move(v.str); break;
      case Slot::Subject: if (str) x.subject = std::move(v.str); break;
      case Slot::Email: if (str) x.email = std::move(v.str); break;
      case Slot::Kind: if (str) x.kind = std::move(v.str); break;
      case Slot::SqlText: if (str) sql_text_ = std::move(v.str); break;
      case Slot::Action: if (str) x.decision = std::move(v.str); break;
      case Slot::Rule: if (str) x.rule = std::move(v.str); break;
      case Slot::Seq:  // as json::value("seq", uint64_t): numbers convert, the rest throw
        if (v.kind == Value::Uint) seq = v.u;
        else if (v.kind == Value::Int) seq = std::uint64_t(v.i);
        else if (v.kind == Value::Float && v.d >= 0 && v.d < 18446744073709551616.0) seq = std::uint64_t(v.d);
        else bad_seq = true;  // (a float out of range: undefined to convert, refused)
        break;
      case Slot::Prev:
        if (str) prev = std::move(v.str);
        else bad_prev = true;
        break;
      case Slot::Identity: case Slot::Sql: case Slot::Decision: case Slot::Statements:
        break;  // not an object / array: nothing of it is read
      case Slot::Tags: x.tags.clear(); break;  // joined() of a non-array
      default: break;
    }
    return true;
  }

  static std::string joined(const List& l) {
    if (!l.present || !l.any) return {};
    std::string out = ",";
    for (const auto& v : l.strings) out.append(v).push_back(',');
    return out;
  }
  static void merge(List& into, const List& from) {
    for (const auto& v : from.strings)
      if (std::find(into.strings.begin(), into.strings.end(), v) == into.strings.end()) into.strings.push_back(v);
    into.present = true;
    into.any = into.any || from.any;
  }

  std::vector<Frame> stack_;
  bool root_object_ = false, sql_object_ = false, statements_array_ = false;
  std::string message_, sql_text_;
  List groups_, tags_, kinds_, rels_, item_kinds_, item_rels_;
};

}  // namespace

namespace {
bool read_index(std::string_view body, IndexReader& r) { return json::sax_parse(body, &r) && r.finish(); }
}  // namespace

Result<RecordIndex> index_of(std::string_view body) {
  IndexReader r;
  if (!read_index(body, r)) return fail("", "record body is not a JSON object");
  return std::move(r.x);
}

Result<Record> record_of(std::string hash, std::string body) {
  IndexReader ir;
  if (!read_index(body, ir)) return fail("", "record body is not a JSON object");
  if (ir.bad_seq || ir.bad_prev) return fail("", "record body has a seq or prev of the wrong type");
  Record r;
  r.seq = ir.seq;
  r.prev = std::move(ir.prev);
  r.index = std::move(ir.x);
  r.hash = std::move(hash);
  r.body = std::move(body);
  return r;
}

namespace detail {
Result<RecordIndex> index_of_document(std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("", "record body is not a JSON object");
  return index_of_json(j);
}

Result<Record> record_of_document(std::string hash, std::string body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("", "record body is not a JSON object");
  Record r;
  r.seq = j.value("seq", std::uint64_t(0));
  r.prev = j.value("prev", std::string());
  r.index = index_of_json(j);
  r.hash = std::move(hash);
  r.body = std::move(body);
  return r;
}
}  // namespace detail

namespace {
RecordIndex index_of_json(const nlohmann::json& j) {
  RecordIndex x;
  x.time = str_at(j, "time");
  x.time_us = int_at(j, "time_us", 0);
  x.type = str_at(j, "type");
  x.node = str_at(j, "node");
  x.session = int_at(j, "session", 0);
  x.statement = int_at(j, "statement", 0);
  if (auto it = j.find("identity"); it != j.end() && it->is_object()) {
    x.subject = str_at(*it, "subject");
    x.email = str_at(*it, "email");
    if (auto g = it->find("groups"); g != it->end()) x.groups = joined(*g);
    x.kind = str_at(*it, "kind");
  }
  x.client = str_at(j, "client");
  x.target = str_at(j, "target");
  x.environment = str_at(j, "environment");
  x.database = str_at(j, "database");
  x.outcome = str_at(j, "outcome");
  x.sqlstate = str_at(j, "sqlstate");
  x.rows = int_at(j, "rows", -1);
  x.duration_us = int_at(j, "duration_us", -1);
  x.text = str_at(j, "message");
  if (auto it = j.find("sql"); it != j.end() && it->is_object()) {
    const auto& s = *it;
    x.text = str_at(s, "text");
    if (auto st = s.find("statements"); st != s.end() && st->is_array()) {
      json kinds = json::array(), rels = json::array();
      for (const auto& one : *st) {
        if (auto k = one.find("kinds"); k != one.end() && k->is_array())
          for (const auto& v : *k)
            if (std::find(kinds.begin(), kinds.end(), v) == kinds.end()) kinds.push_back(v);
        if (auto r = one.find("relations"); r != one.end() && r->is_array())
          for (const auto& v : *r)
            if (std::find(rels.begin(), rels.end(), v) == rels.end()) rels.push_back(v);
      }
      x.kinds = joined(kinds);
      x.relations = joined(rels);
    }
    if (auto t = s.find("tags"); t != s.end()) x.tags = joined(*t);
    if (auto d = s.find("decision"); d != s.end() && d->is_object()) {
      x.decision = str_at(*d, "action");
      x.rule = str_at(*d, "rule");
    }
  }
  return x;
}

}  // namespace

}  // namespace gh::audit
