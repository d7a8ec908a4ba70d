// The default store: SQLite in WAL mode, one transaction per batch. The schema is documented in
// src/audit/README.md; readers (search, verify, the admin API) open the same file read-only.
#include <chrono>
#include <functional>

#include "audit/block.h"
#include "audit/file_identity.h"
#include "audit/lines.h"
#include "audit/sink.h"
#include "audit/sqlite_schema.h"
#include "store/sqlite.h"

namespace gh::audit {

namespace {

// A 32 MiB page cache keeps the index pages hot; checkpoints of the WAL into the database
// every ~64 MiB (4,096 pages) instead of every 4 MiB make pages written twice rarer. A new
// store gets 16 KiB pages (records are ~1 KiB): measured 20-25% less CPU per inserted row
// than 4 KiB pages. (An existing file keeps its page size; the pragma does nothing there.)
Result<void> set_pragmas(store::SqliteDb& db, bool fsync) {
  for (const char* sql : {"PRAGMA page_size=16384", "PRAGMA journal_mode=WAL", fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                          "PRAGMA cache_size=-32768", "PRAGMA wal_autocheckpoint=4096"}) {
    auto r = db.exec(sql);
    if (!r) return r;
  }
  return {};
}

// Which layout the file already has: "rows" when it holds an audit_records table with a row,
// "blocks" when it has audit_blocks, "" when neither (a new store).
Result<std::string> existing_layout(store::SqliteDb& db) {
  auto blocks = db.query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_blocks'");
  if (!blocks) return tl::unexpected(blocks.error());
  if (blocks->value_or(0) > 0) return std::string("blocks");
  auto rows = db.query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_records'");
  if (!rows) return tl::unexpected(rows.error());
  return std::string(rows->value_or(0) > 0 ? "rows" : "");
}

Result<void> one_node(store::SqliteDb& db, const char* table, std::string_view node, const std::string& name) {
  auto other = db.prepare(std::string("SELECT node FROM ") + table + " WHERE node <> ?1 LIMIT 1");
  if (!other) return tl::unexpected(other.error());
  other->bind(1, node);
  auto orow = other->step();
  if (!orow) return tl::unexpected(orow.error());
  if (*orow)
    return fail("", name + " holds the audit chain of node \"" + std::string(other->column_text(0)) +
                        "\"; give each proxy node its own SQLite file (or audit.node the same name)");
  return {};
}

// The end of a prune: the hash of record `through` (`hash_sql`: ?1 node, ?2 seq), then `delete_sql`
// (?1 node, ?2 through); nothing when that record is gone already.
Result<std::optional<AuditSink::Pruned>> prune_through(store::SqliteDb& db, std::string_view node, std::int64_t through,
                                                       const char* hash_sql, const char* delete_sql) {
  if (through <= 0) return std::optional<AuditSink::Pruned>{};
  auto st = db.prepare(hash_sql);
  if (!st) return tl::unexpected(st.error());
  st->bind(1, node).bind(2, through);
  auto row = st->step();
  if (!row) return tl::unexpected(row.error());
  if (!*row) return std::optional<AuditSink::Pruned>{};  // already pruned
  AuditSink::Pruned p{std::uint64_t(through), std::string(st->column_text(0))};
  st->reset();
  auto del = db.prepare(delete_sql);
  if (!del) return tl::unexpected(del.error());
  del->bind(1, node).bind(2, through);
  if (auto r = del->step(); !r) return tl::unexpected(r.error());
  return std::optional<AuditSink::Pruned>{std::move(p)};
}

std::int64_t micros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// Blocks: one row per run of consecutive records (docs/adr/0005-audit-journal.md): one insert
// of a few hundred KB instead of a few hundred inserts of a row with 28 columns and its indexes.
// What both layouts share: the file, its schema and insert statement, and where the chain ends.
class SqliteSinkBase : public AuditSink {
 public:
  std::string_view name() const override { return name_; }

 protected:
  SqliteSinkBase(store::SqliteDb db, std::string path)
      : db_(std::move(db)), path_(std::move(path)), name_("sqlite:" + path_), file_(FileIdentity::of(path_)) {}

  Result<void> init(const char* schema, const char* insert) {
    if (auto r = db_.exec(schema); !r) return r;
    auto ins = db_.prepare(insert);
    if (!ins) return tl::unexpected(ins.error());
    insert_ = std::move(*ins);
    return {};
  }

