#include "audit/reader.h"

#include "audit/lines.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <variant>
#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <queue>
#include <set>
#include <span>
#include <tuple>

#include <nlohmann/json.hpp>

#include "audit/block.h"
#include "audit/event.h"
#include "audit/sqlite_schema.h"
#include "policy/glob.h"
#include "sql/statement_info.h"
#include "store/sqlite.h"

namespace gh::audit {

namespace {

using nlohmann::json;

// `s` as it appears inside a JSON string of a record body (quotes, backslashes and control
// characters escaped as the canonical encoder writes them).
std::string json_text(std::string_view s) {
  const std::string quoted = json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  return quoted.substr(1, quoted.size() - 2);
}

// `needle_lower` (lower case) in `text`, ASCII case-insensitively, without a lowered copy of text.
bool icontains(std::string_view text, std::string_view needle_lower) {
  return std::search(text.begin(), text.end(), needle_lower.begin(), needle_lower.end(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         }) != text.end();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool contains_item(std::string_view list, std::string_view item) {  // list is ",a,b,"
  return !item.empty() && list.find("," + std::string(item) + ",") != std::string_view::npos;
}

// How a relation the table filter names appears in a body: as the whole string "T", or (a bare
// name) ending a qualified one (.T"), or (public.T) as the unqualified "T".
std::pair<std::string, std::string> table_strings(std::string_view table) {
  const std::string whole = "\"" + json_text(table) + "\"";
  if (table.find('.') == std::string_view::npos) return {whole, "." + json_text(table) + "\""};
  if (table.rfind("public.", 0) == 0) return {whole, "\"" + json_text(table.substr(7)) + "\""};
  return {whole, whole};
}

// "orders" finds orders in any schema; "public.orders" also finds the unqualified name, which the
// default search_path resolves to public. `body` confirms it (a name with a comma in it).
bool table_matches(std::string_view relations, std::string_view table, std::string_view body) {
  bool column = contains_item(relations, table);
  if (!column && table.rfind("public.", 0) == 0) column = contains_item(relations, table.substr(7));
  if (!column && table.find('.') == std::string_view::npos)
    column = relations.find("." + std::string(table) + ",") != std::string_view::npos;
  if (!column) return false;
  const auto [whole, other] = table_strings(table);
  return body.find(whole) != std::string_view::npos || body.find(other) != std::string_view::npos;
}

// Newest-first order key: (time_us, node, seq) descending; unique because (node, seq) is.
using Key = std::tuple<std::int64_t, std::string, std::int64_t>;

Key key_of(const Record& r) { return {r.index.time_us, r.index.node, std::int64_t(r.seq)}; }

std::string cursor_of(const Record& r) {
  return std::to_string(r.index.time_us) + ":" + std::to_string(r.seq) + ":" + r.index.node;
}

Result<std::optional<Key>> parse_cursor(std::string_view c) {
  if (c.empty()) return std::optional<Key>{};
  const auto a = c.find(':');
  const auto b = a == std::string_view::npos ? a : c.find(':', a + 1);
  std::int64_t t = 0, s = 0;
  if (b == std::string_view::npos ||
      std::from_chars(c.data(), c.data() + a, t).ptr != c.data() + a ||
      std::from_chars(c.data() + a + 1, c.data() + b, s).ptr != c.data() + b)
    return fail("", "bad cursor \"" + std::string(c) + "\"");
  return std::optional<Key>{Key{t, std::string(c.substr(b + 1)), s}};
}

bool sqlite_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char buf[16] = {};
  in.read(buf, sizeof buf);
  return in.gcount() == 16 && std::memcmp(buf, "SQLite format 3", 16) == 0;
}

// ---------------------------------------------------------------------------------------------
// SQLite

// A statement's result record comes after it and before the node's next start: session ids begin
// again at 1 when the proxy restarts, so (node, session, statement) alone can name a statement of
// an earlier run.
constexpr const char* kSameRun =
    "r.seq > a.seq AND r.seq < coalesce((SELECT min(s.seq) FROM audit_records s WHERE s.type = 'start' AND "
    "s.seq > a.seq), 9223372036854775807)";

constexpr const char* kColumns =
    "a.node, a.seq, a.prev, a.hash, a.body, a.time, a.time_us, a.type, a.session, a.statement, a.subject, a.email, "
    "a.groups, a.kind, a.client, a.target, a.environment, a.database, a.kinds, a.relations, a.tags, a.decision, "
    "a.rule, a.outcome, a.sqlstate, a.rows, a.duration_us, a.text";

// The storage class each column of kColumns holds (in its order), as typeof() names it.
struct ColumnType {
  const char* name;
  const char* type;
};
constexpr ColumnType kColumnTypes[] = {
    {"node", "text"},     {"seq", "integer"},   {"prev", "text"},        {"hash", "text"},
    {"body", "text"},     {"time", "text"},     {"time_us", "integer"},  {"type", "text"},
    {"session", "integer"}, {"statement", "integer"}, {"subject", "text"}, {"email", "text"},
    {"groups", "text"},   {"kind", "text"},     {"client", "text"},      {"target", "text"},
    {"environment", "text"}, {"database", "text"}, {"kinds", "text"},    {"relations", "text"},
    {"tags", "text"},     {"decision", "text"}, {"rule", "text"},        {"outcome", "text"},
    {"sqlstate", "text"}, {"rows", "integer"},  {"duration_us", "integer"}, {"text", "text"},
};
static_assert(std::size(kColumnTypes) == 28);

StoredRecord read_row(const store::SqliteStatement& st) {
  StoredRecord r;
  auto t = [&](int i) { return std::string(st.column_text(i)); };
  r.node = t(0);
  r.seq = st.column_int(1);
  r.prev = t(2);
  r.hash = t(3);
  r.body = t(4);
  RecordIndex x;
  x.node = r.node;
  x.time = t(5);
  x.time_us = st.column_int(6);
  x.type = t(7);
  x.session = st.column_int(8);
  x.statement = st.column_int(9);
  x.subject = t(10);
  x.email = t(11);
  x.groups = t(12);
  x.kind = t(13);
  x.client = t(14);
  x.target = t(15);
  x.environment = t(16);
  x.database = t(17);
  x.kinds = t(18);
  x.relations = t(19);
  x.tags = t(20);
  x.decision = t(21);
  x.rule = t(22);
  x.outcome = t(23);
  x.sqlstate = t(24);
  x.rows = st.column_int(25);
  x.duration_us = st.column_int(26);
  x.text = t(27);
  r.columns = std::move(x);
  return r;
}

Record to_record(StoredRecord&& s) {
  Record r;
  r.seq = std::uint64_t(s.seq);
  r.prev = std::move(s.prev);
  r.hash = std::move(s.hash);
  r.body = std::move(s.body);
  if (s.columns) r.index = std::move(*s.columns);
  return r;
}

// A WHERE clause made of fixed fragments; every user value is a bound parameter.
struct Where {
  std::string sql = " WHERE 1";
  std::vector<std::variant<std::int64_t, std::string>> binds;
  void add(const char* fragment, std::string v) {
    sql += " AND ";
    sql += fragment;
    binds.emplace_back(std::move(v));
  }
  void add_int(const char* fragment, std::int64_t v) {
    sql += " AND ";
    sql += fragment;
    binds.emplace_back(v);
  }
  void bind(store::SqliteStatement& st, int first = 1) const {
    int i = first;
    for (const auto& b : binds) {
      if (std::holds_alternative<std::int64_t>(b))
        st.bind(i++, std::get<std::int64_t>(b));
      else
        st.bind(i++, std::string_view(std::get<std::string>(b)));
    }
  }
};

// A statement recorded when it ended holds its outcome itself; shown as its result, as a
// Result record of an older store (recorded before and after the statement) is.
void own_results(SearchPage& page) {
  for (auto& h : page.hits) {
    const auto& x = h.record.index;
    if (!h.result && x.type == "statement" && !x.outcome.empty() && x.outcome != "refused") h.result = h.record;
  }
}

Where where_of(const SearchFilter& f) {
  Where w;
  if (!f.identity.empty()) {
    // The pattern has no brackets (set_filter refuses them), so GLOB sees only * and ?.
    // A failed login has no subject: the user name the client gave is in the body.
    w.add("(lower(a.subject) GLOB ?", lower(f.identity));
    w.sql += " OR lower(a.email) GLOB ? OR (a.subject = '' AND lower(json_extract(a.body, '$.identity.user')) GLOB ?))";
    w.binds.emplace_back(lower(f.identity));
    w.binds.emplace_back(lower(f.identity));
  }
  // Groups and relations are stored as ",a,b,", which cannot tell the group "cn=ops,ou=teams" from
  // the groups "cn=ops" and "ou=teams" (found by an audit trial): a match must also be a whole JSON
  // string of the body ("cn=ops" is not), checked only on the rows the column lets through.
  if (!f.group.empty()) {
    w.add("instr(a.groups, ?) > 0", "," + f.group + ",");
    w.add("instr(a.body, ?) > 0", "\"" + json_text(f.group) + "\"");
  }
  if (!f.target.empty()) w.add("a.target = ?", f.target);
  if (!f.kind.empty()) w.add("instr(a.kinds, ?) > 0", "," + f.kind + ",");
  if (!f.table.empty()) {
    w.add("(instr(a.relations, ?) > 0", "," + f.table + ",");
    if (f.table.find('.') == std::string::npos) {
      w.sql += " OR instr(a.relations, ?) > 0";
      w.binds.emplace_back("." + f.table + ",");
    } else if (f.table.rfind("public.", 0) == 0) {
      w.sql += " OR instr(a.relations, ?) > 0";
      w.binds.emplace_back("," + f.table.substr(7) + ",");
    }
    w.sql += ")";
    // As for groups: the name as a whole string of the body ("T", or "schema.T" for a bare name;
    // "orders" too for public.orders).
    const auto [whole, other] = table_strings(f.table);
    w.add("(instr(a.body, ?) > 0", whole);
    w.sql += " OR instr(a.body, ?) > 0)";
    w.binds.emplace_back(other);
  }
  if (!f.tag.empty()) w.add("instr(a.tags, ?) > 0", "," + f.tag + ",");
  if (!f.decision.empty()) w.add("a.decision = ?", f.decision);
  if (!f.rule.empty()) w.add("a.rule = ?", f.rule);
  if (!f.node.empty()) w.add("a.node = ?", f.node);
  if (f.type.empty())
    w.sql += " AND a.type <> 'result'";
  else
    w.add("a.type = ?", f.type);
  if (!f.outcome.empty()) {
    w.add("(a.outcome = ?", f.outcome);
    w.sql +=
        " OR (a.type = 'statement' AND EXISTS (SELECT 1 FROM audit_records r WHERE r.session = a.session AND "
        "r.statement = a.statement AND r.node = a.node AND r.type = 'result' AND r.outcome = ? AND " +
        std::string(kSameRun) + ")))";
    w.binds.emplace_back(f.outcome);
  }
  if (f.since_us) w.add_int("a.time_us >= ?", *f.since_us);
  if (f.until_us) w.add_int("a.time_us < ?", *f.until_us);
  if (!f.text.empty()) {
    // A statement's text column holds its SQL; its error message is in the body (found by an audit
    // trial: --text 'division by zero' found nothing). The body is searched as JSON text first, so
    // that only bodies that may hold the words are parsed.
    w.add("(instr(lower(a.text), ?) > 0", lower(f.text));
    w.sql += " OR (a.type = 'statement' AND instr(lower(a.body), ?) > 0 AND "
             "instr(lower(json_extract(a.body, '$.message')), ?) > 0))";
    w.binds.emplace_back(json_text(lower(f.text)));
    w.binds.emplace_back(lower(f.text));
  }
  return w;
}

StoredRecord parse_line(std::string_view line, std::uint64_t number);

// The record lines of a block's data ("[\n" line ",\n" line ... "\n]", see sqlite_schema.h), each
// passed to fn; false when fn stopped.
bool each_block_line(std::string_view data, const std::function<bool(std::string_view line)>& fn) {
  std::size_t at = 0;
  while (at < data.size()) {
    std::size_t end = data.find('\n', at);
    if (end == std::string_view::npos) end = data.size();
    std::string_view line = data.substr(at, end - at);
    at = end + 1;
    if (line == "[" || line == "]" || line.empty()) continue;
    if (line.back() == ',') line.remove_suffix(1);
    if (line.size() > 2 && line.substr(line.size() - 2) == "}]" && at >= data.size()) line.remove_suffix(1);  // "...}]" without its own line
    if (!fn(line)) return false;
  }
  return true;
}

// The search columns of a blocks store are derived from the bodies into a temporary table of the
// reader's own connection, named as the rows layout's table (a TEMP table hides a main one of
// the same name), so that every query below serves both layouts.
constexpr const char* kTempRecords = R"sql(
CREATE TEMP TABLE IF NOT EXISTS audit_records (
  seq INTEGER PRIMARY KEY, node TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL,
  time TEXT NOT NULL, time_us INTEGER NOT NULL, type TEXT NOT NULL, session INTEGER NOT NULL,
  statement INTEGER NOT NULL, subject TEXT NOT NULL, email TEXT NOT NULL, groups TEXT NOT NULL, kind TEXT NOT NULL,
  client TEXT NOT NULL, target TEXT NOT NULL, environment TEXT NOT NULL, database TEXT NOT NULL, kinds TEXT NOT NULL,
  relations TEXT NOT NULL, tags TEXT NOT NULL, decision TEXT NOT NULL, rule TEXT NOT NULL, outcome TEXT NOT NULL,
  sqlstate TEXT NOT NULL, rows INTEGER NOT NULL, duration_us INTEGER NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS temp.audit_records_time ON audit_records (time_us);
CREATE INDEX IF NOT EXISTS temp.audit_records_result ON audit_records (session, statement) WHERE type = 'result';
CREATE INDEX IF NOT EXISTS temp.audit_records_start ON audit_records (seq) WHERE type = 'start';
)sql";

// Strings a record line must hold for a record to match a filter: necessary, not sufficient (the
// query decides). A store of blocks reads only the lines that hold them into its temporary table,
// so that a search for something rare does not parse every record (measured: a text search
// matching nothing in 1.9 million records took 61 s parsing them all). Result and Start records
// are always read: statements' outcomes and runs are looked up in them.
struct LineFilter {
  std::vector<std::string> exact;  // each must occur as it is
  std::string folded;              // must occur ASCII case-insensitively (lower case), if set
  std::string key;                 // identifies the filter, for the reader's cache
  bool matches(std::string_view line) const {
    // The record's type is its body's last member but "v" (keys are sorted; nothing nested after it).
    if (const auto t = line.rfind("\"type\":\""); t != std::string_view::npos) {
      const std::string_view type = line.substr(t + 8, 7);
      if (type == "result\"" || type.substr(0, 6) == "start\"") return true;
    }
    for (const auto& e : exact)
      if (!has(line, e)) return false;
    if (folded.empty()) return true;
    thread_local std::string low;
    low.assign(line);
    for (auto& c : low)
      if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return has(low, folded);
  }
  static bool has(std::string_view hay, std::string_view needle) {  // glibc's memmem: vectorised
    return ::memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
  }
};

LineFilter line_filter(const SearchFilter& f) {
  LineFilter lf;
  auto member = [](std::string_view k, std::string_view v) { return "\"" + std::string(k) + "\":\"" + json_text(v) + "\""; };
  if (!f.target.empty()) lf.exact.push_back(member("target", f.target));
  if (!f.node.empty()) lf.exact.push_back(member("node", f.node));
  if (!f.decision.empty()) lf.exact.push_back(member("action", f.decision));
  if (!f.rule.empty()) lf.exact.push_back(member("rule", f.rule));
  if (!f.type.empty()) lf.exact.push_back(member("type", f.type));
  if (!f.kind.empty()) lf.exact.push_back("\"" + json_text(f.kind) + "\"");
  if (!f.tag.empty()) lf.exact.push_back("\"" + json_text(f.tag) + "\"");
  if (!f.group.empty()) lf.exact.push_back("\"" + json_text(f.group) + "\"");
  if (!f.table.empty()) {
    // Either of the two forms table_matches accepts: their common part, the last name.
    const auto dot = f.table.rfind('.');
    lf.exact.push_back(json_text(dot == std::string::npos ? f.table : f.table.substr(dot + 1)) + "\"");
  }
  if (!f.text.empty()) lf.folded = lower(json_text(lower(f.text)));
  for (const auto& e : lf.exact) lf.key += e + '\0';
  lf.key += '\1' + lf.folded;
  return lf;
}

// The records of a block's data that can match `lf` (and every Result and Start record), parsed:
// what a search loads and what each() matches. A line that is not a record is skipped (verify
// reports it). false when fn stopped.
bool each_block_record(std::string_view data, const LineFilter& lf, const std::function<bool(Record&)>& fn) {
  return each_block_line(data, [&](std::string_view line) {
    if (!lf.matches(line)) return true;
    const auto parts = split_record_line(line);
    if (!parts) return true;
    auto rec = record_of(std::string(parts->hash), std::string(parts->body));
    if (!rec || rec->seq == 0) return true;
    return fn(*rec);
  });
}

// Whether each() gives `rec` for `f`: search's filter without the join (a statement by its own
// outcome).
bool each_matches(const Record& rec, const SearchFilter& f) {
  if (!matches(rec.index, f, rec.body)) return false;
  return f.outcome.empty() || rec.index.type != "statement" || rec.index.outcome == f.outcome;
}

class SqliteReader final : public AuditReader {
 public:
  SqliteReader(store::SqliteDb db, std::string path, bool blocks)
      : db_(std::move(db)), description_("sqlite:" + path), blocks_(blocks) {}

