#pragma once
// Which client message each server message answers, as far as a relay must know it: which
// Query, FunctionCall and Sync messages will still get a ReadyForQuery.
//
// PostgreSQL answers in order. An error while it processes an extended-protocol message (Parse,
// Bind, Describe, Execute, Close) makes it skip every message up to the next Sync, simple Query
// and FunctionCall included: they get no answer at all (postgres.c, ignore_till_sync). A relay
// that counted one ReadyForQuery per Query, FunctionCall and Sync forwarded then waits forever
// for answers that never come. This tracker keeps the forwarded messages that await an answer,
// matches the server's messages to them, and says which Query/FunctionCall messages were
// skipped.
//
// Pure and allocation-light: one byte per forwarded message that awaits an answer, in a ring.
// When the server's messages do not fit the model (a bug here, or a server that answers
// differently), the tracker stops (lost()) and reports nothing more, so the relay falls back to
// counting ReadyForQuery messages.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gh::protocol {

class ResponseTracker {
 public:
  // A message forwarded to the server (Sync only when the server is not reading COPY data, which
  // ignores it). Returns false when the server will skip it: a Query or FunctionCall sent after
  // an error in an unsynced extended-protocol batch.
  bool client(char type);
  // A message from the server. Returns how many forwarded Query/FunctionCall messages the
  // server will now skip (this was an error in an extended-protocol message before them).
  std::uint32_t server(char type);
  // The newest `n` Syncs were read by the server as part of COPY data (ignored): no answer.
  void syncs_ignored(std::uint32_t n);

  bool lost() const { return lost_; }
  std::size_t waiting() const { return queue_.size() - head_; }

 private:
  // What a forwarded message waits for. Ext: one of Parse/Bind/Describe/Execute/Close (ends with
  // its completion message, or an error); Unit: Query or FunctionCall (ends with ReadyForQuery);
  // Sync (ends with ReadyForQuery).
  enum class Wait : std::uint8_t { Ext, Unit, Sync };
  static constexpr std::size_t kMaxWaiting = 1u << 20;
  void lose();
  void pop() {
    if (++head_ == queue_.size()) {
      queue_.clear();  // keeps its capacity; an idle session that never pipelined holds none
      head_ = 0;
    }
  }

  std::vector<Wait> queue_;  // from head_: oldest first
  std::size_t head_ = 0;
  bool skipping_ = false;  // the server skips until the next Sync, which is not forwarded yet
  bool lost_ = false;
};

}  // namespace gh::protocol
