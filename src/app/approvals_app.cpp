#include "app/approvals_app.h"

#include <unistd.h>

#include <mutex>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "approvals/webhooks.h"
#include "audit/trail.h"
#include "config/config.h"

namespace gh::app {
namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

void add_votes(std::vector<std::pair<std::string, std::string>>& f, const std::vector<approvals::Vote>& votes) {
  std::string approved, rejected, break_glass;
  for (const auto& v : votes) {
    auto& list = v.approve ? approved : rejected;
    list += (list.empty() ? "" : ",") + v.reviewer.display();
    if (v.break_glass) break_glass += (break_glass.empty() ? "" : ",") + v.reviewer.display();
  }
  if (!approved.empty()) f.emplace_back("approved_by", approved);
  if (!rejected.empty()) f.emplace_back("rejected_by", rejected);
  if (!break_glass.empty()) f.emplace_back("break_glass", break_glass);  // always flagged
  if (!votes.empty() && !votes.back().comment.empty()) f.emplace_back("comment", votes.back().comment);
}

// The person a step was taken by, as a session's identity, so that `audit search --identity` and
// the report's "by" find what a reviewer or requester did.
std::shared_ptr<audit::SessionContext> actor_context(const approvals::Person& p) {
  auto ctx = std::make_shared<audit::SessionContext>();
  ctx->identity.subject = p.subject;
  ctx->identity.email = p.email;
  ctx->identity.groups = p.groups;
  ctx->identity.kind = p.kind == "agent" ? identity::Kind::Agent : identity::Kind::Human;
  return ctx;
}

// Which step of a statement's approval request a change is, from what the trail last saw of it;
// "" for a change that is not a step (only whether a client is waiting on it). Found by a
// security team's trial: the same decision was recorded twice, and a pending record followed
// every hold that ended, alike and with nothing to tell what each one was.
class ApprovalSteps {
 public:
  std::string step(const approvals::Request& r) {
    std::lock_guard lock(mu_);
    auto it = seen_.find(r.id);
    std::string step;
    if (it == seen_.end())
      step = first_seen(r);
    else if (it->second.state == r.state && it->second.votes == r.votes.size())
      return {};
    else
      step = it->second.state == r.state ? "vote" : std::string(approvals::state_name(r.state));
    // Decided ones too: the session that held the statement stops waiting after the decision.
    if (seen_.size() >= 100000 && it == seen_.end()) seen_.clear();  // bounded; one seen again starts over
    seen_[r.id] = Seen{r.state, r.votes.size()};
    return step;
  }

 private:
  // A request this process has not seen change: after a restart, or on a node sharing the store.
  // Opened now (its first save), or changed by a vote or an end just now; anything else is only
  // whether a client waits on it (found by adversarial testing: after a restart, a vote was
  // recorded as a step "pending" by the requester).
  static std::string first_seen(const approvals::Request& r) {
    using S = approvals::State;
    const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    constexpr std::int64_t kJustNow = 10'000'000;
    const bool voted_now = !r.votes.empty() && now - r.votes.back().time_us < kJustNow;
    switch (r.state) {
      case S::Pending:
        // (Not by revision: the SQLite store does not keep it across a restart.)
        if (r.votes.empty()) return now - r.created_us < kJustNow ? "opened" : "";
        return voted_now ? "vote" : "";
      case S::Approved:
      case S::Rejected:
        return voted_now ? std::string(approvals::state_name(r.state)) : "";
      case S::Cancelled:
      case S::Expired:
        return now - r.decided_us < kJustNow ? std::string(approvals::state_name(r.state)) : "";
      case S::Consumed:
        return "consumed";
    }
    return "";
  }
  struct Seen {
    approvals::State state;
    std::size_t votes;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Seen> seen_;
};

std::shared_ptr<approvals::Notifier> open_webhooks(const config::Config& cfg) {
  std::vector<approvals::WebhookTarget> targets;
  for (const auto& w : cfg.approvals.webhooks) {
    approvals::WebhookTarget t;
    t.url = w.url;
    t.secret = w.secret;
    t.format = w.format == config::Webhook::Format::Slack ? approvals::WebhookTarget::Format::Slack
                                                          : approvals::WebhookTarget::Format::Json;
    targets.push_back(std::move(t));
  }
  approvals::NotifierOptions opt;
  opt.log = [](approvals::NotifierOptions::Level level, const std::string& msg) {
    static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                            spdlog::level::warn, spdlog::level::err};
    spdlog::log(kLevels[static_cast<int>(level)], "{}", msg);
  };
  for (const auto& t : targets)
    spdlog::info("approvals: webhook {} ({}{})", t.url,
                 t.format == approvals::WebhookTarget::Format::Slack ? "slack" : "json",
                 t.secret.empty() ? ", unsigned" : ", signed");
  return std::make_shared<approvals::Notifier>(std::move(targets), cfg.admin.public_url, std::move(opt));
}

}  // namespace

