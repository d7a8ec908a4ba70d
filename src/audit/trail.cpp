#include "audit/trail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace gh::audit {

namespace {

Error io_error(const std::string& what, int err) {
  return Error{err == ENOSPC || err == EDQUOT ? "53100" : "58030", what + ": " + std::strerror(err)};
}

std::string spool_line(const Record& r) {
  std::string s = "{\"hash\":\"";
  s += r.hash;
  s += "\",\"body\":";
  s += r.body;
  s += "}\n";
  return s;
}

// Inverse of spool_line (and of the JSON lines sink's format).
std::optional<Record> parse_line(std::string_view line) {
  constexpr std::size_t kPrefix = 9 + 64 + 9;  // {"hash":" + hex + ","body":
  if (line.size() < kPrefix + 2 || line.substr(0, 9) != "{\"hash\":\"" || line.back() != '}') return std::nullopt;
  Record r;
  r.hash = std::string(line.substr(9, 64));
  r.body = std::string(line.substr(kPrefix, line.size() - kPrefix - 1));
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  r.seq = j.value("seq", std::uint64_t(0));
  r.prev = j.value("prev", std::string());
  auto idx = index_of(r.body);
  if (!idx) return std::nullopt;
  r.index = std::move(*idx);
  return r;
}

std::string sanitize(std::string_view name) {
  std::string out;
  for (char c : name) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "gatehouse";
  return buf;
}

}  // namespace

struct Trail::SinkState {
  std::unique_ptr<AuditSink> sink;
  std::string spool_path;
  std::uint64_t spool_bytes = 0;  // > 0: records wait in the spool, and newer ones go there too
  std::uint64_t stored_seq = 0;   // newest record the sink itself holds
  bool healthy = true;
  std::string last_error;

  Result<void> append_spool(std::span<const Record> records, std::uint64_t max_size) {
    std::string buf;
    for (const auto& r : records) buf += spool_line(r);
    if (spool_bytes + buf.size() > max_size)
      return fail("53100", "the audit spool " + spool_path + " is full (audit.spool.max_size)");
    const int fd = ::open(spool_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return tl::unexpected(io_error("cannot open the audit spool " + spool_path, errno));
    const off_t before = ::lseek(fd, 0, SEEK_END);
    std::size_t done = 0;
    while (done < buf.size()) {
      const ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : ENOSPC;
        if (::ftruncate(fd, before) != 0) {
        }
        ::close(fd);
        return tl::unexpected(io_error("cannot write the audit spool " + spool_path, err));
      }
      done += std::size_t(n);
    }
    ::close(fd);
    spool_bytes += buf.size();
    return {};
  }
};

Result<std::unique_ptr<Trail>> Trail::open(const config::Audit& cfg) {
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
      case config::AuditSink::Type::Sqlite: sink = open_sqlite_sink(s.path, s.fsync); break;
      case config::AuditSink::Type::JsonLines: sink = open_jsonl_sink(s.path, s.fsync); break;
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
  std::unique_ptr<Trail> t(new Trail(std::move(options), std::move(sinks)));
  // Continue the chain where the newest copy of it ends: a sink, or the spool of one.
  for (auto& s : t->sinks_) {
    auto h = s->sink->head(t->options_.node);
    if (!h) {
      s->healthy = false;
      s->last_error = h.error().message;
      spdlog::warn("audit: {} is unavailable at start ({}); records are spooled until it is back", s->sink->name(),
                   h.error().message);
    } else if (*h) {
      s->stored_seq = (*h)->seq;
      if ((*h)->seq > t->head_.seq) t->head_ = **h;
    }
    struct stat st {};
    if (::stat(s->spool_path.c_str(), &st) == 0 && st.st_size > 0) {
      s->spool_bytes = std::uint64_t(st.st_size);
      std::ifstream in(s->spool_path, std::ios::binary);
      std::string line, last;
      while (std::getline(in, line))
        if (!line.empty()) last = line;
      if (auto r = parse_line(last); r && r->seq > t->head_.seq) t->head_ = ChainHead{r->seq, r->hash};
    }
  }
  t->checkpointed_seq_ = t->head_.seq;
  // Queued before the writer starts, so the Start record comes first, before retention's.
  Event start;
  start.type = EventType::Start;
  start.time = std::chrono::system_clock::now();
  t->submit(std::move(start));
  t->writer_ = std::thread([p = t.get()] { p->run(); });
  return t;
}

