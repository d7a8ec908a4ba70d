#include "audit/trail.h"

#include "audit/lines.h"

#include <malloc.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

namespace gh::audit {

namespace {

// A journal line back into a record (one parse of its body).
std::optional<Record> parse_line(std::string_view line) {
  auto parts = split_record_line(line);
  if (!parts) return std::nullopt;
  auto r = record_of(std::string(parts->hash), std::string(parts->body));
  if (!r) return std::nullopt;
  return std::move(*r);
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "gatehouse";
  return buf;
}

}  // namespace

struct Trail::SinkState {
  std::unique_ptr<AuditSink> sink;
  std::uint64_t stored_seq = 0;  // newest record the sink itself holds
  bool head_known = false;       // stored_seq was read from the sink (it was reachable)
  bool healthy = true;
  std::string last_error;
  std::string last_sqlstate;  // 53100 for a full disk
  std::chrono::steady_clock::time_point retry_at{};
};

namespace {
// Journal records kept in memory as well, for the sinks: beyond, a lagging sink reads them back from
// the journal. Bounded in bytes too (found by adversarial testing: a store 150,000 records behind
// held ~300 MB of records, which the allocator then kept).
constexpr std::size_t kMaxPending = 1 << 16;
constexpr std::size_t kMaxPendingBytes = 16u << 20;
std::size_t held_bytes(const Record& r) { return r.body.capacity() + r.index.text.capacity() + 768; }
constexpr std::size_t kFlushRecords = 4096;   // a flush this large is not put off
constexpr std::size_t kChunk = 4096;          // records per sink transaction
constexpr std::uint64_t kRotateBytes = 4u << 20;  // a journal file this large hands over to the other
constexpr std::size_t kJournalStep = 256u << 10;  // a mapped journal grows by at least this much
}  // namespace

Result<void> Trail::check(const config::Audit& cfg) {
  if (!cfg.enabled) return {};
  if (!cfg.checkpoint_key_file.empty()) {
    auto alg = CheckpointSigner::algorithm_from_name(cfg.checkpoint_algorithm);
    auto signer = CheckpointSigner::load(alg.value_or(CheckpointSigner::Algorithm::Ed25519), cfg.checkpoint_key_file);
    if (!signer) return fail("", "audit.checkpoint.key_file: " + signer.error().message);
    if (!signer->can_sign())
      return fail("", "audit.checkpoint.key_file: " + cfg.checkpoint_key_file +
                          " holds a public key; the proxy needs the private key");
  }
  auto dir_of = [](const std::string& file) {
    const auto p = std::filesystem::path(file).parent_path();
    return p.empty() ? std::filesystem::path(".") : p;
  };
  for (std::size_t i = 0; i < cfg.sinks.size(); ++i) {
    const auto& s = cfg.sinks[i];
    if (s.type == config::AuditSink::Type::Postgres || s.path == "-") continue;
    std::error_code ec;
    if (!std::filesystem::is_directory(dir_of(s.path), ec))
      return fail("", "audit.sinks[" + std::to_string(i) + "].path: the directory of " + s.path + " does not exist");
  }
  std::error_code ec;
  const auto spool = std::filesystem::path(cfg.spool_dir);
  if (!std::filesystem::is_directory(spool, ec) && !std::filesystem::is_directory(dir_of(cfg.spool_dir), ec))
    return fail("", "audit.spool.dir: neither " + cfg.spool_dir + " nor its parent directory exists");
  return {};
}

Result<std::unique_ptr<Trail>> Trail::open(const config::Audit& cfg) {
  if (auto c = check(cfg); !c) return tl::unexpected(c.error());
  Options o;
  o.node = cfg.node.empty() ? hostname() : cfg.node;
  o.params = cfg.parameters == config::Audit::Params::Full   ? SealOptions::Params::Full
             : cfg.parameters == config::Audit::Params::None ? SealOptions::Params::None
                                                            : SealOptions::Params::Masked;
  o.max_text = cfg.max_text;
  o.queue_size = cfg.queue_size;
  o.spool_dir = cfg.spool_dir;
  o.spool_max_size = cfg.spool_max_size;
  o.checkpoint_interval = cfg.checkpoint_interval;
  o.retention_max_age = cfg.retention_max_age;
  o.retention_max_records = cfg.retention_max_records;
  o.flush_interval = cfg.flush_interval;
  for (const auto& sink : cfg.sinks) o.fsync |= sink.fsync;
  if (!cfg.checkpoint_key_file.empty()) {
    auto alg = CheckpointSigner::algorithm_from_name(cfg.checkpoint_algorithm);
    auto signer = CheckpointSigner::load(alg.value_or(CheckpointSigner::Algorithm::Ed25519), cfg.checkpoint_key_file);
    if (!signer) return tl::unexpected(signer.error());
    if (!signer->can_sign())
      return fail("", "audit.checkpoint.key_file " + cfg.checkpoint_key_file + " holds a public key; the proxy needs the private key");
    o.signer = std::move(*signer);
  }
  std::vector<std::unique_ptr<AuditSink>> sinks;
  for (const auto& s : cfg.sinks) {
    Result<std::unique_ptr<AuditSink>> sink = fail("", "");
    switch (s.type) {
      case config::AuditSink::Type::Sqlite:
        sink = open_sqlite_sink(s.path, s.fsync, s.blocks ? SqliteLayout::Blocks : SqliteLayout::Rows);
        break;
      case config::AuditSink::Type::JsonLines: sink = open_jsonl_sink(s.path, s.fsync, s.max_size, s.keep); break;
      case config::AuditSink::Type::Postgres: sink = open_postgres_sink(s.dsn, s.table); break;
    }
    if (!sink) return tl::unexpected(Error{sink.error().sqlstate, "audit sink: " + sink.error().message});
    sinks.push_back(std::move(*sink));
  }
  return open(std::move(o), std::move(sinks));
}

Result<std::unique_ptr<Trail>> Trail::open(Options options, std::vector<std::unique_ptr<AuditSink>> sinks) {
  std::error_code ec;
  std::filesystem::create_directories(options.spool_dir, ec);
  if (ec) return fail("58030", "cannot create the audit spool directory " + options.spool_dir + ": " + ec.message());
  // One writer per chain: a second process on the same spool (a manual start beside a service
  // manager's) would seal the same sequence numbers and fork the chain (found by adversarial
  // testing: verify then reported the store as tampered). The lock ends with the process.
  const std::string lock_path = options.spool_dir + "/lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return tl::unexpected(io_error("cannot open " + lock_path, errno));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK)
      return fail("55006", "another gatehouse process is writing this audit trail (its spool " + options.spool_dir +
                               " is locked); two writers would fork the chain: stop the other process first");
    return tl::unexpected(io_error("cannot lock " + lock_path, err));
  }
  std::unique_ptr<Trail> t(new Trail(std::move(options), std::move(sinks)));
  t->lock_fd_ = lock_fd;
  // Continue the chain where the newest copy of it ends: a sink, or the journal.
  for (auto& s : t->sinks_) {
    auto h = s->sink->head(t->options_.node);
    if (!h) {
      s->healthy = false;
      s->last_error = h.error().message;
      spdlog::warn("audit: {} is unavailable at start ({}); records wait in the journal until it is back",
                   s->sink->name(), h.error().message);
    } else {
      s->head_known = true;
      if (*h) {
        s->stored_seq = (*h)->seq;
        if ((*h)->seq > t->head_.seq) t->head_ = **h;
      }
    }
  }
  std::vector<Record> replay;
  if (auto r = t->open_journal(replay); !r) return tl::unexpected(r.error());
  const std::string head_path = t->options_.spool_dir + "/head";
  t->head_fd_ = ::open(head_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (t->head_fd_ < 0) return tl::unexpected(io_error("cannot open " + head_path, errno));
  if (auto saved = t->read_saved_head()) {
    t->saved_head_seq_ = saved->seq;
    if (saved->seq > t->head_.seq) {
      spdlog::error("audit: this node's chain reached record {} ({}), but its stores and journal end at record {}: "
                    "records {}..{} are in no configured store (a store deleted, replaced or restored from an older "
                    "copy, or a new one). The chain continues after record {}, so `gatehouse audit verify` reports "
                    "the missing records.",
                    saved->seq, head_path, t->head_.seq, t->head_.seq + 1, saved->seq, saved->seq);
      t->head_ = *saved;
    }
  }
  if (t->options_.intents && t->inline_writes()) t->open_intents(replay);
  std::uint64_t stored_all = t->head_.seq;
  for (const auto& s : t->sinks_) stored_all = std::min(stored_all, s->healthy ? s->stored_seq : 0);
  t->stored_all_seq_ = replay.empty() ? stored_all : std::min(stored_all, replay.front().seq - 1);
  t->last_seq_ = t->head_.seq;
  t->start_seq_ = t->head_.seq + 1;
  t->to_store_ = std::move(replay);
  t->to_store_since_ = std::chrono::steady_clock::now() - t->options_.flush_interval;
  t->checkpointed_seq_ = t->head_.seq;
  // Written before the threads start, so the Start record comes first, before retention's and any
  // session's. With a key, a checkpoint right after it: every run's trail is signed from its
  // start, so a store whose checkpoints were all deleted (and whose chain was then recomputed)
  // fails `verify --key` (found by adversarial testing).
  Event start;
  start.type = EventType::Start;
  start.time = std::chrono::system_clock::now();
  {
    std::vector<Pending> first;
    first.push_back(Pending{{std::move(start)}, {}});
    {
      std::lock_guard lock(t->mu_);
      ++t->enqueued_;
      ++t->stats_.submitted;
    }
    t->write_batch(first);
  }
  if (t->options_.signer && t->options_.checkpoint_at_start) t->maybe_checkpoint(true);
  t->store_ = std::thread([p = t.get()] { p->run_store(); });
  t->writer_ = std::thread([p = t.get()] { p->run(); });
  return t;
}

Trail::Trail(Options options, std::vector<std::unique_ptr<AuditSink>> sinks) : options_(std::move(options)) {
  index_ = false;
  for (auto& s : sinks) {
    auto st = std::make_unique<SinkState>();
    index_ = index_ || s->needs_index();
    st->sink = std::move(s);
    sinks_.push_back(std::move(st));
  }
  journal_path_ = options_.spool_dir + "/journal.{0,1}";
  journal_[0].path = options_.spool_dir + "/journal.0";
  journal_[1].path = options_.spool_dir + "/journal.1";
  const auto now = std::chrono::steady_clock::now();
  next_checkpoint_ = now + options_.checkpoint_interval;
  // Retention runs at start (after the Start record), then hourly: a store that outgrew its
  // limits while the proxy was down is trimmed at start, not an hour later.
  next_prune_ = now;
}

Trail::~Trail() {
  close();
  for (auto& f : journal_) {
    journal_unmap(f);
    if (f.fd >= 0) ::close(f.fd);
  }
  if (intents_map_) ::munmap(intents_map_, kIntentSlot * kIntentSlots);
  if (intents_fd_ >= 0) ::close(intents_fd_);
  if (head_fd_ >= 0) ::close(head_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // last: the files above are no longer written
}

// ---- intents ----------------------------------------------------------------------------------

namespace {
std::uint64_t* intent_live(char* slot) { return reinterpret_cast<std::uint64_t*>(slot + 8); }
}  // namespace

void Trail::open_intents(std::vector<Record>& replay) {
  const std::string path = options_.spool_dir + "/intents";
  const std::size_t size = kIntentSlot * kIntentSlots;
  intents_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  void* map = MAP_FAILED;
  int err = intents_fd_ < 0 ? errno : 0;
  // posix_fallocate returns its error instead of setting errno (a full spool said ENOENT).
  if (intents_fd_ >= 0) err = ::posix_fallocate(intents_fd_, 0, off_t(size));
  if (intents_fd_ >= 0 && err == 0) {
    map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, intents_fd_, 0);
    if (map == MAP_FAILED) err = errno;
  }
  if (map == MAP_FAILED) {
    spdlog::warn("audit: cannot {} {} ({}); statements are recorded before they run and again when they end",
                 err == ENOSPC ? "reserve 4 MiB for" : "map", path, std::strerror(err));
    if (intents_fd_ >= 0) ::close(intents_fd_);
    intents_fd_ = -1;
    return;
  }
  char* base = static_cast<char*>(map);
  // What the journal already holds a record of: its intent outlived it by the last instant.
  std::set<std::tuple<std::string, std::int64_t, std::int64_t, std::int64_t>> recorded;
  for (const auto& r : replay)
    if (r.index.type == "statement" || r.index.type == "result")
      recorded.insert({r.index.type, r.index.session, r.index.statement, r.index.time_us});
  // In the order the statements started (each session's in its own order), not slot order.
  std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::string_view>> left;
  for (std::size_t i = 0; i < kIntentSlots; ++i) {
    char* slot = base + i * kIntentSlot;
    if (__atomic_load_n(intent_live(slot), __ATOMIC_ACQUIRE) == 0) continue;
    std::uint32_t len = 0;
    std::memcpy(&len, slot, sizeof len);
    if (len > kIntentSlot - 16) continue;
    const std::string_view body(slot + 16, len);
    auto idx = index_of(body);
    if (!idx || recorded.count({idx->type, idx->session, idx->statement, idx->time_us})) continue;
    left.emplace_back(idx->time_us, idx->session, idx->statement, body);
  }
  std::sort(left.begin(), left.end());
  std::vector<Record> found;
  ChainHead head = head_;
  for (const auto& l : left) {
    auto rec = seal_unfinished(std::get<3>(l),
                               "the proxy stopped before this statement ended: whether it ran, and how, is not known", head);
    if (rec) found.push_back(std::move(*rec));
  }
  if (!found.empty()) {
    // Journaled before the slots are freed: a kill in between finds them in the journal next time.
    if (auto r = journal_append(found); !r) {
      spdlog::error("audit: cannot record {} statements a stopped process left unfinished: {}; they stay in {}",
                    found.size(), r.error().message, path);
      ::munmap(map, size);
      ::close(intents_fd_);
      intents_fd_ = -1;
      return;
    }
    head_ = head;
    spdlog::warn("audit: {} statements were running when the proxy stopped; recorded with outcome \"unknown\"",
                 found.size());
    stats_.intents_recovered = found.size();
    for (auto& r : found) replay.push_back(std::move(r));
  }
  for (std::size_t i = 0; i < kIntentSlots; ++i) __atomic_store_n(intent_live(base + i * kIntentSlot), 0, __ATOMIC_RELEASE);
  free_intents_.reserve(kIntentSlots);
  for (std::size_t i = kIntentSlots; i > 0; --i) free_intents_.push_back(std::uint32_t(i - 1));
  intents_map_ = base;
}

bool Trail::intend(Event& e) {
  if (!intents_map_) return false;
  // Failing: recording the statement now (write_now) reports why, and required targets refuse.
  if (journal_failed_.load(std::memory_order_relaxed) || sinks_failing_.load(std::memory_order_relaxed)) return false;
  auto d = draft(e, SealOptions{options_.node, options_.max_text, options_.params, index_});
  if (!d) return false;
  const std::string_view body = draft_body(*d);
  if (body.size() > kIntentSlot - 16) return false;
  std::uint32_t slot = 0;
  {
    std::lock_guard lock(intent_mu_);
    if (free_intents_.empty()) return false;
    slot = free_intents_.back();
    free_intents_.pop_back();
  }
  char* p = intents_map_ + std::size_t(slot) * kIntentSlot;
  const auto len = std::uint32_t(body.size());
  std::memcpy(p, &len, sizeof len);
  std::memcpy(p + 16, body.data(), len);
  __atomic_store_n(intent_live(p), 1, __ATOMIC_RELEASE);  // whole before it counts
  e.intent = slot + 1;
  e.draft = std::move(d);
  return true;
}

void Trail::release_intent(std::uint32_t slot) {
  if (!slot || !intents_map_ || slot > kIntentSlots) return;
  __atomic_store_n(intent_live(intents_map_ + std::size_t(slot - 1) * kIntentSlot), 0, __ATOMIC_RELEASE);
  std::lock_guard lock(intent_mu_);
  free_intents_.push_back(slot - 1);
}

void Trail::journal_unmap(JournalFile& f) {
  if (f.map) ::munmap(f.map, f.mapped);
  f.map = nullptr;
  f.mapped = 0;
}

Result<void> Trail::journal_reserve(JournalFile& f, std::size_t need) {
  if (need < f.mapped) return {};  // room for the end mark too
  // Grow by doubling (at least one step, at most 64 MiB at a time), in whole pages.
  std::size_t size = std::max(need + 1, f.mapped + std::clamp<std::size_t>(f.mapped, kJournalStep, 64u << 20));
  const auto page = std::size_t(::sysconf(_SC_PAGESIZE));
  size = (size + page - 1) / page * page;
  if (::fallocate(f.fd, 0, 0, off_t(size)) != 0)
    return tl::unexpected(io_error("cannot extend the audit journal " + f.path, errno));
  void* p = f.map ? ::mremap(f.map, f.mapped, size, MREMAP_MAYMOVE)
                  : ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
  if (p == MAP_FAILED) return tl::unexpected(io_error("cannot map the audit journal " + f.path, errno));
  f.map = static_cast<char*>(p);
  f.mapped = size;
  return {};
}

// Reads what a previous run left in the journal (cutting a torn last line: its batch was never
// acknowledged) and keeps it open for appending.
Result<void> Trail::open_journal(std::vector<Record>& replay) {
  std::vector<Record> per_file[2];
  for (int i = 0; i < 2; ++i) {
    auto& f = journal_[i];
    f.fd = ::open(f.path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (f.fd < 0) return tl::unexpected(io_error("cannot open the audit journal " + f.path, errno));
    std::ifstream in(f.path, std::ios::binary);
    std::string line;
    std::uint64_t good = 0, offset = 0;
    while (std::getline(in, line)) {
      if (!line.empty() && line[0] == '\0') break;  // the end mark of a mapped journal
      const bool whole = !in.eof();
      offset += line.size() + (whole ? 1 : 0);
      if (!whole) break;
      auto r = parse_line(line);
      if (!r) {
        spdlog::error("audit: the journal {} has an unreadable line at byte {}; records after it are not replayed",
                      f.path, good);
        break;
      }
      // An older record after a newer one: what follows is left over from before the file was
      // last emptied (a write ended before its end mark was moved).
      if (f.last_seq && r->seq != f.last_seq + 1) break;
      good = offset;
      if (!f.first_seq) f.first_seq = r->seq;
      f.last_seq = r->seq;
      f.last_hash = r->hash;
      per_file[i].push_back(std::move(*r));
    }
    struct stat st {};
    std::uint64_t size = ::fstat(f.fd, &st) == 0 ? std::uint64_t(st.st_size) : good;
    if (size > good) {
      // After the records: the end mark and space kept for later (nothing to say), or a write
      // the process did not finish (never acknowledged: cut).
      char next = 0;
      if (::pread(f.fd, &next, 1, off_t(good)) == 1 && next != '\0')
        spdlog::warn("audit: cutting an unfinished write at byte {} of {}", good, f.path);
    }
    f.bytes = good;
    bool mapped = options_.map_journal;
    if (mapped) {
      if (auto m = journal_reserve(f, std::max<std::uint64_t>(good, size)); !m) {
        spdlog::warn("audit: {}; the journal is written with write(2) instead", m.error().message);
        journal_unmap(f);
        mapped = false;
      }
    }
    if (mapped) {
      f.map[good] = '\0';
    } else if (size > good && ::ftruncate(f.fd, off_t(good)) != 0) {  // write(2) appends at the end of the file
      return tl::unexpected(io_error("cannot repair the audit journal " + f.path, errno));
    }
  }
  // The file with the newer records is the one being appended to.
  active_ = journal_[1].last_seq > journal_[0].last_seq ? 1 : 0;
  for (int i : {1 - active_, active_})
    for (auto& r : per_file[i]) {
      if (r.seq > head_.seq) head_ = ChainHead{r.seq, r.hash};
      replay.push_back(std::move(r));
    }
  if (!replay.empty()) spdlog::info("audit: {} records from the journal go to the sinks now", replay.size());
  return {};
}

void Trail::journal_reset(JournalFile& f) {
  if (f.bytes == 0) return;
  save_head(f.last_seq, f.last_hash);
  if (f.map && f.mapped <= 4 * kRotateBytes) {  // written again from the start, in the same blocks
    f.map[0] = '\0';
    f.bytes = 0;
    f.first_seq = f.last_seq = 0;
    return;
  }
  // Written with write(2), or grown large while a sink was down: give the space back.
  const bool was_mapped = f.map != nullptr;
  journal_unmap(f);
  if (::ftruncate(f.fd, 0) != 0) {
    spdlog::warn("audit: cannot empty the journal {}: {}", f.path, std::strerror(errno));
    if (was_mapped) (void)journal_reserve(f, f.bytes);
    return;
  }
  f.bytes = 0;
  f.first_seq = f.last_seq = 0;
  if (was_mapped) {
    if (auto m = journal_reserve(f, 0); m) {
      f.map[0] = '\0';
    } else {
      spdlog::warn("audit: {}; the journal is written with write(2) instead", m.error().message);
      journal_unmap(f);
      (void)::ftruncate(f.fd, 0);
    }
  }
}

void Trail::read_journal(std::uint64_t after, std::uint64_t through, const std::function<bool(Record&&)>& each) {
  // Older file first: its records are all older than the other file's (a file is only reused
  // once emptied). Decided from the files themselves; the writer may be changing the counters.
  auto first_seq = [](const std::string& path) -> std::uint64_t {
    std::ifstream in(path, std::ios::binary);
    std::string line;
    if (!std::getline(in, line) || in.eof()) return 0;
    auto r = parse_line(line);
    return r ? r->seq : 0;
  };
  const std::uint64_t f0 = first_seq(journal_[0].path), f1 = first_seq(journal_[1].path);
  int order[2] = {0, 1};
  if (f1 && (!f0 || f1 < f0)) std::swap(order[0], order[1]);
  // A store catching up reads a little at each flush while sessions append: it goes on where it
  // stopped instead of parsing the files from their start again (found by profiling: a store that
  // fell behind spent most of its time re-reading lines it had stored, and never caught up).
  // Trusted only when the line there is the very next record; otherwise, from the start.
  // The file must still begin with the record it began with (it was not emptied and reused).
  const JournalCursor at = journal_cursor_;
  const std::uint64_t firsts[2] = {f0, f1};
  const bool resume = at.file >= 0 && at.seq <= after && at.first && firsts[at.file] == at.first;
  enum class Scan { Next, Stop, Lost };
  auto scan = [&](int i, std::uint64_t offset, std::uint64_t first) -> Scan {
    std::ifstream in(journal_[i].path, std::ios::binary);
    if (offset && !in.seekg(std::streamoff(offset))) return Scan::Lost;
    std::string line;
    std::uint64_t last = offset ? journal_cursor_.seq : 0;
    while (std::getline(in, line) && !in.eof()) {
      if (!line.empty() && line[0] == '\0') break;  // the end mark
      offset += line.size() + 1;
      ++journal_lines_read_;
      auto r = parse_line(line);
      if (!r || (last && r->seq != last + 1)) break;  // unfinished, or left over from before a reset
      if (!first) first = r->seq;
      last = r->seq;
      journal_cursor_ = JournalCursor{i, offset, r->seq, first};
      if (r->seq <= after) continue;
      if (r->seq > through) return Scan::Stop;
      if (!each(std::move(*r))) return Scan::Stop;
    }
    return Scan::Next;
  };
  if (resume) {
    const int k = at.file == order[0] ? 0 : 1;
    const Scan res = scan(order[k], at.offset, at.first);
    if (res == Scan::Stop || k == 1) return;
    if (res == Scan::Next) {
      (void)scan(order[1], 0, 0);
      return;
    }
  }
  journal_cursor_ = JournalCursor{};
  for (int i : order)
    if (scan(i, 0, 0) == Scan::Stop) return;
}

Result<void> Trail::journal_append(const std::vector<Record>& records) {
  std::size_t size = 0;
  for (const auto& r : records) size += record_line_size(r);
  if (journal_bytes() + size > options_.spool_max_size)
    return fail("53100", "the audit journal (" + journal_path_ + ") is full (audit.spool.max_size): the sinks are "
                         "not taking records");
  auto& f = journal_[active_];
  if (f.map) {
    if (auto m = journal_reserve(f, f.bytes + size); !m) return m;
    // The end mark first: until the lines are whole, a reader stops at the old end mark.
    f.map[f.bytes + size] = '\0';
    char* p = f.map + f.bytes;
    for (const auto& r : records) p = put_record_line(p, r);
  } else {
    std::string buf;
    buf.reserve(size);
    for (const auto& r : records) append_record_line(buf, r);
    if (auto w = append_all(f.fd, buf, off_t(f.bytes), "cannot write the audit journal " + f.path); !w) return w;
  }
  if (options_.fsync && ::fdatasync(f.fd) != 0)
    return tl::unexpected(io_error("cannot sync the audit journal " + f.path, errno));
  f.bytes += size;
  if (!f.first_seq) f.first_seq = records.front().seq;
  f.last_seq = records.back().seq;
  f.last_hash = records.back().hash;
  return {};
}

void Trail::save_head(std::uint64_t seq, const std::string& hash) {
  if (head_fd_ < 0 || seq <= saved_head_seq_) return;
  // One fixed-size line written in place: a torn write leaves the old line or an unreadable one
  // (read as none), never a wrong head.
  char line[128];
  std::memset(line, ' ', sizeof line);
  const auto text = fmt::format("{} {}", seq, hash);
  if (text.size() >= sizeof line) return;
  std::memcpy(line, text.data(), text.size());
  line[sizeof line - 1] = '\n';
  if (::pwrite(head_fd_, line, sizeof line, 0) == ssize_t(sizeof line)) saved_head_seq_ = seq;
}

std::optional<ChainHead> Trail::read_saved_head() const {
  char line[128];
  if (head_fd_ < 0 || ::pread(head_fd_, line, sizeof line, 0) != ssize_t(sizeof line)) return std::nullopt;
  std::string_view v(line, sizeof line - 1);
  const auto sp = v.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  ChainHead h;
  auto [p, ec] = std::from_chars(v.data(), v.data() + sp, h.seq);
  if (ec != std::errc() || p != v.data() + sp || h.seq == 0) return std::nullopt;
  std::string_view hash = v.substr(sp + 1);
  hash = hash.substr(0, hash.find(' '));
  if (hash.size() != 64 || hash.find_first_not_of("0123456789abcdef") != std::string_view::npos) return std::nullopt;
  h.hash = std::string(hash);
  return h;
}

void Trail::submit(Event e, Ack ack) {
  std::vector<Event> v;
  v.push_back(std::move(e));
  submit(std::move(v), std::move(ack));
}

void Trail::submit(std::vector<Event> events, Ack ack) {
  std::unique_lock lock(mu_);
  if (stopping_ || queued_events_ + events.size() > options_.queue_size) {
    stats_.refused += events.size();
    const bool closing = stopping_;
    // Never silent: once a second at most, say how many records could not be kept.
    const bool say = refusal_log_.admit().has_value();
    const auto refused = stats_.refused;
    lock.unlock();
    if (say)
      spdlog::error("audit: {} ({} events not recorded since start)",
                    closing ? "events after the trail closed" : "the audit queue is full (audit.queue_size)", refused);
    if (ack) {
      Error e{"53400", closing ? "the audit trail is closing"
                               : "the audit queue is full (audit.queue_size): the audit journal is not keeping up"};
      ack(&e);
    }
    return;
  }
  stats_.submitted += events.size();
  queued_events_ += events.size();
  ++enqueued_;
  queue_.push_back(Pending{std::move(events), std::move(ack)});
  if (queue_.size() == 1) cv_.notify_one();
}

void Trail::flush() {
  std::unique_lock lock(mu_);
  const auto target = enqueued_;
  flushed_.wait(lock, [&] { return done_ >= target || !writer_.joinable(); });
}

void Trail::close() {
  {
    std::unique_lock lock(mu_);
    if (stopping_ || !writer_.joinable()) return;
  }
  Event stop;
  stop.type = EventType::Stop;
  stop.time = std::chrono::system_clock::now();
  submit(std::move(stop));
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  writer_.join();
  {
    std::lock_guard lock(store_mu_);
    store_stopping_ = true;
  }
  store_cv_.notify_one();
  store_.join();
  // Everything is in every sink: the journal can start over.
  std::lock_guard lock(store_mu_);
  if (stored_all_seq_ == head_.seq) {
    journal_reset(journal_[0]);
    journal_reset(journal_[1]);
  }
}

TrailStats Trail::stats() const {
  TrailStats s;
  {
    std::lock_guard lock(mu_);
    s = stats_;
  }
  if (intents_map_) {
    std::lock_guard lock(intent_mu_);
    s.intents_open = kIntentSlots - free_intents_.size();
  }
  return s;
}

// ---- writer thread ----------------------------------------------------------------------------

void Trail::run() {
  std::vector<Pending> batch;
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_checkpoint_, [&] { return !queue_.empty() || stopping_; });
      batch.swap(queue_);
      queued_events_ = 0;
      stop = stopping_ && batch.empty();
    }
    if (!batch.empty()) write_batch(batch);
    if (stop) break;
    maybe_checkpoint(checkpoint_due_.exchange(false, std::memory_order_relaxed));
    batch.clear();
  }
  maybe_checkpoint(true);
  std::lock_guard lock(mu_);
  flushed_.notify_all();
}

