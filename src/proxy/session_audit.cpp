// The audit phase of a session: what the client did, as events for the audit trail.
//
// Statement events are made while the client's batch is scanned and sent before the batch is
// forwarded; on a target whose audit durability is `required` the batch waits until the trail
// has stored them, and if it cannot, every statement of the batch is replaced by a substitute
// that fails with the audit error (as policy refusals are, see session_policy.cpp), so nothing
// unrecorded runs. How each statement ended (rows, duration, SQLSTATE) is matched from the
// backend's answers in order: a simple Query ends at its ReadyForQuery, an Execute at its
// CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse; Executes that the
// backend skipped after an error in their batch end, unrun, at the Sync's ReadyForQuery.
#include <algorithm>
#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "audit/trail.h"
#include "base/bytes.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace gh::proxy {

namespace {

constexpr std::size_t kMaxPortals = 10000;
// Executes kept for their batch's end (their records, 1-2.5 KB each); beyond, recorded at once with
// a message that their batch's commit was still to come (found by adversarial testing: at 1,000
// JDBC batches lost the fact; at 100,000 one session without Sync held hundreds of MB, and with
// its Executes also the audit intents every session uses).
constexpr std::size_t kMaxBatchDone = 10000;
constexpr std::size_t kKeptBody = 4096;  // of a long ErrorResponse, enough for SQLSTATE and message

// "INSERT 0 5", "UPDATE 3", "SELECT 10", "COPY 7" -> the count; -1 when the tag has none.
std::int64_t tag_rows(std::string_view tag) {
  if (!tag.empty() && tag.back() == '\0') tag.remove_suffix(1);
  const auto sp = tag.rfind(' ');
  if (sp == std::string_view::npos) return -1;
  std::int64_t n = -1;
  const auto digits = tag.substr(sp + 1);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  return ec == std::errc() && p == digits.data() + digits.size() ? n : -1;
}

}  // namespace

void Session::audit_begin() {
  auto* trail = server_.audit();
  if (!trail || !target_) return;
  auto ctx = std::make_shared<audit::SessionContext>();
  ctx->session = id_;
  ctx->identity = identity_;
  ctx->user = startup_user_;
  ctx->client_address = client_address_;
  ctx->target = target_->name;
  ctx->environment = target_->environment;
  ctx->database = target_->backend_database(database_);
  ctx->application_name = application_name_;
  ctx->tls = client_->tls_description();
  audit_ctx_ = std::move(ctx);
  audit_required_ = target_->audit_durability.value_or(rt_->config->audit.durability) == config::AuditDurability::Required;
}

audit::Event Session::audit_event(audit::EventType type) const {
  audit::Event e;
  e.type = type;
  e.time = std::chrono::system_clock::now();
  e.session = audit_ctx_;
  return e;
}

void Session::audit_connect_failed(const protocol::ErrorFields& err, const std::string& why) {
  auto* trail = server_.audit();
  if (!trail || relay_started_ || connect_failed_recorded_) return;
  connect_failed_recorded_ = true;
  auto ctx = std::make_shared<audit::SessionContext>();
  ctx->session = id_;
  ctx->identity = identity_;
  ctx->user = startup_user_;
  ctx->client_address = client_address_;
  if (target_) {
    ctx->target = target_->name;
    ctx->environment = target_->environment;
  }
  ctx->database = database_;
  ctx->application_name = application_name_;
  ctx->tls = client_->tls_description();
  trail->submit(audit::connect_failed_event(std::move(ctx), err.sqlstate,
                                            why.empty() ? err.message : why + ": " + err.message));
}

