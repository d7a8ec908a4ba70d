#include "app/admin_wiring.h"

#include <initializer_list>

#include "audit/trail.h"
#include "base/metrics.h"
#include "config/config.h"
#include "identity/token_auth.h"
#include "proxy/runtime.h"
#include "proxy/server.h"

namespace gh::app {

namespace {

struct Metric {
  const char* name;
  const char* type;
  const char* help;
  std::uint64_t value;
};

std::string render(std::initializer_list<Metric> metrics) {
  std::string out;
  for (const auto& m : metrics) append_metric(out, m.name, m.type, m.help, m.value);
  return out;
}

// The audit trail's health for alerting: a sink that is down, records refused, the journal
// filling up, the store falling behind the chain head.
std::string audit_metrics(const audit::TrailStats& st) {
  return render({
      {"gatehouse_audit_records_submitted_total", "counter", "Audit events handed to the trail.", st.submitted},
      {"gatehouse_audit_records_journaled_total", "counter",
       "Audit records sealed and written to the journal (durable; required statements may run).", st.journaled},
      {"gatehouse_audit_records_refused_total", "counter",
       "Audit events that could not be recorded (journal full or unwritable, queue full, trail closing).", st.refused},
      {"gatehouse_audit_checkpoints_total", "counter", "Signed checkpoints of the chain head written.", st.checkpoints},
      {"gatehouse_audit_chain_head_seq", "gauge", "Sequence number of the newest sealed record.", st.head_seq},
      {"gatehouse_audit_stored_seq", "gauge", "Every record up to this sequence number is in every sink.", st.stored},
      {"gatehouse_audit_unstored_records", "gauge", "Records journaled but not yet in every sink.",
       st.head_seq > st.stored ? st.head_seq - st.stored : 0},
      {"gatehouse_audit_journal_bytes", "gauge", "Bytes of records waiting in the journal for some sink.",
       st.journal_bytes},
      {"gatehouse_audit_journal_reads_total", "counter",
       "Journal lines read back for a sink that had fallen behind what memory holds.", st.journal_reads},
      {"gatehouse_audit_statements_running", "gauge",
       "Statements running whose record is written when they end (intents in the spool).", st.intents_open},
      {"gatehouse_audit_intents_recovered", "gauge",
       "Statements a stopped process left running, recorded at this start with outcome unknown.", st.intents_recovered},
      {"gatehouse_audit_sinks_healthy", "gauge",
       "1 when every audit sink takes records; 0 while one fails (required targets refuse statements).",
       st.sinks_healthy ? 1u : 0u},
  });
}

// The statement analysis caches: hits cost nanoseconds, misses a full parse.
std::string analyzer_metrics(const sql::Analyzer::Stats& st) {
  return render({
      {"gatehouse_sql_cache_hits_total", "counter", "Statements analysed from the cache (the same text).", st.hits},
      {"gatehouse_sql_cache_shape_hits_total", "counter",
       "Statements analysed from the cache by shape (the same statement with other numbers).", st.shape_hits},
      {"gatehouse_sql_cache_misses_total", "counter", "Statements parsed and analysed.", st.misses},
      {"gatehouse_sql_cache_evictions_total", "counter", "Cache entries evicted (sql cache bounds).", st.evictions},
      {"gatehouse_sql_cache_entries", "gauge", "Analyses cached, all worker threads.", st.entries},
      {"gatehouse_sql_cache_bytes", "gauge", "Approximate memory of the cached analyses.", st.bytes},
  });
}

}  // namespace

admin::Hooks admin_hooks(proxy::Server& server, Metrics& metrics, audit::Trail* trail, approvals::Service* approvals,
                         const std::string& audit_store) {
  admin::Hooks h;
  h.metrics = [&metrics, &server, trail] {
    return metrics.render_prometheus() + analyzer_metrics(server.analyzer_stats()) +
           (trail ? audit_metrics(trail->stats()) : "");
  };
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
    // The query string as sent, up to 1 KiB: a refused call may carry any amount (found by
    // adversarial testing: 8 KB records from unauthenticated calls).
    const std::string query = a.query.size() > 1024 ? a.query.substr(0, 1024) + "..." : a.query;
    e.fields = {{"action", a.action}, {"query", query}, {"client", a.client}, {"status", std::to_string(a.status)}};
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
    // As at the database login (found by adversarial testing: a token with sub "ops" read and
    // acted on the static user ops's requests and grants).
    if (const auto what = rt->login->collides_with_static_user(v->identity); !what.empty())
      return tl::unexpected("the token's " + what + " is the name of a static user, and a token cannot take a static "
                            "user's identity");
    return std::move(v->identity);
  };
  h.roles_of = [&server](const identity::Identity& who) { return admin::roles_of(who, server.runtime()->config->admin); };
  h.public_url = [&server] { return server.runtime()->config->admin.public_url; };
  // As a client's database name is resolved to a target (a "*" target takes any name).
  h.target_exists = [&server](const std::string& name) { return server.runtime()->config->find_target(name) != nullptr; };
  h.approvals = approvals;
  h.console = [&server] {
    const auto rt = server.runtime();
    const auto& c = rt->config->admin.console;
    admin::ConsoleSettings s;
    s.client_id = c.client_id;
    s.client_secret = c.client_secret;
    s.issuer = c.issuer;
    s.session_ttl = std::chrono::duration_cast<std::chrono::seconds>(c.session_ttl);
    s.scopes = c.scopes;
    for (const auto& i : rt->config->oidc.issuers)
      if (i.issuer == c.issuer) {
        s.discovery_url = i.discovery_url.empty() ? i.issuer + "/.well-known/openid-configuration" : i.discovery_url;
        s.ca_file = i.ca_file;
      }
    return s;
  };
  h.verify_id_token = [&server](const std::string& token,
                                const std::string& nonce) -> tl::expected<identity::Identity, std::string> {
    const auto rt = server.runtime();
    const auto& c = rt->config->admin.console;
    if (!rt->login || c.client_id.empty()) return tl::unexpected(std::string("console sign-in is not configured"));
    auto v = rt->login->verify_id_token(token, c.issuer, c.client_id, nonce, std::chrono::seconds(3));
    if (!v) return tl::unexpected(v.error().message);
    if (const auto what = rt->login->collides_with_static_user(v->identity); !what.empty())
      return tl::unexpected("the token's " + what + " is the name of a static user, and a token cannot take a static "
                            "user's identity");
    return std::move(v->identity);
  };
  h.sessions = [&server] {
    std::vector<admin::LiveSession> out;
    const auto us = [](std::chrono::system_clock::time_point t) {
      return t.time_since_epoch().count() == 0
                 ? std::int64_t(0)
                 : std::int64_t(std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
    };
    for (auto& s : server.sessions(std::chrono::milliseconds(2000))) {
      admin::LiveSession l;
      l.id = s.id;
      l.who = std::move(s.identity);
      l.target = std::move(s.target);
      l.database = std::move(s.database);
      l.login = std::move(s.login);
      l.client = std::move(s.client);
      l.application_name = std::move(s.application_name);
      l.tls = s.tls;
      l.started_us = us(s.started);
      l.state = std::move(s.state);
      l.statement = std::move(s.statement);
      l.statement_started_us = us(s.statement_started);
      out.push_back(std::move(l));
    }
    return out;
  };
  h.end_session = [&server](std::uint32_t id, const std::string& message) {
    return server.end_session(id, message, std::chrono::milliseconds(2000));
  };
  return h;
}

}  // namespace gh::app