Result<std::unique_ptr<approvals::Service>> open_approvals(const config::Config& cfg, audit::Trail* trail,
                                                           const std::string& node) {
  const bool shared = !cfg.approvals.store_dsn.empty();
  auto store = shared ? approvals::open_postgres_store(cfg.approvals.store_dsn)
                      : approvals::open_sqlite_store(cfg.approvals.store);
  if (!store)
    return tl::unexpected(
        Error{"", shared ? "approvals: " + store.error().message
                         : "approvals: " + cfg.approvals.store + ": " + store.error().message});
  approvals::Settings s;
  s.node = node;
  if (s.node.empty()) {
    char buf[256] = {};
    s.node = ::gethostname(buf, sizeof buf - 1) == 0 && buf[0] ? buf : "gatehouse";
  }
  s.rerun_window = std::chrono::duration_cast<std::chrono::seconds>(cfg.approvals.rerun_window);
  s.pending_ttl = std::chrono::duration_cast<std::chrono::seconds>(cfg.approvals.pending_ttl);
  s.break_glass_groups = cfg.approvals.break_glass_groups;
  s.max_grant = std::chrono::duration_cast<std::chrono::seconds>(cfg.approvals.max_grant);
  auto svc = std::make_unique<approvals::Service>(std::move(*store), std::move(s));
  if (trail) {
    // Every step of every request and grant is an audit record (opened, each decision, cancel,
    // expiry, consumption, revocation), on the thread that made the change: by the node that
    // made it, so a store shared by several nodes gets each step audited once.
    auto steps = std::make_shared<ApprovalSteps>();
    svc->on_change([trail, steps](const approvals::Request* r, const approvals::AccessRequest* a) {
      audit::Event e;
      e.time = std::chrono::system_clock::now();
      if (r) {
        const std::string step = steps->step(*r);
        if (step.empty()) return;
        e.type = audit::EventType::Approval;
        e.outcome = std::string(approvals::state_name(r->state));
        // By whom: a vote's reviewer, else the requester (opened, cancelled, run); nobody for an expiry.
        const bool voted = !r->votes.empty() && (step == "vote" || step == "approved" || step == "rejected");
        if (voted)
          e.session = actor_context(r->votes.back().reviewer);
        else if (step != "expired")
          e.session = actor_context(r->requester);
        constexpr std::size_t kMaxStatement = 4096;
        std::string statement = r->statement.size() <= kMaxStatement
                                    ? r->statement
                                    : r->statement.substr(0, kMaxStatement) + "... (" +
                                          std::to_string(r->statement.size()) + " bytes)";
        e.fields = {{"request", r->id},
                    {"step", step},
                    {"statement", std::move(statement)},
                    {"state", std::string(approvals::state_name(r->state))},
                    {"requester", r->requester.display()},
                    {"requester_groups", joined(r->requester.groups)},
                    {"target", r->target},
                    {"environment", r->environment},
                    {"rule", r->rule},
                    {"fingerprint", r->fingerprint},
                    {"approvals_required", std::to_string(r->approvals_required)}};
        if (!r->justification.empty()) e.fields.emplace_back("justification", r->justification);
        if (!r->closed_reason.empty()) e.fields.emplace_back("closed_reason", r->closed_reason);
        add_votes(e.fields, r->votes);
      } else if (a) {
        e.type = audit::EventType::Grant;
        e.outcome = std::string(approvals::state_name(a->state));
        e.fields = {{"request", a->id},
                    {"state", std::string(approvals::state_name(a->state))},
                    {"requester", a->requester.display()},
                    {"target", a->target},
                    {"role", a->role},
                    {"duration_s", std::to_string(a->duration_s)}};
        if (!a->reason.empty()) e.fields.emplace_back("reason", a->reason);
        if (a->expires_us) e.fields.emplace_back("expires_us", std::to_string(a->expires_us));
        if (!a->revoked_by.empty()) e.fields.emplace_back("revoked_by", a->revoked_by);
        add_votes(e.fields, a->votes);
      } else {
        return;
      }
      trail->submit(std::move(e));
    }, approvals::Service::Changes::Local);
  }
  if (shared) {
    // Connected lazily; say now when the store cannot be reached rather than at the first hold.
    approvals::Filter probe;
    probe.limit = 1;
    if (auto r = svc->list(probe); !r)
      spdlog::warn("approvals: {} (held statements fail until it can be reached)", r.error().message);
    spdlog::info("approvals: store PostgreSQL (shared; changes announced with NOTIFY gatehouse_approvals)");
  } else {
    spdlog::info("approvals: store {}", cfg.approvals.store);
  }
  if (!cfg.approvals.webhooks.empty()) {
    // The listener owns the Notifier, and the Service owns its listeners: the webhook threads
    // live exactly as long as the Service (stopped when it is destroyed).
    auto notifier = open_webhooks(cfg);
    // Local: with a shared (PostgreSQL) store, each change is sent once, by the node that made it.
    svc->on_change([notifier](const approvals::Request* r, const approvals::AccessRequest* a) { notifier->notify(r, a); },
                   approvals::Service::Changes::Local);
  }
  return svc;
}

}  // namespace gh::app
