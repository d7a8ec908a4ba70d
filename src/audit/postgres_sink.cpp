// The shared store when several proxies run: one PostgreSQL table, one chain per node, keyed by
// (node, seq). Same columns as the SQLite store (src/audit/sqlite_schema.h), so readers and the
// verifier treat both alike; `time` stays text (the exact string of the body) and `time_us`
// serves range queries.
//
// A batch is one COPY (one round trip, atomic on its own). The connection is made lazily and
// dropped after any failure, so the next call starts from a clean session; while the store is
// down every call fails fast with 08006 and the trail spools.
#include <libpq-fe.h>

#include "store/libpq.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "audit/sink.h"

namespace gh::audit {

namespace {

constexpr std::string_view kColumns =
    "node, seq, prev, hash, body, time, time_us, type, session, statement, subject, email, groups, kind, client, "
    "target, environment, database, kinds, relations, tags, decision, rule, outcome, sqlstate, rows, duration_us, "
    "text";

struct TableName {
  std::string quoted;  // "a"."b"
  std::string last;    // b: indexes are named after it and live beside the table
};

// The config allows only [A-Za-z0-9_.], so quoting needs no escaping; quoting keeps reserved
// words and digits-first names valid (and makes the name case-sensitive).
Result<TableName> parse_table(const std::string& table) {
  std::string out, part, last;
  int parts = 0;
  for (std::size_t i = 0; i <= table.size(); ++i) {
    if (i < table.size() && table[i] != '.') {
      const char c = table[i];
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
        return fail("", "audit table name " + table + ": letters, digits, '_' and '.' only");
      part += c;
      continue;
    }
    if (part.empty() || ++parts > 2) return fail("", "audit table name " + table + ": expected table or schema.table");
    out += (out.empty() ? "\"" : ".\"") + part + "\"";
    last = std::move(part);
    part.clear();
  }
  return TableName{out, last};
}

// COPY text format: backslash, newline, carriage return and tab are escaped. PostgreSQL text
// cannot hold NUL; the body is canonical JSON and never contains one, but a search column
// decoded from it may (a "\u0000" in a claim), and one such record would wedge the store
// forever, so NUL becomes U+FFFD there.
void copy_field(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\0': out += "\xEF\xBF\xBD"; break;
      default: out += c;
    }
  }
}

void copy_row(std::string& out, const Record& r) {
  const auto& x = r.index;
  auto t = [&](std::string_view s) {
    copy_field(out, s);
    out += '\t';
  };
  auto i = [&](std::int64_t v) {
    out += std::to_string(v);
    out += '\t';
  };
  t(x.node), i(std::int64_t(r.seq)), t(r.prev), t(r.hash), t(r.body), t(x.time), i(x.time_us), t(x.type);
  i(x.session), i(x.statement), t(x.subject), t(x.email), t(x.groups), t(x.kind), t(x.client), t(x.target);
  t(x.environment), t(x.database), t(x.kinds), t(x.relations), t(x.tags), t(x.decision), t(x.rule);
  t(x.outcome), t(x.sqlstate), i(x.rows), i(x.duration_us);
  copy_field(out, x.text);
  out += '\n';
}

using store::pg::Conn;
using store::pg::Res;
using store::pg::one_line;


class PostgresAuditSink final : public AuditSink {
 public:
  PostgresAuditSink(std::vector<std::string> keys, std::vector<std::string> values, std::string where,
                    TableName table)
      : keys_(std::move(keys)), values_(std::move(values)), where_(std::move(where)), table_(std::move(table.quoted)),
        index_base_(std::move(table.last)) {
    name_ = "postgres:" + where_ + "/" + table_;
    std::erase(name_, '"');
  }

  std::string_view name() const override { return name_; }
  bool needs_index() const override { return true; }

  Result<std::optional<ChainHead>> head(std::string_view node) override {
    const std::string n(node);
    auto r = query("SELECT seq, hash FROM " + table_ + " WHERE node = $1 ORDER BY seq DESC LIMIT 1", {n.c_str()});
    if (!r) return tl::unexpected(r.error());
    if (PQntuples(r->get()) == 0) return std::optional<ChainHead>{};
    return std::optional<ChainHead>{ChainHead{std::stoull(PQgetvalue(r->get(), 0, 0)), PQgetvalue(r->get(), 0, 1)}};
  }

  Result<void> write(std::span<const Record> batch) override {
    if (batch.empty()) return {};
    auto r = copy(batch);
    if (r || r.error().sqlstate != "23505") return r;
    return write_resent(batch);
  }