  std::string_view description() const override { return description_; }
  bool has_columns() const override { return !blocks_; }

  Result<std::vector<std::string>> nodes() override {
    auto st = db_.prepare(blocks_ ? "SELECT DISTINCT node FROM main.audit_blocks ORDER BY node"
                                  : "SELECT DISTINCT node FROM audit_records ORDER BY node");
    if (!st) return tl::unexpected(st.error());
    std::vector<std::string> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      out.emplace_back(st->column_text(0));
    }
    return out;
  }

  Result<std::int64_t> last_seq(std::string_view node) override {
    auto st = db_.prepare(blocks_ ? "SELECT max(last_seq) FROM main.audit_blocks WHERE node = ?1"
                                  : "SELECT max(seq) FROM audit_records WHERE node = ?1");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, node);
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    const std::int64_t max = *row && !st->column_is_null(0) ? st->column_int(0) : 0;
    st->reset();
    return max;
  }

  Result<std::string> integrity() override {
    auto st = db_.prepare("PRAGMA integrity_check");
    if (!st) return tl::unexpected(st.error());
    std::string out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      const std::string line(st->column_text(0));
      if (line == "ok") continue;
      if (!out.empty()) out += "; ";
      out += line;
      if (out.size() > 1000) break;
    }
    return out;
  }

  Result<void> scan(std::string_view node, std::int64_t after_seq,
                    const std::function<bool(const StoredRecord&)>& fn) override {
    if (blocks_) return scan_blocks(node, after_seq, fn);
    std::string types;
    for (const auto& c : kColumnTypes) types += std::string(types.empty() ? "" : "||") + "typeof(a." + c.name + ")";
    auto st = db_.prepare(std::string("SELECT ") + kColumns + ", " + types +
                          " FROM audit_records a WHERE a.node = ?1 AND a.seq > ?2 ORDER BY a.seq");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, node).bind(2, after_seq);
    static const std::string expected = [] {
      std::string e;
      for (const auto& c : kColumnTypes) e += c.type;
      return e;
    }();
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return {};
      StoredRecord rec = read_row(*st);
      if (const std::string_view got = st->column_text(28); got != expected) {
        std::size_t at = 0;
        for (const auto& c : kColumnTypes) {
          if (got.substr(at, std::string_view(c.type).size()) != c.type) {
            rec.mistyped_column = c.name;
            break;
          }
          at += std::string_view(c.type).size();
        }
        if (rec.mistyped_column.empty()) rec.mistyped_column = "?";
      }
      if (!fn(rec)) {
        st->reset();
        return {};
      }
    }
  }

  Result<void> each(const SearchFilter& f, const std::function<bool(const Record&)>& fn) override {
    if (blocks_) return each_in_blocks(f, fn);
    const Where w = where_of(f);
    auto st = db_.prepare(std::string("SELECT ") + kColumns + " FROM audit_records a" + w.sql +
                          " ORDER BY a.time_us, a.node, a.seq");
    if (!st) return tl::unexpected(st.error());
    w.bind(*st);
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return {};
      if (!fn(to_record(read_row(*st)))) {
        st->reset();
        return {};
      }
    }
  }

  Result<SearchPage> search(const SearchFilter& f) override {
    auto cursor = parse_cursor(f.cursor);
    if (!cursor) return tl::unexpected(cursor.error());
    // Blocks: read newest first, a few more each time, until the page is full and no block left
    // unread can hold a record that sorts before its last one (a block's max_time_us bounds it).
    std::vector<BlockSpan> todo;
    if (blocks_) {
      auto t = unread_blocks(f);
      if (!t) return tl::unexpected(t.error());
      todo = std::move(*t);
    }
    std::size_t next = 0, step = 4;
    SearchPage page;
    for (;;) {
      if (next < todo.size()) {
        const std::size_t n = std::min(step, todo.size() - next);
        if (auto m = load(std::span<const BlockSpan>(todo).subspan(next, n), f); !m) return tl::unexpected(m.error());
        next += n;
        step *= 2;
      }
      auto p = page_of(f, *cursor);
      if (!p) return tl::unexpected(p.error());
      page = std::move(*p);
      if (next >= todo.size()) break;
      if (page.hits.size() > f.limit) {
        std::int64_t unread_max = INT64_MIN;
        for (std::size_t i = next; i < todo.size(); ++i) unread_max = std::max(unread_max, todo[i].max_time);
        if (page.hits.back().record.index.time_us > unread_max) break;
      }
    }
    if (page.hits.size() > f.limit) {
      page.hits.resize(f.limit);
      page.next_cursor = cursor_of(page.hits.back().record);
    }
    auto join = db_.prepare(std::string("SELECT ") + kColumns +
                            " FROM audit_records a WHERE a.session = ?1 AND a.statement = ?2 AND a.node = ?3 AND "
                            "a.type = 'result' AND a.seq > ?4 AND a.seq < coalesce((SELECT min(s.seq) FROM audit_records s "
                            "WHERE s.type = 'start' AND s.seq > ?4), 9223372036854775807) ORDER BY a.seq LIMIT 1");
    if (!join) return tl::unexpected(join.error());
    for (auto& h : page.hits) {
      if (h.record.index.type != "statement" || !h.record.index.outcome.empty()) continue;  // says its own outcome
      join->bind(1, h.record.index.session).bind(2, h.record.index.statement).bind(3, h.record.index.node);
      join->bind(4, std::int64_t(h.record.seq));
      auto row = join->step();
      if (!row) return tl::unexpected(row.error());
      if (*row) h.result = to_record(read_row(*join));
      join->reset();
    }
    own_results(page);
    return page;
  }

 private:
  // The newest limit + 1 matches, newest first (no join).
  Result<SearchPage> page_of(const SearchFilter& f, const std::optional<Key>& cursor) {
    Where w = where_of(f);
    if (cursor) {
      w.sql += " AND (a.time_us, a.node, a.seq) < (?, ?, ?)";
      w.binds.emplace_back(std::get<0>(*cursor));
      w.binds.emplace_back(std::get<1>(*cursor));
      w.binds.emplace_back(std::get<2>(*cursor));
    }
    w.sql += " ORDER BY a.time_us DESC, a.node DESC, a.seq DESC LIMIT ?";
    w.binds.emplace_back(std::int64_t(f.limit) + 1);
    auto st = db_.prepare(std::string("SELECT ") + kColumns + " FROM audit_records a" + w.sql);
    if (!st) return tl::unexpected(st.error());
    w.bind(*st);
    SearchPage page;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      page.hits.push_back(SearchHit{to_record(read_row(*st)), std::nullopt});
    }
    return page;
  }

  // Blocks: the records of every block with first_seq > after_first, in order, each passed with the
  // block's columns checked against its records (a disagreement is set on its last record).
  struct BlockRow {
    std::int64_t first = 0, last = 0, count = 0, min_time = 0, max_time = 0;
    std::string node, last_hash;
    std::string error;  // the data could not be read (then it is passed as "")
  };
  Result<void> each_block(std::string_view node, std::int64_t after_first,
                          const std::function<bool(const BlockRow&, std::string_view data)>& fn) {
    auto st = db_.prepare(node.empty() ? "SELECT first_seq, last_seq, records, node, min_time_us, max_time_us, last_hash, data "
                                         "FROM main.audit_blocks WHERE first_seq > ?1 ORDER BY first_seq"
                                       : "SELECT first_seq, last_seq, records, node, min_time_us, max_time_us, last_hash, data "
                                         "FROM main.audit_blocks WHERE first_seq > ?1 AND node = ?2 ORDER BY first_seq");
    if (!st) return tl::unexpected(st.error());
    st->bind(1, after_first);
    if (!node.empty()) st->bind(2, node);
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return {};
      BlockRow b{st->column_int(0), st->column_int(1), st->column_int(2), st->column_int(4), st->column_int(5),
                 std::string(st->column_text(3)), std::string(st->column_text(6)), {}};
      auto text = block_text(st->column_blob(7));
      if (!text) {
        b.error = text.error().message;
        text = std::string();
      }
      if (!fn(b, *text)) {
        st->reset();
        return {};
      }
    }
  }

  Result<void> scan_blocks(std::string_view node, std::int64_t after_seq, const std::function<bool(const StoredRecord&)>& fn) {
    // The block holding after_seq + 1 and every one after it.
    std::int64_t from = 0;
    if (after_seq > 0) {
      auto st = db_.prepare("SELECT max(first_seq) FROM main.audit_blocks WHERE first_seq <= ?1");
      if (!st) return tl::unexpected(st.error());
      st->bind(1, after_seq + 1);
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (*row && !st->column_is_null(0)) from = st->column_int(0) - 1;
      st->reset();
    }
    std::vector<StoredRecord> recs;
    return each_block(node, from, [&](const BlockRow& b, std::string_view data) {
      recs.clear();
      if (!b.error.empty()) {  // verify reports it as a record that is not one
        StoredRecord bad;
        bad.well_formed = false;
        bad.seq = b.first;
        bad.block_problem = "the block of records " + std::to_string(b.first) + "-" + std::to_string(b.last) +
                            " cannot be read (" + b.error + "): its data was changed";
        return fn(bad);
      }
      each_block_line(data, [&](std::string_view line) {
        recs.push_back(parse_line(line, 0));
        return true;
      });
      // What the block's columns say must be what its records say: searches skip blocks by them.
      std::string problem;
      std::int64_t lo = INT64_MAX, hi = INT64_MIN;
      bool sound = !recs.empty();
      for (const auto& x : recs) {
        if (!x.well_formed || !x.time_us) {
          sound = false;
          continue;
        }
        lo = std::min(lo, *x.time_us);
        hi = std::max(hi, *x.time_us);
      }
      if (sound) {
        if (recs.front().seq != b.first || recs.back().seq != b.last || std::int64_t(recs.size()) != b.count)
          problem = "the block of records " + std::to_string(b.first) + "-" + std::to_string(b.last) +
                    " says it holds records " + std::to_string(b.first) + " to " + std::to_string(b.last) + " (" +
                    std::to_string(b.count) + "), but holds " + std::to_string(recs.front().seq) + " to " +
                    std::to_string(recs.back().seq) + " (" + std::to_string(recs.size()) + ")";
        else if (lo != b.min_time || hi != b.max_time)
          problem = "the time range of the block of records " + std::to_string(b.first) + "-" + std::to_string(b.last) +
                    " disagrees with its records' times: searches by time would miss some of them";
        else if (recs.back().hash != b.last_hash)
          problem = "the last_hash of the block of records " + std::to_string(b.first) + "-" + std::to_string(b.last) +
                    " is not the hash of record " + std::to_string(b.last);
        else if (b.node != recs.back().node)
          problem = "the node column of the block of records " + std::to_string(b.first) + "-" + std::to_string(b.last) +
                    " was changed";
      }
      for (std::size_t i = 0; i < recs.size(); ++i) {
        auto& x = recs[i];
        if (x.well_formed && x.seq > 0 && x.seq <= after_seq) continue;
        if (i + 1 == recs.size()) x.block_problem = problem;
        if (!fn(x)) return false;
      }
      return true;
    });
  }

  // A store of blocks is read for each() as a JSON-lines file is, in chain order, each record of
  // the time range matched as it is parsed: a report reads every record of its period, and
  // deriving them into the temporary table first (an insert into three indexes, then a sorted
  // select and a copy of 28 columns each) took most of its time (measured: a report over 1.5
  // million records 46 s -> 21 s; 15 s with record_of reading the parser's events).
  Result<void> each_in_blocks(const SearchFilter& f, const std::function<bool(const Record&)>& fn) {
    const LineFilter lf = line_filter(f);
    auto st = blocks_in_range(f, "data", "first_seq");
    if (!st) return tl::unexpected(st.error());
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) return {};
      auto text = block_text(st->column_blob(0));
      if (!text) continue;  // verify reports it
      const bool more = each_block_record(*text, lf, [&](Record& rec) { return !each_matches(rec, f) || fn(rec); });
      if (!more) {
        st->reset();
        return {};
      }
    }
  }

  // `columns` of the blocks whose time range meets the filter's, in `order`.
  Result<store::SqliteStatement> blocks_in_range(const SearchFilter& f, const char* columns, const char* order) {
    auto st = db_.prepare(std::string("SELECT ") + columns +
                          " FROM main.audit_blocks WHERE max_time_us >= ?1 AND min_time_us < ?2 ORDER BY " + order);
    if (st) st->bind(1, f.since_us.value_or(INT64_MIN)).bind(2, f.until_us.value_or(INT64_MAX));
    return st;
  }

  // Blocks not read into the temporary table yet whose time range meets the filter's, newest first.
  struct BlockSpan {
    std::int64_t first = 0, max_time = 0;
  };
  Result<std::vector<BlockSpan>> unread_blocks(const SearchFilter& f) {
    // The temporary table holds the lines of one line filter: another one starts it again.
    if (const auto lf = line_filter(f); temp_ready_ && lf.key != filter_key_) {
      if (auto r = db_.exec("DELETE FROM temp.audit_records"); !r) return tl::unexpected(r.error());
      loaded_.clear();
    }
    auto st = blocks_in_range(f, "first_seq, max_time_us", "first_seq DESC");
    if (!st) return tl::unexpected(st.error());
    std::vector<BlockSpan> out;
    for (;;) {
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      if (!loaded_.count(st->column_int(0))) out.push_back(BlockSpan{st->column_int(0), st->column_int(1)});
    }
    return out;
  }

  // Derives the search columns of the records of `blocks` into the temporary table.
  Result<void> load(std::span<const BlockSpan> blocks, const SearchFilter& f) {
    const LineFilter lf = line_filter(f);
    filter_key_ = lf.key;
    if (blocks.empty()) return {};
    if (!temp_ready_) {
      if (auto r = db_.exec(kTempRecords); !r) return r;
      auto ins = db_.prepare(kSqliteInsert);
      if (!ins) return tl::unexpected(ins.error());
      insert_ = std::move(*ins);
      temp_ready_ = true;
    }
    auto sel = db_.prepare("SELECT data FROM main.audit_blocks WHERE first_seq = ?1");
    if (!sel) return tl::unexpected(sel.error());
    if (auto r = db_.exec("BEGIN"); !r) return r;
    std::optional<Error> err;
    std::vector<std::int64_t> read;
    for (const auto& b : blocks) {
      sel->bind(1, b.first);
      auto row = sel->step();
      if (!row) {
        err = row.error();
        break;
      }
      if (!*row) continue;  // pruned meanwhile
      auto text = block_text(sel->column_blob(0));
      sel->reset();
      read.push_back(b.first);
      if (!text) continue;  // verify reports it
      each_block_record(*text, lf, [&](Record& rec) {
        auto& s = insert_;
        bind_row(s, rec);
        auto st = s.step();
        if (!st) {
          s.reset();  // a record stored twice (an edited store): the first one is searched
          if (st.error().message.find("UNIQUE") == std::string::npos) err = st.error();
        }
        return !err;
      });
      if (err) break;
    }
    if (err) {
      (void)db_.exec("ROLLBACK");
      return tl::unexpected(*err);
    }
    if (auto r = db_.exec("COMMIT"); !r) return r;
    loaded_.insert(read.begin(), read.end());
    return {};
  }

  store::SqliteDb db_;
  std::string description_;
  bool blocks_ = false;
  bool temp_ready_ = false;
  std::set<std::int64_t> loaded_;  // blocks (by first_seq) read into the temporary table
  std::string filter_key_;          // the LineFilter their lines were read with
  store::SqliteStatement insert_;
};