void Session::audit_disconnect() {
  auto* trail = server_.audit();
  if (!trail || !audit_ctx_) return;
  // Statements still running when the session ended: their outcome is the session's end.
  while (!audit_pending_.empty()) {
    auto& p = audit_pending_.front();
    const bool statement = p.kind != AuditPending::Kind::Sync && !p.refused;  // one that was sent to run
    if (statement && p.failed) {
      // The server answered it with an error before the end (a FATAL such as 57P01 from
      // pg_terminate_backend or a server shutdown): it did not complete, as its ReadyForQuery
      // would have said.
      audit_complete(p, "error");
    } else if (statement) {
      auto r = p.event ? std::move(*p.event) : audit_event(audit::EventType::Result);
      r.statement = p.statement;
      // The server may well have finished it (a client that leaves does not stop a running
      // statement): not known (found by adversarial testing: a committed INSERT said error).
      r.outcome = "unknown";
      r.sqlstate = end_.to_client ? end_.to_client->sqlstate : "08006";
      r.message = "the session ended before the statement's answer came (" + end_.log +
                  "): whether it completed is not known";
      r.rows = p.rows;
      // Rows it had returned when the session ended (a client leaving mid-result): they left the
      // database (only the first statement in line was answering).
      if (const auto streamed = std::exchange(data_rows_, 0); streamed > 0)
        r.rows = std::max<std::int64_t>(r.rows, 0) + std::int64_t(streamed);
      r.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - p.start).count();
      audit_results_.push_back(std::move(r));
    }
    data_rows_ = 0;
    audit_pending_.pop_front();
  }
  // Executes that ended well in a batch whose ReadyForQuery never came: committed or not is unknown.
  for (auto& r : batch_done_) {
    r.outcome = "unknown";
    r.message = "the session ended before the end of this statement's batch: whether its transaction committed is "
                "not known";
    audit_results_.push_back(std::move(r));
  }
  batch_done_.clear();
  auto e = audit_event(audit::EventType::Disconnect);
  e.message = end_.log;
  if (end_.to_client) e.sqlstate = end_.to_client->sqlstate;
  audit_results_.push_back(std::move(e));
  trail->submit(std::move(audit_results_), {});
  audit_results_.clear();
}

void Session::audit_query(char type, const std::shared_ptr<const sql::Analysis>& analysis, const policy::Decision& d,
                          bool refused, std::string_view text) {
  audit_query(type, analysis, std::make_shared<const policy::Decision>(d), refused, text);
}

void Session::audit_query(char type, const std::shared_ptr<const sql::Analysis>& analysis,
                          std::shared_ptr<const policy::Decision> decision, bool refused, std::string_view text) {
  const policy::Decision& d = *decision;
  auto e = audit_event(audit::EventType::Statement);
  e.statement = ++audit_seq_;
  e.protocol = type;
  e.analysis = analysis;
  // Unread, or no statement at all (only comments or semicolons): the text as sent (it was
  // recorded empty; found by adversarial testing).
  if (!analysis || analysis->error || analysis->statements.empty()) e.text = text;
  e.policy = policy_rt_ ? policy_rt_->config->policy : nullptr;
  e.decision = std::move(decision);
  if (refused) {
    e.outcome = "refused";
    e.sqlstate = policy::refusal_sqlstate(d);  // a refused statement has no Result record: its own says it
  }
  audit_batch_.push_back(std::move(e));
  AuditPending p;
  p.kind = AuditPending::Kind::Query;
  p.refused = refused;
  p.statement = audit_seq_;
  p.start = Clock::now();
  audit_pending_.push_back(std::move(p));
}

std::string_view Session::query_text_of(char type, std::string_view body) {
  std::size_t pos = 0;
  bool ok = true;
  if (type == 'P') protocol::c_string_at(body, pos, ok);  // statement name
  if (type != 'Q' && type != 'P') return {};
  const auto text = ok ? protocol::c_string_at(body, pos, ok) : std::string_view();
  return ok ? text : body.substr(pos);
}

void Session::audit_refused_text(char type, std::string_view body, const policy::Decision& d) {
  const auto text = query_text_of(type, body);
  if (type == 'P')
    audit_parse_refused(nullptr, d, text);
  else
    audit_query(type, nullptr, d, true, type == 'F' ? std::string_view("<fast-path function call>") : text);
}