  // One chain per file (records of another node in `table` mean two proxies were given the same
  // file); `newest` (?1: the node) gives the seq and hash of its last record.
  Result<std::optional<ChainHead>> head_of(std::string_view node, const char* table, const char* newest) {
    if (auto r = one_node(db_, table, node, name_); !r) return tl::unexpected(r.error());
    auto st = db_.prepare(newest);
    if (!st) return tl::unexpected(st.error());
    st->bind(1, node);
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) return std::optional<ChainHead>{};
    ChainHead h;
    h.seq = std::uint64_t(st->column_int(0));
    h.hash = std::string(st->column_text(1));
    st->reset();
    return std::optional<ChainHead>{std::move(h)};
  }

  // A batch is written all or nothing, into the file the sink opened.
  Result<void> in_transaction(const std::function<Result<void>()>& body) {
    if (auto r = still_the_same_file(path_, file_); !r) return r;
    if (auto r = db_.exec("BEGIN IMMEDIATE"); !r) return r;
    auto r = body();
    if (r) r = db_.exec("COMMIT");
    if (!r) (void)db_.exec("ROLLBACK");
    return r;
  }

  store::SqliteDb db_;
  std::string path_, name_;
  std::optional<FileIdentity> file_;  // the file opened (none for an in-memory database)
  store::SqliteStatement insert_;
};

class SqliteBlockSink final : public SqliteSinkBase {
 public:
  SqliteBlockSink(store::SqliteDb db, std::string path) : SqliteSinkBase(std::move(db), std::move(path)) {}

  Result<void> init() { return SqliteSinkBase::init(kSqliteBlocksSchema, kSqliteBlockInsert); }

  Result<std::optional<ChainHead>> head(std::string_view node) override {
    return head_of(node, "audit_blocks", "SELECT last_seq, last_hash FROM audit_blocks WHERE node = ?1 ORDER BY first_seq DESC LIMIT 1");
  }

  Result<void> write(std::span<const Record> batch) override {
    return in_transaction([&]() -> Result<void> {
      std::size_t i = 0;
      while (i < batch.size()) {
        // A block ends before a gap in seq (a batch is consecutive; this keeps a block so if not)
        // and at kBlockRecords records or kBlockBytes bytes, so that a reader decodes little to
        // find one record.
        std::size_t j = i;
        std::size_t bytes = 0;
        data_.clear();
        data_ += "[\n";
        std::int64_t lo = INT64_MAX, hi = INT64_MIN;
        while (j < batch.size() && (j == i || (batch[j].seq == batch[j - 1].seq + 1 && j - i < kBlockRecords &&
                                                bytes < kBlockBytes))) {
          const Record& r = batch[j];
          if (j > i) data_ += ",\n";
          const std::size_t at = data_.size();
          append_record_line(data_, r);
          data_.pop_back();  // its '\n'
          bytes += data_.size() - at;
          lo = std::min(lo, r.index.time_us);
          hi = std::max(hi, r.index.time_us);
          ++j;
        }
        data_ += "\n]";
        auto packed = compressor_.compress(data_);
        if (!packed) return tl::unexpected(packed.error());
        const Record& first = batch[i];
        const Record& last = batch[j - 1];
        auto& s = insert_;
        s.bind(1, std::int64_t(first.seq)).bind(2, std::int64_t(last.seq)).bind(3, std::int64_t(j - i));
        s.bind_static(4, first.index.node).bind(5, lo).bind(6, hi).bind_static(7, last.hash).bind_blob_static(8, *packed);
        if (auto r = s.step(); !r) return tl::unexpected(r.error());
        i = j;
      }
      return {};
    });
  }

  // Whole blocks only: a block goes when all its records may go.
  Result<std::optional<Pruned>> prune(std::string_view node, std::optional<std::chrono::system_clock::time_point> before,
                                      std::uint64_t keep) override {
    std::int64_t through = 0;
    if (before) {
      // The newest block whose records are all older than `before`, of the oldest run of such blocks.
      auto st = db_.prepare("SELECT max(last_seq) FROM audit_blocks WHERE node = ?1 AND last_seq < "
                            "coalesce((SELECT min(first_seq) FROM audit_blocks WHERE node = ?1 AND max_time_us >= ?2), "
                            "9223372036854775807)");
      if (!st) return tl::unexpected(st.error());
      st->bind(1, node).bind(2, micros(*before));
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (*row && !st->column_is_null(0)) through = st->column_int(0);
      st->reset();
    }
    if (keep > 0) {
      auto st = db_.prepare("SELECT max(last_seq) FROM audit_blocks WHERE node = ?1 AND last_seq <= "
                            "(SELECT max(last_seq) FROM audit_blocks WHERE node = ?1) - ?2");
      if (!st) return tl::unexpected(st.error());
      st->bind(1, node).bind(2, std::int64_t(keep));
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (*row && !st->column_is_null(0)) through = std::max<std::int64_t>(through, st->column_int(0));
      st->reset();
    }
    return prune_through(db_, node, through, "SELECT last_hash FROM audit_blocks WHERE node = ?1 AND last_seq = ?2",
                         "DELETE FROM audit_blocks WHERE node = ?1 AND last_seq <= ?2");
  }

