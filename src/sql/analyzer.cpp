#include "sql/analyzer.h"

#include <pg_query.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "sql/tree.h"
#include "sql/walker.h"

namespace gh::sql {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// libpg_query results are C structs with their own free functions; these guards make every
// path (including early returns) release them.
struct ParseGuard {
  PgQueryParseResult r;
  ~ParseGuard() { pg_query_free_parse_result(r); }
};

// pg_query_normalize holds ~8 KiB per constant until it returns: a 100 KB `SELECT 1,1,...` took
// 420 MB, and a few MB of INSERT ... VALUES could take the process down (found by adversarial
// testing). Above this size the literals are replaced from the scanner's tokens instead (a few MB
// for the same text). The two differ in details (a type modifier's number is replaced too), which
// is fine for what the normalized text is for: showing the statement's shape.
constexpr std::size_t kNormalizeLimit = 16 * 1024;

// Token numbers of PostgreSQL 15's grammar (pg_query.proto's Token enum).
constexpr std::uint64_t kFconst = 260, kSconst = 261, kUsconst = 262, kBconst = 263, kXconst = 264, kIconst = 266,
                        kParam = 267;

std::string normalize_by_tokens(const std::string& text) {
  PgQueryScanResult r = pg_query_scan(text.c_str());
  std::string out;
  if (r.error || !r.pbuf.data) {
    pg_query_free_scan_result(r);
    return out;
  }
  // ScanResult { int32 version = 1; repeated ScanToken tokens = 2; }
  // ScanToken { int32 start = 1; int32 end = 2; Token token = 4; KeywordKind keyword_kind = 5; }
  const auto* p = reinterpret_cast<const unsigned char*>(r.pbuf.data);
  const std::size_t n = r.pbuf.len;
  std::size_t i = 0;
  bool ok = true;
  auto varint = [&](std::size_t& at, std::size_t limit) -> std::uint64_t {
    std::uint64_t v = 0;
    for (int shift = 0; at < limit && shift < 64; shift += 7) {
      const unsigned char b = p[at++];
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return v;
  };
  struct Literal {
    std::size_t begin, end;
  };
  std::vector<Literal> literals;
  std::uint64_t max_param = 0;
  while (ok && i < n) {
    const std::uint64_t key = varint(i, n);
    const auto wire = key & 7;
    if (wire == 0) {
      (void)varint(i, n);
    } else if (wire == 2) {
      const std::uint64_t len = varint(i, n);
      if (len > n - i) break;
      const std::size_t end = i + std::size_t(len);
      if ((key >> 3) == 2) {
        std::uint64_t start = 0, stop = 0, token = 0;
        while (ok && i < end) {
          const std::uint64_t k = varint(i, end);
          if ((k & 7) != 0) {
            ok = false;
            break;
          }
          const std::uint64_t v = varint(i, end);
          if ((k >> 3) == 1) start = v;
          if ((k >> 3) == 2) stop = v;
          if ((k >> 3) == 4) token = v;
        }
        if (stop > start && stop <= text.size()) {
          if (token == kParam) {
            std::uint64_t num = 0;
            for (std::size_t c = std::size_t(start) + 1; c < stop && text[c] >= '0' && text[c] <= '9'; ++c)
              num = std::min<std::uint64_t>(num * 10 + std::uint64_t(text[c] - '0'), 1u << 30);
            max_param = std::max(max_param, num);
          } else if (token == kFconst || token == kSconst || token == kUsconst || token == kBconst ||
                     token == kXconst || token == kIconst) {
            literals.push_back({std::size_t(start), std::size_t(stop)});
          }
        }
      }
      i = end;
    } else {
      ok = false;
    }
  }
  pg_query_free_scan_result(r);
  if (!ok) return {};
  out.reserve(text.size());
  std::size_t at = 0;
  std::uint64_t next = max_param;
  for (const auto& l : literals) {
    if (l.begin < at) continue;
    out.append(text, at, l.begin - at);
    out += '$';
    out += std::to_string(++next);
    at = l.end;
  }
  out.append(text, at, std::string::npos);
  return out;
}

std::string normalize(const std::string& text) {
  if (text.size() > kNormalizeLimit) return normalize_by_tokens(text);
  PgQueryNormalizeResult r = pg_query_normalize(text.c_str());
  std::string out;
  if (!r.error && r.normalized_query) out = r.normalized_query;
  pg_query_free_normalize_result(r);
  return out;
}

std::uint64_t fingerprint(const std::string& text) {
  PgQueryFingerprintResult r = pg_query_fingerprint(text.c_str());
  std::uint64_t out = r.error ? 0 : r.fingerprint;
  pg_query_free_fingerprint_result(r);
  return out;
}

// Per-thread scratch: the arena keeps its first blocks between statements.
detail::Arena& thread_arena() {
  thread_local detail::Arena arena;
  return arena;
}

}  // namespace

namespace {

Analysis analyze_here(std::string_view sql) {
  Analysis out;
  if (auto nul = sql.find('\0'); nul != std::string_view::npos) {
    // The server stops at the NUL; what follows would be invisible to the parser here.
    out.error = ParseError{"statement text contains a NUL byte", static_cast<int>(nul) + 1};
    return out;
  }
  std::string text(sql);
  ParseGuard parsed{pg_query_parse(text.c_str())};
  if (parsed.r.error) {
    out.error = ParseError{parsed.r.error->message ? parsed.r.error->message : "syntax error",
                           parsed.r.error->cursorpos, {}, true};
    return out;
  }
  if (!parsed.r.parse_tree) {
    out.error = ParseError{"parser returned no tree", 0};
    return out;
  }
  detail::Arena& arena = thread_arena();
  arena.reset();
  detail::JsonParseError json_error;
  const detail::JValue* root = detail::parse_json(parsed.r.parse_tree, arena, &json_error);
  if (!root) {
    out.error = ParseError{std::string("statement could not be analysed: ") + std::string(json_error.message), 0,
                           "54001"};  // the parse tree is deeper than the proxy reads (statement_too_complex)
    return out;
  }
  const detail::JValue* stmts = root->get("stmts");
  if (!stmts || !stmts->is_array()) return out;  // empty input or only comments
  out.statements.reserve(stmts->count);
  detail::Walker::Prepared prepared;  // PREPAREs seen so far in this text
  for (const detail::JValue& raw : *stmts) {
    const detail::JValue* stmt = raw.get("stmt");
    if (!stmt) continue;
    std::int64_t loc = raw.get_int("stmt_location").value_or(0);
    std::int64_t len = raw.get_int("stmt_len").value_or(0);
    if (loc < 0 || static_cast<std::size_t>(loc) > sql.size()) loc = 0;
    std::size_t begin = static_cast<std::size_t>(loc);
    std::size_t end = len > 0 ? std::min(sql.size(), begin + static_cast<std::size_t>(len)) : sql.size();
    while (begin < end && is_space(sql[begin])) ++begin;
    while (end > begin && is_space(sql[end - 1])) --end;

    Statement& st = out.statements.emplace_back();
    st.text.assign(sql.substr(begin, end - begin));
    st.location = static_cast<int>(begin);
    detail::Walker walker(sql, st, &prepared);
    walker.run(*stmt);
    if (!st.kinds.empty() && st.kinds.front() == StatementKind::Prepare) {
      prepared.emplace_back(st.object_name, st);
    } else if (!st.kinds.empty() && st.kinds.front() == StatementKind::Deallocate) {
      std::erase_if(prepared, [&](const auto& p) { return st.object_name.empty() || p.first == st.object_name; });
    }
    st.normalized = normalize(st.text);
    st.fingerprint = fingerprint(st.text);
  }
  return out;
}

// libpg_query writes its JSON (and fingerprints) with one C stack frame per tree level, and a
// left-deep chain such as `1+1+...+1` costs a level per two bytes of text: a few hundred KiB of
// text would overflow an ordinary thread stack inside the library, before our own depth bound
// can refuse the tree. Texts above kInlineLimit are therefore analysed on a helper thread whose
// stack (reserved, committed only as touched) grows with the text.
constexpr std::size_t kInlineLimit = 16 * 1024;  // <= ~8k levels: well under 1 MiB of stack
constexpr std::size_t kStackPerByte = 256;       // measured ~64 B per byte for `1+1+...`

constexpr std::size_t kMaxEstimatedDepth = 10000;

bool ident_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
         c >= 0x80;
}

bool keyword_is(std::string_view word, std::string_view kw) {
  if (word.size() != kw.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    char c = word[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != kw[i]) return false;
  }
  return true;
}

// An upper estimate of the parse tree's depth, from a light scan of the text (literals,
// quoted identifiers and comments skipped): per parenthesis level, the operators since the last
// comma, semicolon or AND/OR/CASE keyword (those build flat lists), summed along the nesting.
// libpg_query's JSON writer is quadratic in depth (about 13 s for `1+1+...` of 2 MB), so a
// large text whose estimate exceeds kMaxEstimatedDepth — far beyond what the walker accepts —
// is refused before it is parsed.
std::size_t estimated_depth(std::string_view s) {
  std::vector<std::size_t> stack;
  std::size_t current = 0;
  std::size_t outer = 0;  // sum of `stack`, plus one per open parenthesis
  std::size_t best = 0;
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto op = [&] {
    ++current;
    best = std::max(best, outer + current);
  };
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '-' && i + 1 < n && s[i + 1] == '-') {
      while (i < n && s[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
      int nest = 0;
      while (i < n) {
        if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
          ++nest;
          i += 2;
        } else if (s[i] == '*' && i + 1 < n && s[i + 1] == '/') {
          i += 2;
          if (--nest == 0) break;
        } else {
          ++i;
        }
      }
    } else if (c == '\'' || c == '"') {
      bool backslash = c == '\'' && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
      ++i;
      while (i < n) {
        if (backslash && s[i] == '\\') {
          i += 2;
        } else if (static_cast<unsigned char>(s[i]) == c) {
          if (i + 1 < n && static_cast<unsigned char>(s[i + 1]) == c) {
            i += 2;
          } else {
            ++i;
            break;
          }
        } else {
          ++i;
        }
      }
    } else if (c == '$' && i + 1 < n && !(s[i + 1] >= '0' && s[i + 1] <= '9')) {
      std::size_t j = i + 1;
      while (j < n && ident_char(static_cast<unsigned char>(s[j])) && s[j] != '$') ++j;
      if (j < n && s[j] == '$') {
        std::string_view tag = s.substr(i, j - i + 1);
        std::size_t end = s.find(tag, j + 1);
        i = end == std::string_view::npos ? n : end + tag.size();
      } else {
        i = j;
      }
    } else if (ident_char(c)) {
      std::size_t j = i;
      while (j < n && ident_char(static_cast<unsigned char>(s[j]))) ++j;
      std::string_view word = s.substr(i, j - i);
      if (keyword_is(word, "AND") || keyword_is(word, "OR") || keyword_is(word, "WHEN") ||
          keyword_is(word, "THEN") || keyword_is(word, "ELSE") || keyword_is(word, "SELECT") ||
          keyword_is(word, "WHERE") || keyword_is(word, "FROM") || keyword_is(word, "VALUES")) {
        current = 0;
      } else if (keyword_is(word, "NOT") || keyword_is(word, "IS") || keyword_is(word, "LIKE") ||
                 keyword_is(word, "ILIKE") || keyword_is(word, "BETWEEN") || keyword_is(word, "IN") ||
                 keyword_is(word, "COLLATE") || keyword_is(word, "AT") || keyword_is(word, "SIMILAR") ||
                 keyword_is(word, "ISNULL") || keyword_is(word, "NOTNULL") || keyword_is(word, "OVERLAPS")) {
        op();
      }
      i = j;
    } else if (c == '(' || c == '[') {
      stack.push_back(current);
      outer += current + 1;
      current = 0;
      best = std::max(best, outer);
      ++i;
    } else if (c == ')' || c == ']') {
      if (!stack.empty()) {
        outer -= stack.back() + 1;
        current = stack.back();
        stack.pop_back();
      }
      ++i;
    } else if (c == ',' || c == ';') {
      current = 0;
      ++i;
    } else if (std::strchr("+-*/<>=~!@#%^&|`?:", c) != nullptr && c != 0) {
      while (i < n && s[i] != 0 && std::strchr("+-*/<>=~!@#%^&|`?:", s[i]) != nullptr) {
        if (s[i] == '-' && i + 1 < n && s[i + 1] == '-') break;
        if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') break;
        ++i;
      }
      op();
    } else {
      ++i;
    }
  }
  return best;
}

