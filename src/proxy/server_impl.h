#pragma once
// Server internals shared by server.cpp and session.cpp.
#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "proxy/cancel_registry.h"
#include "proxy/login_throttle.h"
#include "proxy/server.h"
#include "proxy/worker.h"

namespace gh::proxy {

struct Server::Impl {
  Metrics& metrics;
  std::vector<std::unique_ptr<Worker>> workers;
  CancelRegistry cancels;
  LoginThrottle login_throttle;
  std::atomic<std::uint32_t> next_session_id{1};
  std::atomic<std::int64_t> drain_deadline_ns{0};  // steady_clock, when draining
  explicit Impl(Metrics& m) : metrics(m) {}
};

}  // namespace gh::proxy
