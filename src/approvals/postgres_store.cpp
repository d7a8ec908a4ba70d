// The approvals store shared by several proxy nodes: two PostgreSQL tables with the SQLite
// store's columns (the whole record as JSON text beside the columns the filters use), plus
// `rev` (the record's revision: put() is a compare-and-set on it, so two nodes never both decide
// or both consume a record) and `ord` (insertion order, the tie-break of "newest first").
//
// Every put() is one statement that upserts and calls pg_notify('<prefix>approvals',
// '<kind>:<id>'), so the notification is sent exactly when the change commits. A listener thread
// with its own connection LISTENs and hands other nodes' notifications to the Service; after it
// (re)connects it reports a wildcard, since notifications sent meanwhile are lost.
//
// Queries share one connection under a mutex. It is made lazily and dropped after any failure,
// so the next call starts from a clean session.
#include <fcntl.h>
#include <libpq-fe.h>

#include "store/libpq.h"
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "approvals/approvals.h"
#include "approvals/record_json.h"

namespace gh::approvals {

namespace {

constexpr std::string_view kWhat = "approvals store (PostgreSQL)";
constexpr std::size_t kMaxPrefix = 32;  // names stay within PostgreSQL's 63 bytes
constexpr int kListenPollMs = 1000;     // the stop pipe wakes it sooner
constexpr int kBackoffFirstMs = 100, kBackoffMaxMs = 5000;

using store::pg::Conn;
using store::pg::Res;
using store::pg::one_line;


Error store_error(std::string sqlstate, const std::string& message) {
  return Error{std::move(sqlstate), std::string(kWhat) + ": " + message};
}

// A filter column must be valid UTF-8 without NUL (PostgreSQL text): anything else becomes
// U+FFFD, as in the JSON column, and filter values are cleaned the same way so they still match.
std::string clean(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0x01 && c < 0x80) len = 1, cp = c;
    else if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
      ok = false;
    if (!ok) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

using Target = store::pg::ConnParams;

Result<Target> parse_dsn(const std::string& dsn) {
  auto t = store::pg::parse_dsn(dsn, "gatehouse-approvals");
  if (!t) return tl::unexpected(store_error("", "invalid connection string: " + t.error().message));
  return t;
}

// Connects; on failure returns the error (libpq's message names the server and the reason,
// never the password).
Result<Conn> connect_to(const Target& t) {
  std::vector<const char*> k, v;
  for (std::size_t i = 0; i < t.keys.size(); ++i) k.push_back(t.keys[i].c_str()), v.push_back(t.values[i].c_str());
  k.push_back(nullptr), v.push_back(nullptr);
  Conn c(PQconnectdbParams(k.data(), v.data(), 0));
  if (!c || PQstatus(c.get()) != CONNECTION_OK)
    return tl::unexpected(
        store_error("08006", "cannot connect to " + t.where + ": " + (c ? one_line(PQerrorMessage(c.get())) : "out of memory")));
  PQsetNoticeProcessor(c.get(), [](void*, const char*) {}, nullptr);  // "relation already exists, skipping"
  // Records are UTF-8 JSON, stored byte for byte; another server encoding would convert them.
  const char* enc = PQparameterStatus(c.get(), "server_encoding");
  if (!enc || (std::string_view(enc) != "UTF8" && std::string_view(enc) != "SQL_ASCII"))
    return tl::unexpected(store_error("22021", t.where + " must be a UTF8 database (it is " + (enc ? enc : "?") + ")"));
  return c;
}

class PostgresStore final : public Store {
 public:
  PostgresStore(Target target, const std::string& prefix)
      : target_(std::move(target)),
        requests_("\"" + prefix + "approval_requests\""),
        access_("\"" + prefix + "access_requests\""),
        prefix_(prefix),
        channel_(prefix + "approvals") {}

  ~PostgresStore() override { stop_listener(); }

