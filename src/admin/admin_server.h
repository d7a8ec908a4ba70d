#pragma once
// The admin plane on its own port and thread (ADR 0001), so that scrapes, searches and reviews
// never touch the data path's event loops: /healthz, Prometheus /metrics, the audit search
// (/api/v1/audit) and the approvals API v1 (/api/v1/..., docs/api.md). It knows nothing of the
// proxy; the app passes in what it needs as callbacks and values.
//
// /api/v1 (and the audit search at its old path /api/audit) requires an OIDC bearer token (from
// the issuers database logins trust); roles come from groups (admin.roles). /healthz and /metrics
// are not authenticated: keep the admin address on loopback (the default) or behind something.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/roles.h"
#include "base/result.h"
#include "identity/identity.h"

namespace gh::approvals {
class Service;
}

namespace gh::admin {

// One admin API call, for the audit trail.
struct Action {
  std::string action;  // "audit.search", "approvals.list", "approvals.approve", "access.request", ...
  std::string query;   // the request's query string
  std::string client;  // the client's address
  int status = 0;      // HTTP status of the answer
  identity::Identity who;      // who (empty subject: not authenticated)
  std::string object;          // the approval request, access request or grant acted on ("" for lists)
  std::string message;         // why it was refused (4xx/5xx), or the comment / reason given
};

// The web console's sign-in settings (admin.console), read per sign-in so reloads apply.
struct ConsoleSettings {
  std::string client_id;      // "": sign-in is not configured
  std::string client_secret;  // "": a public client (PKCE only)
  std::string issuer;         // the issuer people sign in at (one of oidc.issuers)
  std::string discovery_url;  // its discovery document
  std::string ca_file;        // https: CA bundle for the issuer ("" = the system's)
  std::chrono::seconds session_ttl{8 * 3600};
  std::vector<std::string> scopes;
};

// One open proxy session, for the console's live view.
struct LiveSession {
  std::uint32_t id = 0;
  identity::Identity who;
  std::string target, database, login, client, application_name;
  bool tls = false;
  std::int64_t started_us = 0;
  std::string state;      // idle, idle in transaction, active, held
  std::string statement;  // the text running now ("" when idle)
  std::int64_t statement_started_us = 0;
};

class ConsoleSessions;

struct Hooks {
  std::function<std::string()> metrics;  // Prometheus text
  std::function<bool()> serving;         // false while draining: /healthz answers 503
  std::string audit_store;               // SQLite or JSON-lines file for GET /api/v1/audit; "": 404
  // Called for every admin API action (reading the audit trail is one, and so is every /api/v1
  // call, refused ones included). Empty: not recorded.
  std::function<void(const Action&)> on_action;

  // /api/v1: checks a bearer token (the text after "Bearer "); the error says why it is refused.
  // Empty: every /api/v1 call answers 401.
  std::function<tl::expected<identity::Identity, std::string>(const std::string& bearer)> authenticate;
  // The API roles of an identity (admin/roles.h roles_of with the running configuration).
  std::function<Roles(const identity::Identity&)> roles_of;
  // Base URL of links to the console (admin.public_url).
  std::function<std::string()> public_url;
  // Whether a target of that name is configured (access requests name one). Empty: not checked.
  std::function<bool(const std::string& target)> target_exists;
  // Approval requests and access grants; must outlive the server. Null: /api/v1 approvals,
  // access requests and grants answer 503.
  approvals::Service* approvals = nullptr;

  // The web console (docs/console.md). Empty functions: sign-in answers 503, the sessions API 503.
  std::function<ConsoleSettings()> console;
  // Checks the ID token of a console sign-in (issuer, audience = client_id, nonce, expiry) and
  // maps its claims as a token login would; the error says why it is refused.
  std::function<tl::expected<identity::Identity, std::string>(const std::string& id_token, const std::string& nonce)>
      verify_id_token;
  std::function<std::vector<LiveSession>()> sessions;
  // Ends proxy session `id` with `message` for its client and the audit; false: no such session.
  std::function<bool(std::uint32_t id, const std::string& message)> end_session;
  // Set by AdminServer (its own store of console sessions); not for the app to fill.
  ConsoleSessions* console_sessions = nullptr;
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