Result<void> Trail::append(std::vector<Event>& events, bool completed) {
  // The events (analyses, policies, strings) are released when this returns, after the lock.
  std::vector<Event> sealed = std::move(events);
  events.clear();
  // Statements' records are prepared before the chain's lock (their indexes and bodies, all but
  // seq and prev): the two workers that append take turns on it for as short as can be.
  SealOptions so{options_.node, options_.max_text, options_.params, index_};
  std::vector<Sealing> prepared(sealed.size());
  for (std::size_t i = 0; i < sealed.size(); ++i)
    if (sealed[i].draft) prepared[i] = prepare_draft(*sealed[i].draft, sealed[i], so);
  std::unique_lock chain(chain_mu_);
  const ChainHead before = head_;
  std::vector<Record> records;
  // Completed records a full journal refused earlier go first, in their order.
  std::vector<Event> earlier = std::move(deferred_);
  deferred_.clear();
  records.reserve(earlier.size() + sealed.size());
  for (const auto& e : earlier) records.push_back(seal(e, head_, so));
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    if (sealed[i].draft) {
      link(prepared[i], head_);
      records.push_back(std::move(prepared[i].record));
    } else {
      records.push_back(seal(sealed[i], head_, so));
    }
  }

  bool healthy = true;
  Error error;
  {
    std::lock_guard lock(store_mu_);
    // A journal file every sink has caught up with is emptied (the store thread reads the files
    // only for records some sink still lacks, so never one that is emptied). The active file is
    // handed over once it is large and the other one is free.
    auto& cur = journal_[active_];
    auto& other = journal_[1 - active_];
    if (other.bytes > 0 && stored_all_seq_ >= other.last_seq) journal_reset(other);
    if (cur.bytes > 0 && stored_all_seq_ >= cur.last_seq) journal_reset(cur);
    if (cur.bytes >= kRotateBytes && other.bytes == 0) active_ = 1 - active_;
    healthy = sinks_healthy_;
    if (!healthy) error = sink_error_;
  }
  if (auto r = journal_append(records); !r) {
    head_ = before;  // stored nowhere: as if never sealed, so no sink shows a gap
    // Their intents stay: a restart records them. Logged once per failure (and its recovery), not
    // per refused batch (found by adversarial testing: 13,704 identical lines in 20 s).
    if (!journal_failed_.exchange(true, std::memory_order_relaxed))
      spdlog::error("audit: {}; records are refused until it can be written again", r.error().message);
    // What already happened (and what was kept before) waits for the journal, up to a bound:
    // found by adversarial testing, 29,960 outcomes of statements that ran were dropped while
    // the journal was full, and their intents stayed taken until a restart.
    std::size_t lost = 0;
    deferred_ = std::move(earlier);
    if (completed)
      for (auto& e : sealed) {
        if (deferred_.size() < kMaxDeferred)
          deferred_.push_back(std::move(e));
        else
          ++lost;
      }
    has_deferred_.store(!deferred_.empty(), std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    const std::size_t refused = completed ? lost : sealed.size();
    stats_.refused += refused;
    if (lost > 0 && deferred_log_.admit())
      spdlog::error("audit: {} records of statements that already ran were lost: the journal is full and {} records "
                    "already wait in memory for it",
                    lost, deferred_.size());
    return tl::unexpected(Error{r.error().sqlstate.empty() ? "58030" : r.error().sqlstate, r.error().message});
  }
  if (!earlier.empty()) has_deferred_.store(false, std::memory_order_relaxed);  // not a store per append
  if (journal_failed_.exchange(false, std::memory_order_relaxed))
    spdlog::info("audit: the journal is written again");
  const std::uint64_t head_seq = head_.seq;
  const std::size_t journal_size = journal_bytes();
  const std::size_t count = records.size();
  // Journaled: the statements' intents are no longer needed (before the store thread can have
  // the records, so a start that finds an intent finds its record, if any, in the journal).
  for (const auto& e : earlier)
    if (e.intent) release_intent(e.intent);
  for (const auto& e : sealed)
    if (e.intent) release_intent(e.intent);
  bool wake = false;
  {
    std::lock_guard lock(store_mu_);  // in chain order: the store thread takes them as they come
    const bool was_empty = to_store_.empty();
    if (was_empty) to_store_since_ = std::chrono::steady_clock::now();
    for (auto& r : records) {
      to_store_bytes_ += held_bytes(r);
      to_store_.push_back(std::move(r));
    }
    // Bounded: while the store thread is busy with a long flush, the oldest records it has not
    // taken are left to the journal, which it reads back (found by adversarial testing: hundreds
    // of MB of records queued here behind a slow store). The newest stay, so that it is back on
    // memory once it has read the gap.
    bool dropped = false;
    if (to_store_bytes_ > kMaxPendingBytes) {
      std::size_t drop = 0;
      while (drop + 1 < to_store_.size() && to_store_bytes_ > kMaxPendingBytes / 4 * 3)
        to_store_bytes_ -= held_bytes(to_store_[drop++]);
      to_store_.erase(to_store_.begin(), to_store_.begin() + std::ptrdiff_t(drop));
      dropped = true;
    }
    wake = was_empty || to_store_.size() >= kFlushRecords || dropped;
  }
  chain.unlock();
  if (wake) store_cv_.notify_one();
  {
    std::lock_guard lock(mu_);
    stats_.journaled += count;
    stats_.head_seq = std::max(stats_.head_seq, head_seq);
    stats_.journal_bytes = journal_size;
    ++stats_.batches;
  }
  if (!healthy) return tl::unexpected(std::move(error));  // kept in the journal, but the store is down
  return {};
}