void Session::audit_parse_refused(const std::shared_ptr<const sql::Analysis>& analysis, const policy::Decision& d,
                                  std::string_view text) {
  auto e = audit_event(audit::EventType::Statement);
  e.statement = ++audit_seq_;
  e.protocol = 'P';
  e.analysis = analysis;
  if (!analysis || analysis->error) e.text = text;
  e.policy = policy_rt_ ? policy_rt_->config->policy : nullptr;
  e.decision = std::make_shared<const policy::Decision>(d);
  e.outcome = "refused";
  e.sqlstate = policy::refusal_sqlstate(d);
  audit_batch_.push_back(std::move(e));
}

void Session::audit_bind(std::string_view body) {
  std::size_t pos = 0;
  bool ok = true;
  const auto portal = server_name(protocol::c_string_at(body, pos, ok));
  const auto name = server_name(ok ? protocol::c_string_at(body, pos, ok) : std::string_view());
  if (!ok) return;
  auto it = portals_.find(portal);
  if (it == portals_.end()) {
    // Named portals end with their transaction (audit_portals_at_ready); when the map is full
    // anyway, those of earlier batches go (JDBC names a new portal for every cursor; the 10,001st
    // lost its text, found by adversarial testing).
    if (portals_.size() >= kMaxPortals) portals_.clear();
    it = portals_.emplace(std::string(portal), Portal{}).first;
  } else if (!portal.empty()) {
    // A named portal that is still open: the server refuses this Bind (42P03) and keeps the open
    // one, which a ROLLBACK TO can make usable again; its Executes are that portal's (found by
    // adversarial testing: an UPDATE's rows were recorded as a harmless SELECT's).
    return;
  }
  Portal& p = it->second;
  p.group = syncs_sent_;
  p.params.clear();
  p.binary = false;
  if (auto s = statements_.find(name); s != statements_.end()) {
    p.analysis = s->second.analysis;
    p.decision = s->second.decision;
  } else if (bound_sql_prepared_.analysis) {  // prepared with SQL PREPARE, judged as EXECUTE of it
    p.analysis = std::move(bound_sql_prepared_.analysis);
    p.decision = std::move(bound_sql_prepared_.decision);
    bound_sql_prepared_ = {};
  } else {
    // Prepared with SQL PREPARE, or beyond what the session keeps: known by name only.
    p.analysis.reset();
    p.decision.reset();
  }
  if (rt_->config->audit.parameters == config::Audit::Params::None) return;
  read_param_values(body, pos, p.params, p.binary);
}

// Parameter format codes, then the values: the layout Bind and FunctionCall share. Binary values
// are recorded by size. Stops at a malformed value (what was read stays).
void Session::read_param_values(std::string_view body, std::size_t pos, std::vector<std::optional<std::string>>& out,
                                bool& binary) {
  if (body.size() < pos + 2) return;
  const std::uint16_t nfmt = load_be16(body.data() + pos);
  pos += 2;
  if (body.size() < pos + 2u * nfmt + 2) return;
  const char* fmts = body.data() + pos;
  pos += 2u * nfmt;
  const std::uint16_t nparams = load_be16(body.data() + pos);
  pos += 2;
  out.reserve(nparams);
  for (std::uint16_t i = 0; i < nparams; ++i) {
    if (body.size() < pos + 4) return;
    const auto len = std::int32_t(load_be32(body.data() + pos));
    pos += 4;
    if (len < 0) {
      out.emplace_back(std::nullopt);
      continue;
    }
    if (body.size() < pos + std::size_t(len)) return;
    const std::uint16_t fmt = nfmt == 0 ? 0 : load_be16(fmts + 2 * (nfmt == 1 ? 0 : std::min<std::uint16_t>(i, nfmt - 1)));
    if (fmt == 1) {
      binary = true;
      out.emplace_back(audit::binary_param(std::size_t(len)));
    } else {
      out.emplace_back(std::string(body.substr(pos, std::size_t(len))));
    }
    pos += std::size_t(len);
  }
}

