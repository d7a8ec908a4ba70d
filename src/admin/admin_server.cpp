#include "admin/admin_server.h"

#include <chrono>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/api_call.h"
#include "admin/api_v1.h"
#include "admin/console.h"
#include "admin/console_sessions.h"

namespace gh::admin {

namespace {
constexpr std::size_t kAdminThreads = 64;  // connections served at once (see the constructor)
}  // namespace

struct AdminServer::Impl {
  Hooks hooks;
  ConsoleSessions console_sessions;
  httplib::Server http;
  std::thread thread;
};

AdminServer::AdminServer(Hooks hooks) : impl_(std::make_unique<Impl>()) {
  impl_->hooks = std::move(hooks);
  auto& h = impl_->hooks;
  h.console_sessions = &impl_->console_sessions;
  install_console(impl_->http, h);
  impl_->http.Get("/healthz", [&h](const httplib::Request&, httplib::Response& res) {
    if (h.serving && !h.serving()) {
      res.status = 503;
      res.set_content("draining\n", "text/plain");
      return;
    }
    res.set_content("ok\n", "text/plain");
  });
  impl_->http.Get("/metrics", [&h](const httplib::Request&, httplib::Response& res) {
    res.set_content(h.metrics ? h.metrics() : std::string(), "text/plain; version=0.0.4");
  });
  install_api_v1(impl_->http, h);
  install_error_bodies(impl_->http, h);
  refuse_encoded_paths(impl_->http, h);
  impl_->http.set_payload_max_length(64 * 1024);
  // cpp-httplib serves each connection on one pool thread for as long as the client keeps it
  // (reading a request, or idle between keep-alive requests). Its default pool is 8 threads here:
  // eight clients sending a byte every few seconds made /healthz unavailable (found by adversarial
  // testing). 64 threads (stacks are reserved, not resident), shorter read and keep-alive
  // timeouts. This raises the bar; it does not give a whole-request deadline (ADR 0001).
  impl_->http.new_task_queue = [] { return new httplib::ThreadPool(kAdminThreads); };
  impl_->http.set_read_timeout(3, 0);
  impl_->http.set_write_timeout(5, 0);
  impl_->http.set_keep_alive_timeout(2);
}

AdminServer::~AdminServer() { stop(); }

Result<std::uint16_t> AdminServer::start(const std::string& address, std::uint16_t port) {
  int bound = 0;
  if (port == 0)
    bound = impl_->http.bind_to_any_port(address);
  else
    bound = impl_->http.bind_to_port(address, port) ? port : -1;
  if (bound <= 0) return fail("", "cannot listen on admin address " + address + ":" + std::to_string(port));
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
  spdlog::info("admin endpoints on http://{}:{} (/healthz, /metrics, /api/v1)", address, bound);
  return std::uint16_t(bound);
}

void AdminServer::stop() {
  if (impl_->thread.joinable()) {
    api::stop_event_streams();
    impl_->http.stop();
    impl_->thread.join();
  }
}

}  // namespace gh::admin