std::optional<Error> Trail::failing() {
  if (sinks_failing_.load(std::memory_order_relaxed)) {
    std::lock_guard lock(store_mu_);
    if (!sinks_healthy_) return sink_error_;
  }
  if (journal_failed_.load(std::memory_order_relaxed))
    return Error{"58030", "the audit journal in " + journal_path_ + " cannot be written"};
  return std::nullopt;
}

Result<void> Trail::write_now(std::vector<Event> events, bool completed) {
  if (!inline_writes()) {  // fsync per batch belongs on the writer thread (group commit)
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::optional<Error> err;
    submit(std::move(events), [&](const Error* e) {
      std::lock_guard lock(m);
      if (e) err = *e;
      done = true;
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
    if (err) return tl::unexpected(std::move(*err));
    return {};
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return fail("53400", "the audit trail is closing");
    stats_.submitted += events.size();
  }
  return append(events, completed);
}

void Trail::write_batch(std::vector<Pending>& batch) {
  std::vector<Event> events;
  std::size_t n = 0;
  for (auto& p : batch) n += p.events.size();
  events.reserve(n);
  for (auto& p : batch)
    for (auto& e : p.events) events.push_back(std::move(e));
  auto r = append(events);
  // Acknowledged once journaled; while a sink is failing, with its error (required targets refuse).
  for (auto& p : batch)
    if (p.ack) p.ack(r ? nullptr : &r.error());
  {
    std::lock_guard lock(mu_);
    done_ += batch.size();
  }
  flushed_.notify_all();
}

void Trail::maybe_checkpoint(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now < next_checkpoint_) return;
  next_checkpoint_ = now + options_.checkpoint_interval;
  ChainHead head;
  {
    std::lock_guard chain(chain_mu_);
    head = head_;
  }
  if (!options_.signer || head.seq == checkpointed_seq_) return;
  // Records sealed between reading the head and sealing this checkpoint are covered by the next one.
  const auto msg = CheckpointSigner::message(options_.node, head.seq, head.hash);
  auto sig = options_.signer->sign(msg);
  if (!sig) {
    spdlog::error("audit: checkpoint not signed: {}", sig.error().message);
    return;
  }
  Event e;
  e.type = EventType::Checkpoint;
  e.time = std::chrono::system_clock::now();
  e.fields = {{"covers_seq", std::to_string(head.seq)},
              {"covers_hash", head.hash},
              {"algorithm", std::string(CheckpointSigner::name(options_.signer->algorithm()))},
              {"key_id", options_.signer->key_id()},
              {"signature", *sig}};
  spdlog::info("audit checkpoint: node={} seq={} hash={}", options_.node, head.seq, head.hash);
  std::vector<Pending> one;
  one.push_back(Pending{{std::move(e)}, {}});
  {
    std::lock_guard lock(mu_);
    ++enqueued_;
  }
  write_batch(one);
  std::lock_guard chain(chain_mu_);
  checkpointed_seq_ = head_.seq;
  std::lock_guard lock(mu_);
  ++stats_.checkpoints;
}

// ---- store thread -----------------------------------------------------------------------------

// pending_ is a gapless run of the newest records: a record that does not follow the run starts a
// new one, and beyond its bounds the oldest go (in steps, so that erasing stays cheap), to be read
// back from the journal. Keeping the newest, not the oldest, lets a store that fell behind under
// load catch up: it reads only the gap from the journal and is back on memory after it (found
// by profiling: kept the other way round, every record was read back, five times the cost of
// storing from memory, for as long as the load lasted).
void Trail::keep_pending(Record&& r) {
  if (!pending_.empty() && r.seq != pending_.back().seq + 1) {
    pending_.clear();
    pending_bytes_ = 0;
  }
  pending_bytes_ += held_bytes(r);
  pending_.push_back(std::move(r));
  if (pending_.size() > kMaxPending || pending_bytes_ > kMaxPendingBytes) {
    std::size_t drop = pending_.size() / 4 + 1;
    for (std::size_t i = 0; i < drop; ++i) pending_bytes_ -= held_bytes(pending_[i]);
    pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(drop));
  }
}