struct BigStackJob {
  std::string_view sql;
  Analysis result;
};

void* big_stack_main(void* arg) {
  auto* job = static_cast<BigStackJob*>(arg);
  try {
    job->result = analyze_here(job->sql);
  } catch (const std::bad_alloc&) {
    job->result = Analysis{};
    job->result.error = ParseError{"out of memory while analysing the statement", 0, "53200"};
  }
  return nullptr;
}

Analysis analyze_on_big_stack(std::string_view sql) {
  auto refuse = [] {
    Analysis a;
    a.error = ParseError{"statement text too large to analyse", 0, "54000"};
    return a;
  };
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t max_bytes = std::size_t{16} << 30;
  if (sql.size() > (max_bytes - (std::size_t{8} << 20)) / kStackPerByte) return refuse();
  std::size_t bytes = std::max<std::size_t>(sql.size() * kStackPerByte + (std::size_t{8} << 20), std::size_t{16} << 20);
  bytes = (bytes + page - 1) / page * page;
  void* stack = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
  if (stack == MAP_FAILED) return refuse();
  mprotect(stack, page, PROT_NONE);  // guard page: an overflow faults instead of writing below
  BigStackJob job{sql, {}};
  pthread_attr_t attr;
  pthread_t thread;
  bool ok = pthread_attr_init(&attr) == 0;
  ok = ok && pthread_attr_setstack(&attr, stack, bytes) == 0;
  ok = ok && pthread_create(&thread, &attr, big_stack_main, &job) == 0;
  pthread_attr_destroy(&attr);
  if (ok) pthread_join(thread, nullptr);
  munmap(stack, bytes);
  return ok ? std::move(job.result) : refuse();
}

}  // namespace

