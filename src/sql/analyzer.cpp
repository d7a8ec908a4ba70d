#include "sql/analyzer.h"

#include <pg_query.h>

#include <cstring>

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

std::string normalize(const std::string& text) {
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

Analysis analyze_uncached(std::string_view sql) {
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
                           parsed.r.error->cursorpos};
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
    out.error = ParseError{std::string("statement could not be analysed: ") + std::string(json_error.message), 0};
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

std::shared_ptr<const Analysis> Analyzer::analyze(std::string_view sql) {
  bool cacheable = max_entries_ > 0 && sql.size() <= max_text_;
  if (cacheable) {
    auto it = index_.find(sql);
    if (it != index_.end()) {
      ++stats_.hits;
      if (it->second != lru_.begin()) lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->analysis;
    }
  }
  ++stats_.misses;
  auto analysis = std::make_shared<const Analysis>(analyze_uncached(sql));
  if (!cacheable) return analysis;
  // Per entry: the key twice (list node and the map's view), list and hash nodes, the result.
  std::size_t bytes = sql.size() + approximate_bytes(*analysis) + sizeof(Entry) + 64;
  if (bytes > max_bytes_) return analysis;
  evict_until_fits(bytes);
  lru_.push_front(Entry{std::string(sql), analysis, bytes});
  index_.emplace(std::string_view(lru_.front().text), lru_.begin());
  stats_.bytes += bytes;
  stats_.entries = lru_.size();
  return analysis;
}

void Analyzer::evict_until_fits(std::size_t incoming) {
  while (!lru_.empty() && (lru_.size() + 1 > max_entries_ || stats_.bytes + incoming > max_bytes_)) {
    Entry& victim = lru_.back();
    index_.erase(std::string_view(victim.text));
    stats_.bytes -= victim.bytes;
    lru_.pop_back();
    ++stats_.evictions;
  }
  stats_.entries = lru_.size();
}

Analyzer::Stats Analyzer::stats() const { return stats_; }

void Analyzer::clear() {
  index_.clear();
  lru_.clear();
  stats_.bytes = 0;
  stats_.entries = 0;
}

}  // namespace gh::sql
