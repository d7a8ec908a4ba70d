#include "protocol/response_tracker.h"

namespace gh::protocol {

void ResponseTracker::lose() {
  lost_ = true;
  std::vector<Wait>().swap(queue_);
  head_ = 0;
  skipping_ = false;
}

bool ResponseTracker::client(char type) {
  if (lost_) return true;
  Wait w;
  switch (type) {
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
      w = Wait::Ext;
      break;
    case 'Q':
    case 'F':
      w = Wait::Unit;
      break;
    case 'S':
      w = Wait::Sync;
      break;
    default:
      return true;  // Flush, COPY data, Terminate: no answer of their own
  }
  if (skipping_) {
    if (w != Wait::Sync) return w != Wait::Unit;  // skipped by the server, never answered
    skipping_ = false;
  }
  if (queue_.size() - head_ >= kMaxWaiting) {  // a client that never reads; stop tracking
    lose();
    return true;
  }
  if (head_ > 0 && head_ >= queue_.size() / 2) {
    queue_.erase(queue_.begin(), queue_.begin() + std::ptrdiff_t(head_));
    head_ = 0;
  }
  queue_.push_back(w);
  return true;
}

std::uint32_t ResponseTracker::server(char type) {
  if (lost_) return 0;
  const bool any = head_ < queue_.size();
  const Wait front = any ? queue_[head_] : Wait::Sync;
  switch (type) {
    case '1':  // ParseComplete
    case '2':  // BindComplete
    case '3':  // CloseComplete
    case 'n':  // NoData (Describe)
    case 's':  // PortalSuspended (Execute)
      if (!any || front != Wait::Ext) {
        lose();
        return 0;
      }
      pop();
      return 0;
    case 'T':  // RowDescription: ends a Describe; within a Query it is the Query's
    case 'C':  // CommandComplete: ends an Execute; within a Query, one of its statements
    case 'I':  // EmptyQueryResponse: likewise
      if (!any) {
        lose();
        return 0;
      }
      if (front == Wait::Ext) pop();
      return 0;
    case 'Z':  // ReadyForQuery: ends a Query, FunctionCall or Sync
      if (!any || front == Wait::Ext) {
        lose();
        return 0;
      }
      pop();
      return 0;
    case 'E': {
      if (!any || front != Wait::Ext) return 0;  // a Query's or Sync's: its ReadyForQuery follows
      // An extended-protocol message failed: everything up to the next Sync is skipped.
      std::uint32_t skipped = 0;
      while (head_ < queue_.size() && queue_[head_] != Wait::Sync) {
        if (queue_[head_] == Wait::Unit) ++skipped;
        pop();
      }
      if (head_ == queue_.size()) skipping_ = true;  // until the client's next Sync
      return skipped;
    }
    default:
      // DataRow, ParameterDescription, COPY messages, FunctionCallResponse, and what the server
      // sends at any time (notices, notifications, parameter status).
      return 0;
  }
}

void ResponseTracker::syncs_ignored(std::uint32_t n) {
  if (lost_) return;
  for (std::size_t i = queue_.size(); i > head_ && n > 0; --i) {
    if (queue_[i - 1] != Wait::Sync) continue;
    queue_.erase(queue_.begin() + std::ptrdiff_t(i - 1));
    --n;
  }
  if (head_ == queue_.size()) {
    queue_.clear();
    head_ = 0;
  }
}

}  // namespace gh::protocol
