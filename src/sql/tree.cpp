#include "sql/tree.h"

#include <charconv>
#include <cstring>
#include <new>

namespace gh::sql::detail {

const JValue* JValue::get(std::string_view key) const {
  if (type != JType::Object) return nullptr;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (members[i].key == key) return &members[i].value;
  }
  return nullptr;
}

std::string_view JValue::get_str(std::string_view key) const {
  const JValue* v = get(key);
  return v && v->type == JType::String ? v->str : std::string_view{};
}

bool JValue::get_bool(std::string_view key) const {
  const JValue* v = get(key);
  return v && v->type == JType::True;
}

std::optional<std::int64_t> JValue::get_int(std::string_view key) const {
  const JValue* v = get(key);
  if (!v || v->type != JType::Number) return std::nullopt;
  std::int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v->str.data(), v->str.data() + v->str.size(), out);
  if (ec != std::errc() || ptr != v->str.data() + v->str.size()) return std::nullopt;
  return out;
}

bool JValue::is_node() const {
  if (type != JType::Object || count != 1) return false;
  std::string_view k = members[0].key;
  return !k.empty() && k[0] >= 'A' && k[0] <= 'Z' && members[0].value.type == JType::Object;
}

std::string_view JValue::node_name() const { return is_node() ? members[0].key : std::string_view{}; }

const JValue* JValue::node_body() const { return is_node() ? &members[0].value : nullptr; }

void* Arena::allocate(std::size_t bytes, std::size_t align) {
  for (;;) {
    if (current_ < blocks_.size()) {
      Block& b = blocks_[current_];
      std::size_t start = (used_ + align - 1) & ~(align - 1);
      if (start + bytes <= b.size) {
        used_ = start + bytes;
        return b.data.get() + start;
      }
      if (current_ + 1 < blocks_.size()) {
        ++current_;
        used_ = 0;
        continue;
      }
    }
    std::size_t size = blocks_.empty() ? 16 * 1024 : blocks_.back().size * 2;
    while (size < bytes + align) size *= 2;
    blocks_.push_back(Block{std::unique_ptr<char[]>(new char[size]), size});
    current_ = blocks_.size() - 1;
    used_ = 0;
  }
}

void Arena::reset() {
  // Keep a bounded amount for the next parse; a rare huge statement must not pin memory.
  std::size_t kept = 0;
  std::size_t i = 0;
  for (; i < blocks_.size(); ++i) {
    if (kept + blocks_[i].size > 1024 * 1024) break;
    kept += blocks_[i].size;
  }
  blocks_.resize(i);
  current_ = 0;
  used_ = 0;
}

namespace {

class Parser {
 public:
  Parser(std::string_view in, Arena& arena) : p_(in.data()), end_(in.data() + in.size()), arena_(arena) {}

  bool parse_document(JValue& out) {
    skip_ws();
    if (!parse_value(out, 0)) return false;
    skip_ws();
    if (p_ != end_) return fail("trailing characters");
    return true;
  }

  std::string_view error() const { return error_; }

