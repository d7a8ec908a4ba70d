#include "app/admin_wiring.h"

#include "audit/trail.h"
#include "base/metrics.h"
#include "config/config.h"
#include "identity/token_auth.h"
#include "proxy/runtime.h"
#include "proxy/server.h"

namespace gh::app {

admin::Hooks admin_hooks(proxy::Server& server, Metrics& metrics, audit::Trail* trail, approvals::Service* approvals,
                         const std::string& audit_store) {
  admin::Hooks h;
  h.metrics = [&metrics] { return metrics.render_prometheus(); };
  h.serving = [&server] { return !server.draining(); };
  h.audit_store = audit_store;
  // Who read the audit trail, who looked at or decided which request: each is itself recorded.
  h.on_action = [trail](const admin::Action& a) {
    if (!trail) return;
    audit::Event e;
    e.type = audit::EventType::Admin;
    e.time = std::chrono::system_clock::now();
    e.outcome = a.status < 400 ? "ok" : "error";
    e.message = a.message;
    e.fields = {{"action", a.action}, {"query", a.query}, {"client", a.client}, {"status", std::to_string(a.status)}};
    if (!a.who.subject.empty()) {
      // As a session's identity, so that `audit search --identity` finds what a person did here.
      auto ctx = std::make_shared<audit::SessionContext>();
      ctx->identity = a.who;
      ctx->client_address = a.client;
      e.session = std::move(ctx);
      e.fields.emplace_back("subject", a.who.subject);
      if (!a.who.email.empty()) e.fields.emplace_back("email", a.who.email);
    }
    if (!a.object.empty()) e.fields.emplace_back("id", a.object);
    trail->submit(std::move(e));
  };
  h.authenticate = [&server](const std::string& bearer) -> tl::expected<identity::Identity, std::string> {
    const auto rt = server.runtime();  // kept alive while verifying: rt->login lives in it
    if (!rt->login || rt->login->issuers().empty())
      return tl::unexpected(std::string("bearer tokens cannot be checked: no oidc.issuers are configured"));
    auto v = rt->login->verify(bearer, std::chrono::seconds(3));
    if (!v) return tl::unexpected(v.error().message);
    return std::move(v->identity);
  };
  h.roles_of = [&server](const identity::Identity& who) { return admin::roles_of(who, server.runtime()->config->admin); };
  h.public_url = [&server] { return server.runtime()->config->admin.public_url; };
  // As a client's database name is resolved to a target (a "*" target takes any name).
  h.target_exists = [&server](const std::string& name) { return server.runtime()->config->find_target(name) != nullptr; };
  h.approvals = approvals;
  return h;
}

}  // namespace gh::app