Analysis analyze_uncached(std::string_view sql) {
  if (sql.size() <= kInlineLimit) return analyze_here(sql);
  if (estimated_depth(sql) > kMaxEstimatedDepth) {
    Analysis a;
    a.error = ParseError{"statement could not be analysed: parse tree nested too deeply", 0, "54001"};
    return a;
  }
  return analyze_on_big_stack(sql);
}

std::size_t approximate_bytes(const Analysis& a) {
  auto str = [](const std::string& s) { return s.capacity() > 15 ? s.capacity() + 1 : 0; };
  auto strs = [&](const std::vector<std::string>& v) {
    std::size_t n = v.capacity() * sizeof(std::string);
    for (const auto& s : v) n += str(s);
    return n;
  };
  std::size_t n = sizeof(Analysis) + a.statements.capacity() * sizeof(Statement);
  if (a.error) n += sizeof(ParseError) + str(a.error->message);
  for (const Statement& s : a.statements) {
    n += s.kinds.capacity() + str(s.text) + str(s.normalized);
    n += strs(s.functions) + strs(s.settings) + strs(s.unresolved_columns);
    n += s.writes.capacity() * sizeof(WriteFilter);
    for (const WriteFilter& w : s.writes) n += str(w.relation);
    n += s.relations.capacity() * sizeof(Relation);
    for (const Relation& r : s.relations) {
      n += str(r.schema) + str(r.name) + strs(r.columns_read) + strs(r.columns_written);
    }
  }
  return n;
}