// ---------------------------------------------------------------------------------------------
// JSON lines: {"hash":"<64 hex>","body":<body>} per line (see jsonl_sink.cpp).

StoredRecord parse_line(std::string_view line, std::uint64_t number) {
  StoredRecord r;
  r.line = number;
  const auto parts = split_record_line(line);
  if (!parts) {
    r.well_formed = false;
    r.body = std::string(line);
    return r;
  }
  r.hash = std::string(parts->hash);
  r.body = std::string(parts->body);
  auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return r;  // verify reports the body
  if (auto it = j.find("seq"); it != j.end() && it->is_number_integer()) r.seq = it->get<std::int64_t>();
  if (auto it = j.find("node"); it != j.end() && it->is_string()) r.node = it->get<std::string>();
  if (auto it = j.find("time_us"); it != j.end() && it->is_number_integer()) r.time_us = it->get<std::int64_t>();
  return r;
}

class JsonLinesReader final : public AuditReader {
 public:
  explicit JsonLinesReader(std::string path) : path_(std::move(path)), description_("jsonl:" + path_) {}

  std::string_view description() const override { return description_; }
  bool has_columns() const override { return false; }

  Result<std::vector<std::string>> nodes() override {
    std::set<std::string> seen;
    auto r = lines(0, [&](const StoredRecord& s) {
      if (s.well_formed && !s.node.empty()) seen.insert(s.node);
      return true;
    });
    if (!r) return tl::unexpected(r.error());
    return std::vector<std::string>(seen.begin(), seen.end());
  }

