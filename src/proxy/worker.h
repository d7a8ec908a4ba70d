#pragma once
// One worker thread: an io_context, its acceptor, and the sessions it owns.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>

#include <asio.hpp>

#include "base/metrics.h"
#include "base/once_a_second.h"
#include "sql/analyzer.h"

namespace gh::proxy {

class Session;

struct Worker {
  explicit Worker(std::size_t i, WorkerMetrics& m) : index(i), metrics(m) {}
  std::size_t index;
  WorkerMetrics& metrics;
  // One thread runs it; other threads only post to it (never touch its sockets or timers), so the
  // reactor needs no per-descriptor locking.
  asio::io_context io{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::optional<asio::ip::tcp::acceptor> acceptor;
  std::unordered_set<std::shared_ptr<Session>> sessions;  // touched only on this thread
  // Sessions on this worker, and those being moved to it: read by every acceptor (balancing).
  std::atomic<std::uint32_t> live{0};
  sql::Analyzer analyzer;  // statement analysis cache of this thread
  std::thread thread;
  // Log lines a flood would repeat: connections refused before a session (limit, shutdown), and
  // statements refused because the audit trail fails.
  OnceASecond refused_log, audit_refusal_log;
  // Cancel requests with a key no session has (records and log lines): one a second, and those held
  // back are recorded a second after the last one let through (flush_pending: a flush is
  // scheduled), so a burst that stops is still on record.
  struct HeldCancels {
    OnceASecond gate;
    bool flush_pending = false;
    std::string last_from;
  } unknown_cancel_log;
};

}  // namespace gh::proxy
