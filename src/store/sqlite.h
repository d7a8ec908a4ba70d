#pragma once
// A thin RAII face on the SQLite C API: open, exec, prepared statements. Errors are values
// that carry SQLite's own message and, for a full disk, SQLSTATE 53100.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace gh::store {

class SqliteStatement {
 public:
  SqliteStatement() = default;
  SqliteStatement(SqliteStatement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  SqliteStatement& operator=(SqliteStatement&& o) noexcept;
  ~SqliteStatement();

  // Parameters are 1-based, as in SQLite.
  SqliteStatement& bind(int i, std::int64_t v);
  SqliteStatement& bind(int i, std::string_view text);  // copied by SQLite
  // Not copied: `text` must stay valid until the statement is stepped and reset.
  SqliteStatement& bind_static(int i, std::string_view text);
  SqliteStatement& bind_blob_static(int i, std::string_view bytes);  // not copied, as bind_static
  SqliteStatement& bind_null(int i);
  // true: a row is ready; false: done. Resets automatically when done or on error.
  [[nodiscard]] Result<bool> step();
  void reset();

  std::int64_t column_int(int i) const;
  std::string_view column_text(int i) const;  // valid until the next step()
  std::string_view column_blob(int i) const;  // valid until the next step()
  bool column_is_null(int i) const;

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3* db, sqlite3_stmt* s) : db_(db), stmt_(s) {}
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteDb {
 public:
  // Immutable: read-only, and SQLite assumes no process writes the file (no locks, no -wal or
  // -shm files created): for a store no process has open, e.g. evidence on read-only media.
  enum class Mode { ReadWrite, ReadOnly, Immutable };
  [[nodiscard]] static Result<SqliteDb> open(const std::string& path, Mode mode = Mode::ReadWrite);
  SqliteDb() = default;
  SqliteDb(SqliteDb&& o) noexcept : db_(o.db_), path_(std::move(o.path_)) { o.db_ = nullptr; }
  SqliteDb& operator=(SqliteDb&& o) noexcept;
  ~SqliteDb();

  [[nodiscard]] Result<void> exec(std::string_view sql);
  [[nodiscard]] Result<SqliteStatement> prepare(std::string_view sql);
  // One value of a one-row query (e.g. PRAGMA user_version); nullopt when no row.
  [[nodiscard]] Result<std::optional<std::int64_t>> query_int(std::string_view sql);
  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// The message for the last error on `db`, e.g. "database or disk is full (audit.db)", with
// SQLSTATE 53100 for a full disk, 58030 for other I/O errors.
Error sqlite_error(sqlite3* db, int rc, std::string_view what);

}  // namespace gh::store