  Result<void> scan(std::string_view node, std::int64_t after_seq,
                    const std::function<bool(const StoredRecord&)>& fn) override {
    // A file holds one node's chain: every line is passed on, whatever its node, so that verify
    // sees (and reports) a line of another chain. Following a growing file (tail -f) resumes at
    // the offset where the last scan ended.
    const std::uint64_t start = after_seq > 0 && after_seq == resume_seq_ ? resume_offset_ : 0;
    return lines(start, [&](const StoredRecord& s) {
      if (after_seq > 0 && s.well_formed && s.seq <= after_seq) return true;
      return fn(s);
    });
  }

  Result<void> each(const SearchFilter& f, const std::function<bool(const Record&)>& fn) override {
    return lines(0, [&](const StoredRecord& s) {
      auto r = indexed(s);
      return !r || !each_matches(*r, f) || fn(*r);
    });
  }

  Result<SearchPage> search(const SearchFilter& f) override {
    auto cursor = parse_cursor(f.cursor);
    if (!cursor) return tl::unexpected(cursor.error());
    // node, run (start records of the node before it: session ids begin again at each start),
    // session, statement
    using ResultKey = std::tuple<std::string, std::int64_t, std::int64_t, std::int64_t>;
    std::map<std::string, std::int64_t> runs;
    auto key = [&](const Record& rec) {
      return ResultKey{rec.index.node, runs[rec.index.node], rec.index.session, rec.index.statement};
    };
    auto count_run = [&](const Record& rec) {
      if (rec.index.type == "start") ++runs[rec.index.node];
    };
    std::set<ResultKey> outcome_keys;  // statements whose Result has the wanted outcome
    if (!f.outcome.empty()) {
      auto r = lines(0, [&](const StoredRecord& s) {
        auto rec = indexed(s);
        if (!rec) return true;
        count_run(*rec);
        if (rec->index.type == "result" && rec->index.outcome == f.outcome) outcome_keys.insert(key(*rec));
        return true;
      });
      if (!r) return tl::unexpected(r.error());
    }
    runs.clear();
    auto newer = [](const Record& a, const Record& b) { return key_of(a) > key_of(b); };
    // Min-heap of the newest limit+1 matches: constant memory in the file size.
    std::priority_queue<Record, std::vector<Record>, decltype(newer)> best(newer);
    auto r = lines(0, [&](const StoredRecord& s) {
      auto rec = indexed(s);
      if (!rec) return true;
      count_run(*rec);
      if (!matches(rec->index, f, rec->body)) return true;
      if (!f.outcome.empty() && rec->index.type == "statement" && rec->index.outcome != f.outcome &&
          !outcome_keys.count(key(*rec)))
        return true;
      if (*cursor && !(key_of(*rec) < **cursor)) return true;
      best.push(std::move(*rec));
      if (best.size() > f.limit + 1) best.pop();
      return true;
    });
    if (!r) return tl::unexpected(r.error());
    SearchPage page;
    while (!best.empty()) {
      page.hits.push_back(SearchHit{best.top(), std::nullopt});
      best.pop();
    }
    std::reverse(page.hits.begin(), page.hits.end());
    if (page.hits.size() > f.limit) {
      page.hits.resize(f.limit);
      page.next_cursor = cursor_of(page.hits.back().record);
    }
    std::map<std::uint64_t, std::size_t> lacking;  // seq -> hit: statements recorded without their outcome
    for (std::size_t i = 0; i < page.hits.size(); ++i)
      if (page.hits[i].record.index.type == "statement" && page.hits[i].record.index.outcome.empty())
        lacking.emplace(page.hits[i].record.seq, i);
    if (!lacking.empty()) {
      runs.clear();
      std::map<ResultKey, std::size_t> wanted;  // its result (after it, in its run) -> hit
      auto j = lines(0, [&](const StoredRecord& s) {
        auto rec = indexed(s);
        if (!rec) return true;
        count_run(*rec);
        if (auto it = lacking.find(rec->seq); it != lacking.end() && rec->index.type == "statement") {
          wanted.emplace(key(*rec), it->second);
        } else if (rec->index.type == "result") {
          if (auto w = wanted.find(key(*rec)); w != wanted.end()) {
            page.hits[w->second].result = std::move(*rec);
            wanted.erase(w);
          }
        }
        return true;
      });
      if (!j) return tl::unexpected(j.error());
    }
    own_results(page);
    return page;
  }

