#pragma once
// The admin plane: /healthz and Prometheus /metrics on their own port and thread, so that
// scrapes never touch the data path's event loops. It knows nothing of the proxy; the app
// passes in what it needs as callbacks.
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