  Result<void> put(const Request& r) override {
    const std::string json = encode_request(r), rev = std::to_string(r.revision), payload = "request:" + r.id;
    const std::string id = clean(r.id), state(state_name(r.state)), created = std::to_string(r.created_us);
    const std::string subject = clean(r.requester.subject), email = clean(r.requester.email), target = clean(r.target);
    const std::string key = clean(r.match_key);
    auto res = query("WITH up AS (INSERT INTO " + requests_ +
                         " AS t (id, state, created_us, requester_subject, requester_email, target, match_key, json, rev) "
                         "VALUES ($1, $2, $3::bigint, $4, $5, $6, $7, $8, $9::bigint + 1) "
                         "ON CONFLICT (id) DO UPDATE SET state = excluded.state, created_us = excluded.created_us, "
                         "requester_subject = excluded.requester_subject, requester_email = excluded.requester_email, "
                         "target = excluded.target, match_key = excluded.match_key, json = excluded.json, rev = t.rev + 1 "
                         "WHERE t.rev = $9::bigint RETURNING t.rev) "
                         "SELECT rev, pg_notify($10, $11) FROM up",
                     {id.c_str(), state.c_str(), created.c_str(), subject.c_str(), email.c_str(), target.c_str(),
                      key.c_str(), json.c_str(), rev.c_str(), channel_.c_str(), payload.c_str()},
                     "cannot save approval request " + r.id);
    if (!res) return tl::unexpected(res.error());
    if (PQntuples(res->get()) == 0) return tl::unexpected(conflict("approval request " + r.id));
    return {};
  }

  Result<std::optional<Request>> get(const std::string& id) override {
    const std::string cid = clean(id);
    auto res = query("SELECT json, rev FROM " + requests_ + " WHERE id = $1", {cid.c_str()},
                     "cannot read approval request " + id);
    if (!res) return tl::unexpected(res.error());
    if (PQntuples(res->get()) == 0) return std::optional<Request>{};
    auto r = decode_row<Request>(res->get(), 0, decode_request);
    if (!r) return tl::unexpected(r.error());
    return std::optional<Request>{std::move(*r)};
  }

  Result<std::vector<Request>> list(const Filter& f) override {
    auto res = list_rows(requests_, f, true, "cannot list approval requests");
    if (!res) return tl::unexpected(res.error());
    return decode_rows<Request>(res->get(), decode_request);
  }

  Result<void> put_access(const AccessRequest& a) override {
    const std::string json = encode_access(a), rev = std::to_string(a.revision), payload = "access:" + a.id;
    const std::string id = clean(a.id), state(state_name(a.state)), created = std::to_string(a.created_us);
    const std::string subject = clean(a.requester.subject), email = clean(a.requester.email), target = clean(a.target);
    const std::string role = clean(a.role), expires = std::to_string(a.expires_us);
    auto res = query("WITH up AS (INSERT INTO " + access_ +
                         " AS t (id, state, created_us, requester_subject, requester_email, target, role, expires_us, "
                         "json, rev) VALUES ($1, $2, $3::bigint, $4, $5, $6, $7, $8::bigint, $9, $10::bigint + 1) "
                         "ON CONFLICT (id) DO UPDATE SET state = excluded.state, created_us = excluded.created_us, "
                         "requester_subject = excluded.requester_subject, requester_email = excluded.requester_email, "
                         "target = excluded.target, role = excluded.role, expires_us = excluded.expires_us, "
                         "json = excluded.json, rev = t.rev + 1 WHERE t.rev = $10::bigint RETURNING t.rev) "
                         "SELECT rev, pg_notify($11, $12) FROM up",
                     {id.c_str(), state.c_str(), created.c_str(), subject.c_str(), email.c_str(), target.c_str(),
                      role.c_str(), expires.c_str(), json.c_str(), rev.c_str(), channel_.c_str(), payload.c_str()},
                     "cannot save access request " + a.id);
    if (!res) return tl::unexpected(res.error());
    if (PQntuples(res->get()) == 0) return tl::unexpected(conflict("access request " + a.id));
    return {};
  }