void Trail::run_store() {
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(store_mu_);
      for (;;) {
        if (store_stopping_ || to_store_.size() >= kFlushRecords) break;
        if (!to_store_.empty() && last_seq_ < start_seq_) break;  // at start: store, then retention
        auto wake = last_seq_ >= start_seq_ ? next_prune_ : std::chrono::steady_clock::time_point::max();
        if (!to_store_.empty()) wake = std::min(wake, to_store_since_ + options_.flush_interval);
        for (const auto& s : sinks_)
          if (!s->healthy) wake = std::min(wake, s->retry_at);
        if (has_deferred_.load(std::memory_order_relaxed))  // records wait for the journal: retry soon
          wake = std::min(wake, deferred_retry_at_);
        if (std::chrono::steady_clock::now() >= wake) break;
        store_cv_.wait_until(lock, wake);
      }
      for (auto& r : to_store_) {  // after a gap (records dropped above), a new run
        last_seq_ = r.seq;
        keep_pending(std::move(r));
      }
      to_store_.clear();
      to_store_bytes_ = 0;
      stop = store_stopping_;
    }
    flush_sinks(stop);
    if (stop) break;
    maybe_prune();
    if (has_deferred_.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() >= deferred_retry_at_) {
      // Records of what already happened wait for a full journal: try again now that the sinks
      // took more (appending also empties the journal files they hold), even when no session writes.
      deferred_retry_at_ = std::chrono::steady_clock::now() + options_.retry_interval;
      std::vector<Event> none;
      (void)append(none, true);
    }
  }
}