 private:
  static std::optional<Record> indexed(const StoredRecord& s) {
    if (!s.well_formed) return std::nullopt;
    auto idx = index_of(s.body);
    if (!idx) return std::nullopt;
    Record r;
    r.seq = std::uint64_t(s.seq);
    r.hash = s.hash;
    r.body = s.body;
    r.index = std::move(*idx);
    auto j = json::parse(s.body, nullptr, false);
    if (j.is_object()) r.prev = j.value("prev", std::string());
    return r;
  }

  // Every complete line from byte `offset`; a last line without its newline is a write still in
  // progress (or torn by a crash, which the sink cuts off at its next start) and is skipped.
  Result<void> lines(std::uint64_t offset, const std::function<bool(const StoredRecord&)>& fn) {
    // Resuming in another file at the path (rotated: moved away, a new one written) first reads
    // the rest of the file it was reading, still open, then the new one from its beginning; in a
    // file that shrank it starts again (found by adversarial testing: tail -f printed nothing more
    // after a rotation, or skipped the last records written before it).
    struct stat st {};
    const bool found = ::stat(path_.c_str(), &st) == 0;
    if (offset > 0 && found && (st.st_ino != resume_ino_ || st.st_dev != resume_dev_)) {
      if (held_ && held_->is_open()) {
        bool more = true;
        auto r = read_from(*held_, offset, [&](const StoredRecord& s) { return more = fn(s); });
        if (!r || !more) return r;
      }
      offset = 0;
    } else if (offset > 0 && found && std::uint64_t(st.st_size) < offset) {
      offset = 0;
    }
    auto in = std::make_unique<std::ifstream>(path_, std::ios::binary);
    if (!*in) return fail("58030", "cannot read " + path_);
    if (found) {
      resume_ino_ = st.st_ino;
      resume_dev_ = st.st_dev;
    }
    auto r = read_from(*in, offset, fn);
    held_ = std::move(in);
    return r;
  }

