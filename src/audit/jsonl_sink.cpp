// JSON lines for SIEM shippers: one line per record in the format of audit/lines.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "audit/file_identity.h"
#include "audit/lines.h"
#include "audit/sink.h"

namespace gh::audit {

namespace {


class JsonLinesSink final : public AuditSink {
 public:
  JsonLinesSink(int fd, std::string path, bool fsync, bool regular, std::uint64_t max_size, std::uint32_t keep)
      : fd_(fd), path_(std::move(path)), name_("jsonl:" + path_), fsync_(fsync), regular_(regular),
        max_size_(max_size), keep_(std::max<std::uint32_t>(keep, 1)) {
    if (regular_) file_ = FileIdentity::of(path_);
  }
  ~JsonLinesSink() override {
    if (fd_ > 1) ::close(fd_);
  }

  std::string_view name() const override { return name_; }

  // The last complete line of the file; a torn last line (the process died inside a write) is
  // cut off, since its batch was never acknowledged.
  Result<std::optional<ChainHead>> head(std::string_view node) override {
    if (!regular_) return std::optional<ChainHead>{};
    auto h = last_record(fd_, path_, node, true);
    if (!h || *h || max_size_ == 0) return h;
    // An empty file at the path of a rotating sink: the process may have stopped right after a
    // rotation (found by adversarial testing: the journal was written again from its start, and
    // older files rotated away); the chain goes on after the newest rotated file.
    const std::string older = path_ + ".1";
    const int fd = ::open(older.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return h;
    auto prev = last_record(fd, older, node, false);
    ::close(fd);
    return prev;
  }

  // The last complete record line of the file at fd; with `repair`, a torn last line is cut off.
  Result<std::optional<ChainHead>> last_record(int fd, const std::string& path, std::string_view node, bool repair) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return tl::unexpected(io_error(path, errno));
    off_t end = st.st_size;
    std::string tail;
    const off_t chunk = 1 << 16;
    off_t from = end;
    // Read backwards until the last complete line is whole in `tail`.
    while (from > 0) {
      const off_t start = std::max<off_t>(0, from - chunk);
      std::string buf(std::size_t(from - start), '\0');
      if (::pread(fd, buf.data(), buf.size(), start) != ssize_t(buf.size())) return tl::unexpected(io_error(path, errno));
      tail = buf + tail;
      from = start;
      const auto last = tail.rfind('\n');
      if (last != std::string::npos && last > 0 && tail.rfind('\n', last - 1) != std::string::npos) break;
    }
    const auto last_nl = tail.rfind('\n');
    const off_t tail_start = end - off_t(tail.size());
    if (last_nl + 1 != tail.size()) {  // torn (or no newline at all)
      const off_t keep = last_nl == std::string::npos ? tail_start : tail_start + off_t(last_nl) + 1;
      if (repair && ::ftruncate(fd, keep) != 0) return tl::unexpected(io_error(path, errno));
      tail.resize(std::size_t(keep - tail_start));
    }
    if (tail.empty()) return std::optional<ChainHead>{};
    tail.pop_back();  // '\n'
    const auto prev_nl = tail.rfind('\n');
    const std::string line = prev_nl == std::string::npos ? tail : tail.substr(prev_nl + 1);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("hash") || !j.contains("body"))
      return fail("XX000", path + ": the last line is not an audit record; move the file away to start a new chain");
    ChainHead h;
    h.seq = j["body"].value("seq", std::uint64_t(0));
    h.hash = j["hash"].get<std::string>();
    if (j["body"].value("node", std::string()) != node)
      return fail("XX000", path + ": the file holds the chain of node \"" + j["body"].value("node", std::string()) +
                               "\"; give each proxy node its own file");
    return std::optional<ChainHead>{std::move(h)};
  }