// Journal -> sinks, in order, in large transactions. A sink that fails is tried again after
// retry_interval; the journal keeps everything until every sink has it.
void Trail::flush_sinks(bool force) {
  const auto now = std::chrono::steady_clock::now();
  for (auto& s : sinks_) {
    if (!s->healthy && now < s->retry_at && !force) continue;
    if (!s->head_known) {  // unreachable at start: where does it stand?
      auto h = s->sink->head(options_.node);
      if (!h) {
        s->last_error = h.error().message;
        s->retry_at = std::chrono::steady_clock::now() + options_.retry_interval;
        continue;
      }
      s->head_known = true;
      s->stored_seq = *h ? (*h)->seq : 0;
    }
    auto store = [&](std::span<const Record> chunk) -> bool {
      std::size_t skip = 0;
      while (skip < chunk.size() && chunk[skip].seq <= s->stored_seq) ++skip;  // stored before a restart
      chunk = chunk.subspan(skip);
      if (chunk.empty()) return true;
      auto r = s->sink->write(chunk);
      if (!r) {
        if (s->healthy)
          spdlog::error("audit: {} failed: {}; records wait in the journal {} until it works again", s->sink->name(),
                        r.error().message, journal_path_);
        s->healthy = false;
        s->last_error = r.error().message;
        s->last_sqlstate = r.error().sqlstate;
        s->retry_at = std::chrono::steady_clock::now() + options_.retry_interval;
        return false;
      }
      s->stored_seq = chunk.back().seq;
      return true;
    };
    bool ok = true;
    if (s->stored_seq < last_seq_) {
      // From the journal what memory does not hold: older than its run of the newest records.
      auto from_journal = [&](std::uint64_t through) {
        std::vector<Record> chunk;
        read_journal(s->stored_seq, through, [&](Record&& r) {
          chunk.push_back(std::move(r));
          if (chunk.size() >= kChunk) {
            ok = store(chunk);
            chunk.clear();
          }
          return ok;
        });
        if (ok) ok = store(chunk);
      };
      const std::uint64_t in_memory = pending_.empty() ? last_seq_ + 1 : pending_.front().seq;
      if (s->stored_seq + 1 < in_memory) {
        from_journal(in_memory - 1);
        if (ok && s->stored_seq + 1 < in_memory) {
          // The read resumed where the last one stopped and did not reach the records memory
          // holds: read the files from their start once before going on (seen once in CI: a store
          // failing every third write while catching up lost 7,865 records in the middle).
          journal_cursor_ = {};
          from_journal(in_memory - 1);
        }
        if (ok && s->stored_seq + 1 < in_memory)
          spdlog::error("audit: records {} to {} are in neither the journal nor memory; {} goes on after them",
                        s->stored_seq + 1, in_memory - 1, s->sink->name());
      }
      // Records the journal no longer has either are in no store (a store replaced or deleted):
      // that gap is reported at start and shown by verify; what follows goes on.
      for (std::size_t i = 0; ok && i < pending_.size(); i += kChunk)
        ok = store(std::span<const Record>(pending_).subspan(i, std::min(kChunk, pending_.size() - i)));
    }
    if (ok && s->stored_seq >= last_seq_) {
      if (!s->healthy) spdlog::info("audit: {} is back; the journaled records were stored in order", s->sink->name());
      s->healthy = true;
    }
  }
  std::uint64_t all = last_seq_;
  bool healthy = true;
  Error error;
  for (const auto& s : sinks_) {
    all = std::min(all, s->head_known ? s->stored_seq : 0);
    if (!s->healthy && error.message.empty())
      error = Error{s->last_sqlstate.empty() ? "58030" : s->last_sqlstate,
                    "the audit store " + std::string(s->sink->name()) + " is unavailable: " + s->last_error};
    healthy &= s->healthy;
  }
  if (all >= last_seq_) {
    pending_.clear();
    pending_bytes_ = 0;
  } else {
    // Keep only what some sink still needs.
    std::size_t drop = 0;
    while (drop < pending_.size() && pending_[drop].seq <= all) pending_bytes_ -= held_bytes(pending_[drop++]);
    pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(drop));
  }
  if (pending_.empty() && pending_.capacity() > 4 * kChunk) {
    // After a burst the sinks caught up: give the memory back (the allocator keeps freed memory
    // of every thread's arena otherwise, and the process stays at its peak size).
    std::vector<Record>().swap(pending_);
    ::malloc_trim(0);
  }
  {
    std::lock_guard lock(store_mu_);
    stored_all_seq_ = all;
    sinks_healthy_ = healthy;
    sink_error_ = std::move(error);
  }
  sinks_failing_.store(!healthy, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  stats_.sinks_healthy = healthy;
  stats_.stored = all;
  stats_.journal_reads = journal_lines_read_;
}