void Session::audit_execute(std::string_view body) {
  // After a refusal in its batch the backend skips it (the refusal is the batch's record): a
  // record of it would name a statement that never ran, with values of the one that was refused.
  if (refused_in_batch_) return;
  std::size_t pos = 0;
  bool ok = true;
  const auto portal = server_name(protocol::c_string_at(body, pos, ok));
  if (!ok) return;
  auto e = audit_event(audit::EventType::Statement);
  e.statement = ++audit_seq_;
  e.protocol = 'E';
  e.policy = policy_rt_ ? policy_rt_->config->policy : nullptr;
  if (cursor_execute_.analysis && cursor_execute_.name == portal) {
    // Judged as a read of the SQL cursor of that name (rejudge_execute): recorded as that FETCH,
    // whatever protocol portal of the name the proxy still keeps (a SQL CLOSE closes those too;
    // found by adversarial testing: recorded as a harmless SELECT bound earlier under the name).
    e.analysis = std::move(cursor_execute_.analysis);
    e.decision = std::move(cursor_execute_.decision);
    e.text = "FETCH (protocol Execute) " + std::string(portal);
  } else if (auto it = portals_.find(portal); it != portals_.end()) {
    const Portal& p = it->second;
    // EXECUTE and FETCH with what they run, as over the simple protocol (found by adversarial
    // testing: recorded with no tables, kinds or tags, searches by table missed them).
    e.analysis = recorded_analysis(p.analysis);
    if (e.analysis != p.analysis)  // the text as sent (EXECUTE x(...)), not what it runs
      for (const auto& st : p.analysis->statements) e.text += (e.text.empty() ? "" : "; ") + st.text;
    e.decision = p.decision;  // shared, not copied, per Execute
    e.params = p.params;
    e.params_binary = p.binary;
    if (!p.analysis) e.text = fmt::format("<portal \"{}\" of a statement prepared with SQL PREPARE>", portal);
  } else {
    e.text = fmt::format("<portal \"{}\" not bound in this session>", portal);
  }
  audit_batch_.push_back(std::move(e));
  AuditPending p;
  p.kind = AuditPending::Kind::Execute;
  p.statement = audit_seq_;
  p.start = Clock::now();
  if (body.size() >= pos + 4) p.max_rows = load_be32(body.data() + pos);
  audit_pending_.push_back(std::move(p));
}

void Session::audit_execute_refused(std::string_view body, const policy::Decision& d, std::string_view sqlstate) {
  const auto events = audit_batch_.size();
  const bool refused_before = std::exchange(refused_in_batch_, false);
  audit_execute(body);
  refused_in_batch_ = refused_before;
  if (audit_batch_.size() == events) return;  // malformed: nothing recorded by audit_execute either
  auto& e = audit_batch_.back();
  e.decision = std::make_shared<const policy::Decision>(d);
  e.outcome = "refused";
  e.sqlstate = std::string(sqlstate);
  audit_pending_.back().refused = true;
}

void Session::audit_sync() {
  AuditPending p;
  p.kind = AuditPending::Kind::Sync;
  audit_pending_.push_back(std::move(p));
}

void Session::audit_sync_ignored() {
  // The first Sync after the COPY's Execute (which leads the line now) gets no ReadyForQuery (see
  // copy_in_started); Syncs of batches sent after it are answered (it took the newest: with a
  // second COPY in the pipeline, that one's, and records shifted; found by adversarial testing).
  for (auto it = audit_pending_.begin(); it != audit_pending_.end(); ++it)
    if (it->kind == AuditPending::Kind::Sync) {
      audit_pending_.erase(it);
      return;
    }
}

void Session::audit_portals_at_ready() {
  const std::uint64_t ended = ready_seen_;  // as portals_at_ready
  std::erase_if(portals_, [&](const auto& kv) { return !kv.first.empty() && kv.second.group <= ended; });
}

void Session::audit_close_portal(std::string_view name) {
  if (auto it = portals_.find(name); it != portals_.end() && !name.empty()) portals_.erase(it);
}