  Result<void> write(std::span<const Record> batch) override {
    if (regular_ && !still_the_same_file(path_, file_)) {
      // Moved away or deleted (log rotation): the next records go to a new file at the path, as
      // a shipper following the path expects; the lines written so far stay in the old one.
      const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0) return tl::unexpected(io_error("cannot open the audit file " + path_ + " again", errno));
      ::close(fd_);
      fd_ = fd;
      file_ = FileIdentity::of(path_);
      spdlog::info("audit: {} was moved or deleted; writing to a new file at that path", path_);
    }
    if (!regular_ || max_size_ == 0) return append(batch);
    // Rotating: the batch goes in parts, each ending before the file would pass max_size. A part
    // written before a later one fails is not written again when the batch is retried.
    std::size_t from = 0;
    while (from < batch.size() && batch[from].seq <= written_seq_) ++from;
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return tl::unexpected(io_error(path_, errno));
    std::uint64_t size = std::uint64_t(st.st_size), part = 0;
    std::size_t start = from;
    for (std::size_t i = from; i < batch.size(); ++i) {
      const std::size_t line = record_line_size(batch[i]);
      if (size + part + line > max_size_ && size + part > 0) {
        if (auto w = append(batch.subspan(start, i - start)); !w) return w;
        if (auto r = rotate(batch[i].seq - 1); !r) return r;
        size = part = 0;
        start = i;
      }
      part += line;
    }
    return append(batch.subspan(start));
  }

 private:
  Result<void> append(std::span<const Record> records) {
    if (records.empty()) return {};
    buf_.clear();
    for (const auto& r : records) append_record_line(buf_, r);
    const off_t before = regular_ ? ::lseek(fd_, 0, SEEK_END) : -1;
    if (auto w = append_all(fd_, buf_, before, path_); !w) return w;
    if (fsync_ && regular_ && ::fdatasync(fd_) != 0) return tl::unexpected(io_error(path_, errno));
    written_seq_ = records.back().seq;
    return {};
  }

  // PATH -> PATH.1 -> ... -> PATH.keep (the oldest is deleted), between two batches: each file
  // holds whole lines, and PATH.1 ends with record `last`, which the new PATH continues (verify
  // it with --continues, the head verify prints for PATH.1).
  Result<void> rotate(std::uint64_t last) {
    auto name = [&](std::uint32_t i) { return path_ + "." + std::to_string(i); };
    if (::unlink(name(keep_).c_str()) != 0 && errno != ENOENT) return tl::unexpected(io_error(name(keep_), errno));
    for (std::uint32_t i = keep_ - 1; i >= 1; --i)
      if (::rename(name(i).c_str(), name(i + 1).c_str()) != 0 && errno != ENOENT)
        return tl::unexpected(io_error("cannot rotate " + name(i), errno));
    if (fsync_ && ::fdatasync(fd_) != 0) return tl::unexpected(io_error(path_, errno));
    if (::rename(path_.c_str(), name(1).c_str()) != 0) return tl::unexpected(io_error("cannot rotate " + path_, errno));
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return tl::unexpected(io_error("cannot open the audit file " + path_ + " after rotating it", errno));
    ::close(fd_);
    fd_ = fd;
    file_ = FileIdentity::of(path_);
    spdlog::info("audit: rotated {} to {} (through record {}; at most {} rotated files are kept)", path_, name(1), last,
                 keep_);
    return {};
  }

  int fd_;
  std::string path_, name_;
  bool fsync_, regular_;
  std::uint64_t max_size_;
  std::uint32_t keep_;
  std::uint64_t written_seq_ = 0;  // the newest record in the file (rotating sinks skip it on a retry)
  std::optional<FileIdentity> file_;  // the file opened, while the path names it
  std::string buf_;
};

}  // namespace

Result<std::unique_ptr<AuditSink>> open_jsonl_sink(const std::string& path, bool fsync, std::uint64_t max_size,
                                                   std::uint32_t keep) {
  if (path == "-") return std::unique_ptr<AuditSink>(std::make_unique<JsonLinesSink>(1, "-", false, false, 0, 1));
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return tl::unexpected(io_error("cannot open the audit file " + path, errno));
  struct stat st {};
  ::fstat(fd, &st);
  return std::unique_ptr<AuditSink>(
      std::make_unique<JsonLinesSink>(fd, path, fsync, S_ISREG(st.st_mode), max_size, keep));
}

}  // namespace gh::audit