  Result<std::optional<AccessRequest>> get_access(const std::string& id) override {
    const std::string cid = clean(id);
    auto res = query("SELECT json, rev FROM " + access_ + " WHERE id = $1", {cid.c_str()},
                     "cannot read access request " + id);
    if (!res) return tl::unexpected(res.error());
    if (PQntuples(res->get()) == 0) return std::optional<AccessRequest>{};
    auto a = decode_row<AccessRequest>(res->get(), 0, decode_access);
    if (!a) return tl::unexpected(a.error());
    return std::optional<AccessRequest>{std::move(*a)};
  }

  Result<std::vector<AccessRequest>> list_access(const Filter& f) override {
    auto res = list_rows(access_, f, false, "cannot list access requests");
    if (!res) return tl::unexpected(res.error());
    return decode_rows<AccessRequest>(res->get(), decode_access);
  }

  void set_listener(StoreListener fn) override {
    const bool start = bool(fn);
    {
      std::lock_guard g(fn_mu_);  // waits for a running call to return
      fn_ = std::move(fn);
    }
    std::lock_guard g(start_mu_);
    if (start && !listener_.joinable()) start_listener();
  }

 private:
  // ---- queries (one connection, under mu_)

  // Every failure drops the connection: the next call reconnects into a clean session.
  Error failure(const std::string& what, PGresult* res) {
    std::string state, msg;
    if (res) {
      if (const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE)) state = s;
      if (const char* m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) msg = m;
    }
    if (msg.empty() && conn_) msg = one_line(PQerrorMessage(conn_.get()));
    if (state.empty()) state = "08006";
    conn_.reset();
    return store_error(state, what + " on " + target_.where + ": " + msg);
  }

  Error conflict(const std::string& what) const {
    return store_error(std::string(kConflict), what + " was changed by another node meanwhile; try again");
  }

  Result<void> connect() {
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) return {};
    conn_.reset();
    auto c = connect_to(target_);
    if (!c) return tl::unexpected(c.error());
    conn_ = std::move(*c);
    own_pid_ = PQbackendPID(conn_.get());
    if (!schema_ready_) {
      if (auto r = create_schema(); !r) return r;
      schema_ready_ = true;
    }
    return {};
  }