 private:
  static constexpr std::size_t kBlockRecords = 512;
  static constexpr std::size_t kBlockBytes = 512 * 1024;
  std::string data_;  // the block being written, kept to reuse its buffer
  BlockCompressor compressor_;
};

class SqliteAuditSink final : public SqliteSinkBase {
 public:
  SqliteAuditSink(store::SqliteDb db, std::string path) : SqliteSinkBase(std::move(db), std::move(path)) {}

  bool needs_index() const override { return true; }

  Result<void> init() { return SqliteSinkBase::init(kSqliteSchema, kSqliteInsert); }

  Result<std::optional<ChainHead>> head(std::string_view node) override {
    return head_of(node, "audit_records", "SELECT seq, hash FROM audit_records WHERE node = ?1 ORDER BY seq DESC LIMIT 1");
  }

  Result<void> write(std::span<const Record> batch) override {
    return in_transaction([&]() -> Result<void> {
      for (const auto& rec : batch) {
        bind_row(insert_, rec);  // the records outlive the step: no copies
        if (auto r = insert_.step(); !r) return tl::unexpected(r.error());
      }
      return {};
    });
  }

  Result<std::optional<Pruned>> prune(std::string_view node, std::optional<std::chrono::system_clock::time_point> before,
                                      std::uint64_t keep) override {
    std::int64_t through = 0;
    if (before) {
      auto st = db_.prepare("SELECT max(seq) FROM audit_records WHERE node = ?1 AND time_us < ?2");
      if (!st) return tl::unexpected(st.error());
      st->bind(1, node).bind(2, std::int64_t(std::chrono::duration_cast<std::chrono::microseconds>(before->time_since_epoch()).count()));
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (*row && !st->column_is_null(0)) through = st->column_int(0);
      st->reset();
    }
    if (keep > 0) {
      auto st = db_.prepare("SELECT max(seq) FROM audit_records WHERE node = ?1");
      if (!st) return tl::unexpected(st.error());
      st->bind(1, node);
      auto row = st->step();
      if (!row) return tl::unexpected(row.error());
      if (*row && !st->column_is_null(0)) through = std::max<std::int64_t>(through, st->column_int(0) - std::int64_t(keep));
      st->reset();
    }
    return prune_through(db_, node, through, "SELECT hash FROM audit_records WHERE node = ?1 AND seq = ?2",
                         "DELETE FROM audit_records WHERE node = ?1 AND seq <= ?2");
  }
};

}  // namespace

void bind_row(store::SqliteStatement& s, const Record& rec) {
  const auto& x = rec.index;
  s.bind_static(1, x.node).bind(2, std::int64_t(rec.seq)).bind_static(3, rec.prev).bind_static(4, rec.hash);
  s.bind_static(5, rec.body).bind_static(6, x.time).bind(7, x.time_us).bind_static(8, x.type).bind(9, x.session);
  s.bind(10, x.statement).bind_static(11, x.subject).bind_static(12, x.email).bind_static(13, x.groups);
  s.bind_static(14, x.kind).bind_static(15, x.client).bind_static(16, x.target).bind_static(17, x.environment);
  s.bind_static(18, x.database).bind_static(19, x.kinds).bind_static(20, x.relations).bind_static(21, x.tags);
  s.bind_static(22, x.decision).bind_static(23, x.rule).bind_static(24, x.outcome).bind_static(25, x.sqlstate);
  s.bind(26, x.rows).bind(27, x.duration_us).bind_static(28, x.text);
}

Result<std::unique_ptr<AuditSink>> open_sqlite_sink(const std::string& path, bool fsync, SqliteLayout layout) {
  auto db = store::SqliteDb::open(path);
  if (!db) return tl::unexpected(db.error());
  if (auto r = set_pragmas(*db, fsync); !r) return tl::unexpected(r.error());
  // An existing store keeps the layout it has (a proxy upgraded in place goes on writing rows).
  auto has = existing_layout(*db);
  if (!has) return tl::unexpected(has.error());
  if (*has == "rows" || (has->empty() && layout == SqliteLayout::Rows)) {
    auto sink = std::make_unique<SqliteAuditSink>(std::move(*db), path);
    if (auto r = sink->init(); !r) return tl::unexpected(r.error());
    return std::unique_ptr<AuditSink>(std::move(sink));
  }
  auto sink = std::make_unique<SqliteBlockSink>(std::move(*db), path);
  if (auto r = sink->init(); !r) return tl::unexpected(r.error());
  return std::unique_ptr<AuditSink>(std::move(sink));
}

}  // namespace gh::audit
