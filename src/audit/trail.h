#pragma once
// The audit trail: one writer thread that seals events into the hash chain, appends them to a
// local journal (one write per batch: whatever queued while the previous batch was written is
// the next batch), acknowledges them, and stores them in every sink in large transactions
// (every flush_interval, or sooner when many are waiting). Sessions submit from any thread;
// those whose target requires durable audit wait for the acknowledgement before their
// statement is forwarded. See docs/adr/0005-audit-journal.md.
//
// The journal is what makes a record durable: once written it survives the process being
// killed (and with fsync, a power loss), and records still in it are stored in the sinks at the
// next start. It holds every record not yet in every sink, in order, so a sink that is down
// receives them, in order, once it works again. While a sink is failing, acknowledgements
// report its error and `required` targets refuse statements. When the journal cannot be
// written (disk full, audit.spool.max_size), the chain is not advanced: those records are
// refused, not half-written.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "audit/event.h"
#include "audit/record.h"
#include "audit/signer.h"
#include "audit/sink.h"
#include "base/once_a_second.h"
#include "base/result.h"
#include "config/config.h"

namespace gh::audit {

struct TrailStats {
  std::uint64_t submitted = 0;
  std::uint64_t journaled = 0;     // records written to the journal
  std::uint64_t stored = 0;        // every record up to this seq is in every sink
  std::uint64_t refused = 0;       // events refused (queue full, or not storable anywhere)
  std::uint64_t batches = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t retentions = 0;    // prunes done (each adds a Retention record)
  std::uint64_t head_seq = 0;
  std::uint64_t journal_bytes = 0;  // records waiting in the journal files for some sink
  std::uint64_t journal_reads = 0;  // journal lines read back for a sink that memory no longer served
  std::uint64_t intents_open = 0;   // statements running whose record is written when they end
  std::uint64_t intents_recovered = 0;  // left by a stopped process, recorded at this start
  bool sinks_healthy = true;
};

class Trail {
 public:
  // Called once the events are journaled, i.e. durable (error == nullptr; with a sink failing, its
  // error), or refused. Runs on the writer thread.
  using Ack = std::function<void(const Error* error)>;
  // Test hooks: the time source and extra sinks.
  struct Options {
    std::string node;
    SealOptions::Params params = SealOptions::Params::Masked;
    std::size_t max_text = 64 * 1024;
    std::size_t queue_size = 65536;
    std::string spool_dir;
    std::uint64_t spool_max_size = 1ull << 30;
    std::chrono::milliseconds checkpoint_interval{60'000};
    std::optional<CheckpointSigner> signer;
    std::chrono::milliseconds retention_max_age{0};
    std::uint64_t retention_max_records = 0;
    std::chrono::milliseconds retry_interval{1000};  // how often a failed sink is tried again
    std::chrono::milliseconds flush_interval{20};    // journal -> sinks, at most this late
    bool fsync = false;                              // fdatasync the journal on every batch
    bool map_journal = true;  // false: append with write(2), as where fallocate/mmap are missing
    bool intents = true;      // false: statements are recorded before they run and again when they end
    bool checkpoint_at_start = true;  // with a signer: a checkpoint right after the Start record (tests turn it off)
  };

  // What `gatehouse check` can tell without opening the store: the checkpoint key loads and can
  // sign, and the directories of file sinks and the spool exist. Errors name the config key.
  [[nodiscard]] static Result<void> check(const config::Audit& cfg);
  // Opens the sinks the configuration names, reads the chain head and starts the writer.
  [[nodiscard]] static Result<std::unique_ptr<Trail>> open(const config::Audit& cfg);
  [[nodiscard]] static Result<std::unique_ptr<Trail>> open(Options options, std::vector<std::unique_ptr<AuditSink>> sinks);
  ~Trail();  // close()

  // Thread-safe. Events of one call are sealed consecutively, in order. `ack` may be empty.
  void submit(Event e, Ack ack = {});
  void submit(std::vector<Event> events, Ack ack);
  // Seals and journals `events` on the calling thread, now: no hand-over to the writer thread,
  // so a session that must wait for durability waits for one write(2), not for a thread switch.
  // Error: the journal cannot be written, or a sink is failing (the records are kept).
  // Falls back to submit() semantics (blocking until acknowledged) when the journal is fsynced.
  // `completed`: the events record what already happened (statements' outcomes, disconnects): when
  // the journal cannot take them (full), they are kept in memory, in order, and journaled before
  // the next records once it can (up to kMaxDeferred; beyond, they are counted as refused and
  // logged), instead of being lost. Records that let something happen (a statement about to run)
  // are never kept: their caller refuses what they were for.
  [[nodiscard]] Result<void> write_now(std::vector<Event> events, bool completed = false);
  bool inline_writes() const { return !options_.fsync; }

