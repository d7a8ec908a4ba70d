// The row-estimate guardrail (`max_rows_affected`). An UPDATE or DELETE that the policy allows,
// sent with the simple protocol to a target with a row limit, is first planned on the same
// backend session: the proxy holds the Query, waits until the backend has answered everything
// before it, sends `EXPLAIN (FORMAT JSON) <statement>`, keeps the answer from the client, and
// then forwards the Query, refuses it (over the limit: the limit's action, review or deny), or —
// when planning failed — gives the client the planner's error, which is the error the statement
// itself would have got. EXPLAIN without ANALYZE runs nothing; only statements the policy allows
// are planned, because planning can evaluate immutable functions.
//
// Not estimated (logged at info): extended-protocol statements (the plan needs the Bind values,
// and the batch cannot be interrupted without changing its transaction) and texts with several
// statements (a later statement's plan can depend on an earlier one's effects).
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/bytes.h"
#include "net/await.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace gh::proxy {

namespace {

constexpr std::size_t kMaxPlanBytes = 16u << 20;

std::string_view query_text(std::string_view body) {
  const auto nul = body.find('\0');
  return nul == std::string_view::npos ? body : body.substr(0, nul);
}

// Rows the ModifyTable nodes of a plan will change: for each, the estimate of its input.
double rows_changed(const nlohmann::json& node) {
  double total = 0;
  if (!node.is_object()) return 0;
  const auto plans = node.find("Plans");
  if (node.value("Node Type", "") == "ModifyTable") {
    if (plans != node.end() && plans->is_array() && !plans->empty())
      total += (*plans)[0].value("Plan Rows", 0.0);
    else
      total += node.value("Plan Rows", 0.0);
  }
  if (plans != node.end() && plans->is_array())
    for (const auto& child : *plans) total += rows_changed(child);
  return total;
}

std::optional<double> estimate_from_plan(const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_array() || doc.empty() || !doc[0].is_object()) return std::nullopt;
  const auto plan = doc[0].find("Plan");
  if (plan == doc[0].end()) return std::nullopt;
  return rows_changed(*plan);
}

}  // namespace

asio::awaitable<void> Session::wait_relay_signal() {
  relay_signal_.expires_at(asio::steady_timer::time_point::max());
  co_await relay_signal_.async_wait(net::use_tuple);
}

bool Session::needs_row_estimate(std::string_view body) {
  const auto limit = live_policy().row_limit(target_->name);
  if (!limit || limit->max_rows_affected == 0) return false;
  const auto a = front_analysis_ ? front_analysis_ : worker_.analyzer.analyze(query_text(body));
  for (const auto& st : a->statements)
    if (!st.writes.empty()) return true;
  return false;
}

asio::awaitable<std::optional<End>> Session::estimate_front_query() {
  // The Query is whole at the front of cin_ (the scan checked it).
  const std::uint32_t wire = load_be32(cin_.data() + 1) + 1;
  const std::string text(query_text(std::string_view(cin_.data() + 5, wire - 5)));
  front_estimated_ = true;  // from here on the scan judges and forwards it as usual
  const auto analysis = front_analysis_ ? front_analysis_ : worker_.analyzer.analyze(text);
  const auto limit = live_policy().row_limit(target_->name);
  if (!limit) co_return std::nullopt;
  sql::Analysis resolved;
  const sql::Analysis* judged = resolve_executes(*analysis, resolved) ? &resolved : analysis.get();
  if (!runs(decide(*judged))) co_return std::nullopt;  // refused as usual
  if (analysis->statements.size() != 1) {
    spdlog::info("session {}: row estimate skipped: {} statements in one text", id_, analysis->statements.size());
    co_return std::nullopt;
  }
  const sql::Statement& st = analysis->statements.front();

  while (inflight_ > 0 && !ending_) co_await wait_relay_signal();  // the backend answers in order
  if (ending_) co_return End{};
  if (auto stop = co_await capture_query("EXPLAIN (FORMAT JSON) " + st.text)) co_return std::move(*stop);

  if (explain_.error) {
    // Planning failed; running it would fail the same way. The client gets that error for it.
    if (auditing()) {
      auto e = audit_event(audit::EventType::Statement);
      e.statement = ++audit_seq_;
      e.protocol = 'Q';
      e.analysis = analysis;
      e.policy = policy_rt_ ? policy_rt_->config->policy : nullptr;
      e.decision = judge(*judged);
      e.outcome = "error";
      e.message = "not run: planning it for the row estimate (max_rows_affected) failed";
      audit_batch_.push_back(std::move(e));
    }
    metrics_.statements.fetch_add(1, std::memory_order_relaxed);
    cin_.consume(wire);
    front_estimated_ = false;
    front_analysis_.reset();
    const auto wec = co_await client_->write_all(explain_.error_bytes.data(), explain_.error_bytes.size());
    if (ending_) co_return End{};
    if (wec) co_return client_io_end(wec);
    co_return std::nullopt;
  }
  const auto rows = estimate_from_plan(explain_.json);
  if (!rows) {
    spdlog::warn("session {}: row estimate skipped: EXPLAIN gave a plan the proxy cannot read", id_);
    co_return std::nullopt;
  }
  last_row_estimate_ = std::int64_t(*rows);  // shown to the reviewer if the statement is held
  if (*rows <= double(limit->max_rows_affected)) co_return std::nullopt;

  policy::Decision d;
  d.action = limit->over_limit_action;
  d.rule = "policy.max_rows_affected";
  d.statement = 0;
  const std::string what = std::string(sql::kind_name(st.writes.front().kind)) + " on " + st.writes.front().relation;
  d.reason = fmt::format("{} would change about {:.0f} rows (EXPLAIN estimate), over the limit of {}", what, *rows,
                         limit->max_rows_affected);
  d.message = fmt::format("{} by rule \"policy.max_rows_affected\": {} would change about {:.0f} rows (the planner's "
                          "estimate), more than the limit of {} on target \"{}\"",
                          d.action == policy::Action::Deny ? "Denied" : "Review required", what, *rows,
                          limit->max_rows_affected, target_->name);
  d.hint = fmt::format("Narrow the WHERE clause, or change the rows in batches of at most {}.",
                       limit->max_rows_affected);
  if (d.action == policy::Action::Review && server_.approvals()) {
    // Over the limit with review: held for approval like any review decision (session_hold.cpp).
    co_return co_await hold_front_query(std::move(d));
  }
  std::string substitute;
  if (auditing()) audit_query('Q', analysis, d, true, text);
  refuse_statement(d, analysis.get(), 'Q', {}, substitute);
  metrics_.statements.fetch_add(1, std::memory_order_relaxed);
  statement_started();
  ++syncs_sent_;
  forwarded('Q');
  if (masker_) masker_->on_query(nullptr);
  cin_.consume(wire);
  front_estimated_ = false;
  front_analysis_.reset();
  const auto wec = co_await backend_->write_all(substitute.data(), substitute.size());
  if (ending_) co_return End{};
  if (wec) co_return backend_io_end(wec);
  co_return std::nullopt;
}

