#pragma once
// One worker thread: an io_context, its acceptor, and the sessions it owns.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_set>

#include <asio.hpp>

#include "base/metrics.h"
#include "sql/analyzer.h"

namespace gh::proxy {

class Session;

struct Worker {
  explicit Worker(std::size_t i, WorkerMetrics& m) : index(i), metrics(m) {}
  std::size_t index;
  WorkerMetrics& metrics;
  asio::io_context io{1};
  std::optional<asio::ip::tcp::acceptor> acceptor;
  std::unordered_set<std::shared_ptr<Session>> sessions;  // touched only on this thread
  sql::Analyzer analyzer;  // statement analysis cache of this thread
  std::thread thread;
  // Connections refused before a session (limit, shutdown): logged at most once a second.
  std::chrono::steady_clock::time_point refused_logged_at{};
  std::uint64_t refused_unlogged = 0;
};

}  // namespace gh::proxy
