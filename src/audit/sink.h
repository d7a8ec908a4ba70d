#pragma once
// Where sealed records go. The trail's writer thread is the only caller of a sink's write
// side, so sinks need no locks of their own.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "audit/record.h"
#include "base/result.h"

namespace gh::audit {

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  virtual std::string_view name() const = 0;  // "sqlite:/var/lib/gatehouse/audit.db"
  // Whether write() reads Record::index beyond time_us, node and type (the search columns of a
  // row per record). When no sink does, sealing skips building it (SealOptions::index).
  virtual bool needs_index() const { return false; }
  // The newest record stored for this node, to continue its chain after a restart.
  [[nodiscard]] virtual Result<std::optional<ChainHead>> head(std::string_view node) = 0;
  // All or nothing; on success the records survive the process being killed (and with the
  // sink's fsync option, a power loss).
  [[nodiscard]] virtual Result<void> write(std::span<const Record> batch) = 0;
  // Deletes the oldest records of `node`: those older than `before` (when set) and those beyond
  // the newest `keep` (when non-zero). Returns the highest sequence number deleted and the hash
  // of that record (the anchor a Retention record keeps), or nullopt when nothing was deleted.
  struct Pruned {
    std::uint64_t through = 0;
    std::string hash;
  };
  [[nodiscard]] virtual Result<std::optional<Pruned>> prune(std::string_view node,
                                                            std::optional<std::chrono::system_clock::time_point> before,
                                                            std::uint64_t keep) {
    return std::optional<Pruned>{};
  }
};

// SQLite in WAL mode; one transaction per batch. fsync: synchronous=FULL (survives power loss)
// instead of NORMAL (survives the process being killed). `layout` is for a new file: one row per
// block of records (the default) or one per record; an existing file keeps the one it has.
enum class SqliteLayout { Blocks, Rows };
[[nodiscard]] Result<std::unique_ptr<AuditSink>> open_sqlite_sink(const std::string& path, bool fsync,
                                                                SqliteLayout layout = SqliteLayout::Blocks);
// JSON lines, one record per line ({"seq","prev","hash","body"}); "-" is standard output.
// max_size > 0: the file is rotated (PATH.1 ... PATH.keep) before a batch would take it past that.
[[nodiscard]] Result<std::unique_ptr<AuditSink>> open_jsonl_sink(const std::string& path, bool fsync,
                                                               std::uint64_t max_size = 0, std::uint32_t keep = 10);

}  // namespace gh::audit

namespace gh::audit {
// PostgreSQL via libpq (the shared store when several proxies run). The connection is made
// lazily and again after a failure, so a store that is down at start is only spooled for.
[[nodiscard]] Result<std::unique_ptr<AuditSink>> open_postgres_sink(const std::string& dsn, const std::string& table);
}  // namespace gh::audit