  Result<void> read_from(std::ifstream& in, std::uint64_t offset, const std::function<bool(const StoredRecord&)>& fn) {
    in.clear();
    in.seekg(std::streamoff(offset));
    std::uint64_t number = offset == 0 ? 0 : resume_line_;
    std::uint64_t pos = offset;
    std::string line;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // no newline: incomplete
      ++number;
      pos += line.size() + 1;
      if (line.empty()) continue;
      auto s = parse_line(line, number);
      if (s.well_formed && s.seq > 0) {
        resume_seq_ = s.seq;
        resume_offset_ = pos;
        resume_line_ = number;
      }
      if (!fn(s)) break;
    }
    if (in.bad()) return fail("58030", "cannot read " + path_);
    return {};
  }

  std::string path_, description_;
  std::int64_t resume_seq_ = -1;
  std::uint64_t resume_offset_ = 0, resume_line_ = 0;
  ino_t resume_ino_ = 0;
  dev_t resume_dev_ = 0;
  std::unique_ptr<std::ifstream> held_;  // the file last read, open: its rest is read after a rotation
};

std::int64_t days_from_civil(int y, unsigned m, unsigned d) {  // Howard Hinnant's algorithm
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = unsigned(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return std::int64_t(era) * 146097 + std::int64_t(doe) - 719468;
}

}  // namespace