Analyzer::Analyzer(std::size_t cache_entries, std::size_t max_cached_text, std::size_t max_cached_bytes)
    : max_entries_(cache_entries), max_text_(max_cached_text), max_bytes_(max_cached_bytes) {
  index_.reserve(std::min<std::size_t>(cache_entries, 1 << 16));
}

namespace {

bool ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}
bool digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool shape_key(std::string_view sql, std::string& out) {
  out.clear();
  bool number = false;
  const std::size_t n = sql.size();
  for (std::size_t i = 0; i < n;) {
    const char c = sql[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80 || (u < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == '\'' || c == '"' || c == '$' ||
        c == '\\')
      return false;
    if ((c == '-' && i + 1 < n && sql[i + 1] == '-') || (c == '/' && i + 1 < n && sql[i + 1] == '*')) return false;
    const char prev = i ? sql[i - 1] : ' ';
    if (c == '.' && i + 1 < n && digit(sql[i + 1]) && !ident_char(prev)) return false;  // .5
    if (!digit(c) || ident_char(prev) || prev == '.') {
      out.push_back(c);
      ++i;
      continue;
    }
    // A numeric literal: digits [. digits] [e [+-] digits], not followed by an identifier.
    std::size_t j = i;
    while (j < n && digit(sql[j])) ++j;
    if (j < n && sql[j] == '.') {
      ++j;
      while (j < n && digit(sql[j])) ++j;
    }
    if (j < n && (sql[j] == 'e' || sql[j] == 'E')) {
      std::size_t k = j + 1;
      if (k < n && (sql[k] == '+' || sql[k] == '-')) ++k;
      if (k >= n || !digit(sql[k])) return false;
      while (k < n && digit(sql[k])) ++k;
      j = k;
    }
    if (j < n && (ident_char(sql[j]) || sql[j] == '.')) return false;  // 123abc, 0x1f, 1_000, 1.2.3
    // The parser makes an Integer node of digits that fit in int32 and a Float node of anything
    // else, and pg_query_normalize treats them differently (GROUP BY 2 stays, GROUP BY 2.5 does
    // not): the key keeps the kind.
    bool integer = true;
    for (std::size_t k = i; k < j; ++k) integer &= digit(sql[k]);
    std::size_t first = i;
    while (first + 1 < j && sql[first] == '0') ++first;
    integer &= j - first < 10 || (j - first == 10 && sql.substr(first, 10) <= "2147483647");
    out.push_back(integer ? '\x01' : '\x02');
    number = true;
    i = j;
  }
  return number;
}

bool shape_independent(const Analysis& a) {
  if (a.error || a.statements.size() != 1) return false;
  const Statement& st = a.statements.front();
  if (st.kinds.size() != 1 || (st.kinds[0] != StatementKind::Select && st.kinds[0] != StatementKind::Insert))
    return false;
  return st.writes.empty() && st.settings.empty() && !st.opaque_code;
}

namespace {
// A number left in a normalized text (pg_query_normalize keeps ORDER BY / GROUP BY ordinals):
// any digit that starts a token, i.e. is not part of an identifier or a $n placeholder.
bool has_bare_number(std::string_view s) {
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  for (std::size_t i = 0; i < s.size();) {
    if (alpha(s[i])) {
      while (i < s.size() && (alpha(s[i]) || digit(s[i]) || s[i] == '$')) ++i;
    } else if (s[i] == '$') {
      for (++i; i < s.size() && digit(s[i]);) ++i;
    } else if (digit(s[i]) || (unsigned char)s[i] >= 0x80) {
      return true;
    } else {
      ++i;
    }
  }
  return false;
}
}  // namespace

std::shared_ptr<const Analysis> Analyzer::analyze(std::string_view sql, bool own_text) {
  bool cacheable = max_entries_ > 0 && sql.size() <= max_text_;
  bool by_shape = false;
  if (cacheable) {
    auto it = index_.find(sql);
    if (it != index_.end()) {
      Counters::add(stats_.hits);
      if (it->second != lru_.begin()) lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->analysis;
    }
    by_shape = shape_key(sql, key_);
    if (by_shape) {
      if (auto s = shapes_.find(std::string_view(key_)); s != shapes_.end()) {
        Counters::add(stats_.shape_hits);
        if (s->second != lru_.begin()) lru_.splice(lru_.begin(), lru_, s->second);
        const Entry& e = *s->second;
        if (e.original == sql || !own_text) return e.analysis;
        // The same statement with other numbers: only its own text differs.
        auto copy = std::make_shared<Analysis>(*e.analysis);
        copy->statements.front().text.assign(sql.substr(e.before, sql.size() - e.before - e.after));
        return copy;
      }
    }
  }
  Counters::add(stats_.misses);
  auto fresh = std::make_shared<Analysis>(analyze_uncached(sql));
  if (!cacheable) return fresh;
  static std::atomic<std::uint64_t> next_cache_id{1};
  fresh->cache_id = next_cache_id.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<const Analysis> analysis = std::move(fresh);
  Entry entry;
  if (by_shape && shape_independent(*analysis)) {
    const Statement& st = analysis->statements.front();
    const auto at = std::size_t(std::max(st.location, 0));
    // Every number must have become a $n in the normalized text (pg_query_normalize keeps some,
    // such as GROUP BY 2): otherwise the normalized text depends on the numbers too. Counting is
    // not enough, as true, false and NULL become $n too (found by adversarial testing: `WHERE false
    // ORDER BY 2` gave its normalized text, with its ordinal, to `... ORDER BY 1` of another user),
    // so no number may be left in it either.
    const auto numbers = std::count(key_.begin(), key_.end(), '\x01') + std::count(key_.begin(), key_.end(), '\x02');
    const auto params = std::count(st.normalized.begin(), st.normalized.end(), '$');
    if (numbers == params && !has_bare_number(st.normalized) && at + st.text.size() <= sql.size() &&
        sql.substr(at, st.text.size()) == st.text) {
      entry.shape = true;
      entry.original = std::string(sql);
      entry.before = at;
      entry.after = sql.size() - at - st.text.size();
    }
  }
  // Per entry: the key twice (list node and the map's view), list and hash nodes, the result.
  std::size_t bytes = sql.size() + approximate_bytes(*analysis) + sizeof(Entry) + 64;
  if (entry.shape) bytes += sql.size();
  if (bytes > max_bytes_) return analysis;
  evict_until_fits(bytes);
  entry.text = entry.shape ? key_ : std::string(sql);
  entry.analysis = analysis;
  entry.bytes = bytes;
  lru_.push_front(std::move(entry));
  (lru_.front().shape ? shapes_ : index_).emplace(std::string_view(lru_.front().text), lru_.begin());
  Counters::add(stats_.bytes, bytes);
  stats_.entries.store(lru_.size(), std::memory_order_relaxed);
  return analysis;
}

void Analyzer::evict_until_fits(std::size_t incoming) {
  while (!lru_.empty() && (lru_.size() + 1 > max_entries_ || stats_.bytes.load(std::memory_order_relaxed) + incoming > max_bytes_)) {
    Entry& victim = lru_.back();
    (victim.shape ? shapes_ : index_).erase(std::string_view(victim.text));
    Counters::sub(stats_.bytes, victim.bytes);
    lru_.pop_back();
    Counters::add(stats_.evictions);
  }
  stats_.entries.store(lru_.size(), std::memory_order_relaxed);
}

Analyzer::Stats Analyzer::stats() const {
  Stats s;
  s.hits = stats_.hits.load(std::memory_order_relaxed);
  s.shape_hits = stats_.shape_hits.load(std::memory_order_relaxed);
  s.misses = stats_.misses.load(std::memory_order_relaxed);
  s.evictions = stats_.evictions.load(std::memory_order_relaxed);
  s.entries = stats_.entries.load(std::memory_order_relaxed);
  s.bytes = stats_.bytes.load(std::memory_order_relaxed);
  return s;
}

void Analyzer::clear() {
  index_.clear();
  shapes_.clear();
  lru_.clear();
  stats_.bytes.store(0, std::memory_order_relaxed);
  stats_.entries.store(0, std::memory_order_relaxed);
}

}  // namespace gh::sql
