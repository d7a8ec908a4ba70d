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
  JsonLinesSink(int fd, std::string path, bool fsync, bool regular)
      : fd_(fd), path_(std::move(path)), name_("jsonl:" + path_), fsync_(fsync), regular_(regular) {
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
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return tl::unexpected(io_error(path_, errno));
    off_t end = st.st_size;
    std::string tail;
    const off_t chunk = 1 << 16;
    off_t from = end;
    // Read backwards until the last complete line is whole in `tail`.
    while (from > 0) {
      const off_t start = std::max<off_t>(0, from - chunk);
      std::string buf(std::size_t(from - start), '\0');
      if (::pread(fd_, buf.data(), buf.size(), start) != ssize_t(buf.size())) return tl::unexpected(io_error(path_, errno));
      tail = buf + tail;
      from = start;
      const auto last = tail.rfind('\n');
      if (last != std::string::npos && last > 0 && tail.rfind('\n', last - 1) != std::string::npos) break;
    }
    const auto last_nl = tail.rfind('\n');
    const off_t tail_start = end - off_t(tail.size());
    if (last_nl + 1 != tail.size()) {  // torn (or no newline at all)
      const off_t keep = last_nl == std::string::npos ? tail_start : tail_start + off_t(last_nl) + 1;
      if (::ftruncate(fd_, keep) != 0) return tl::unexpected(io_error(path_, errno));
      tail.resize(std::size_t(keep - tail_start));
    }
    if (tail.empty()) return std::optional<ChainHead>{};
    tail.pop_back();  // '\n'
    const auto prev_nl = tail.rfind('\n');
    const std::string line = prev_nl == std::string::npos ? tail : tail.substr(prev_nl + 1);
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("hash") || !j.contains("body"))
      return fail("XX000", path_ + ": the last line is not an audit record; move the file away to start a new chain");
    ChainHead h;
    h.seq = j["body"].value("seq", std::uint64_t(0));
    h.hash = j["hash"].get<std::string>();
    if (j["body"].value("node", std::string()) != node)
      return fail("XX000", path_ + ": the file holds the chain of node \"" + j["body"].value("node", std::string()) +
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
    buf_.clear();
    for (const auto& r : batch) append_record_line(buf_, r);
    const off_t before = regular_ ? ::lseek(fd_, 0, SEEK_END) : -1;
    if (auto w = append_all(fd_, buf_, before, path_); !w) return w;
    if (fsync_ && regular_ && ::fdatasync(fd_) != 0) return tl::unexpected(io_error(path_, errno));
    return {};
  }

 private:
  int fd_;
  std::string path_, name_;
  bool fsync_, regular_;
  std::optional<FileIdentity> file_;  // the file opened, while the path names it
  std::string buf_;
};

}  // namespace

Result<std::unique_ptr<AuditSink>> open_jsonl_sink(const std::string& path, bool fsync) {
  if (path == "-") return std::unique_ptr<AuditSink>(std::make_unique<JsonLinesSink>(1, "-", false, false));
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return tl::unexpected(io_error("cannot open the audit file " + path, errno));
  struct stat st {};
  ::fstat(fd, &st);
  return std::unique_ptr<AuditSink>(std::make_unique<JsonLinesSink>(fd, path, fsync, S_ISREG(st.st_mode)));
}

}  // namespace gh::audit