  // Skipped when both tables exist, so a role with only SELECT, INSERT and UPDATE works. Nodes
  // starting together serialise on an advisory lock: concurrent CREATE TABLE IF NOT EXISTS can
  // still fail on the catalog's unique index.
  Result<void> create_schema() {
    Res exists(PQexecParams(conn_.get(), "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL", 2,
                            nullptr, std::vector<const char*>{requests_.c_str(), access_.c_str()}.data(), nullptr,
                            nullptr, 0));
    if (PQresultStatus(exists.get()) != PGRES_TUPLES_OK)
      return tl::unexpected(failure("cannot look up the approvals tables", exists.get()));
    if (PQgetvalue(exists.get(), 0, 0)[0] == 't') return {};
    const std::string& p = prefix_;
    const std::string ddl =
        "BEGIN; SELECT pg_advisory_xact_lock(7406155925316543602); "
        "CREATE TABLE IF NOT EXISTS " + requests_ + " (id text PRIMARY KEY, state text NOT NULL, "
        "created_us bigint NOT NULL, requester_subject text NOT NULL, requester_email text NOT NULL, "
        "target text NOT NULL, match_key text NOT NULL, json text NOT NULL, rev bigint NOT NULL, ord bigserial); "
        "CREATE INDEX IF NOT EXISTS \"" + p + "approval_requests_state\" ON " + requests_ + " (state, created_us); "
        "CREATE INDEX IF NOT EXISTS \"" + p + "approval_requests_rerun\" ON " + requests_ +
        " (requester_subject, target, match_key); "
        "CREATE INDEX IF NOT EXISTS \"" + p + "approval_requests_created\" ON " + requests_ + " (created_us); "
        "CREATE TABLE IF NOT EXISTS " + access_ + " (id text PRIMARY KEY, state text NOT NULL, "
        "created_us bigint NOT NULL, requester_subject text NOT NULL, requester_email text NOT NULL, "
        "target text NOT NULL, role text NOT NULL, expires_us bigint NOT NULL, json text NOT NULL, "
        "rev bigint NOT NULL, ord bigserial); "
        "CREATE INDEX IF NOT EXISTS \"" + p + "access_requests_state\" ON " + access_ + " (state, created_us); "
        "CREATE INDEX IF NOT EXISTS \"" + p + "access_requests_requester\" ON " + access_ + " (requester_subject, target); "
        "CREATE INDEX IF NOT EXISTS \"" + p + "access_requests_created\" ON " + access_ + " (created_us); "
        "COMMIT";
    Res r(PQexec(conn_.get(), ddl.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK)
      return tl::unexpected(failure("cannot create the approvals tables", r.get()));
    return {};
  }

  Result<Res> query(const std::string& sql, const std::vector<const char*>& params, const std::string& what) {
    std::lock_guard lock(mu_);
    if (auto c = connect(); !c) return tl::unexpected(c.error());
    Res r(PQexecParams(conn_.get(), sql.c_str(), int(params.size()), nullptr, params.data(), nullptr, nullptr, 0));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) return tl::unexpected(failure(what, r.get()));
    return r;
  }

  // Only the filters that are set become conditions (numbered in order: PostgreSQL must infer
  // every parameter's type), so the indexes serve them.
  Result<Res> list_rows(const std::string& table, const Filter& f, bool requests, const std::string& what) {
    std::vector<std::string> values;
    std::string sql = "SELECT json, rev FROM " + table + " WHERE true";
    auto param = [&](std::string v) {
      values.push_back(std::move(v));
      return "$" + std::to_string(values.size());
    };
    if (f.state) sql += " AND state = " + param(std::string(state_name(*f.state)));
    if (!f.requester.empty()) {
      const auto p = param(clean(f.requester));
      sql += " AND (requester_subject = " + p + " OR requester_email = " + p + ")";
    }
    if (!f.target.empty()) sql += " AND target = " + param(clean(f.target));
    if (requests && !f.match_key.empty()) sql += " AND match_key = " + param(clean(f.match_key));
    const auto max = std::size_t(std::numeric_limits<std::int64_t>::max());
    sql += " ORDER BY created_us DESC, ord DESC LIMIT " + param(std::to_string(f.limit > max ? max : f.limit)) + "::bigint";
    std::vector<const char*> params;
    for (const auto& v : values) params.push_back(v.c_str());
    return query(sql, params, what);
  }

  template <class R, class Decode>
  static Result<R> decode_row(PGresult* res, int row, Decode decode) {
    auto r = decode(std::string_view(PQgetvalue(res, row, 0), std::size_t(PQgetlength(res, row, 0))));
    if (!r) return tl::unexpected(store_error(r.error().sqlstate, r.error().message));
    r->revision = std::stoll(PQgetvalue(res, row, 1));
    return r;
  }

  template <class R, class Decode>
  static Result<std::vector<R>> decode_rows(PGresult* res, Decode decode) {
    std::vector<R> out;
    out.reserve(std::size_t(PQntuples(res)));
    for (int i = 0; i < PQntuples(res); ++i) {
      auto r = decode_row<R>(res, i, decode);
      if (!r) return tl::unexpected(r.error());
      out.push_back(std::move(*r));
    }
    return out;
  }

  // ---- the listener thread (its own connection, touched by that thread only)