Trail::Trail(Options options, std::vector<std::unique_ptr<AuditSink>> sinks) : options_(std::move(options)) {
  for (auto& s : sinks) {
    auto st = std::make_unique<SinkState>();
    st->spool_path = options_.spool_dir + "/" + sanitize(s->name()) + ".spool";
    st->sink = std::move(s);
    sinks_.push_back(std::move(st));
  }
  const auto now = std::chrono::steady_clock::now();
  next_checkpoint_ = now + options_.checkpoint_interval;
  // Retention runs once the writer has started (after the Start record), then hourly: a store
  // that outgrew its limits while the proxy was down is trimmed at start, not an hour later.
  next_prune_ = now;
  next_retry_ = now;
}

Trail::~Trail() { close(); }

void Trail::submit(Event e, Ack ack) {
  std::vector<Event> v;
  v.push_back(std::move(e));
  submit(std::move(v), std::move(ack));
}

void Trail::submit(std::vector<Event> events, Ack ack) {
  std::unique_lock lock(mu_);
  if (stopping_ || queued_events_ + events.size() > options_.queue_size) {
    stats_.refused += events.size();
    lock.unlock();
    if (ack) {
      Error e{"53400", stopping_ ? "the audit trail is closing" : "the audit queue is full (audit.queue_size); the audit store is not keeping up"};
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
}

TrailStats Trail::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::vector<Record> Trail::seal_all(const std::vector<Event>& events) {
  SealOptions so{options_.node, options_.max_text, options_.params};
  std::vector<Record> out;
  out.reserve(events.size());
  for (const auto& e : events) out.push_back(seal(e, head_, so));
  return out;
}

void Trail::run() {
  std::vector<Pending> batch;
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      auto wake = std::min(next_checkpoint_, next_prune_);
      for (const auto& s : sinks_)
        if (s->spool_bytes > 0 || !s->healthy) wake = std::min(wake, next_retry_);
      cv_.wait_until(lock, wake, [&] { return !queue_.empty() || stopping_; });
      batch.swap(queue_);
      queued_events_ = 0;
      stop = stopping_ && batch.empty();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_retry_) {
      drain_spools();
      next_retry_ = now + options_.retry_interval;
    }
    if (!batch.empty()) write_batch(batch);
    if (stop) break;
    maybe_checkpoint(false);
    maybe_prune();
    batch.clear();
  }
  drain_spools();
  maybe_checkpoint(true);
  std::lock_guard lock(mu_);
  flushed_.notify_all();
}

void Trail::write_batch(std::vector<Pending>& batch) {
  std::vector<Event> events;
  std::size_t n = 0;
  for (auto& p : batch) n += p.events.size();
  events.reserve(n);
  for (auto& p : batch)
    for (auto& e : p.events) events.push_back(std::move(e));
  const ChainHead before = head_;
  auto records = seal_all(events);
  events.clear();  // release analyses and policies here, on the writer thread

  bool all_direct = true;
  bool any_kept = false;
  Error error;
  for (auto& s : sinks_) {
    if (s->spool_bytes == 0) {
      auto r = s->sink->write(records);
      if (r) {
        s->stored_seq = records.back().seq;
        s->healthy = true;
        any_kept = true;
        continue;
      }
      s->healthy = false;
      s->last_error = r.error().message;
      spdlog::error("audit: {} failed: {}; records go to the spool {} until it works again", s->sink->name(),
                    r.error().message, s->spool_path);
      error = Error{r.error().sqlstate.empty() ? "58030" : r.error().sqlstate,
                    "the audit store " + std::string(s->sink->name()) + " is unavailable: " + r.error().message};
    } else if (error.message.empty()) {
      error = Error{"58030", "the audit store " + std::string(s->sink->name()) + " is unavailable: " + s->last_error};
    }
    all_direct = false;
    if (auto sp = s->append_spool(records, options_.spool_max_size); sp) {
      any_kept = true;
      std::lock_guard lock(mu_);
      stats_.spooled += records.size();
    } else {
      spdlog::error("audit: {}", sp.error().message);
      error = Error{sp.error().sqlstate, "the audit store " + std::string(s->sink->name()) +
                                             " is unavailable and " + sp.error().message};
    }
  }
  if (!any_kept) head_ = before;  // stored nowhere: as if never sealed, so no sink shows a gap
  {
    std::lock_guard lock(mu_);
    if (all_direct) stats_.written += records.size();
    if (!any_kept) stats_.refused += records.size();
    ++stats_.batches;
    stats_.head_seq = head_.seq;
    stats_.sinks_healthy = all_direct;
  }
  for (auto& p : batch)
    if (p.ack) p.ack(all_direct ? nullptr : &error);
  {
    std::lock_guard lock(mu_);
    done_ += batch.size();
  }
  flushed_.notify_all();
}

