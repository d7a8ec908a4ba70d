#pragma once
// Reads an audit store that a sink wrote: a SQLite file (opened read-only) or a JSON-lines file.
// Used by `gatehouse audit verify|search|tail|report` and the admin API; never by the proxy's
// writer. Iteration streams (constant memory); search returns one page, newest first.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/record.h"
#include "base/result.h"

namespace gh::audit {

// One record as stored, before anything is trusted: verify decides whether it is sound.
struct StoredRecord {
  std::int64_t seq = 0;     // SQLite: the seq column; JSON lines: the body's "seq" (0 when unreadable)
  std::uint64_t line = 0;   // JSON lines: 1-based line number; SQLite: 0
  std::string node;         // SQLite: the node column; JSON lines: the body's "node"
  std::string prev;         // SQLite: the prev column; JSON lines: "" (only in the body)
  std::string hash;
  std::string body;
  std::optional<RecordIndex> columns;  // SQLite: the search columns as stored
  bool well_formed = true;  // JSON lines: false when the line is not {"hash":"<64 hex>","body":{...}}
  // SQLite (scan only): the first column whose value is not stored as its declared type (e.g. a
  // text column turned into a BLOB of the same bytes: searches compare types, so the row would
  // drop out of them); "" when all are.
  std::string mistyped_column;
  // SQLite blocks (set on a block's last record): how the block's columns (its seq range, record
  // count, time range, last hash, node) disagree with its records; "" when they agree.
  std::string block_problem;
  // JSON lines and blocks: the body's time_us (nullopt when it has none, or the line is unreadable).
  std::optional<std::int64_t> time_us;
};

// Search filters; empty fields do not filter. All values are bound as SQL parameters.
struct SearchFilter {
  std::string identity;  // glob (* and ?) over subject or email, ASCII case-insensitive
  std::string group;     // one of the identity's groups, exactly
  std::string target;
  std::string kind;      // statement kind: select, update, drop, ...
  std::string table;     // a relation: "orders" matches orders in any schema, "public.orders" only that one
  std::string tag;       // a classification tag the statement touched (pii, ...)
  std::string decision;  // allow, mask, review, deny
  std::string rule;
  std::string type;      // record type; "" hides Result records (they are joined to their Statement)
  std::string outcome;   // a record's own outcome or, for a Statement, its Result's
  std::string node;
  std::optional<std::int64_t> since_us, until_us;  // [since, until), microseconds since the epoch
  std::string text;      // substring of the statement text or message, ASCII case-insensitive
  std::size_t limit = 100;
  std::string cursor;    // from SearchPage::next_cursor: continue after that record
};

struct SearchHit {
  Record record;                 // index from the body (JSON lines) or the columns (SQLite)
  std::optional<Record> result;  // a Statement's Result record (same node, session, statement)
};

struct SearchPage {
  std::vector<SearchHit> hits;  // newest first: (time_us, node, seq) descending
  std::string next_cursor;      // "" when there is nothing older
};

class AuditReader {
 public:
  // SQLite when the file starts with the SQLite header; JSON lines when it ends in .jsonl or is
  // not SQLite. A missing file is an error.
  // `follow`: the reader will be asked again as the store grows (tail -f), so an SQLite store is
  // never opened as immutable (see the definition).
  [[nodiscard]] static Result<std::unique_ptr<AuditReader>> open(const std::string& path, bool follow = false);
  virtual ~AuditReader() = default;

  virtual std::string_view description() const = 0;  // "sqlite:/var/lib/gatehouse/audit.db"
  virtual bool has_columns() const = 0;  // stores search columns beside the body (SQLite)

  [[nodiscard]] virtual Result<std::vector<std::string>> nodes() = 0;
  // The store's own consistency (SQLite: PRAGMA integrity_check, which also finds indexes that
  // do not list every row); "" when consistent or when the store has no such check.
  [[nodiscard]] virtual Result<std::string> integrity() { return std::string(); }
  // Records of `node` with seq > after_seq in storage order (SQLite: by the seq column; JSON
  // lines: every line in file order whatever its node, a file holding one chain); stops early
  // when `fn` returns false.
  [[nodiscard]] virtual Result<void> scan(std::string_view node, std::int64_t after_seq,
                                          const std::function<bool(const StoredRecord&)>& fn) = 0;
  // The highest seq stored for `node` (0: none), as scan() would find it: where tail -f starts.
  [[nodiscard]] virtual Result<std::int64_t> last_seq(std::string_view node) {
    std::int64_t max = 0;
    auto r = scan(node, 0, [&](const StoredRecord& s) {
      max = std::max(max, s.seq);
      return true;
    });
    if (!r) return tl::unexpected(r.error());
    return max;
  }
  // Records matching `f` (limit and cursor ignored), oldest first, index filled; no join. Oldest
  // first is by time in SQLite rows, by seq (chain order) in blocks and JSON lines: a statement is
  // sealed when it ends, so its time (when it began) can be before that of the record before it.
  [[nodiscard]] virtual Result<void> each(const SearchFilter& f, const std::function<bool(const Record&)>& fn) = 0;
  // One page of matches, newest first, with Statement records joined to their Result.
  [[nodiscard]] virtual Result<SearchPage> search(const SearchFilter& f) = 0;
};

// True when the record's index satisfies the filter, except `outcome` on a Statement (which needs
// its Result) and the cursor. The reference semantics the SQLite query follows. `identity` also
// matches the user name a client gave in a record without a subject (a failed login): `body`
// is read for it then.
bool matches(const RecordIndex& x, const SearchFilter& f, std::string_view body = {});


// Sets one filter field from a textual key/value (CLI option, HTTP query parameter): identity,
// group, target, kind, table, tag, decision, rule, type, outcome, node, since, until, text, limit,
// cursor. Unknown keys and bad values fail.
[[nodiscard]] Result<void> set_filter(SearchFilter& f, std::string_view key, std::string_view value,
                                      std::int64_t now_us);

// "2026-01-02", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456Z" (UTC, or a +hh:mm
// offset), an age ("15m", "24h", "7d": that long before now_us), or "now".
[[nodiscard]] Result<std::int64_t> parse_time(std::string_view text, std::int64_t now_us);

// One JSON object: the record body's fields, plus "hash" and, for a Statement with a Result,
// "result": {"outcome","sqlstate","rows","duration_us","message"}.
std::string hit_json(const SearchHit& hit);

}  // namespace gh::audit