  // One record per statement, written when it ends (with its outcome): before the statement
  // runs, intend() writes the record-to-be into a free slot of a mapped file in the spool (a
  // memcpy, no system call; the page cache keeps it through a SIGKILL like the journal). The
  // slot is freed once the statement's record (Event::intent = the returned slot) is journaled.
  // A start turns the intents a killed process left into records with outcome "unknown".
  // false: no slot (the statement is too large, every slot is in use, intents are off, the
  // journal is fsynced, or the trail is failing): record the statement before it runs instead,
  // which also reports why the trail fails.
  // On success sets e.intent (the slot) and e.draft (what its record is sealed from) and returns true.
  [[nodiscard]] bool intend(Event& e);
  bool intents() const { return intents_map_ != nullptr; }
  // An intended event that will not be sealed (its statement's record says how it ended): frees its slot.
  void forget_intent(Event& e) {
    release_intent(e.intent);
    e.intent = 0;
  }
  // Waits until everything submitted before this call is stored or refused.
  void flush();
  // Writes a Stop record and a final checkpoint, drains the queue and stops the writer.
  void close();

  // Why the trail refuses records now (a sink failing, the journal unwritable), if it does: a
  // caller about to record what it may then not do (a login) asks first.
  std::optional<Error> failing();
  TrailStats stats() const;
  const std::string& node() const { return options_.node; }

 private:
  Trail(Options options, std::vector<std::unique_ptr<AuditSink>> sinks);
  struct Pending {
    std::vector<Event> events;
    Ack ack;
  };
  struct SinkState;
  [[nodiscard]] Result<void> open_journal(std::vector<Record>& replay);
  // Maps the intents file, seals what a stopped process left in it (after `replay`, unless the
  // journal already holds the statement's record) and frees every slot.
  void open_intents(std::vector<Record>& replay);
  void release_intent(std::uint32_t slot);
  [[nodiscard]] Result<void> journal_append(const std::vector<Record>& records);
  // writer thread: seal, journal, acknowledge, hand over to the store thread
  void run();
  void write_batch(std::vector<Pending>& batch);
  // Under chain_mu_: seal, journal, hand over to the store thread. Error as for write_now.
  // Records deferred while the journal was full go first.
  Result<void> append(std::vector<Event>& events, bool completed = false);
  static constexpr std::size_t kMaxDeferred = 65536;
  std::vector<Event> deferred_;  // under chain_mu_: completed records the full journal refused
  std::atomic<bool> has_deferred_{false};
  std::chrono::steady_clock::time_point deferred_retry_at_{};  // store thread only
  void maybe_checkpoint(bool force);
  // Set (on the writer thread) once a Retention record is journaled: the writer signs a checkpoint
  // right after, so the record that explains pruned records is covered by a signature of its run.
  std::atomic<bool> checkpoint_due_{false};
  // store thread: journal -> sinks
  void run_store();
  void flush_sinks(bool force);
  void maybe_prune();