asio::awaitable<std::optional<End>> Session::capture_query(std::string sql) {
  std::string q;
  protocol::write_query(q, sql);
  explain_ = ExplainCapture{};
  explain_.active = true;
  if (auto wec = co_await backend_->write_all(q.data(), q.size()); wec) {
    explain_.active = false;
    co_return backend_io_end(wec);
  }
  while (!explain_.done && !ending_) co_await wait_relay_signal();
  explain_.active = false;
  if (ending_) co_return End{};
  co_return std::nullopt;
}

bool Session::capture_explain(std::string_view chunk, std::size_t& consumed) {
  rewrite_back_.clear();
  bool unused = false;
  auto ev = [&](const protocol::ScanEvent& e) { on_backend_event(e, unused); };
  const std::size_t n = chunk.size();
  std::size_t pos = 0;
  while (pos < n && !explain_.done) {
    if (!scanner_.at_boundary()) {  // an asynchronous message in progress (NOTIFY): pass it on
      const auto k = std::size_t(std::min<std::uint64_t>(scanner_.until_boundary(), n - pos));
      if (!scanner_.scan(chunk.substr(pos, k), ev)) return false;
      rewrite_back_.append(chunk.substr(pos, k));
      pos += k;
      continue;
    }
    if (n - pos < 5) break;
    const char type = chunk[pos];
    const std::uint32_t len = load_be32(chunk.data() + pos + 1);
    if (len < 4 || len > kMaxPlanBytes || !protocol::is_backend_type(type)) return false;
    if (n - pos < std::size_t(len) + 1) break;  // whole messages only; the caller makes room
    const std::string_view msg = chunk.substr(pos, std::size_t(len) + 1);
    const std::string_view body = msg.substr(5);
    switch (type) {
      case 'D':  // one row, one column: the plan as JSON text
        if (body.size() >= 6) {
          const auto vlen = std::int32_t(load_be32(body.data() + 2));
          if (vlen > 0 && std::size_t(vlen) <= body.size() - 6) explain_.json.append(body.substr(6, std::size_t(vlen)));
        }
        break;
      case 'E':
        explain_.error = true;
        explain_.error_bytes.append(msg);
        metrics_.statement_errors.fetch_add(1, std::memory_order_relaxed);
        break;
      case 'Z':
        if (explain_.error) explain_.error_bytes.append(msg);
        if (body.size() == 1) tx_status_ = body[0];
        explain_.done = true;
        relay_signal_.cancel();
        break;
      case 'T':
      case 'C':
      case 'I':
      case 'N':
        break;  // EXPLAIN's own row description, completion and notices stay with the proxy
      default:
        if (type == 'S') check_parameter_status(body);
        rewrite_back_.append(msg);  // asynchronous messages (NOTIFY, ParameterStatus) go on
        last_backend_type_ = type;
        break;
    }
    pos += msg.size();
  }
  consumed = pos;
  return true;
}

}  // namespace gh::proxy
