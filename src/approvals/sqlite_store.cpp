// The default approvals store: one SQLite file in WAL mode. Each record is kept whole as JSON
// (record_json.h) beside the columns the filters use; the schema is in README.md.
#include <limits>
#include <mutex>

#include "approvals/approvals.h"
#include "approvals/record_json.h"
#include "store/sqlite.h"

namespace gh::approvals {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS approval_requests (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  requester_subject TEXT NOT NULL,
  requester_email TEXT NOT NULL,
  target TEXT NOT NULL,
  match_key TEXT NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests (state, created_us);
CREATE INDEX IF NOT EXISTS approval_requests_rerun ON approval_requests (requester_subject, target, match_key);
CREATE INDEX IF NOT EXISTS approval_requests_created ON approval_requests (created_us);
CREATE TABLE IF NOT EXISTS access_requests (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  created_us INTEGER NOT NULL,
  requester_subject TEXT NOT NULL,
  requester_email TEXT NOT NULL,
  target TEXT NOT NULL,
  role TEXT NOT NULL,
  expires_us INTEGER NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS access_requests_state ON access_requests (state, created_us);
CREATE INDEX IF NOT EXISTS access_requests_requester ON access_requests (requester_subject, target);
CREATE INDEX IF NOT EXISTS access_requests_created ON access_requests (created_us);
PRAGMA user_version = 1;
)sql";

// Upserts keep the rowid, which breaks ties between records created in the same microsecond.
constexpr const char* kPutRequest = R"sql(
INSERT INTO approval_requests (id, state, created_us, requester_subject, requester_email, target, match_key, json)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, created_us = excluded.created_us,
  requester_subject = excluded.requester_subject, requester_email = excluded.requester_email,
  target = excluded.target, match_key = excluded.match_key, json = excluded.json
)sql";

constexpr const char* kPutAccess = R"sql(
INSERT INTO access_requests (id, state, created_us, requester_subject, requester_email, target, role, expires_us, json)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, created_us = excluded.created_us,
  requester_subject = excluded.requester_subject, requester_email = excluded.requester_email,
  target = excluded.target, role = excluded.role, expires_us = excluded.expires_us, json = excluded.json
)sql";