namespace {
// The user name a client gave (the body's identity.user); "" when there is none.
std::string login_user_of(std::string_view body) {
  auto j = json::parse(body, nullptr, false);
  if (!j.is_object()) return {};
  auto id = j.find("identity");
  if (id == j.end() || !id->is_object()) return {};
  auto u = id->find("user");
  return u != id->end() && u->is_string() ? u->get<std::string>() : std::string();
}
}  // namespace

bool matches(const RecordIndex& x, const SearchFilter& f, std::string_view body) {
  if (!f.identity.empty()) {
    auto g = policy::Glob::parse(f.identity, true);
    if (!g) return false;
    if (!g->matches(x.subject) && !g->matches(x.email)) {
      if (!x.subject.empty() || body.empty()) return false;
      const std::string user = login_user_of(body);
      if (user.empty() || !g->matches(user)) return false;
    }
  }
  if (!f.group.empty() && (!contains_item(x.groups, f.group) ||
                           body.find("\"" + json_text(f.group) + "\"") == std::string_view::npos))
    return false;
  if (!f.target.empty() && x.target != f.target) return false;
  if (!f.kind.empty() && !contains_item(x.kinds, f.kind)) return false;
  if (!f.table.empty() && !table_matches(x.relations, f.table, body)) return false;
  if (!f.tag.empty() && !contains_item(x.tags, f.tag)) return false;
  if (!f.decision.empty() && x.decision != f.decision) return false;
  if (!f.rule.empty() && x.rule != f.rule) return false;
  if (!f.node.empty() && x.node != f.node) return false;
  if (f.type.empty() ? x.type == "result" : x.type != f.type) return false;
  if (!f.outcome.empty() && x.type != "statement" && x.outcome != f.outcome) return false;
  if (f.since_us && x.time_us < *f.since_us) return false;
  if (f.until_us && x.time_us >= *f.until_us) return false;
  if (!f.text.empty()) {
    const auto t = lower(f.text);
    if (!icontains(x.text, t)) {
      // As the SQL filter: a statement's error message, in its body.
      if (x.type != "statement" || !icontains(body, json_text(t))) return false;
      const auto j = json::parse(body, nullptr, false);
      const auto m = j.is_object() ? j.find("message") : j.end();
      if (!j.is_object() || m == j.end() || !m->is_string() || !icontains(m->get_ref<const std::string&>(), t))
        return false;
    }
  }
  return true;
}

Result<std::int64_t> parse_time(std::string_view t, std::int64_t now_us) {
  auto bad = [&] {
    return fail("", "bad time \"" + std::string(t) +
                        "\": expected 2026-01-02, 2026-01-02T03:04:05Z, an age such as 24h or 7d, or now");
  };
  if (t == "now") return now_us;
  if (!t.empty() && t.size() < 12 && std::isdigit(static_cast<unsigned char>(t[0])) && t.find('-') == std::string_view::npos) {
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (ec != std::errc() || p + 1 != t.data() + t.size()) return bad();
    const std::int64_t unit = *p == 's' ? 1 : *p == 'm' ? 60 : *p == 'h' ? 3600 : *p == 'd' ? 86400 : *p == 'w' ? 604800 : 0;
    if (!unit) return bad();
    return now_us - n * unit * 1'000'000;
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (t.size() < 10 || std::sscanf(std::string(t.substr(0, 10)).c_str(), "%4d-%2d-%2d", &y, &mo, &d) != 3 || mo < 1 ||
      mo > 12 || d < 1 || d > 31)
    return bad();
  std::int64_t frac_us = 0, offset_s = 0;
  std::string_view rest = t.substr(10);
  if (!rest.empty()) {
    if ((rest[0] != 'T' && rest[0] != ' ') || rest.size() < 9) return bad();
    if (std::sscanf(std::string(rest.substr(1, 8)).c_str(), "%2d:%2d:%2d", &h, &mi, &s) != 3) return bad();
    rest = rest.substr(9);
    if (!rest.empty() && rest[0] == '.') {
      std::size_t i = 1;
      std::int64_t scale = 100000;
      while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) {
        frac_us += (rest[i] - '0') * scale;
        scale /= 10;
        ++i;
      }
      rest = rest.substr(i);
    }
    if (rest == "Z" || rest.empty()) {
    } else if ((rest[0] == '+' || rest[0] == '-') && rest.size() == 6 && rest[3] == ':') {
      int oh = 0, om = 0;
      if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &oh, &om) != 2) return bad();
      offset_s = (rest[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    } else {
      return bad();
    }
  }
  // A real calendar day and time of day (found by adversarial testing: 2026-02-30 and 99:99:99
  // were read as some other instant).
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDays[mo - 1] + (mo == 2 && leap ? 1 : 0) || h > 23 || mi > 59 || s > 60) return bad();
  const std::int64_t secs = days_from_civil(y, unsigned(mo), unsigned(d)) * 86400 + h * 3600 + mi * 60 + s - offset_s;
  return secs * 1'000'000 + frac_us;
}