 private:
  bool fail(std::string_view why) {
    if (error_.empty()) error_ = why;
    return false;
  }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0) {
      return fail("bad literal");
    }
    p_ += word.size();
    return true;
  }

  bool parse_value(JValue& out, int depth) {
    if (depth > kMaxJsonDepth) return fail("parse tree nested too deeply");
    if (p_ >= end_) return fail("unexpected end");
    switch (*p_) {
      case '{':
        return parse_object(out, depth);
      case '[':
        return parse_array(out, depth);
      case '"':
        out.type = JType::String;
        return parse_string(out.str);
      case 't':
        out.type = JType::True;
        return literal("true");
      case 'f':
        out.type = JType::False;
        return literal("false");
      case 'n':
        out.type = JType::Null;
        return literal("null");
      default:
        return parse_number(out);
    }
  }

  bool parse_number(JValue& out) {
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    bool digits = false;
    while (p_ < end_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' ||
                         *p_ == '-')) {
      digits = digits || (*p_ >= '0' && *p_ <= '9');
      ++p_;
    }
    if (!digits) return fail("bad number");
    out.type = JType::Number;
    out.str = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool read_hex4(const char*& q, unsigned& cp) {
    if (end_ - q < 4) return false;
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      int h = hex(q[i]);
      if (h < 0) return false;
      cp = cp * 16 + static_cast<unsigned>(h);
    }
    q += 4;
    return true;
  }

  static char* put_utf8(char* o, unsigned cp) {
    if (cp < 0x80) {
      *o++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *o++ = static_cast<char>(0xC0 | (cp >> 6));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *o++ = static_cast<char>(0xE0 | (cp >> 12));
      *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *o++ = static_cast<char>(0xF0 | (cp >> 18));
      *o++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
    return o;
  }

  bool parse_string(std::string_view& out) {
    ++p_;  // opening quote
    const char* start = p_;
    while (p_ < end_ && *p_ != '"' && *p_ != '\\') ++p_;
    if (p_ >= end_) return fail("unterminated string");
    if (*p_ == '"') {
      out = std::string_view(start, static_cast<std::size_t>(p_ - start));
      ++p_;
      return true;
    }
    // Escapes: find the end, then decode into the arena (decoded is never longer).
    const char* q = p_;
    while (q < end_ && *q != '"') {
      if (*q == '\\' && end_ - q < 2) return fail("unterminated string");
      q += (*q == '\\') ? 2 : 1;
    }
    if (q >= end_) return fail("unterminated string");
    std::size_t max_len = static_cast<std::size_t>(q - start);
    char* buf = static_cast<char*>(arena_.allocate(max_len + 1, 1));
    char* o = buf;
    std::memcpy(o, start, static_cast<std::size_t>(p_ - start));
    o += p_ - start;
    while (p_ < end_ && *p_ != '"') {
      char c = *p_++;
      if (c != '\\') {
        *o++ = c;
        continue;
      }
      if (p_ >= end_) return fail("bad escape");
      char e = *p_++;
      switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
          unsigned cp = 0;
          if (!read_hex4(p_, cp)) return fail("bad \\u escape");
          if (cp >= 0xD800 && cp < 0xDC00 && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            const char* save = p_;
            p_ += 2;
            unsigned lo = 0;
            if (read_hex4(p_, lo) && lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              p_ = save;
            }
          }
          // \uXXXX is 6 input bytes for at most 3 output bytes; a surrogate pair is 12 for 4.
          o = put_utf8(o, cp);
          break;
        }
        default:
          return fail("bad escape");
      }
    }
    if (p_ >= end_) return fail("unterminated string");
    ++p_;
    out = std::string_view(buf, static_cast<std::size_t>(o - buf));
    return true;
  }

  bool parse_array(JValue& out, int depth) {
    ++p_;
    std::size_t base = values_.size();
    skip_ws();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
    } else {
      for (;;) {
        skip_ws();
        JValue v;
        if (!parse_value(v, depth + 1)) return false;
        values_.push_back(v);
        skip_ws();
        if (p_ >= end_) return fail("unterminated array");
        if (*p_ == ',') {
          ++p_;
          continue;
        }
        if (*p_ == ']') {
          ++p_;
          break;
        }
        return fail("expected , or ]");
      }
    }
    std::size_t n = values_.size() - base;
    out.type = JType::Array;
    out.count = static_cast<std::uint32_t>(n);
    if (n > 0) {
      auto* items = static_cast<JValue*>(arena_.allocate(n * sizeof(JValue), alignof(JValue)));
      for (std::size_t i = 0; i < n; ++i) new (&items[i]) JValue(values_[base + i]);
      out.items = items;
    }
    values_.resize(base);
    return true;
  }

  bool parse_object(JValue& out, int depth) {
    ++p_;
    std::size_t base = members_.size();
    skip_ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
    } else {
      for (;;) {
        skip_ws();
        if (p_ >= end_ || *p_ != '"') return fail("expected key");
        std::string_view key;
        if (!parse_string(key)) return false;
        skip_ws();
        if (p_ >= end_ || *p_ != ':') return fail("expected :");
        ++p_;
        skip_ws();
        JValue v;
        if (!parse_value(v, depth + 1)) return false;
        members_.push_back(JMember{key, v});
        skip_ws();
        if (p_ >= end_) return fail("unterminated object");
        if (*p_ == ',') {
          ++p_;
          continue;
        }
        if (*p_ == '}') {
          ++p_;
          break;
        }
        return fail("expected , or }");
      }
    }
    std::size_t n = members_.size() - base;
    out.type = JType::Object;
    out.count = static_cast<std::uint32_t>(n);
    if (n > 0) {
      auto* mem = static_cast<JMember*>(arena_.allocate(n * sizeof(JMember), alignof(JMember)));
      for (std::size_t i = 0; i < n; ++i) new (&mem[i]) JMember(members_[base + i]);
      out.members = mem;
    }
    members_.resize(base);
    return true;
  }

  const char* p_;
  const char* end_;
  Arena& arena_;
  std::string_view error_;
  // Scratch stacks: children are collected here, then copied contiguously into the arena.
  std::vector<JValue> values_;
  std::vector<JMember> members_;
};

}  // namespace

const JValue* parse_json(std::string_view json, Arena& arena, JsonParseError* error) {
  Parser parser(json, arena);
  auto* root = static_cast<JValue*>(arena.allocate(sizeof(JValue), alignof(JValue)));
  new (root) JValue();
  if (!parser.parse_document(*root)) {
    if (error) error->message = parser.error();
    return nullptr;
  }
  return root;
}

bool same_tree(const JValue& a, const JValue& b) {
  if (a.type != b.type || a.count != b.count) return false;
  switch (a.type) {
    case JType::Null:
    case JType::False:
    case JType::True:
      return true;
    case JType::Number:
    case JType::String:
      return a.str == b.str;
    case JType::Array:
      for (std::uint32_t i = 0; i < a.count; ++i) {
        if (!same_tree(a.items[i], b.items[i])) return false;
      }
      return true;
    case JType::Object:
      for (std::uint32_t i = 0; i < a.count; ++i) {
        if (a.members[i].key != b.members[i].key) return false;
        if (a.members[i].key == "location") continue;
        if (!same_tree(a.members[i].value, b.members[i].value)) return false;
      }
      return true;
  }
  return false;
}

}  // namespace gh::sql::detail