void Trail::maybe_prune() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_prune_ || last_seq_ < start_seq_) return;
  next_prune_ = now + std::chrono::hours(1);
  if (options_.retention_max_age.count() == 0 && options_.retention_max_records == 0) return;
  std::optional<std::chrono::system_clock::time_point> before;
  if (options_.retention_max_age.count() > 0) before = std::chrono::system_clock::now() - options_.retention_max_age;
  for (auto& s : sinks_) {
    if (!s->healthy || s->stored_seq < last_seq_) continue;
    auto p = s->sink->prune(options_.node, before, options_.retention_max_records);
    if (!p) {
      spdlog::error("audit: retention on {} failed: {}", s->sink->name(), p.error().message);
      continue;
    }
    if (!*p) continue;
    Event e;
    e.type = EventType::Retention;
    e.time = std::chrono::system_clock::now();
    e.fields = {{"sink", std::string(s->sink->name())},
                {"pruned_through", std::to_string((*p)->through)},
                {"anchor", (*p)->hash}};
    spdlog::info("audit: retention removed records up to {} from {}", (*p)->through, s->sink->name());
    // Into the chain like any other record; a signed checkpoint follows it at once (verify, given
    // the key, accepts pruned records only with a Retention record a checkpoint of its run covers).
    submit(std::move(e), [this](const Error*) { checkpoint_due_.store(true, std::memory_order_relaxed); });
    std::lock_guard lock(mu_);
    ++stats_.retentions;
  }
}

}  // namespace gh::audit