void Session::audit_complete(AuditPending& p, const char* outcome) {
  if (p.refused) return;
  // One record per statement: its own, now with the outcome; or a Result naming it.
  auto r = p.event ? std::move(*p.event) : audit_event(audit::EventType::Result);
  r.statement = p.statement;
  r.outcome = outcome;
  if (p.failed) {
    r.outcome = p.sqlstate == "57014" ? "cancelled" : "error";
    r.sqlstate = std::move(p.sqlstate);
  }
  if (!p.message.empty()) r.message = std::move(p.message);
  r.masked = std::move(p.masked);
  r.rows = p.rows;
  r.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - p.start).count();
  // An Execute that ended well waits for its batch's end: the commit at Sync can still fail.
  if (p.kind == AuditPending::Kind::Execute && r.outcome == "ok") {
    if (batch_done_.size() < kMaxBatchDone) {
      batch_done_.push_back(std::move(r));
      return;
    }
    r.message = "recorded before the end of its batch (over 10,000 Executes before Sync): if the commit at "
                "Sync failed, its changes were rolled back";
  }
  audit_results_.push_back(std::move(r));
}

void Session::audit_skipped(std::uint32_t n, bool just_forwarded) {
  batch_failed_ = true;
  constexpr const char* kNotRun = "not run: an earlier message of its batch failed";
  if (just_forwarded && !audit_pending_.empty() && audit_pending_.back().kind == AuditPending::Kind::Query) {
    // The Query just scanned, after the error came: its Statement record is not written yet and
    // says so itself.
    auto& p = audit_pending_.back();
    if (!audit_batch_.empty() && audit_batch_.back().statement == p.statement && !p.refused) {
      auto& e = audit_batch_.back();
      e.outcome = "not_run";
      e.message = kNotRun;
      if (p.event && p.event->intent) server_.audit()->forget_intent(*p.event);  // its Result-to-be
    }
    audit_pending_.pop_back();
    return;
  }
  // The first n Queries still pending (all before the batch's Sync) were skipped by the backend
  // after an error in an extended-protocol message before them.
  for (auto it = audit_pending_.begin(); it != audit_pending_.end() && n > 0;) {
    if (it->kind == AuditPending::Kind::Sync) break;
    if (it->kind != AuditPending::Kind::Query) {
      ++it;
      continue;
    }
    AuditPending p = std::move(*it);
    it = audit_pending_.erase(it);
    --n;
    p.failed = false;  // an error that arrived while it was first in line was not its own
    p.sqlstate.clear();
    if (!p.refused) p.message = kNotRun;
    audit_complete(p, "not_run");
  }
}

