#pragma once
// The audit trail: one writer thread that seals events into the hash chain and writes them to
// every sink in batches (group commit: whatever queued while the previous batch was written is
// the next batch). Sessions submit from any thread; those whose target requires durable audit
// wait for the acknowledgement before their statement is forwarded.
//
// A sink that fails gets its records in a spool file (one per sink, in order) and receives them
// again, in order, before anything newer once it works again. An acknowledgement reports
// success only when every sink stored the records itself: a spooled record is safe but the
// store is down, and `required` targets then refuse statements. When even the spool cannot be
// written (disk full), the chain is not advanced: those records are refused, not half-written.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
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
#include "base/result.h"
#include "config/config.h"

namespace gh::audit {

struct TrailStats {
  std::uint64_t submitted = 0;
  std::uint64_t written = 0;       // sealed and stored in every sink
  std::uint64_t spooled = 0;       // records put in a spool file
  std::uint64_t refused = 0;       // events refused (queue full, or not storable anywhere)
  std::uint64_t batches = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t head_seq = 0;
  bool sinks_healthy = true;
};

class Trail {
 public:
  // Called on the writer thread once the events are stored (error == nullptr) or refused.
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
  };

  // Opens the sinks the configuration names, reads the chain head and starts the writer.
  [[nodiscard]] static Result<std::unique_ptr<Trail>> open(const config::Audit& cfg);
  [[nodiscard]] static Result<std::unique_ptr<Trail>> open(Options options, std::vector<std::unique_ptr<AuditSink>> sinks);
  ~Trail();  // close()

  // Thread-safe. Events of one call are sealed consecutively, in order. `ack` may be empty.
  void submit(Event e, Ack ack = {});
  void submit(std::vector<Event> events, Ack ack);
  // Waits until everything submitted before this call is stored or refused.
  void flush();
  // Writes a Stop record and a final checkpoint, drains the queue and stops the writer.
  void close();

  TrailStats stats() const;
  const std::string& node() const { return options_.node; }

 private:
  Trail(Options options, std::vector<std::unique_ptr<AuditSink>> sinks);
  struct Pending {
    std::vector<Event> events;
    Ack ack;
  };
  struct SinkState;
  void run();
  void write_batch(std::vector<Pending>& batch);
  void maybe_checkpoint(bool force);
  void maybe_prune();
  void drain_spools();
  std::vector<Record> seal_all(const std::vector<Event>& events);

  Options options_;
  std::vector<std::unique_ptr<SinkState>> sinks_;
  ChainHead head_;
  std::uint64_t checkpointed_seq_ = 0;
  std::chrono::steady_clock::time_point next_checkpoint_, next_prune_, next_retry_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // writer waits for work
  std::condition_variable flushed_;  // flush() waits for the writer
  std::vector<Pending> queue_;
  std::size_t queued_events_ = 0;
  std::uint64_t enqueued_ = 0, done_ = 0;  // submit calls accepted / finished
  bool stopping_ = false;
  TrailStats stats_;
  std::thread writer_;
};

}  // namespace gh::audit