void Trail::drain_spools() {
  for (auto& s : sinks_) {
    if (s->spool_bytes == 0) continue;
    std::ifstream in(s->spool_path, std::ios::binary);
    if (!in) continue;
    std::vector<Record> chunk;
    std::string line;
    bool ok = true;
    auto flush_chunk = [&] {
      if (chunk.empty()) return true;
      auto r = s->sink->write(chunk);
      if (!r) {
        s->last_error = r.error().message;
        return false;
      }
      s->stored_seq = chunk.back().seq;
      chunk.clear();
      return true;
    };
    while (ok && std::getline(in, line)) {
      auto r = parse_line(line);
      if (!r) {
        spdlog::error("audit: skipping an unreadable line in the spool {}", s->spool_path);
        continue;
      }
      if (r->seq <= s->stored_seq) continue;  // forwarded before a restart
      chunk.push_back(std::move(*r));
      if (chunk.size() >= 4096) ok = flush_chunk();
    }
    if (ok) ok = flush_chunk();
    if (!ok) continue;
    if (::truncate(s->spool_path.c_str(), 0) == 0) {
      s->spool_bytes = 0;
      s->healthy = true;
      spdlog::info("audit: {} is back; the spooled records were forwarded in order", s->sink->name());
    }
  }
}

void Trail::maybe_checkpoint(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now < next_checkpoint_) return;
  next_checkpoint_ = now + options_.checkpoint_interval;
  if (!options_.signer || head_.seq == checkpointed_seq_) return;
  const auto msg = CheckpointSigner::message(options_.node, head_.seq, head_.hash);
  auto sig = options_.signer->sign(msg);
  if (!sig) {
    spdlog::error("audit: checkpoint not signed: {}", sig.error().message);
    return;
  }
  Event e;
  e.type = EventType::Checkpoint;
  e.time = std::chrono::system_clock::now();
  e.fields = {{"covers_seq", std::to_string(head_.seq)},
              {"covers_hash", head_.hash},
              {"algorithm", std::string(CheckpointSigner::name(options_.signer->algorithm()))},
              {"key_id", options_.signer->key_id()},
              {"signature", *sig}};
  spdlog::info("audit checkpoint: node={} seq={} hash={}", options_.node, head_.seq, head_.hash);
  std::vector<Pending> one;
  one.push_back(Pending{{std::move(e)}, {}});
  {
    std::lock_guard lock(mu_);
    ++enqueued_;
  }
  write_batch(one);
  checkpointed_seq_ = head_.seq;
  std::lock_guard lock(mu_);
  ++stats_.checkpoints;
}

void Trail::maybe_prune() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_prune_) return;
  next_prune_ = now + std::chrono::hours(1);
  if (options_.retention_max_age.count() == 0 && options_.retention_max_records == 0) return;
  std::optional<std::chrono::system_clock::time_point> before;
  if (options_.retention_max_age.count() > 0) before = std::chrono::system_clock::now() - options_.retention_max_age;
  for (auto& s : sinks_) {
    if (s->spool_bytes > 0) continue;
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
    std::vector<Pending> one;
    one.push_back(Pending{{std::move(e)}, {}});
    {
      std::lock_guard lock(mu_);
      ++enqueued_;
    }
    write_batch(one);
  }
}

}  // namespace gh::audit