void Session::audit_backend(char type, std::string_view body, const protocol::ErrorFields* refusal) {
  auto complete = [&](AuditPending& p, const char* outcome) { audit_complete(p, outcome); };
  auto batch_ended = [&](const std::string* commit_error_sqlstate, const std::string* commit_error) {
    for (auto& r : batch_done_) {
      if (commit_error_sqlstate) {
        r.outcome = "error";
        r.sqlstate = *commit_error_sqlstate;
        r.message = *commit_error;
      }
      audit_results_.push_back(std::move(r));
    }
    batch_done_.clear();
  };
  using K = AuditPending::Kind;
  AuditPending* head = audit_pending_.empty() ? nullptr : &audit_pending_.front();
  const std::uint64_t streamed = std::exchange(data_rows_, 0);
  if (masker_ && (type == 'C' || type == 'E' || type == 'I' || type == 's' || type == 'Z')) {
    // The columns masking masked in what this statement returned (noted as its rows came).
    auto masked = masker_->take_masked();
    if (head && head->kind != AuditPending::Kind::Sync)
      for (auto& c : masked)
        if (std::find(head->masked.begin(), head->masked.end(), c) == head->masked.end())
          head->masked.push_back(std::move(c));
  }
  switch (type) {
    case 'C': {
      if (!head) return;
      const auto n = tag_rows(body);
      if (body.substr(0, 9) == std::string_view("ROLLBACK\0", 9) && head->message.empty() && head->event &&
          head->event->analysis) {
        // COMMIT (or END) of a failed transaction answers ROLLBACK: the record says so.
        for (const auto& st : head->event->analysis->statements)
          // COMMIT, END and COMMIT AND CHAIN (which opens a new block), not COMMIT PREPARED.
          if (!st.kinds.empty() && st.kinds.front() == sql::StatementKind::Commit && st.transaction_block != 0) {
            head->message = "the transaction had failed: the server rolled it back instead of committing (command tag ROLLBACK)";
            break;
          }
      }
      if (head->kind == K::Query) {
        if (n >= 0) head->rows = std::max<std::int64_t>(head->rows, 0) + n;
      } else if (head->kind == K::Execute) {
        head->rows = n;
        complete(*head, "ok");
        audit_pending_.pop_front();
      }
      break;
    }
    case 'I':
    case 's':
      if (head && head->kind == K::Execute) {
        if (type == 'I') head->rows = 0;
        if (type == 's') head->rows = head->max_rows;  // suspended after exactly the rows asked for
        complete(*head, "ok");
        audit_pending_.pop_front();
      }
      break;
    case 'E': {
      if (!head) return;
      std::string sqlstate, message;
      if (!refusal) {
        // Only the first kKeptBody bytes of a long one are kept (found by adversarial testing:
        // a long message lost the SQLSTATE too).
        auto f = protocol::parse_error_prefix(body);
        sqlstate = std::move(f.sqlstate);
        message = std::move(f.message);
      } else {
        sqlstate = refusal->sqlstate;
        message = refusal->message;
      }
      if (head->kind == K::Sync) {
        // After every Execute of the batch: the implicit commit at Sync failed (a deferred
        // constraint, a serialization failure), or a Parse, Bind or Describe sent after them did
        // (those are not tracked here); either way their changes are gone. The message says both
        // (it named the commit alone, which misled for a later Parse's syntax error: found by
        // differential testing).
        if (!batch_done_.empty() && !batch_failed_) {
          const std::string why =
              "its batch failed after it ran (the commit at Sync, or a later message of the batch), so this "
              "statement's changes were rolled back: " + message;
          batch_ended(&sqlstate, &why);
        }
        batch_failed_ = true;
        return;
      }
      head->failed = true;
      head->sqlstate = std::move(sqlstate);
      head->message = std::move(message);
      // Rows it had returned before the error (a cancelled SELECT): they left the database.
      if (streamed > 0) head->rows = std::max<std::int64_t>(head->rows, 0) + std::int64_t(streamed);
      if (head->kind == K::Execute) {
        if (!batch_failed_) batch_error_ = head->sqlstate;
        complete(*head, "error");
        audit_pending_.pop_front();
        batch_failed_ = true;
      } else if (!batch_done_.empty() && !batch_failed_ && head->event && head->event->analysis) {
        // A Query after Executes sent with Flush, not Sync, runs in their implicit transaction:
        // failing, it rolls their changes back too (unless it ended that transaction itself).
        bool control = false;
        for (const auto& st : head->event->analysis->statements) control |= st.transaction_control;
        if (!control) {
          batch_error_ = head->sqlstate;
          batch_failed_ = true;
        }
      }
      break;
    }
    case 'Z':
      while (!audit_pending_.empty()) {
        AuditPending p = std::move(audit_pending_.front());
        audit_pending_.pop_front();
        if (p.kind == K::Execute) {
          if (!p.refused) p.message = "not run: an earlier message of its batch failed";
          complete(p, "not_run");
          continue;
        }
        if (p.kind == K::Query) complete(p, "ok");
        break;
      }
      if (batch_failed_ && !batch_done_.empty() && tx_status_ == 'I') {  // tx_status_: this ReadyForQuery's
        // Executes of a batch outside a transaction block run in one implicit transaction,
        // committed at Sync: an Execute that failed after them rolled theirs back (found by
        // adversarial testing: pipelined INSERTs before a failing one were recorded as committed).
        // Unless the batch itself holds transaction control (BEGIN ... COMMIT), which leaves
        // what was committed by it committed: those stay as they ended.
        bool control = false;
        for (const auto& r : batch_done_)
          if (r.analysis)
            for (const auto& st : r.analysis->statements) control |= st.transaction_control;
        if (!control) {
          const std::string why =
              "its batch ran as one implicit transaction and a later statement of it failed (" + batch_error_ +
              "), so this statement's changes were rolled back";
          batch_ended(&batch_error_, &why);
          batch_failed_ = false;
          break;
        }
      }
      batch_ended(nullptr, nullptr);
      batch_failed_ = false;
      break;
    default:
      break;
  }
}

