#pragma once
// The data plane: one io_context per worker thread, each with its own SO_REUSEPORT acceptor,
// so sessions never share a thread and the hot path takes no locks.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/metrics.h"
#include "base/result.h"
#include "identity/identity.h"
#include "proxy/runtime.h"
#include "sql/analyzer.h"

namespace gh::approvals {
class Service;
}

namespace gh::audit {
class Trail;
}

namespace gh::proxy {

// One open session as the admin console shows it (Server::sessions).
struct SessionSnapshot {
  std::uint32_t id = 0;
  identity::Identity identity;
  std::string target, database, login;  // login: the backend role it runs as
  std::string client;                   // address:port
  std::string application_name;
  bool tls = false;
  std::chrono::system_clock::time_point started;
  std::string state;                    // "idle", "idle in transaction", "active", "held" (waiting for approval)
  std::string statement;                // the last statement text the client sent (at most 4 KiB); "" when idle
  std::chrono::system_clock::time_point statement_started;
};

class Server {
 public:
  Server(std::shared_ptr<const Runtime> rt, Metrics& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listeners and starts the workers.
  Result<void> start();
  std::uint16_t port() const { return port_; }

  // New sessions use `rt`; open sessions keep theirs.
  void reload(std::shared_ptr<const Runtime> rt);
  std::shared_ptr<const Runtime> runtime() const { return runtime_.load(); }
  // Bumped by every reload: sessions compare it per statement and pick up a new policy.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Stops accepting, ends idle sessions, lets running statements finish until
  // limits.shutdown_timeout, then ends the rest. Returns at once; wait() blocks until done.
  void shutdown();
  void wait();

  std::uint64_t active_sessions() const { return active_.load(std::memory_order_relaxed); }
  // The sessions past their login, gathered on their worker threads (any thread but a worker's;
  // a worker that does not answer within `wait` is left out).
  std::vector<SessionSnapshot> sessions(std::chrono::milliseconds wait) const;
  // Ends session `id` as an administrator asked: its client gets FATAL 57P01 with `message`, a
  // running statement is cancelled, the disconnect is audited with `message`. False: no such session.
  bool end_session(std::uint32_t id, std::string message, std::chrono::milliseconds wait);
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  // The statement analysis caches of all worker threads, summed (any thread, after start()).
  sql::Analyzer::Stats analyzer_stats() const;

  // The audit trail sessions report to; null: audit is off. Set before start(); outlives the server.
  void set_audit(audit::Trail* trail) { audit_ = trail; }
  audit::Trail* audit() const { return audit_; }
  // Approval requests for `review` decisions; null: review decisions are refused. Set before start().
  void set_approvals(approvals::Service* svc) { approvals_ = svc; }
  approvals::Service* approvals() const { return approvals_; }

  struct Impl;
  void note_session_opened();

 private:
  std::unique_ptr<Impl> impl_;
  std::atomic<std::shared_ptr<const Runtime>> runtime_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> active_{0};
  std::atomic<bool> draining_{false};
  std::uint16_t port_ = 0;
  audit::Trail* audit_ = nullptr;
  approvals::Service* approvals_ = nullptr;
  friend struct Impl;
  friend class Session;
};

}  // namespace gh::proxy