  void start_listener() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return;  // no thread: only this node's changes are seen
    wake_read_ = fds[0], wake_write_ = fds[1];
    listener_ = std::thread([this] { listen_loop(); });
  }

  void stop_listener() {
    if (!listener_.joinable()) return;
    stopping_ = true;
    const char b = 1;
    [[maybe_unused]] auto n = ::write(wake_write_, &b, 1);
    listener_.join();
    ::close(wake_read_), ::close(wake_write_);
  }

  // Waits up to `ms` for the socket (or just the stop pipe); false when stopping.
  bool wait(int socket, int ms) {
    pollfd p[2] = {{wake_read_, POLLIN, 0}, {socket, POLLIN, 0}};
    ::poll(p, socket >= 0 ? 2 : 1, ms);
    return !stopping_;
  }

  void deliver(const std::string& kind, const std::string& id) {
    std::lock_guard g(fn_mu_);
    if (!fn_) return;
    try {
      fn_(kind, id);
    } catch (...) {  // the listener thread must survive a listener's fault
    }
  }

  Result<Conn> listen_connect() {
    auto c = connect_to(target_);
    if (!c) return c;
    // LISTEN takes an identifier; quoting keeps the prefix's case as pg_notify() sees it.
    const std::string sql = "LISTEN \"" + channel_ + "\"";
    Res r(PQexec(c->get(), sql.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK)
      return tl::unexpected(store_error("08006", "cannot listen on " + target_.where + ": " +
                                                     one_line(PQresultErrorMessage(r.get()))));
    return c;
  }

  void listen_loop() {
    int backoff = kBackoffFirstMs;
    Conn c;
    while (!stopping_) {
      if (!c) {
        auto made = listen_connect();
        if (!made) {
          if (!wait(-1, backoff)) break;
          backoff = std::min(backoff * 2, kBackoffMaxMs);
          continue;
        }
        c = std::move(*made);
        backoff = kBackoffFirstMs;
        deliver("", "");  // whatever was sent while not listening is lost: re-read
      }
      if (!wait(PQsocket(c.get()), kListenPollMs)) break;
      if (PQconsumeInput(c.get()) == 0 || PQstatus(c.get()) != CONNECTION_OK) {
        c.reset();  // terminated or unreachable: reconnect (after the first backoff)
        if (!wait(-1, kBackoffFirstMs)) break;
        continue;
      }
      while (PGnotify* n = PQnotifies(c.get())) {
        std::string payload = n->extra ? n->extra : "";
        const bool own = n->be_pid == own_pid_;  // this store's own change: its Service knows
        PQfreemem(n);
        if (own) continue;
        const auto colon = payload.find(':');
        if (colon == std::string::npos)
          deliver("", "");  // not ours to parse: treat as "something changed"
        else
          deliver(payload.substr(0, colon), payload.substr(colon + 1));
      }
    }
  }

  const Target target_;
  const std::string requests_, access_;  // quoted table names
  const std::string prefix_, channel_;

  std::mutex mu_;  // the query connection
  Conn conn_;
  bool schema_ready_ = false;
  std::atomic<int> own_pid_{0};  // the query connection's backend

  std::mutex fn_mu_;  // held while the listener runs
  StoreListener fn_;
  std::mutex start_mu_;
  std::thread listener_;
  std::atomic<bool> stopping_{false};
  int wake_read_ = -1, wake_write_ = -1;
};

}  // namespace

Result<std::unique_ptr<Store>> open_postgres_store(const std::string& dsn, const std::string& table_prefix) {
  if (table_prefix.size() > kMaxPrefix)
    return tl::unexpected(store_error("", "table prefix " + table_prefix + " is longer than 32 characters"));
  for (char c : table_prefix)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return tl::unexpected(store_error("", "table prefix " + table_prefix + ": letters, digits and '_' only"));
  auto t = parse_dsn(dsn);
  if (!t) return tl::unexpected(t.error());
  return std::unique_ptr<Store>(std::make_unique<PostgresStore>(std::move(*t), table_prefix));
}

}  // namespace gh::approvals
