#pragma once
// The admin plane: /healthz, Prometheus /metrics and the audit search API (/api/audit) on their
// own port and thread, so that scrapes and searches never touch the data path's event loops. It
// knows nothing of the proxy; the app passes in what it needs as callbacks and values.
// There is no access control yet: keep the admin address on loopback (the default).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "base/result.h"

namespace gh::admin {

struct Hooks {
  std::function<std::string()> metrics;  // Prometheus text
  std::function<bool()> serving;         // false while draining: /healthz answers 503
  std::string audit_store;               // SQLite or JSON-lines file for GET /api/audit; "": 404
  // Called for every admin API action (reading the audit trail is one): what, the request's
  // query string, the client's address and the HTTP status. Empty: not recorded.
  std::function<void(const std::string& action, const std::string& query, const std::string& client, int status)>
      on_action;
};

class AdminServer {
 public:
  explicit AdminServer(Hooks hooks);
  ~AdminServer();
  // Binds and starts the HTTP thread. Port 0 picks a free port.
  Result<std::uint16_t> start(const std::string& address, std::uint16_t port);
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gh::admin