  Result<std::optional<Pruned>> prune(std::string_view node, std::optional<std::chrono::system_clock::time_point> before,
                                      std::uint64_t keep) override {
    const std::string n(node);
    std::string before_us, keep_s;
    if (before)
      before_us = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(before->time_since_epoch()).count());
    if (keep > 0) keep_s = std::to_string(keep);
    // greatest() ignores NULLs: an unset limit (NULL parameter) takes no part.
    auto t = query("SELECT greatest((SELECT max(seq) FROM " + table_ + " WHERE node = $1 AND time_us < $2::bigint), "
                   "(SELECT max(seq) - $3::bigint FROM " + table_ + " WHERE node = $1))",
                   {n.c_str(), before ? before_us.c_str() : nullptr, keep > 0 ? keep_s.c_str() : nullptr});
    if (!t) return tl::unexpected(t.error());
    if (PQgetisnull(t->get(), 0, 0)) return std::optional<Pruned>{};
    const std::string through = PQgetvalue(t->get(), 0, 0);
    if (std::stoll(through) <= 0) return std::optional<Pruned>{};
    // One statement, so the anchor returned is the one of the rows deleted; nothing is deleted
    // when the anchor itself is gone (already pruned).
    auto d = query("WITH anchor AS (SELECT hash FROM " + table_ + " WHERE node = $1 AND seq = $2::bigint), "
                   "gone AS (DELETE FROM " + table_ + " WHERE node = $1 AND seq <= $2::bigint "
                   "AND EXISTS (SELECT 1 FROM anchor)) SELECT hash FROM anchor",
                   {n.c_str(), through.c_str()});
    if (!d) return tl::unexpected(d.error());
    if (PQntuples(d->get()) == 0) return std::optional<Pruned>{};
    return std::optional<Pruned>{Pruned{std::stoull(through), PQgetvalue(d->get(), 0, 0)}};
  }

 private:
  // Every failure drops the connection: the next call reconnects into a clean session rather
  // than guessing what state an interrupted COPY or transaction left behind.
  Error failure(std::string_view what, PGresult* res) {
    std::string state, msg;
    if (res) {
      if (const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE)) state = s;
      if (const char* m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) msg = m;
    }
    if (msg.empty() && conn_) msg = one_line(PQerrorMessage(conn_.get()));
    if (state.empty()) state = "08006";
    conn_.reset();
    return Error{state, std::string(what) + " on " + where_ + ": " + msg};
  }

  Result<void> connect() {
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) return {};
    std::vector<const char*> k, v;
    for (std::size_t i = 0; i < keys_.size(); ++i) k.push_back(keys_[i].c_str()), v.push_back(values_[i].c_str());
    k.push_back(nullptr), v.push_back(nullptr);
    conn_.reset(PQconnectdbParams(k.data(), v.data(), 0));
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
      // libpq's message names the server and the reason, never the password.
      std::string msg = conn_ ? one_line(PQerrorMessage(conn_.get())) : "out of memory";
      conn_.reset();
      return fail("08006", "cannot connect to " + where_ + ": " + msg);
    }
    // The body must be stored byte for byte as hashed; a database in another encoding would
    // convert it (or refuse some records forever).
    const char* enc = PQparameterStatus(conn_.get(), "server_encoding");
    if (!enc || (std::string_view(enc) != "UTF8" && std::string_view(enc) != "SQL_ASCII")) {
      conn_.reset();
      return fail("22021", where_ + " must be a UTF8 database (it is " + (enc ? enc : "?") + ")");
    }
    if (!schema_ready_) {
      auto r = create_schema();
      if (!r) return r;
      schema_ready_ = true;
    }
    return {};
  }

  // Skipped when the table exists, so a role with only SELECT, INSERT and DELETE on it works.
  // Proxies starting together serialise on an advisory lock: concurrent CREATE TABLE IF NOT
  // EXISTS can still fail on the catalog's unique index.
  Result<void> create_schema() {
    auto exists = exec_params("SELECT to_regclass($1) IS NOT NULL", {table_.c_str()});
    if (!exists) return tl::unexpected(exists.error());
    if (PQgetvalue(exists->get(), 0, 0)[0] == 't') return {};
    const std::string& idx = index_base_;
    const std::string ddl =
        "BEGIN; SELECT pg_advisory_xact_lock(7406155925316543601); "
        "CREATE TABLE IF NOT EXISTS " + table_ + " (node text NOT NULL, seq bigint NOT NULL, prev text NOT NULL, "
        "hash text NOT NULL, body text NOT NULL, time text NOT NULL, time_us bigint NOT NULL, type text NOT NULL, "
        "session bigint NOT NULL, statement bigint NOT NULL, subject text NOT NULL, email text NOT NULL, "
        "groups text NOT NULL, kind text NOT NULL, client text NOT NULL, target text NOT NULL, "
        "environment text NOT NULL, database text NOT NULL, kinds text NOT NULL, relations text NOT NULL, "
        "tags text NOT NULL, decision text NOT NULL, rule text NOT NULL, outcome text NOT NULL, "
        "sqlstate text NOT NULL, rows bigint NOT NULL, duration_us bigint NOT NULL, text text NOT NULL, "
        "PRIMARY KEY (node, seq)); "
        "CREATE INDEX IF NOT EXISTS \"" + idx + "_time\" ON " + table_ + " (time_us); "
        "CREATE INDEX IF NOT EXISTS \"" + idx + "_subject\" ON " + table_ + " (subject, time_us); "
        "CREATE INDEX IF NOT EXISTS \"" + idx + "_session\" ON " + table_ + " (session, statement); "
        "COMMIT";
    Res r(PQexec(conn_.get(), ddl.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return tl::unexpected(failure("cannot create " + table_, r.get()));
    return {};
  }

  Result<Res> exec_params(const std::string& sql, std::vector<const char*> params) {
    Res r(PQexecParams(conn_.get(), sql.c_str(), int(params.size()), nullptr, params.data(), nullptr, nullptr, 0));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) return tl::unexpected(failure("query failed", r.get()));
    return r;
  }

  Result<Res> query(const std::string& sql, std::vector<const char*> params) {
    if (auto c = connect(); !c) return tl::unexpected(c.error());
    return exec_params(sql, std::move(params));
  }

  Result<void> copy(std::span<const Record> batch) {
    if (auto c = connect(); !c) return c;
    const std::string sql = "COPY " + table_ + " (" + std::string(kColumns) + ") FROM STDIN";
    Res start(PQexec(conn_.get(), sql.c_str()));
    if (PQresultStatus(start.get()) != PGRES_COPY_IN) return tl::unexpected(failure("COPY failed", start.get()));
    std::string buf;
    buf.reserve(1 << 20);
    for (const auto& rec : batch) {
      copy_row(buf, rec);
      if (buf.size() >= (1 << 20) || &rec == &batch.back()) {
        if (PQputCopyData(conn_.get(), buf.data(), int(buf.size())) != 1) return tl::unexpected(failure("COPY failed", nullptr));
        buf.clear();
      }
    }
    if (PQputCopyEnd(conn_.get(), nullptr) != 1) return tl::unexpected(failure("COPY failed", nullptr));
    Res end(PQgetResult(conn_.get()));
    if (PQresultStatus(end.get()) != PGRES_COMMAND_OK) return tl::unexpected(failure("COPY failed", end.get()));
    while (Res extra{PQgetResult(conn_.get())}) {
    }
    return {};
  }

  // Some records of the batch are stored already: a batch whose COMMIT reached the store but
  // whose answer did not is spooled and sent again. Identical copies are accepted; a record
  // stored with another body or hash is a conflict and fails the batch (two proxies with one
  // node name, or tampering), never silently skipped.
  Result<void> write_resent(std::span<const Record> batch) {
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> ranges;  // node -> seq range of the batch
    for (const auto& rec : batch) {
      auto [it, fresh] = ranges.try_emplace(rec.index.node, rec.seq, rec.seq);
      it->second = {std::min(it->second.first, rec.seq), std::max(it->second.second, rec.seq)};
    }
    if (auto r = query("BEGIN", {}); !r) return tl::unexpected(r.error());
    std::map<std::pair<std::string, std::uint64_t>, std::pair<std::string, std::string>> stored;  // -> body, hash
    for (const auto& [node, range] : ranges) {
      const std::string lo = std::to_string(range.first), hi = std::to_string(range.second);
      auto r = exec_params("SELECT seq, body, hash FROM " + table_ + " WHERE node = $1 AND seq BETWEEN $2::bigint AND $3::bigint",
                           {node.c_str(), lo.c_str(), hi.c_str()});
      if (!r) return tl::unexpected(r.error());
      for (int i = 0; i < PQntuples(r->get()); ++i)
        stored[{node, std::stoull(PQgetvalue(r->get(), i, 0))}] = {PQgetvalue(r->get(), i, 1), PQgetvalue(r->get(), i, 2)};
    }
    std::vector<Record> missing;
    for (const auto& rec : batch) {
      auto it = stored.find({rec.index.node, rec.seq});
      if (it == stored.end()) {
        missing.push_back(rec);
      } else if (it->second != std::pair(rec.body, rec.hash)) {
        conn_.reset();  // rolls back
        return fail("23505", "audit record " + std::to_string(rec.seq) + " of node " + rec.index.node +
                                 " is already stored on " + where_ + " with a different body");
      }
    }
    if (!missing.empty())
      if (auto r = copy(missing); !r) return r;
    if (auto r = exec_params("COMMIT", {}); !r) return tl::unexpected(r.error());
    return {};
  }

  std::vector<std::string> keys_, values_;  // connection parameters, password included: never shown
  std::string where_;                       // host:port/dbname, for names and messages
  std::string table_;                       // quoted
  std::string index_base_;
  std::string name_;
  Conn conn_;
  bool schema_ready_ = false;
};

}  // namespace

Result<std::unique_ptr<AuditSink>> open_postgres_sink(const std::string& dsn, const std::string& table) {
  auto tn = parse_table(table.empty() ? "gatehouse_audit" : table);
  if (!tn) return tl::unexpected(tn.error());
  auto params = store::pg::parse_dsn(dsn, "gatehouse-audit");
  if (!params) return fail("", "invalid postgres audit dsn: " + params.error().message);
  return std::unique_ptr<AuditSink>(
      std::make_unique<PostgresAuditSink>(std::move(params->keys), std::move(params->values), params->where,
                                          std::move(*tn)));
}

}  // namespace gh::audit