Error with_context(const Error& e, const std::string& what) { return Error{e.sqlstate, what + ": " + e.message}; }

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(store::SqliteDb db) : db_(std::move(db)) {}

  Result<void> init() {
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000"}) {
      if (auto r = db_.exec(sql); !r)
        return tl::unexpected(with_context(r.error(), "cannot set up the approvals store"));
    }
    if (auto r = db_.exec(kSchema); !r)
      return tl::unexpected(with_context(r.error(), "cannot create the approvals tables"));
    auto put = db_.prepare(kPutRequest);
    if (!put) return tl::unexpected(put.error());
    put_request_ = std::move(*put);
    auto put_access = db_.prepare(kPutAccess);
    if (!put_access) return tl::unexpected(put_access.error());
    put_access_ = std::move(*put_access);
    auto get = db_.prepare("SELECT json FROM approval_requests WHERE id = ?1");
    if (!get) return tl::unexpected(get.error());
    get_request_ = std::move(*get);
    auto get_access = db_.prepare("SELECT json FROM access_requests WHERE id = ?1");
    if (!get_access) return tl::unexpected(get_access.error());
    get_access_ = std::move(*get_access);
    return {};
  }

  Result<void> put(const Request& r) override {
    const std::string json = encode_request(r);
    return upsert(put_request_, "approval request " + r.id, [&](store::SqliteStatement& s) {
      s.bind(1, r.id).bind(2, state_name(r.state)).bind(3, std::int64_t(r.created_us)).bind(4, r.requester.subject);
      s.bind(5, r.requester.email).bind(6, r.target).bind(7, r.match_key).bind_static(8, json);
    });
  }

  Result<std::optional<Request>> get(const std::string& id) override {
    return get_record(get_request_, id, "approval request", decode_request);
  }

  Result<std::vector<Request>> list(const Filter& f) override {
    return list_records("approval_requests", f, true, "approval requests", decode_request);
  }

  Result<void> put_access(const AccessRequest& a) override {
    const std::string json = encode_access(a);
    return upsert(put_access_, "access request " + a.id, [&](store::SqliteStatement& s) {
      s.bind(1, a.id).bind(2, state_name(a.state)).bind(3, std::int64_t(a.created_us)).bind(4, a.requester.subject);
      s.bind(5, a.requester.email).bind(6, a.target).bind(7, a.role).bind(8, std::int64_t(a.expires_us));
      s.bind_static(9, json);
    });
  }

  Result<std::optional<AccessRequest>> get_access(const std::string& id) override {
    return get_record(get_access_, id, "access request", decode_access);
  }

  Result<std::vector<AccessRequest>> list_access(const Filter& f) override {
    return list_records("access_requests", f, false, "access requests", decode_access);
  }

 private:
  // Runs a prepared upsert after `bind` bound its parameters; `what` names the record for errors.
  template <class Bind>
  Result<void> upsert(store::SqliteStatement& s, const std::string& what, Bind bind) {
    std::lock_guard lock(mu_);
    bind(s);
    auto step = s.step();
    s.reset();
    if (!step) return tl::unexpected(with_context(step.error(), "cannot save " + what));
    return {};
  }

  template <class R>
  Result<std::optional<R>> get_record(store::SqliteStatement& s, const std::string& id, const char* what,
                                      Result<R> (*decode)(std::string_view)) {
    auto text = get_json(s, id);
    if (!text) return tl::unexpected(with_context(text.error(), std::string("cannot read ") + what + " " + id));
    if (!*text) return std::optional<R>{};
    auto r = decode(**text);
    if (!r) return tl::unexpected(r.error());
    return std::optional<R>{std::move(*r)};
  }

  template <class R>
  Result<std::vector<R>> list_records(const char* table, const Filter& f, bool requests, const char* what,
                                      Result<R> (*decode)(std::string_view)) {
    auto rows = query(table, f, requests);
    if (!rows) return tl::unexpected(with_context(rows.error(), std::string("cannot list ") + what));
    std::vector<R> out;
    out.reserve(rows->size());
    for (const auto& text : *rows) {
      auto r = decode(text);
      if (!r) return tl::unexpected(r.error());
      out.push_back(std::move(*r));
    }
    return out;
  }

  Result<std::optional<std::string>> get_json(store::SqliteStatement& s, const std::string& id) {
    std::lock_guard lock(mu_);
    s.bind(1, id);
    auto row = s.step();
    if (!row) return tl::unexpected(row.error());
    std::optional<std::string> text;
    if (*row) text = std::string(s.column_text(0));
    s.reset();
    return text;
  }

  // Only the filters that are set become conditions, so SQLite can use the indexes.
  Result<std::vector<std::string>> query(const char* table, const Filter& f, bool requests) {
    std::string sql = std::string("SELECT json FROM ") + table + " WHERE 1";
    if (f.state) sql += " AND state = ?1";
    if (!f.requester.empty()) sql += " AND (requester_subject = ?2 OR requester_email = ?2)";
    if (!f.target.empty()) sql += " AND target = ?3";
    if (requests && !f.match_key.empty()) sql += " AND match_key = ?4";
    sql += " ORDER BY created_us DESC, rowid DESC LIMIT ?5";
    std::lock_guard lock(mu_);
    auto s = db_.prepare(sql);
    if (!s) return tl::unexpected(s.error());
    if (f.state) s->bind(1, state_name(*f.state));
    if (!f.requester.empty()) s->bind(2, f.requester);
    if (!f.target.empty()) s->bind(3, f.target);
    if (requests && !f.match_key.empty()) s->bind(4, f.match_key);
    const auto max = std::size_t(std::numeric_limits<std::int64_t>::max());
    s->bind(5, std::int64_t(f.limit > max ? max : f.limit));
    std::vector<std::string> out;
    for (;;) {
      auto row = s->step();
      if (!row) return tl::unexpected(row.error());
      if (!*row) break;
      out.emplace_back(s->column_text(0));
    }
    return out;
  }

  std::mutex mu_;  // one connection, opened without SQLite's own mutex
  store::SqliteDb db_;
  store::SqliteStatement put_request_, put_access_, get_request_, get_access_;
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path) {
  auto db = store::SqliteDb::open(path);
  if (!db) return tl::unexpected(with_context(db.error(), "approvals store"));
  auto s = std::make_unique<SqliteStore>(std::move(*db));
  if (auto r = s->init(); !r) return tl::unexpected(with_context(r.error(), path));
  return std::unique_ptr<Store>(std::move(s));
}

}  // namespace gh::approvals