void Session::audit_flush_results() {
  if (audit_results_.empty()) return;
  auto* trail = server_.audit();
  if (audit_required_ && trail->inline_writes()) {
    // On this thread, like the statements: no thread switch, and the chain keeps the session's
    // order. A failure is the store's: the records are kept in the journal or refused, and the
    // next statement is refused with the same error.
    (void)trail->write_now(std::move(audit_results_), true);
  } else {
    trail->submit(std::move(audit_results_), {});
  }
  audit_results_.clear();
}

asio::awaitable<std::optional<Error>> Session::audit_wait(std::vector<audit::Event> events) {
  auto* trail = server_.audit();
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>, void(std::optional<Error>)>(
      [trail, ex](auto handler, std::vector<audit::Event> evs) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        trail->submit(std::move(evs), [h, ex](const Error* err) {
          std::optional<Error> e;
          if (err) e = *err;
          asio::post(ex, [h, e = std::move(e)]() mutable { (*h)(std::move(e)); });
        });
      },
      asio::use_awaitable, std::move(events));
}

void Session::audit_intend(std::vector<audit::Event>& events) {
  // Statements about to run leave the batch for their pending entry, with an intent in the trail:
  // their one record is written when they end. Those the trail has no slot for (or while it is
  // failing) stay in the batch and are recorded now, with a Result record when they end.
  auto* trail = server_.audit();
  if (!trail->intents()) return;
  auto p = audit_pending_.begin();
  std::size_t keep = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    auto& e = events[i];
    bool moved = false;
    if (e.type == audit::EventType::Statement && e.outcome.empty()) {
      while (p != audit_pending_.end() && (p->kind == AuditPending::Kind::Sync || p->statement < e.statement)) ++p;
      if (p != audit_pending_.end() && p->statement == e.statement && !p->refused && !p->event) {
        if (trail->intend(e)) {
          p->event = std::move(e);
          moved = true;
        } else {
          // Recorded now, before it runs (too large for a slot): its Result record-to-be takes a
          // slot instead, so a proxy killed while it runs records its outcome as unknown at the
          // next start (found by adversarial testing: no outcome at all).
          auto r = audit_event(audit::EventType::Result);
          r.statement = e.statement;
          if (trail->intend(r)) p->event = std::move(r);
        }
      }
    }
    if (!moved) {
      if (keep != i) events[keep] = std::move(e);
      ++keep;
    }
  }
  events.resize(keep);
}

asio::awaitable<void> Session::audit_submit_batch(bool& rewritten, std::size_t pos) {
  auto events = std::move(audit_batch_);
  audit_batch_.clear();
  auto* trail = server_.audit();
  audit_intend(events);
  if (events.empty()) co_return;
  if (!audit_required_) {
    trail->submit(std::move(events), {});
    co_return;
  }
  if (trail->inline_writes() && !audit_results_.empty()) {
    // Results of earlier statements first, so the chain keeps this session's order; written as
    // what already happened (kept for the journal if it is full), apart from the statements.
    (void)trail->write_now(std::move(audit_results_), true);
    audit_results_.clear();
  }
  auto err = co_await audit_durable(std::move(events));
  if (err && !ending_) refuse_batch_for_audit(*err, rewritten, pos);
}

asio::awaitable<std::optional<Error>> Session::audit_durable(std::vector<audit::Event> events) {
  auto* trail = server_.audit();
  if (!trail->inline_writes()) co_return co_await audit_wait(std::move(events));
  auto r = trail->write_now(std::move(events));
  if (!r) co_return std::move(r.error());
  co_return std::nullopt;
}

