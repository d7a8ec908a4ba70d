#pragma once
// Analyzer: SQL text -> Analysis (see statement_info.h), parsed with PostgreSQL's own grammar
// (libpg_query) and cached by the exact text, and by shape for texts that differ only in
// numeric literals (see shape_key).
#include <atomic>
#include <cstddef>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sql/statement_info.h"

namespace gh::sql {

// Parses and analyses `sql` without any cache. Thread-safe (libpg_query keeps its memory
// contexts per thread). Never throws on any input; what cannot be parsed comes back as
// Analysis::error with no statements.
Analysis analyze_uncached(std::string_view sql);

// The text with every numeric literal replaced by '\x01' (an integer that fits in int32) or
// '\x02' (any other number), when the text is simple enough for a
// plain scan to find its literals for sure: no quotes of any kind, no '$', no backslash, no
// comments, ASCII only, and every number a plain decimal (123, 1.5, 2e10). false: not simple, or
// no numeric literal (the exact cache serves it). Two texts with the same key parse to the same
// tree except for the values of those literals.
bool shape_key(std::string_view sql, std::string& out);

// Whether an analysis of a text with shape_key may serve every text of that shape: its fields do
// not depend on literal values (one SELECT or INSERT, no UPDATE/DELETE whose WHERE is evaluated,
// no settings). The analyzer also requires that every number became a $n in the normalized text.
// Keep in step with the walker: a new use of a constant's value must be excluded here.
bool shape_independent(const Analysis& analysis);

// A per-thread LRU cache in front of analyze_uncached. NOT thread-safe: give each worker
// thread its own Analyzer (no locks on the hot path). Results are shared, immutable and stay
// valid after eviction for as long as the caller holds them.
class Analyzer {
 public:
  // cache_entries: at most this many texts are cached (0 disables the cache).
  // max_cached_text: longer texts are analysed but not cached.
  // max_cached_bytes: bound on the approximate memory of all cached entries (text + result).
  explicit Analyzer(std::size_t cache_entries = 4096, std::size_t max_cached_text = 64 * 1024,
                    std::size_t max_cached_bytes = 32 * 1024 * 1024);
  Analyzer(const Analyzer&) = delete;
  Analyzer& operator=(const Analyzer&) = delete;

  // own_text false: a caller that reads no statement's text (only what the statement does, which
  // is the same for every text of one shape) may get the cached result of the same statement with
  // other numbers as it is, without the copy that puts this text in it. Its `text` is then another
  // statement's: not for audit, messages or reviewers.
  std::shared_ptr<const Analysis> analyze(std::string_view sql, bool own_text = true);

  struct Stats {
    std::size_t hits = 0;
    std::size_t shape_hits = 0;  // served by shape: the same statement with other numbers
    std::size_t misses = 0;
    std::size_t evictions = 0;
    std::size_t entries = 0;
    std::size_t bytes = 0;  // approximate memory held by cached entries
  };
  Stats stats() const;  // any thread may read them (for /metrics); the owning thread updates them
  void clear();

 private:
  struct Entry {
    std::string text;  // the exact text, or the shape key (shape entries)
    std::shared_ptr<const Analysis> analysis;
    std::size_t bytes = 0;
    bool shape = false;
    std::string original;             // shape entries: the text analysed
    std::size_t before = 0, after = 0;  // shape entries: bytes around the statement's own text
  };
  void evict_until_fits(std::size_t incoming_bytes);

  std::size_t max_entries_;
  std::size_t max_text_;
  std::size_t max_bytes_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // keys view Entry::text
  std::unordered_map<std::string_view, std::list<Entry>::iterator> shapes_;  // shape entries, same
  std::string key_;  // scratch for shape_key
  // Written by the owning thread only, read by any (relaxed): add() is a load and a store, no
  // locked instruction on the hot path.
  struct Counters {
    std::atomic<std::size_t> hits{0}, shape_hits{0}, misses{0}, evictions{0}, entries{0}, bytes{0};
    static void add(std::atomic<std::size_t>& c, std::size_t n = 1) {
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    static void sub(std::atomic<std::size_t>& c, std::size_t n) {
      c.store(c.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }
  };
  Counters stats_;
};

// Approximate heap bytes held by an Analysis (used by the cache's byte bound).
std::size_t approximate_bytes(const Analysis& analysis);

}  // namespace gh::sql