Result<void> set_filter(SearchFilter& f, std::string_view key, std::string_view value, std::int64_t now_us) {
  const std::string v(value);
  if (key == "identity") {
    if (auto g = policy::Glob::parse(v, true); !g) return fail("", "identity: " + g.error().message);
    f.identity = v;
  } else if (key == "group") {
    f.group = v;
  } else if (key == "target") {
    f.target = v;
  } else if (key == "kind") {
    // Unknown values were accepted and matched nothing (found by adversarial testing).
    if (!sql::kind_from_name(lower(v)))
      return fail("", "kind: unknown statement kind \"" + v + "\" (one kind: select, insert, update, delete, create, "
                      "drop, execute, fetch, ...; see the kinds in docs/policy.md; aliases such as write are not searched)");
    f.kind = lower(v);
  } else if (key == "table") {
    // As SQL reads a name: unquoted parts fold to lower case, "Quoted" ones keep theirs (found by
    // adversarial testing: --table T1 found nothing of table t1).
    std::string name;
    std::size_t i = 0;
    while (i <= v.size()) {
      std::size_t dot = i;
      std::string part;
      if (i < v.size() && v[i] == '"') {
        for (dot = i + 1; dot < v.size(); ++dot) {
          if (v[dot] == '"' && dot + 1 < v.size() && v[dot + 1] == '"') {
            part += '"';
            ++dot;
          } else if (v[dot] == '"') {
            break;
          } else {
            part += v[dot];
          }
        }
        if (dot >= v.size()) return fail("", "table: a quoted name is not closed: " + v);
        ++dot;
        if (dot < v.size() && v[dot] != '.') return fail("", "table: expected . after a quoted name: " + v);
      } else {
        dot = std::min(v.find('.', i), v.size());
        part = lower(v.substr(i, dot - i));
      }
      if (part.empty()) return fail("", "table: expected a table name such as orders or sales.orders, got \"" + v + "\"");
      name += (name.empty() ? "" : ".") + part;
      i = dot + 1;
    }
    f.table = name;
  } else if (key == "tag") {
    f.tag = v;
  } else if (key == "decision") {
    if (v != "allow" && v != "mask" && v != "review" && v != "deny")
      return fail("", "decision: expected allow, mask, review or deny, got \"" + v + "\"");
    f.decision = v;
  } else if (key == "rule") {
    f.rule = v;
  } else if (key == "type") {
    if (!type_from_name(v)) return fail("", "type: unknown record type \"" + v + "\"");
    f.type = v;
  } else if (key == "outcome") {
    static constexpr std::string_view kOutcomes[] = {"ok", "error", "cancelled", "refused", "not_run", "unknown"};
    if (std::find(std::begin(kOutcomes), std::end(kOutcomes), lower(v)) == std::end(kOutcomes))
      return fail("", "outcome: expected ok, error, cancelled, refused, not_run or unknown, got \"" + v + "\"");
    f.outcome = lower(v);
  } else if (key == "node") {
    f.node = v;
  } else if (key == "since" || key == "until") {
    auto t = parse_time(v, now_us);
    if (!t) return tl::unexpected(t.error());
    (key == "since" ? f.since_us : f.until_us) = *t;
  } else if (key == "text") {
    f.text = v;
  } else if (key == "limit") {
    std::size_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || n < 1 || n > 10000)
      return fail("", "limit: expected 1 to 10000, got \"" + v + "\"");
    f.limit = n;
  } else if (key == "cursor") {
    if (auto c = parse_cursor(v); !c) return tl::unexpected(c.error());
    f.cursor = v;
  } else {
    return fail("", "unknown filter \"" + std::string(key) + "\"");
  }
  return {};
}

std::string hit_json(const SearchHit& hit) {
  json j = json::parse(hit.record.body, nullptr, false);
  if (!j.is_object()) j = json::object({{"body", hit.record.body}});
  j["hash"] = hit.record.hash;
  if (hit.result) {
    const auto& x = hit.result->index;
    json r = json::object();
    r["seq"] = hit.result->seq;
    r["outcome"] = x.outcome;
    if (!x.sqlstate.empty()) r["sqlstate"] = x.sqlstate;
    if (x.rows >= 0) r["rows"] = x.rows;
    if (x.duration_us >= 0) r["duration_us"] = x.duration_us;
    if (hit.result->seq != hit.record.seq) {
      if (!x.text.empty()) r["message"] = x.text;
    } else if (auto m = j.find("message"); m != j.end()) {  // the statement's own record: its text is the SQL
      r["message"] = *m;
    }
    j["result"] = std::move(r);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::unique_ptr<AuditReader>> AuditReader::open(const std::string& path, bool follow) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe && (path.find("://") != std::string::npos || path.find('=') != std::string::npos))
    // A connection string, which may hold a password: not echoed (found by adversarial testing).
    return fail("58030", "--store names a file (an SQLite or JSON-lines store); this looks like a database connection "
                         "string, which is not echoed here. A PostgreSQL store is read with SQL: see "
                         "docs/operations.md");
  if (!probe) return fail("58030", "cannot open the audit store " + path);
  probe.close();
  const bool jsonl_name = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  if (!jsonl_name && sqlite_header(path)) {
    // Without a -wal file beside it no process has the store open (a WAL writer keeps one while it
    // runs): read it as immutable, which takes no locks and creates no -wal/-shm files, so that an
    // auditor can read a stopped store or a backup copy on read-only media or without write
    // access to its directory (found by an audit trial: "attempt to write a readonly database",
    // and files created beside the evidence). With one, the proxy may be writing: a plain read; and
    // so when following, as a proxy may start writing it later.
    std::error_code wal_ec;
    const bool live = follow || std::filesystem::exists(path + "-wal", wal_ec);
    auto db = store::SqliteDb::open(path, live ? store::SqliteDb::Mode::ReadOnly : store::SqliteDb::Mode::Immutable);
    if (!db) return tl::unexpected(db.error());
    auto b = db->query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_blocks'");
    if (!b) return tl::unexpected(b.error());
    auto v = db->query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_records'");
    if (!v) return tl::unexpected(v.error());
    if (v->value_or(0) == 0 && b->value_or(0) == 0)
      return fail("", path + " is a SQLite file without an audit_blocks or audit_records table");
    return std::unique_ptr<AuditReader>(std::make_unique<SqliteReader>(std::move(*db), path, b->value_or(0) > 0));
  }
  return std::unique_ptr<AuditReader>(std::make_unique<JsonLinesReader>(path));
}

}  // namespace gh::audit