std::string Session::audit_refusal_sqlstate(const Error& error) {
  // The journal full (53100) and the trail closing (53400) as they are; anything a store said
  // (a PostgreSQL sink's 08006 from its own connection, which pools read as this connection
  // failing: found by adversarial testing) is the documented 58030.
  if (error.sqlstate == "53100" || error.sqlstate == "53400") return error.sqlstate;
  return "58030";
}

void Session::refuse_batch_for_audit(const Error& error, bool& rewritten, std::size_t pos) {
  // At most one line a second per worker: while the trail fails, every statement of every
  // session is refused, and the trail logs the failure itself.
  if (const auto held = worker_.audit_refusal_log.admit())
    spdlog::error("session {}: statements refused: {}{}", id_, error.message,
                  *held > 0 ? fmt::format(" ({} more batches refused since the last such line)", *held) : "");
  const std::string out = rewritten ? std::move(rewrite_) : std::string(cin_.data(), pos);
  rewrite_.clear();
  rewritten = true;
  policy::Decision d;
  d.action = policy::Action::Deny;
  d.rule = "audit.required";
  d.reason = error.message;
  d.message = "statement not run: the audit trail could not record it (" + error.message + ")";
  d.hint = "this target runs statements only once they are recorded; ask the operator to check the audit store";
  d.sqlstate = audit_refusal_sqlstate(error);
  std::string_view view(out);
  std::size_t at = 0;
  std::string substitute;
  while (view.size() - at >= 5) {
    const char type = view[at];
    const std::size_t size = std::size_t(load_be32(view.data() + at + 1)) + 1;
    const std::string_view body = view.substr(at + 5, size - 5);
    if (type == 'Q' || type == 'F' || type == 'P' || type == 'B') {
      std::string name;
      if (type == 'P') name = std::string(body.substr(0, body.find('\0')));
      refuse_statement(d, nullptr, type, name, substitute);
      rewrite_ += substitute;
    } else {
      rewrite_.append(view.substr(at, size));
    }
    at += size;
  }
}

void Session::watch_body(const protocol::ScanEvent& e, std::string_view chunk) {
  if (e.length < 4) return;
  if (e.type == 'A' && e.length >= 8 && chunk.size() >= e.body_offset + 4) {
    // Clients are given their server's process id (CancelRegistry), so notifications need no
    // change, except from a server that sent no BackendKeyData: its own notifications name the
    // id the client was given, so "is this my own NOTIFY" checks keep working (found by
    // adversarial testing with node-postgres). Patched in place: `chunk` views bout_. A PID split
    // across two reads is left as it is.
    if (backend_key_.process_id == client_key_.process_id) return;
    char* pid = bout_.data() + (chunk.data() - bout_.data()) + e.body_offset;
    if (load_be32(pid) == backend_key_.process_id) store_be32(pid, client_key_.process_id);
    return;
  }
  if (e.type != 'S' && !(auditing() && (e.type == 'C' || e.type == 'E'))) return;
  const std::size_t body_len = e.length - 4;
  const std::size_t avail = chunk.size() > e.body_offset ? chunk.size() - e.body_offset : 0;
  if (avail >= body_len) return on_body(e.type, chunk.substr(e.body_offset, body_len));
  // The rest comes with the next reads; a long ErrorResponse keeps only its start.
  const std::size_t keep = e.type == 'E' ? std::min(body_len, kKeptBody) : body_len;
  param_type_ = e.type;
  param_buf_.assign(chunk.substr(e.body_offset, std::min(avail, keep)));
  param_need_ = std::uint32_t(keep - param_buf_.size());  // the bytes past `keep` need no attention
  if (param_need_ == 0) on_body(param_type_, param_buf_);
}

void Session::on_body(char type, std::string_view body) {
  if (type == 'S') return check_parameter_status(body);
  audit_backend(type, body, nullptr);
}

}  // namespace gh::proxy
