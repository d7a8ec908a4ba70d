// The policy phase of a session: every Query, Parse and FunctionCall is analysed and judged
// before it is forwarded. A refused statement never reaches the database. In its place the
// backend gets a substitute that fails at once with a syntax error naming this session's nonce
// ("gatehouse_blocked_<nonce>"): the backend then does exactly what it does for any failing
// statement — aborts the transaction block if one is open, skips the rest of an extended-protocol
// batch until Sync, answers ReadyForQuery with the right status — so the client's and the
// backend's view of the session stay the same. When the backend's ErrorResponse for the
// substitute comes back, the relay replaces it with the policy's ErrorResponse (42501).
// See docs/adr/0004-refusing-statements.md.
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/bytes.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace gh::proxy {

namespace {

constexpr std::size_t kMaxPreparedNames = 10000;

// Fast-path (FunctionCall) targets are function OIDs. Built-in functions have fixed OIDs in
// every PostgreSQL release since 9.x; these are the ones clients use through the fast path
// (libpq's large-object API). Anything else is judged as an unknown function: opaque.
struct FastPathFunction {
  std::uint32_t oid;
  const char* name;
  bool server_file;
};
constexpr FastPathFunction kFastPath[] = {
    {715, "lo_create", false},     {764, "lo_import", true},      {765, "lo_export", true},
    {767, "lo_import", true},      {952, "lo_open", false},       {953, "lo_close", false},
    {954, "loread", false},        {955, "lowrite", false},       {956, "lo_lseek", false},
    {957, "lo_creat", false},      {958, "lo_tell", false},       {964, "lo_unlink", false},
    {1004, "lo_truncate", false},  {3170, "lo_lseek64", false},   {3171, "lo_tell64", false},
    {3172, "lo_truncate64", false}, {3457, "lo_from_bytea", false}, {3458, "lo_get", false},
    {3459, "lo_get", false},       {3460, "lo_put", false},
};

sql::Analysis function_call_analysis(std::uint32_t oid) {
  sql::Statement st;
  st.kinds.push_back(sql::StatementKind::FunctionCall);
  bool known = false;
  for (const auto& f : kFastPath) {
    if (f.oid != oid) continue;
    st.functions.emplace_back(f.name);
    st.server_file_access = f.server_file;
    known = true;
    break;
  }
  if (!known) {
    st.functions.push_back(fmt::format("oid:{}", oid));
    st.opaque_code = true;  // we cannot see what it does
  }
  st.text = fmt::format("<fast-path function call {}>", known ? st.functions.front() : st.functions.front());
  sql::Analysis a;
  a.statements.push_back(std::move(st));
  return a;
}

std::string c_string_at(std::string_view body, std::size_t& pos, bool& ok) {
  const auto nul = body.find('\0', pos);
  if (nul == std::string_view::npos) {
    ok = false;
    return {};
  }
  std::string s(body.substr(pos, nul - pos));
  pos = nul + 1;
  return s;
}

std::string make_nonce() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

}  // namespace

const policy::Policy& Session::live_policy() {
  const auto gen = server_.generation();
  if (!policy_rt_ || gen != policy_generation_) {
    policy_rt_ = server_.runtime();
    policy_generation_ = gen;
  }
  return *policy_rt_->config->policy;
}

policy::Decision Session::decide(const sql::Analysis& analysis) {
  policy::Request req;
  req.identity = &identity_;
  req.target = target_->name;
  req.environment = target_->environment;
  req.database = target_->backend_database(database_);
  req.client_address = client_address_;
  req.analysis = &analysis;
  req.now = std::chrono::system_clock::now();
  return live_policy().evaluate(req);
}

bool Session::judge_client_message(char type, std::string_view body, std::string& substitute) {
  std::shared_ptr<const sql::Analysis> analysis;
  sql::Analysis local;
  std::string statement_name;
  bool ok = true;
  if (type == 'Q') {
    std::size_t pos = 0;
    const std::string text = c_string_at(body, pos, ok);
    if (ok) analysis = worker_.analyzer.analyze(text);
  } else if (type == 'P') {
    std::size_t pos = 0;
    statement_name = c_string_at(body, pos, ok);
    if (ok) {
      const std::string text = c_string_at(body, pos, ok);
      if (ok) analysis = worker_.analyzer.analyze(text);
    }
  } else if (type == 'F') {
    if (body.size() < 4) {
      ok = false;
    } else {
      local = function_call_analysis(load_be32(body.data()));
    }
  }
  const sql::Analysis* a = analysis ? analysis.get() : (ok && type == 'F' ? &local : nullptr);
  if (!ok || !a) {
    // A message whose text we cannot read is not forwarded (the decoder accepted its frame, so
    // this is a missing terminator): treat it as unknown input.
    policy::Decision d;
    d.action = policy::Action::Deny;
    d.rule = "policy.unknown_action";
    d.message = "the statement could not be read by the proxy (malformed message), so it was not run";
    d.reason = "malformed statement message";
    refuse_statement(d, nullptr, type, statement_name, substitute);
    return false;
  }

  // EXECUTE of a statement prepared with SQL PREPARE: judge what was prepared.
  const sql::Analysis* judged = a;
  if (a->statements.size() == 1 && !a->statements[0].kinds.empty() &&
      a->statements[0].kinds[0] == sql::StatementKind::Execute) {
    if (auto it = prepared_.find(a->statements[0].object_name); it != prepared_.end()) judged = it->second.get();
  }

  const policy::Decision d = decide(*judged);
  if (a->error) metrics_.statements_unknown.fetch_add(1, std::memory_order_relaxed);
  if (d.action == policy::Action::Allow) {
    for (const auto& st : a->statements) {
      if (st.kinds.empty()) continue;
      if (st.kinds[0] == sql::StatementKind::Prepare && !st.object_name.empty()) {
        if (prepared_.size() >= kMaxPreparedNames) prepared_.erase(prepared_.begin());
        // One text may hold several statements; the prepared one is judged on its own later.
        auto single = std::make_shared<sql::Analysis>();
        single->statements.push_back(st);
        prepared_[st.object_name] = std::move(single);
      } else if (st.kinds[0] == sql::StatementKind::Discard) {
        prepared_.clear();
      }
    }
    if (!d.would_have.empty())
      for (const auto& dr : d.would_have)
        spdlog::info("session {}: {} audit_only rule \"{}\" would have {}: {}", id_, identity_.subject, dr.rule,
                     policy::action_name(dr.action), dr.reason);
    return true;
  }
  refuse_statement(d, a, type, statement_name, substitute);
  return false;
}

void Session::refuse_statement(const policy::Decision& d, const sql::Analysis* analysis, char type,
                               std::string_view name, std::string& substitute) {
  protocol::ErrorFields e;
  e.severity = "ERROR";
  e.sqlstate = "42501";
  e.message = d.message.empty() ? "statement refused by the proxy's policy" : d.message;
  e.hint = d.hint;
  switch (d.action) {
    case policy::Action::Review:
      metrics_.statements_reviewed.fetch_add(1, std::memory_order_relaxed);
      // Approvals are not built yet: a statement that needs one is refused (fail closed).
      e.message += " (approval required, and this proxy has no approval workflow yet)";
      if (e.hint.empty()) e.hint = "ask an administrator to run it, or change the policy";
      break;
    case policy::Action::Mask:
      // Masking is not built yet: a statement whose results would be masked is refused.
      e.message += " (its results must be masked, and this proxy cannot mask yet)";
      if (e.hint.empty()) e.hint = "select columns that are not classified as sensitive";
      break;
    default:
      break;
  }
  if (!d.rule.empty()) e.detail = "rule: " + d.rule;
  metrics_.statements_blocked.fetch_add(1, std::memory_order_relaxed);
  std::string what = "statement";
  if (analysis && d.statement >= 0 && std::size_t(d.statement) < analysis->statements.size())
    what = analysis->statements[std::size_t(d.statement)].normalized;
  spdlog::warn("session {}: {} refused by {} ({}): {} [{}]", id_, identity_.subject,
               d.rule.empty() ? std::string("the default action") : d.rule, policy::action_name(d.action), d.reason,
               what);

  if (nonce_.empty()) nonce_ = make_nonce();
  const std::string marker = "gatehouse_blocked_" + nonce_;
  substitute.clear();
  if (type == 'P') {
    std::string body(name);
    body.push_back('\0');
    body += marker;
    body.push_back('\0');
    body.append(2, '\0');  // no parameter types
    protocol::write_message(substitute, 'P', body);
  } else {
    protocol::write_query(substitute, marker);  // Query and FunctionCall: one ReadyForQuery each
  }
  refusals_.push_back(Refusal{syncs_sent_, std::move(e)});
}

}  // namespace gh::proxy