  Options options_;
  std::mutex chain_mu_;  // the chain head and the journal: sealing is serial, from any thread
  ChainHead head_;
  std::uint64_t checkpointed_seq_ = 0;
  std::chrono::steady_clock::time_point next_checkpoint_;
  // Two journal files used in turn: a file is emptied and written again only once every sink
  // holds all of its records, so under steady load the journal stays small although the sinks
  // always lag a little behind the newest record.
  // A file is written through a shared memory mapping (appending is a memcpy, no system call;
  // the page cache keeps it through a SIGKILL like a write(2) would) whose blocks are reserved
  // with fallocate first, so a full disk is an error at that point, never a SIGBUS. Its valid
  // part ends at `bytes`, marked by a NUL; the space after it is reused once the file is emptied.
  // Where fallocate or mmap is not available, the file is appended to with write(2).
  struct JournalFile {
    std::string path;
    int fd = -1;
    std::uint64_t bytes = 0;
    std::uint64_t first_seq = 0, last_seq = 0;  // 0: empty
    char* map = nullptr;  // null: written with write(2)
    std::size_t mapped = 0;
    std::string last_hash;  // of record last_seq
  };
  // The newest record known to be stored, kept in the spool ("head") whenever a journal file is
  // emptied: the journal then no longer says how far the chain went. A start whose sinks and
  // journal end before it (the store was deleted, replaced, or is a new one) continues the chain
  // after it, so verify reports the missing records instead of a new chain looking intact.
  int head_fd_ = -1;
  int lock_fd_ = -1;  // flock'ed "lock" file in the spool: one process writes a chain
  std::uint64_t saved_head_seq_ = 0;
  void save_head(std::uint64_t seq, const std::string& hash);
  std::optional<ChainHead> read_saved_head() const;
  JournalFile journal_[2];
  int active_ = 0;              // the file appended to
  std::string journal_path_;    // the directory, for messages
  std::uint64_t journal_bytes() const { return journal_[0].bytes + journal_[1].bytes; }
  void journal_reset(JournalFile& f);
  // Maps f with room for `need` bytes and the end mark, reserving the blocks first.
  [[nodiscard]] Result<void> journal_reserve(JournalFile& f, std::size_t need);
  static void journal_unmap(JournalFile& f);
  // Journal records with seq in (after, through], oldest first, from both files. Store thread.
  void read_journal(std::uint64_t after, std::uint64_t through, const std::function<bool(Record&&)>& each);
  struct JournalCursor {
    int file = -1;             // journal_ index; -1: none
    std::uint64_t offset = 0;  // just after the line of `seq`
    std::uint64_t seq = 0;
    std::uint64_t first = 0;   // the seq the file began with then
  };
  JournalCursor journal_cursor_;          // store thread: where read_journal last stopped
  std::uint64_t journal_lines_read_ = 0;  // store thread: lines read back from the journal

  // Intents: fixed slots of a mapped file; a slot is [u32 length][u32 0][u64 live][body].
  static constexpr std::size_t kIntentSlot = 4096;
  static constexpr std::size_t kIntentSlots = 1024;
  int intents_fd_ = -1;
  char* intents_map_ = nullptr;
  mutable std::mutex intent_mu_;
  std::vector<std::uint32_t> free_intents_;  // under intent_mu_
  std::atomic<bool> journal_failed_{false};  // the last journal append failed (intend refuses)
  std::atomic<bool> sinks_failing_{false};   // mirrors !sinks_healthy_ for intend()

  mutable std::mutex mu_;            // the writer's queue and the statistics
  std::condition_variable cv_;       // writer waits for work
  std::condition_variable flushed_;  // flush() waits for the writer
  std::vector<Pending> queue_;
  std::size_t queued_events_ = 0;
  std::uint64_t enqueued_ = 0, done_ = 0;  // submit calls accepted / finished
  bool stopping_ = false;
  TrailStats stats_;
  OnceASecond refusal_log_;  // under mu_
  OnceASecond deferred_log_;  // under mu_
  std::thread writer_;

  // Between the writer and the store thread (store_mu_).
  std::mutex store_mu_;
  std::condition_variable store_cv_;
  std::vector<Record> to_store_;            // journaled, not yet taken by the store thread
  std::size_t to_store_bytes_ = 0;          // roughly what to_store_ holds (bounded)
  std::chrono::steady_clock::time_point to_store_since_{};
  std::uint64_t stored_all_seq_ = 0;        // every record up to here is in every sink
  bool sinks_healthy_ = true;
  Error sink_error_;                        // the failing sink's error, for acknowledgements
  bool store_stopping_ = false;

  // store thread only
  std::vector<std::unique_ptr<SinkState>> sinks_;
  bool index_ = true;  // some sink reads the search columns of Record::index (AuditSink::needs_index)
  std::vector<Record> pending_;  // the newest journaled records not yet in every sink, gapless (keep_pending)
  std::size_t pending_bytes_ = 0;  // roughly what pending_ holds
  void keep_pending(Record&& r);
  std::uint64_t last_seq_ = 0;   // newest record handed over
  std::uint64_t start_seq_ = 0;  // this run's Start record: retention waits until it is stored
  std::chrono::steady_clock::time_point next_prune_;
  std::thread store_;
};

}  // namespace gh::audit
