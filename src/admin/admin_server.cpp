#include "admin/admin_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

namespace gh::admin {

struct AdminServer::Impl {
  Hooks hooks;
  httplib::Server http;
  std::thread thread;
};

AdminServer::AdminServer(Hooks hooks) : impl_(std::make_unique<Impl>()) {
  impl_->hooks = std::move(hooks);
  auto& h = impl_->hooks;
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
  impl_->http.set_payload_max_length(64 * 1024);
  impl_->http.set_read_timeout(5, 0);
  impl_->http.set_write_timeout(5, 0);
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
  spdlog::info("admin endpoints on http://{}:{} (/healthz, /metrics)", address, bound);
  return std::uint16_t(bound);
}

void AdminServer::stop() {
  if (impl_->thread.joinable()) {
    impl_->http.stop();
    impl_->thread.join();
  }
}

}  // namespace gh::admin
