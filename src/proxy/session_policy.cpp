// The policy phase of a session: every Query, Parse and FunctionCall is analysed and judged
// before it is forwarded. A refused statement never reaches the database. In its place the
// backend gets a substitute that fails at once, when analysed: a cast to int of a text naming this
// session's nonce ("gatehouse_blocked_<nonce>"). The backend then does exactly what it does for any failing
// statement — aborts the transaction block if one is open, skips the rest of an extended-protocol
// batch until Sync, answers ReadyForQuery with the right status — so the client's and the
// backend's view of the session stay the same. When the backend's ErrorResponse for the
// substitute comes back, the relay replaces it with the policy's ErrorResponse (42501).
// See docs/adr/0004-refusing-statements.md.
#include <algorithm>
#include <cctype>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "approvals/approvals.h"
#include "base/bytes.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace gh::proxy {

namespace {

constexpr std::size_t kMaxPreparedNames = 10000;
constexpr std::size_t kMaxPreparedVersions = 8;
constexpr std::size_t kMaxProtocolStatements = 100000;

// Fast-path (FunctionCall) targets are function OIDs. Built-in functions have fixed OIDs in
// every PostgreSQL release since 9.x; these are the ones clients use through the fast path
// (libpq's large-object API). Anything else is judged as an unknown function: opaque.
struct FastPathFunction {
  std::uint32_t oid;
  const char* name;
  bool server_file;
};
constexpr std::uint32_t kSetConfigOid = 2078;
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
    // set_config(text, text, bool): its arguments are binary values the proxy does not judge, so
    // it may set any setting, gatehouse.identity included (guardrail.identity_settings).
    if (oid == kSetConfigOid) {
      st.functions.back() = "set_config";
      st.settings.push_back("*");
      st.kinds.push_back(sql::StatementKind::Set);
      st.role_change = true;  // any setting: replica mode among them
    } else {
      // Any function: one that reads server files (pg_read_file), runs queries (query_to_xml) or
      // reaches other servers (dblink). Restricting functions: rules match it too (found by
      // adversarial testing: pg_read_file by OID got past a functions: rule).
      st.server_file_access = true;
      st.remote_access = true;
    }
  }
  st.text = fmt::format("<fast-path function call {}>", st.functions.front());
  sql::Analysis a;
  a.statements.push_back(std::move(st));
  return a;
}


std::string make_nonce() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

// Whether a transaction block the text itself opened is open when its statement `at` starts.
bool opens_transaction_before(const sql::Analysis* a, int at) {
  if (!a || at <= 0 || std::size_t(at) > a->statements.size()) return false;
  bool open = false;
  for (int i = 0; i < at; ++i) {
    const auto b = a->statements[std::size_t(i)].transaction_block;
    if (b != 0) open = b > 0;
  }
  return open;
}

}  // namespace

namespace {

bool has_kind(const sql::Statement& st, sql::StatementKind k) {
  return std::find(st.kinds.begin(), st.kinds.end(), k) != st.kinds.end();
}

// A refusal of the proxy's own (not a policy rule's): shared, made once.
// sqlstate: when not 42501 (0A000 for what the proxy does not support).
std::shared_ptr<const policy::Decision> proxy_refusal(std::string rule, std::string reason, std::string message,
                                                      std::string hint, std::string sqlstate = {}) {
  policy::Decision u;
  u.action = policy::Action::Deny;
  u.rule = std::move(rule);
  u.reason = std::move(reason);
  u.message = std::move(message);
  u.hint = std::move(hint);
  u.sqlstate = std::move(sqlstate);
  return std::make_shared<const policy::Decision>(std::move(u));
}

// FETCH or MOVE of a cursor declared more often than the proxy keeps (or beyond the names it
// keeps) may read anything: refused whatever the environment (found by adversarial testing: as
// opaque code it was allowed on targets that allow opaque code).
std::shared_ptr<const policy::Decision> untracked_cursor_decision() {
  static const auto d = proxy_refusal(
      "policy.untracked_cursor", "FETCH or MOVE of a cursor the proxy lost track of",
      "statement refused: this session declared the cursor (or cursors) more often than the proxy keeps track of, so "
      "what it reads cannot be checked",
      "CLOSE the cursor and DECLARE it again");
  return d;
}

std::shared_ptr<const policy::Decision> untracked_portal_decision() {
  static const auto d = proxy_refusal(
      "policy.untracked_portal", "Execute of a portal the proxy lost track of, after the policy or search_path changed",
      "statement refused: the policy (or the session's search_path) changed after this portal was bound, and the "
      "session bound more portals than the proxy keeps track of, so what it reads cannot be checked again",
      "bind the portal again (or end the transaction and run the statement again)");
  return d;
}

// A Bind of a name that SQL PREPARE used more often (or for more names) than the proxy keeps
// track of: what the server holds under it cannot be told.
std::shared_ptr<const policy::Decision> replaced_by_sql_prepare_decision(std::string_view name) {
  return proxy_refusal(
      "policy.untracked_statement", "the statement name was also used by SQL PREPARE more often than the proxy keeps track of",
      fmt::format("statement refused: statement \"{}\" may have been replaced with SQL PREPARE, and this session "
                  "prepared more than the proxy keeps track of",
                  name),
      "use new statement names rather than DEALLOCATE and PREPARE again under one name");
}

// EXECUTE of `name` as a statement of its own (a protocol Bind judged as the SQL EXECUTE it amounts to).
sql::Analysis execute_of(std::string_view name, std::string text, bool opaque) {
  sql::Analysis exec;
  sql::Statement st;
  st.kinds.push_back(sql::StatementKind::Execute);
  st.object_name = std::string(name);
  st.opaque_code = opaque;
  st.text = std::move(text);
  st.normalized = st.text;
  exec.statements.push_back(std::move(st));
  return exec;
}

std::shared_ptr<const policy::Decision> untracked_statement_decision() {
  static const auto d = proxy_refusal(
      "policy.untracked_statement",
      "Bind of a prepared statement the proxy did not keep, after the policy or search_path changed",
      "statement refused: the session prepared more statements than the proxy keeps track of, and the policy (or the "
      "session's search_path) changed since this one was prepared, so it cannot be checked again",
      "close prepared statements the session no longer needs, and prepare this one again");
  return d;
}

}  // namespace

bool Session::refuse_bind(const policy::Decision& d, const std::shared_ptr<const sql::Analysis>& a,
                          std::string_view portal, std::string& substitute) {
  if (auditing()) {
    if (a) audit_parse_refused(a, d, {});
    audit_close_portal(portal);
  }
  refuse_statement(d, a.get(), 'B', {}, substitute);
  return false;
}

std::shared_ptr<const policy::Decision> Session::long_name_refusal() {
  return proxy_refusal("policy.long_name", "a name of 62 bytes or more with non-ASCII characters",
                       "statement refused: it uses a name of 62 bytes or more with non-ASCII characters, which the "
                       "server may cut differently from the proxy (names are cut at 63 bytes in the database's "
                       "encoding)",
                       "use a shorter name", "0A000");
}

bool Session::long_non_ascii(std::string_view s) {
  if (s.size() < 62) return false;
  for (unsigned char c : s)
    if (c >= 0x80) return true;
  return false;
}

bool Session::names_non_ascii(const sql::Analysis& a, bool only_long) {
  // only_long: the parser has already cut a long name (as UTF-8: "a"*62 + "é" became "a"*62), so
  // a name of 62 bytes or more in a text with any non-ASCII byte counts.
  bool text_non_ascii = false;
  if (only_long)
    for (const auto& st : a.statements)
      for (unsigned char c : st.text) text_non_ascii = text_non_ascii || c >= 0x80;
  if (only_long && !text_non_ascii) return false;
  auto non_ascii = [only_long](std::string_view s) {
    if (only_long) return s.size() >= 62;
    for (unsigned char c : s)
      if (c >= 0x80) return true;
    return false;
  };
  auto any = [&](const std::vector<std::string>& v) { return std::any_of(v.begin(), v.end(), non_ascii); };
  for (const auto& st : a.statements) {
    if (non_ascii(st.object_name) || any(st.functions) || any(st.settings) || any(st.unresolved_columns) ||
        any(st.roles_altered))
      return true;
    for (const auto& r : st.relations)
      if (non_ascii(r.schema) || non_ascii(r.name) || any(r.columns_read) || any(r.columns_written)) return true;
    for (const auto& w : st.writes)
      if (non_ascii(w.relation)) return true;
  }
  return false;
}

const std::vector<std::shared_ptr<const sql::Analysis>>* Session::prepared_versions(const sql::Statement& st) const {
  if (st.object_name.empty() || !has_kind(st, sql::StatementKind::Execute)) return nullptr;
  auto it = prepared_.find(st.object_name);
  return it == prepared_.end() ? nullptr : &it->second;
}

const std::vector<std::shared_ptr<const sql::Analysis>>* Session::cursor_versions(const sql::Statement& st) const {
  if (st.object_name.empty() || !has_kind(st, sql::StatementKind::Fetch)) return nullptr;
  if (auto it = cursors_.find(st.object_name); it != cursors_.end()) return &it->second.versions;
  return portal_versions(st.object_name);
}

std::shared_ptr<const sql::Analysis> Session::as_recorded(const sql::Analysis& analysis, const sql::Analysis& resolved) {
  auto r = std::make_shared<sql::Analysis>(resolved);
  r->cache_id = 0;
  for (auto& st : r->statements)
    for (const auto& o : analysis.statements) {
      if (o.text != st.text) continue;
      for (auto k : {sql::StatementKind::Fetch, sql::StatementKind::Execute})
        if (has_kind(o, k) && !has_kind(st, k)) st.kinds.insert(st.kinds.begin(), k);
      break;
    }
  return r;
}

std::shared_ptr<const sql::Analysis> Session::recorded_analysis(const std::shared_ptr<const sql::Analysis>& analysis) const {
  if (!analysis) return analysis;
  bool names = false;
  for (const auto& st : analysis->statements)
    names |= has_kind(st, sql::StatementKind::Execute) || has_kind(st, sql::StatementKind::Fetch);
  if (!names) return analysis;
  const bool untracked = untracked_cursor_;  // resolving notes it; the judgment already has
  sql::Analysis resolved;
  const bool any = resolve_executes(*analysis, resolved);
  if (any)
    if (sql::Analysis again; resolve_executes(resolved, again)) resolved = std::move(again);  // EXECUTE of a FETCH
  untracked_cursor_ = untracked;
  return any ? as_recorded(*analysis, resolved) : analysis;
}

bool Session::resolve_executes(const sql::Analysis& a, sql::Analysis& out) const {
  // The versions a statement names (null: none to resolve; an empty list: the name is known but
  // untrackable, or unknown after DECLAREs that were not recorded).
  static const std::vector<std::shared_ptr<const sql::Analysis>> kUntracked{nullptr};
  auto named = [&](const sql::Statement& st) -> const std::vector<std::shared_ptr<const sql::Analysis>>* {
    if (st.object_name.empty()) return nullptr;
    if (has_kind(st, sql::StatementKind::Execute)) {
      auto it = prepared_.find(st.object_name);
      return it == prepared_.end() ? nullptr : &it->second;
    }
    if (has_kind(st, sql::StatementKind::Fetch)) {
      auto it = cursors_.find(st.object_name);
      if (it != cursors_.end()) {
        if (!it->second.versions.empty() && !it->second.versions.front()) untracked_cursor_ = true;
        return &it->second.versions;
      }
      // A portal bound with the extended protocol is a cursor to SQL: FETCH reads its statement.
      if (const auto* versions = portal_versions(st.object_name)) {
        if (!versions->front()) untracked_cursor_ = true;
        return versions;
      }
      if (cursors_overflow_) untracked_cursor_ = true;
      return cursors_overflow_ ? &kUntracked : nullptr;
    }
    return nullptr;
  };
  bool any = false;
  for (const auto& st : a.statements)
    if (named(st)) any = true;
  if (!any) return false;
  out.error = a.error;
  for (const auto& st : a.statements) {
    const auto* versions = named(st);
    const bool fetch = has_kind(st, sql::StatementKind::Fetch);
    const sql::StatementKind own = fetch ? sql::StatementKind::Fetch : sql::StatementKind::Execute;
    if (!versions || versions->empty() || !versions->front()) {
      out.statements.push_back(st);  // not ours to resolve: stays opaque (EXECUTE of an unseen name is)
      // A cursor the proxy lost track of may read anything.
      if (fetch && versions) out.statements.back().opaque_code = true;
      continue;
    }
    // One statement per text ever prepared (declared) under the name: the most restrictive decides.
    for (const auto& version : *versions) {
      const sql::Statement& p = version->statements.front();
      sql::Statement m = st;
      // EXECUTE was opaque because its target was unseen, or for code in its own arguments.
      m.opaque_code = p.opaque_code || st.opaque_args;
      m.kinds.erase(std::remove(m.kinds.begin(), m.kinds.end(), own), m.kinds.end());
      for (auto k : p.kinds)
        if (k != sql::StatementKind::Prepare && k != sql::StatementKind::DeclareCursor) m.kinds.push_back(k);
      if (m.kinds.empty()) m.kinds.push_back(own);
      // EXECUTE of a protocol statement that is a FETCH: it reads that FETCH's cursor (resolved
      // by a second pass, found by adversarial testing).
      if (!fetch && has_kind(p, sql::StatementKind::Fetch)) m.object_name = p.object_name;
      m.relations.insert(m.relations.end(), p.relations.begin(), p.relations.end());
      m.functions.insert(m.functions.end(), p.functions.begin(), p.functions.end());
      m.writes.insert(m.writes.end(), p.writes.begin(), p.writes.end());
      m.settings.insert(m.settings.end(), p.settings.begin(), p.settings.end());
      m.unresolved_columns.insert(m.unresolved_columns.end(), p.unresolved_columns.begin(),
                                  p.unresolved_columns.end());
      m.returning |= p.returning;
      m.whole_row |= p.whole_row;
      m.server_file_access |= p.server_file_access;
      m.server_program |= p.server_program;
      m.remote_access |= p.remote_access;
      m.role_change |= p.role_change;
      m.transaction_control |= p.transaction_control;
      m.destructive_alter |= p.destructive_alter;
      out.statements.push_back(std::move(m));
    }
  }
  return true;
}

void Session::note_cursor_close(const sql::Statement& st) {
  if (st.kinds.empty()) return;
  const bool discard_all = st.kinds.front() == sql::StatementKind::Discard &&
                           std::find(st.settings.begin(), st.settings.end(), "all") != st.settings.end();
  if (st.kinds.front() == sql::StatementKind::CloseCursor || discard_all)
    cursor_closes_.push_back(CursorClose{syncs_sent_, discard_all ? std::string() : st.object_name,
                                         discard_all || st.object_name.empty(), ++portal_ops_});
}

void Session::note_cursor_closes(const sql::Analysis& a) {
  for (const auto& st : a.statements) note_cursor_close(st);
}

void Session::execute_effects(std::string_view portal) {
  // What the portal's statement does to the names the proxy tracks, now that it runs.
  const std::vector<std::shared_ptr<const sql::Analysis>>* versions = nullptr;
  if (portal.empty()) {
    versions = &unnamed_portal_.versions;
  } else if (auto it = bound_portals_.find(portal); it != bound_portals_.end()) {
    versions = &it->second.versions;
  }
  if (!versions) return;
  // A PREPARE creates its name each time it runs (it may have been DEALLOCATEd since the Parse;
  // found by an attack round): every PREPARE bound under the portal's name is recorded, as
  // recording a name the server may not hold only makes EXECUTE of it judged against more.
  for (const auto& v : *versions)
    if (v && !v->statements.empty() && !v->statements.front().kinds.empty() &&
        v->statements.front().kinds.front() == sql::StatementKind::Prepare)
      remember_prepared(*v);
  // CLOSE, DEALLOCATE, DISCARD ALL make the proxy forget names, so only where it is certain what
  // the server's portal holds: the unnamed portal, bound in this very batch (its Bind failing
  // fails the batch, and nothing in between can replace it unseen). A named portal can differ
  // from the proxy's record of it after ROLLBACK TO SAVEPOINT or a Bind the server refused (found
  // by an attack round: the proxy forgot a prepared UPDATE, or a cursor, the server still held).
  if (!portal.empty() || versions->size() != 1 || !versions->front() || unnamed_portal_.group != syncs_sent_) return;
  const sql::Analysis& a = *versions->front();
  if (a.statements.empty() || a.statements.front().kinds.empty()) return;
  switch (a.statements.front().kinds.front()) {
    case sql::StatementKind::CloseCursor:
    case sql::StatementKind::Discard:
      note_cursor_closes(a);
      note_deallocs(a);
      break;
    case sql::StatementKind::Deallocate:
      note_deallocs(a);
      break;
    default:
      break;
  }
}

void Session::note_deallocs(const sql::Analysis& a) {
  for (const auto& st : a.statements) {
    if (st.kinds.empty()) continue;
    const bool discard_all = st.kinds.front() == sql::StatementKind::Discard &&
                             std::find(st.settings.begin(), st.settings.end(), "all") != st.settings.end();
    if (st.kinds.front() != sql::StatementKind::Deallocate && !discard_all) continue;
    const bool all = discard_all || st.object_name.empty();
    deallocs_.push_back(Dealloc{syncs_sent_, all ? std::string() : st.object_name, all, ++portal_ops_});
  }
}

void Session::forget_deallocated(const Dealloc& d) {
  // Only what was prepared before the DEALLOCATE: a PREPARE or Parse of the name after it (later
  // in its Query, or pipelined) holds the name now.
  auto prepared_before = [&](const std::string& name) {
    const auto p = prepared_seq_.find(name);
    return p == prepared_seq_.end() || p->second < d.seq;
  };
  if (!d.all) {
    if (!prepared_.count(d.name) && !statements_.count(d.name) && sql_untracked_ > 0 && --sql_untracked_ == 0) {
      // The server held a name the proxy had not recorded (the DEALLOCATE succeeded): one of the
      // unrecorded SQL PREPAREs is gone; once all are, nothing untracked is left (found by a
      // psycopg trial: 10,001 PREPARE/DEALLOCATE pairs left every later Bind refused).
      sql_prepared_overflow_ = false;
    }
    if (prepared_before(d.name)) {
      prepared_.erase(d.name);
      sql_prepared_names_.erase(d.name);
      prepared_seq_.erase(d.name);
    }
    if (auto it = statements_.find(d.name); it != statements_.end() && it->second.seq < d.seq) statements_.erase(it);
    return;
  }
  std::erase_if(prepared_, [&](const auto& kv) { return prepared_before(kv.first); });
  std::erase_if(sql_prepared_names_, [&](const std::string& n) { return !prepared_.count(n); });
  std::erase_if(prepared_seq_, [&](const auto& kv) { return !prepared_.count(kv.first); });
  // The unnamed statement is not deallocated by DEALLOCATE ALL or DISCARD ALL.
  std::erase_if(statements_, [&](const auto& kv) { return !kv.first.empty() && kv.second.seq < d.seq; });
  if (untracked_seq_ < d.seq) {  // what the proxy did not record is gone too
    statements_overflow_ = false;
    sql_prepared_overflow_ = false;
    sql_untracked_ = 0;
  }
}

void Session::remember_cursors(const sql::Analysis& a, char type) {
  constexpr std::size_t kMaxCursorNames = 10000;
  // CLOSE / DISCARD ALL in a Query: forgotten once the server has answered without an error
  // (cursors_at_ready). A parsed CLOSE counts at its Execute (execute_effects).
  // In the order of the text: a DECLARE after a CLOSE of its name is not closed by it (found by
  // adversarial testing: `CLOSE c; DECLARE c ...` in one Query forgot the new cursor, and a FETCH
  // of it was no longer judged against what it reads).
  for (const auto& st : a.statements) {
    if (type == 'Q') note_cursor_close(st);
    if (st.kinds.empty() || st.kinds.front() != sql::StatementKind::DeclareCursor || st.object_name.empty()) continue;
    auto it = cursors_.find(st.object_name);
    if (it == cursors_.end()) {
      if (cursors_.size() >= kMaxCursorNames) {
        cursors_overflow_ = true;  // FETCH of a name the proxy does not know is refused from now on
        continue;
      }
      it = cursors_.emplace(st.object_name, Cursor{}).first;
    }
    auto& c = it->second;
    c.hold = c.hold || st.cursor_with_hold;
    c.group = syncs_sent_;
    c.seq = ++portal_ops_;
    if (!st.cursor_with_hold) transient_cursors_ = true;
    if (!c.versions.empty() && !c.versions.front()) continue;  // already untrackable
    if (c.versions.size() >= kMaxPreparedVersions) {
      c.versions.assign(1, nullptr);
      continue;
    }
    auto single = std::make_shared<sql::Analysis>();
    single->statements.push_back(st);
    c.versions.push_back(std::move(single));
  }
}

void Session::cursors_at_ready(char status) {
  // This ReadyForQuery ends the messages judged while syncs_sent_ was ready_seen_ (or less).
  const std::uint64_t ended = ready_seen_;
  const bool failed = cursor_batch_error_;
  cursor_batch_error_ = false;
  std::size_t done = 0;
  while (done < cursor_closes_.size() && cursor_closes_[done].group <= ended) {
    const auto& c = cursor_closes_[done++];
    if (failed) continue;  // the CLOSE may have failed or been skipped: keep what it named
    if (c.all) {
      // Cursors declared after the DISCARD ALL (later in its batch or Query) stay.
      std::erase_if(cursors_, [&](const auto& kv) { return kv.second.seq < c.seq; });
      cursors_overflow_ = false;
      // Portals bound after the CLOSE ALL (later in its batch) stay.
      std::erase_if(bound_portals_, [&](const auto& kv) { return kv.second.seq < c.seq; });
      std::erase_if(held_portals_, [&](const auto& kv) { return kv.second.seq < c.seq; });
    } else {
      if (auto k = cursors_.find(c.name); k != cursors_.end() && k->second.seq < c.seq) cursors_.erase(k);
      if (auto p = bound_portals_.find(c.name); p != bound_portals_.end() && p->second.seq < c.seq) bound_portals_.erase(p);
      // SQL CLOSE of a held portal closed it (found by adversarial testing: a SELECT bound under
      // the name later was held as the DELETE that portal had held).
      if (auto h = held_portals_.find(c.name); h != held_portals_.end() && h->second.seq < c.seq) held_portals_.erase(h);
    }
  }
  cursor_closes_.erase(cursor_closes_.begin(), cursor_closes_.begin() + std::ptrdiff_t(done));
  std::size_t deallocated = 0;
  while (deallocated < deallocs_.size() && deallocs_[deallocated].group <= ended) {
    const auto& d = deallocs_[deallocated++];
    if (!failed) forget_deallocated(d);  // it may have failed or been skipped: keep what it named
  }
  deallocs_.erase(deallocs_.begin(), deallocs_.begin() + std::ptrdiff_t(deallocated));
  if (status == 'I' && transient_cursors_) {
    // Cursors without HOLD end with their transaction; one declared in a later, pipelined batch
    // is not ended by this ReadyForQuery (found by adversarial testing).
    bool more = false;
    std::erase_if(cursors_, [&](const auto& kv) {
      if (kv.second.hold) return false;
      if (kv.second.group > ended) {
        more = true;
        return false;
      }
      return true;
    });
    transient_cursors_ = more;
  }
}

std::vector<std::string> Session::active_grants(std::chrono::system_clock::time_point now) const {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  auto roles = server_.approvals()->active_roles(identity_.principal(), target_->name, us);
  if (target_->name == "*" && !database_.empty() && database_ != "*") {
    // Through the pass-through target, a grant for the database the session opened counts too (the
    // API takes access requests for any name that target covers; found by adversarial testing:
    // such a grant never took effect, only one for "*", which covers every database).
    for (auto& r : server_.approvals()->active_roles(identity_.principal(), database_, us))
      if (std::find(roles.begin(), roles.end(), r) == roles.end()) roles.push_back(std::move(r));
  }
  return roles;
}

void Session::note_portal(std::string_view portal, std::shared_ptr<const sql::Analysis> a, std::uint64_t generation) {
  const std::uint64_t seq = ++portal_ops_;
  if (a && a->statements.size() != 1) a = nullptr;  // an empty query: nothing to judge again
  if (portal.empty()) {
    // A Bind to the unnamed portal replaces it, or fails, and the batch with it (outside a
    // transaction block the old one is gone at Sync). Not covered: in a block, a Bind that fails
    // before replacing it (a wrong parameter count), then ROLLBACK TO SAVEPOINT (docs/policy.md).
    unnamed_portal_.versions.clear();  // keeps its capacity: no allocation per Bind
    if (a) unnamed_portal_.versions.push_back(std::move(a));
    unnamed_portal_.generation = generation;
    unnamed_portal_.search_path_changed = search_path_changed_;
    unnamed_portal_.group = syncs_sent_;
    unnamed_portal_.seq = seq;
    return;
  }
  auto it = bound_portals_.find(portal);
  if (it == bound_portals_.end()) {
    if (!a) return;
    if (bound_portals_.size() >= kMaxPortalNames) {
      if (!portals_overflow_) {
        portals_overflow_ = true;
        overflow_portal_.versions.assign(1, nullptr);
        overflow_portal_.generation = generation;
        overflow_portal_.search_path_changed = search_path_changed_;
      }
      overflow_portal_.group = syncs_sent_;
      return;
    }
    it = bound_portals_.emplace(std::string(portal), BoundPortal{}).first;
    it->second.generation = generation;
    it->second.search_path_changed = search_path_changed_;
  } else if (it->second.generation != generation || it->second.search_path_changed != search_path_changed_) {
    it->second.generation = kStale;  // an older statement under the name was judged under another policy
  }
  auto& p = it->second;
  p.group = syncs_sent_;
  p.seq = seq;
  if (!a || (!p.versions.empty() && !p.versions.front())) return;  // already untracked
  if (p.versions.size() >= kMaxPortalVersions) {
    p.versions.assign(1, nullptr);  // too many to keep: its Execute after a reload is refused
    return;
  }
  p.versions.push_back(std::move(a));
}

const std::vector<std::shared_ptr<const sql::Analysis>>* Session::portal_versions(std::string_view name) const {
  if (name.empty()) return nullptr;
  if (auto it = bound_portals_.find(name); it != bound_portals_.end() && !it->second.versions.empty()) return &it->second.versions;
  if (portals_overflow_) return &overflow_portal_.versions;
  return nullptr;
}

void Session::portals_at_ready() {
  // Called for an idle ReadyForQuery: portals end with their transaction; one bound in a later,
  // pipelined batch is not ended by it.
  const std::uint64_t ended = ready_seen_;
  if (unnamed_portal_.group <= ended) unnamed_portal_.versions.clear();
  if (!held_portals_.empty()) std::erase_if(held_portals_, [&](const auto& kv) { return kv.second.group <= ended; });
  if (!bound_portals_.empty()) std::erase_if(bound_portals_, [&](const auto& kv) { return kv.second.group <= ended; });
  if (portals_overflow_ && overflow_portal_.group <= ended) portals_overflow_ = false;
}

bool Session::rejudge_execute(std::string_view body, std::string& substitute) {
  cursor_execute_.analysis.reset();  // this Execute's own, if it reads a SQL cursor (below)
  std::size_t pos = 0;
  bool ok = true;
  const std::string_view name = server_name(protocol::c_string_at(body, pos, ok));
  if (!ok) return true;  // the backend rejects a malformed Execute itself
  // After a refusal in this batch the server skips this Execute: nothing to judge (a second
  // refusal would only add a substitute the server skips).
  if (refused_in_batch_) return true;
  execute_effects(name);
  if (!held_portals_.empty()) {
    // An approved portal runs its further Executes; after a reload, a policy that now denies its
    // statement stops it, as it stops any other portal and an approved Query (found by adversarial
    // testing: an approved portal kept returning rows of a table a reload had denied).
    auto h = held_portals_.find(name);
    if (h != held_portals_.end() && h->second.approved && h->second.analysis &&
        h->second.approved_generation != server_.generation()) {
      sql::Analysis resolved;
      const sql::Analysis* judged = nullptr;
      auto decision = judge_as_run(*h->second.analysis, resolved, judged);
      if (decision->action == policy::Action::Deny) {
        if (auditing()) audit_parse_refused(h->second.analysis, *decision, {});
        refuse_statement(*decision, h->second.analysis.get(), 'E', {}, substitute);
        return false;
      }
      h->second.approved_generation = server_.generation();
    }
  }
  BoundPortal* p = nullptr;
  if (!name.empty() && (cursors_overflow_ || (!cursors_.empty() && cursors_.count(std::string(name))))) {
    // A cursor DECLAREd with SQL is a portal too: an Execute of its name reads it like a FETCH,
    // and is judged like one, every time (found by adversarial testing: Execute("c1") read a
    // cursor that FETCH was refused).
    sql::Analysis fetch;
    sql::Statement st;
    st.kinds.push_back(sql::StatementKind::Fetch);
    st.object_name = std::string(name);
    st.text = "FETCH (protocol Execute) " + st.object_name;
    st.normalized = st.text;
    fetch.statements.push_back(std::move(st));
    sql::Analysis resolved;
    const sql::Analysis* judged = nullptr;
    auto decision = judge_as_run(fetch, resolved, judged);
    if (judged != &fetch) {  // a cursor of that name is known (or lost track of)
      if (!runs(*decision)) {
        policy::Decision d = *decision;
        if (d.action == policy::Action::Review) {
          d.action = policy::Action::Deny;
          d.message = "statement refused: reading this cursor needs approval, and an Execute of a cursor is not held "
                      "for a reviewer";
          d.hint = "FETCH from it with a Query so that it can be held for a reviewer";
        }
        auto a = std::make_shared<const sql::Analysis>(std::move(resolved));
        if (auditing()) audit_parse_refused(a, d, {});
        refuse_statement(d, a.get(), 'E', {}, substitute);
        return false;
      }
      // What audit_execute records for it, right after this: the FETCH with what it reads (found
      // by differential testing: recorded as a portal "not bound in this session", no tables).
      if (auditing()) cursor_execute_ = {std::string(name), as_recorded(fetch, resolved), decision};
    }
  }
  if (name.empty()) {
    if (unnamed_portal_.versions.empty()) return true;
    p = &unnamed_portal_;
  } else {
    if (bound_portals_.empty() && !portals_overflow_) return true;
    if (auto it = bound_portals_.find(name); it != bound_portals_.end())
      p = &it->second;
    else if (portals_overflow_)
      p = &overflow_portal_;
    else
      return true;
    if (p->versions.empty()) return true;
  }
  const auto gen = server_.generation();
  if (p->generation == gen && p->search_path_changed == search_path_changed_) return true;
  // The policy or the session's search_path changed since the portal was bound: every statement
  // bound under its name is judged again; the most restrictive decides.
  std::shared_ptr<const policy::Decision> decision;
  std::shared_ptr<const sql::Analysis> analysis;
  for (const auto& v : p->versions) {
    std::shared_ptr<const policy::Decision> d;
    if (!v) {
      d = untracked_portal_decision();
    } else {
      sql::Analysis resolved;
      const sql::Analysis* judged = nullptr;
      d = judge_as_run(*v, resolved, judged);
    }
    if (!decision || d->action > decision->action) {
      decision = std::move(d);
      analysis = v;
    }
  }
  if (runs(*decision)) {
    live_policy();  // policy_generation_ is the generation just judged under
    p->generation = policy_generation_;
    p->search_path_changed = search_path_changed_;
    return true;
  }
  policy::Decision d = *decision;
  if (d.action == policy::Action::Review) {
    // Its Bind was not held (the policy then allowed it): a reviewer approves a Bind's Execute.
    d.action = policy::Action::Deny;
    d.message = "statement refused: it needs approval under the policy loaded after its portal was bound";
    d.hint = "bind the portal again so that a reviewer can approve it";
  }
  if (auditing()) {
    audit_parse_refused(analysis, d, {});
    audit_close_portal(name);
  }
  // The portal stays known: the server never saw this Execute, and a portal bound before a
  // SAVEPOINT survives a ROLLBACK TO it (found by adversarial testing: forgotten here, its next
  // Execute went unjudged). Its generation stays old, so every Execute of it is judged again.
  refuse_statement(d, analysis.get(), 'E', {}, substitute);
  return false;
}

std::shared_ptr<const policy::Decision> Session::judge_as_run(const sql::Analysis& a, sql::Analysis& resolved,
                                                             const sql::Analysis*& judged) {
  judged = &a;
  untracked_cursor_ = false;
  if (resolve_executes(a, resolved)) {
    judged = &resolved;
    if (sql::Analysis again; resolve_executes(resolved, again)) resolved = std::move(again);  // EXECUTE of a FETCH
  }
  auto d = judge(*judged);
  if (untracked_cursor_ && d->action != policy::Action::Deny) d = untracked_cursor_decision();
  return d;
}

void Session::remember_prepared(const sql::Analysis& a, std::string_view protocol_name) {
  for (const auto& st : a.statements) {
    if (st.kinds.empty() || st.kinds[0] != sql::StatementKind::Prepare) continue;
    // A protocol statement's own object_name stays (a FETCH's cursor); it is kept under its name.
    const std::string_view key = protocol_name.empty() ? std::string_view(st.object_name) : protocol_name;
    if (key.empty()) continue;
    auto it = prepared_.find(std::string(key));
    if (it == prepared_.end()) {
      if (prepared_.size() >= kMaxPreparedNames) {  // not recorded: its EXECUTE stays opaque
        if (protocol_name.empty()) {
          sql_prepared_overflow_ = true;
          ++sql_untracked_;
        }
        untracked_seq_ = ++portal_ops_;
        continue;
      }
      it = prepared_.emplace(std::string(key), std::vector<std::shared_ptr<const sql::Analysis>>{}).first;
    }
    prepared_seq_[it->first] = ++portal_ops_;
    if (protocol_name.empty()) sql_prepared_names_.insert(it->first);
    auto& versions = it->second;
    if (!versions.empty() && !versions.front()) continue;  // already too many: opaque for good
    if (!versions.empty() && versions.back()->statements.front().text == st.text) continue;  // run again
    if (versions.size() >= kMaxPreparedVersions) {
      versions.assign(1, nullptr);  // cannot keep track any more: EXECUTE of it stays opaque
      continue;
    }
    auto single = std::make_shared<sql::Analysis>();
    single->statements.push_back(st);
    versions.push_back(std::move(single));
  }
}

void Session::note_parse(std::string_view name, Judged j) {
  NameOp op{'P', syncs_sent_, std::string(name), std::nullopt};
  j.seq = ++portal_ops_;
  std::shared_ptr<const sql::Analysis> analysis;
  if (!name.empty()) analysis = j.analysis;  // the unnamed statement is never EXECUTEd by name
  if (auto it = statements_.find(name); it != statements_.end()) {
    op.before = std::move(it->second);
    it->second = std::move(j);  // no allocation when a name is reused
  } else if (statements_.size() < kMaxProtocolStatements) {
    statements_.emplace(std::string(name), std::move(j));
  } else {
    untracked_seq_ = j.seq;
    if (!statements_overflow_) {
      statements_overflow_ = true;  // until a DEALLOCATE ALL: such a Bind is refused once anything changed
      statements_overflow_generation_ = j.generation;
      statements_overflow_search_path_ = j.search_path_changed;
    }
  }
  name_ops_.push_back(std::move(op));
  if (!name.empty()) {
    // Statement names are shared with SQL PREPARE: EXECUTE of this name is judged against it too.
    const auto& a = analysis;
    if (a && a->statements.size() == 1) {
      sql::Analysis as_prepare;
      as_prepare.statements.push_back(a->statements.front());
      auto& st = as_prepare.statements.back();
      st.kinds.insert(st.kinds.begin(), sql::StatementKind::Prepare);
      remember_prepared(as_prepare, name);
    }
  }
}

void Session::note_close(char what, std::string_view name) {
  // Nothing is forgotten until the server says it closed the name (CloseComplete): a Close it
  // skips after an earlier error in the batch leaves the statement or portal in place, and a
  // Bind or Execute of the name in a batch pipelined behind it must still be judged as what the
  // server holds (found by adversarial testing: the statement was dropped at once and a Bind of
  // the surviving DELETE in the next batch ran unjudged, a held portal's Execute unheld).
  name_ops_.push_back(NameOp{what, syncs_sent_, std::string(name), std::nullopt, what == 'C' ? ++portal_ops_ : 0});
}

const Session::Judged* Session::replaced_by_pending_parse(std::string_view name) const {
  // The newest Parse of the name: in this batch, a failure skips the Bind as well.
  for (auto k = name_ops_.rbegin(); k != name_ops_.rend(); ++k)
    if (k->kind == 'P' && k->name == name)
      return k->group < syncs_sent_ && k->before ? &*k->before : nullptr;
  return nullptr;
}

void Session::held_portal_rebound(std::string_view portal) {
  if (auto h = held_portals_.find(portal); h != held_portals_.end()) h->second.rebound_group = syncs_sent_;
}

void Session::name_op_answered(char reply) {
  // Answers come in the order of the messages; one that was not carried out has none.
  const auto wanted = [reply](const NameOp& op) { return reply == '1' ? op.kind == 'P' : op.kind != 'P'; };
  while (!name_ops_.empty()) {
    NameOp op = std::move(name_ops_.front());
    name_ops_.pop_front();  // carried out: its effect stays
    if (op.kind == 'S') {   // closed: gone, unless a later Parse (pipelined) holds the name now
      NameOp* later = nullptr;
      for (auto& k : name_ops_)
        if (k.kind == 'P' && k.name == op.name) {
          later = &k;
          break;
        }
      if (later)
        later->before.reset();  // undone, that Parse leaves the name empty, as the server has it
      else if (auto it = statements_.find(op.name); it != statements_.end())
        statements_.erase(it);
    } else if (op.kind == 'C' && !held_portals_.empty()) {
      if (auto h = held_portals_.find(op.name); h != held_portals_.end() && h->second.seq < op.seq)
        held_portals_.erase(h);
    }
    if (wanted(op)) return;
  }
}

void Session::name_ops_ended() {
  // The batches that ended: what is still waiting for an answer never got one. Parses are undone
  // newest first; a Parse of the same name in a later batch (pipelined) inherits what this one
  // replaced. A Close that got no answer changed nothing.
  std::size_t ended = 0;
  while (ended < name_ops_.size() && name_ops_[ended].group < ready_seen_) ++ended;
  for (std::size_t i = ended; i-- > 0;) {
    NameOp& op = name_ops_[i];
    if (op.kind != 'P') continue;
    NameOp* later = nullptr;
    for (std::size_t k = i + 1; k < name_ops_.size() && !later; ++k)
      if (name_ops_[k].kind == 'P' && name_ops_[k].name == op.name) later = &name_ops_[k];
    if (later) {
      later->before = std::move(op.before);
      continue;
    }
    if (op.before) {
      statements_.insert_or_assign(op.name, std::move(*op.before));
    } else if (auto it = statements_.find(op.name); it != statements_.end()) {
      statements_.erase(it);
    }
  }
  name_ops_.erase(name_ops_.begin(), name_ops_.begin() + std::ptrdiff_t(ended));
}

bool Session::judge_bind_of_sql_prepared(std::string_view portal, std::string_view name, std::string& substitute) {
  // A portal of a statement prepared with SQL PREPARE (the names are shared): judged as EXECUTE of
  // it, against every text ever prepared under the name.
  const sql::Analysis exec = execute_of(name, "EXECUTE " + std::string(name), false);
  sql::Analysis resolved;
  if (!resolve_executes(exec, resolved)) return true;
  policy::Decision d = decide(resolved);
  if (runs(d)) {
    auto bound = std::make_shared<const sql::Analysis>(std::move(resolved));
    note_portal(portal, bound, policy_generation_);
    if (auditing()) {  // for audit_bind, which follows
      bound_sql_prepared_.analysis = std::move(bound);
      bound_sql_prepared_.decision = std::make_shared<const policy::Decision>(std::move(d));
    }
    return true;
  }
  if (d.action == policy::Action::Review) {
    d.action = policy::Action::Deny;
    d.message = "statement refused: it needs approval, and a statement prepared with SQL PREPARE is not held for a "
                "reviewer when its portal is bound with the extended protocol";
    d.hint = "run it with EXECUTE " + std::string(name) + " so that it can be held for a reviewer";
  }
  auto analysis = std::make_shared<const sql::Analysis>(std::move(resolved));
  return refuse_bind(d, analysis, portal, substitute);
}

std::shared_ptr<const policy::Decision> Session::held_portal_fetch(const sql::Analysis& a) const {
  // FETCH or MOVE of a portal bound from a statement that waits for approval would run it without
  // one: its Execute is what a reviewer approves (found by adversarial testing).
  for (const auto& st : a.statements) {
    if (st.object_name.empty() || !has_kind(st, sql::StatementKind::Fetch)) continue;
    auto h = held_portals_.find(st.object_name);
    if (h == held_portals_.end() || h->second.approved) continue;
    return proxy_refusal("approvals.held_portal",
                         "FETCH from portal \"" + st.object_name + "\", bound from a statement that needs approval",
                         "statement refused: portal \"" + st.object_name +
                             "\" was bound from a statement that needs approval, and FETCH would run it without one",
                         "send Execute for the portal, so that a reviewer can approve it");
  }
  return nullptr;
}

bool Session::rejudge_bind(std::string_view body, std::string& substitute) {
  std::size_t pos = 0;
  bool ok = true;
  const std::string_view portal = server_name(protocol::c_string_at(body, pos, ok));
  const std::string_view name = server_name(ok ? protocol::c_string_at(body, pos, ok) : std::string_view());
  if (!ok) return true;  // the backend rejects a malformed Bind itself
  if (long_non_ascii(portal) || long_non_ascii(name)) [[unlikely]] {  // as at Parse (judge_client_message)
    const auto d = long_name_refusal();
    return refuse_bind(*d, nullptr, portal, substitute);
  }
  if (statements_.empty() && held_portals_.empty() && prepared_.empty() && unnamed_portal_.versions.empty() &&
      bound_portals_.empty())
    return true;
  auto it = statements_.find(name);
  if (it != statements_.end() && it->second.analysis) {
    // A FETCH or MOVE parsed before the portal it names was held (found by adversarial testing).
    std::shared_ptr<const policy::Decision> held;
    if (!held_portals_.empty()) {
      held = held_portal_fetch(*it->second.analysis);
      sql::Analysis resolved;
      if (!held && resolve_executes(*it->second.analysis, resolved)) held = held_portal_fetch(resolved);
    }
    // A Parse of the name in an earlier batch the server has not answered yet may fail (the name
    // taken, an error before it): the server would then run the statement it replaced, which is
    // judged too (found by adversarial testing: a Bind pipelined behind a failed Parse ran the
    // DELETE under review, or the UPDATE a reload had denied).
    if (!held)
      if (const Judged* before = replaced_by_pending_parse(name); before && before->analysis) {
        sql::Analysis resolved;
        const sql::Analysis* judged = nullptr;
        auto d = judge_as_run(*before->analysis, resolved, judged);
        if (before->review || !runs(*d))
          held = proxy_refusal(
              "policy.pending_parse",
              "a Parse of the statement name is not answered yet, and the statement it replaces is not allowed",
              fmt::format("statement refused: statement \"{}\" was parsed again in a batch the server has not "
                          "answered yet; if that Parse fails, this Bind runs the statement it replaced, which {}",
                          name, before->review ? "needs approval" : "the policy does not allow"),
              "send the Bind in the same batch as its Parse, or after the Parse's answer");
      }
    if (held) {
      return refuse_bind(*held, it->second.analysis, portal, substitute);
    }
  }
  // The name was also used by SQL PREPARE: the session may have DEALLOCATEd the protocol
  // statement and PREPAREd another under its name, which the proxy cannot tell from here (found
  // by adversarial testing: after a reload denied UPDATE, a Bind ran the PREPAREd UPDATE as the
  // SELECT once parsed under the name). The Bind must pass as EXECUTE of every text PREPAREd
  // under the name too.
  if (it != statements_.end() && !name.empty() && (sql_prepared_overflow_ || !sql_prepared_names_.empty())) {
    const std::string key(name);
    const auto p = prepared_.find(key);
    const bool sql_used = sql_prepared_names_.count(key) > 0;
    // Beyond what the proxy keeps (too many texts under the name, or too many names): it cannot
    // tell what the server holds under the name, so the Bind is refused (found by adversarial
    // testing: an untracked EXECUTE counted as opaque code, which the target allowed).
    const bool untracked = (sql_used && p != prepared_.end() && !p->second.empty() && !p->second.front()) ||
                           (sql_prepared_overflow_ && !sql_used);
    if (untracked) {
      return refuse_bind(*replaced_by_sql_prepare_decision(name), it->second.analysis, portal, substitute);
    }
    if (sql_used && !judge_bind_of_sql_prepared(portal, name, substitute)) return false;
  }
  // CLOSE / DISCARD ALL / DEALLOCATE bound to run take effect at their Execute (execute_effects):
  // a portal only bound runs nothing (found by an attack round: a Bind of DEALLOCATE x with no
  // Execute made the proxy forget x while the server kept it, and a later Bind of x ran unjudged).
  if (it == statements_.end() || !it->second.review) {
    // The portal is (re)bound from a statement that needs no review.
    if (!held_portals_.empty()) held_portal_rebound(portal);
    if (it == statements_.end()) {
      if (const auto p = prepared_.find(std::string(name)); p != prepared_.end()) {
        if (!p->second.empty() && !p->second.front()) {
          // Prepared under the name more often than the proxy keeps track of (as above, for a name
          // whose protocol statement a DEALLOCATE made the proxy forget).
          return refuse_bind(*replaced_by_sql_prepare_decision(name), nullptr, portal, substitute);
        }
        return judge_bind_of_sql_prepared(portal, name, substitute);
      }
      if (statements_overflow_ && (server_.generation() != statements_overflow_generation_ ||
                                   search_path_changed_ != statements_overflow_search_path_)) {
        // A statement parsed while the session kept too many to track: judged at its Parse only,
        // it cannot be judged again under today's policy or search_path (found by adversarial testing).
        return refuse_bind(*untracked_statement_decision(), nullptr, portal, substitute);
      }
      if (sql_prepared_overflow_ && !name.empty()) {
        // A name the proxy does not know while SQL PREPAREs went unrecorded: it may be one of
        // them (prepared under a policy since changed, or after a DEALLOCATE made the proxy forget
        // what the name held), so it is not run unjudged.
        return refuse_bind(*untracked_statement_decision(), nullptr, portal, substitute);
      }
      if (!name.empty()) {
        // A named statement the proxy does not know (never parsed through it, or forgotten after a
        // DEALLOCATE that ran): what the server holds under the name, if anything, was made where the
        // proxy could not see. Judged as SQL EXECUTE of a name the proxy never saw prepared is: opaque
        // code (found by an attack round: a name re-created behind the proxy's back after it forgot it
        // ran a statement the current policy denies). Allowed, the server answers for it (26000 when
        // the name does not exist).
        sql::Analysis exec =
            execute_of(name, "EXECUTE " + std::string(name) + " (protocol Bind of a statement the proxy does not know)", true);
        const policy::Decision d = decide(exec);
        if (!runs(d)) {
          auto a = std::make_shared<const sql::Analysis>(std::move(exec));
          return refuse_bind(d, a, portal, substitute);
        }
      }
      note_portal(portal, nullptr, 0);  // its statement is not known: the name no longer holds what it held
      return true;
    }
  }
  const auto gen = server_.generation();
  if (it->second.generation != gen || it->second.search_path_changed != search_path_changed_) {
    // The policy or the session's search_path changed since this statement was judged: judge it
    // again before it runs.
    const auto analysis = it->second.analysis;
    sql::Analysis resolved;
    const sql::Analysis* judged = nullptr;
    const auto decision = judge_as_run(*analysis, resolved, judged);
    const policy::Decision& d = *decision;
    const bool review = d.action == policy::Action::Review && server_.approvals();
    if (runs(d) || review) {
      it->second.generation = policy_generation_;
      it->second.search_path_changed = search_path_changed_;
      if (auditing() || review) it->second.decision = decision;
      if (review && !it->second.review) it->second.text = analysis->statements.empty() ? "" : analysis->statements[0].text;
      it->second.review = review;
      if (!review && !held_portals_.empty()) held_portal_rebound(portal);
    } else {
      if (auditing()) {
        audit_parse_refused(analysis, d, {});
        audit_close_portal(portal);
      }
      // The server still has the statement (a refused Bind leaves it): kept, and judged again at
      // every Bind until a policy allows it (found by adversarial testing: erased here, the next
      // Bind of the unnamed statement went through unjudged).
      it->second.generation = kStale;
      refuse_statement(d, analysis.get(), 'B', {}, substitute);
      return false;
    }
  }
  // Columns masked for the session asked for in binary format, where a rule refuses what is not text.
  if (masking() && it->second.analysis)
    if (auto why = masker_->binary_refusal(*it->second.analysis, name, body))
      return refuse_bind(*proxy_refusal("masking.unmaskable", *why,
                                        "statement refused: " + *why + "; masking rules apply to your session",
                                        "ask for the column in text format, or leave it out", "42501"),
                         it->second.analysis, portal, substitute);
  if (it->second.review &&
      !note_held_portal(portal, body, pos, it->second.analysis, it->second.text, it->second.param_types)) {
    policy::Decision d;
    d.action = policy::Action::Deny;
    d.rule = "approvals.held_portals";
    d.reason = "too many portals waiting for approval in one session";
    d.message = "statement refused: this session has bound too many portals of statements that need approval for "
                "the proxy to keep track of one more";
    d.hint = "close portals the session no longer needs";
    return refuse_bind(d, it->second.analysis, portal, substitute);
  }
  // A portal held for review is judged by its reviewer, and once approved its further Executes run.
  if (!it->second.review) note_portal(portal, it->second.analysis, it->second.generation);
  return true;
}

const policy::Policy& Session::live_policy() {
  const auto gen = server_.generation();
  if (!policy_rt_ || gen != policy_generation_) {
    policy_rt_ = server_.runtime();
    policy_generation_ = gen;
  }
  return *policy_rt_->config->policy;
}

bool Session::changes_search_path(const sql::Statement& st) {
  // RESET ALL ("all") and DISCARD ALL reset it too (found by an attack round: after RESET ALL a
  // masked session's unqualified names resolved to other tables than the proxy traced).
  for (const auto& name : st.settings)
    if (name == "search_path" || name == "*" || name == "all") return true;
  for (auto k : st.kinds)
    if (k == sql::StatementKind::Discard) return true;
  // Code the proxy cannot see into may call set_config('search_path', ...) (found by adversarial
  // testing: a DO block or a procedure switched the schema an allowed unqualified name read).
  if (st.opaque_code) return true;  // DO blocks among them
  for (auto k : st.kinds)
    if (k == sql::StatementKind::Call) return true;
  return false;
}

policy::Request Session::policy_request(std::chrono::system_clock::time_point now, std::vector<std::string>& grants) {
  const auto& policy = live_policy();
  policy::Request req;
  req.identity = &identity_;
  req.target = target_->name;
  req.environment = target_->environment;
  req.database = target_->backend_database(database_);
  req.client_address = client_address_;
  req.now = now;
  req.search_path_changed = search_path_changed_;
  if (policy.uses_grants() && server_.approvals()) {
    // Just-in-time access: checked per statement, so a grant ends when it expires or is revoked.
    grants = active_grants(req.now);
    req.grants = &grants;
  }
  if (login_) req.login_user = login_->user;
  return req;
}

std::shared_ptr<const policy::Decision> Session::judge(const sql::Analysis& analysis) {
  if (!search_path_changed_)
    for (const auto& st : analysis.statements)
      if (changes_search_path(st)) search_path_changed_ = true;  // also for the rest of this text
  const auto& policy = live_policy();
  // Everything else a decision depends on is fixed for the session (identity, target, database,
  // client address, login), so a statement served from the analysis cache is judged once per
  // policy generation, unless the clock (time windows) or grants can change the answer.
  Memo* slot = nullptr;
  if (analysis.cache_id != 0 && !policy.uses_time() && !policy.uses_grants() && !masking()) {
    if (!memo_) memo_ = std::make_unique<std::array<Memo, kMemoSlots>>();
    slot = &(*memo_)[analysis.cache_id % kMemoSlots];
    if (slot->cache_id == analysis.cache_id && slot->generation == policy_generation_ &&
        slot->search_path_changed == search_path_changed_)
      return slot->decision;
  }
  std::vector<std::string> grants;
  policy::Request req = policy_request(std::chrono::system_clock::now(), grants);
  req.analysis = &analysis;
  auto d = std::make_shared<const policy::Decision>(policy.evaluate(req));
  if (masking() && runs(*d))
    if (auto refused = mask_refusal(analysis)) d = std::move(refused);
  if (slot) {
    slot->cache_id = analysis.cache_id;
    slot->generation = policy_generation_;
    slot->search_path_changed = search_path_changed_;
    slot->decision = d;
  }
  return d;
}

// Whether a statement may change a setting that decides how the server tokenises SQL
// (standard_conforming_strings, client_encoding): then nothing after it is judged until the
// server has answered it and reported the new values (see unsafe_for_analysis).
bool Session::may_change_tokenising(const sql::Analysis& a) {
  for (const auto& st : a.statements) {
    if (st.opaque_code) return true;
    for (auto k : st.kinds)
      if (k == sql::StatementKind::Do || k == sql::StatementKind::Call) return true;
    for (const auto& name : st.settings)
      if (name == "standard_conforming_strings" || name == "client_encoding" || name == "all" || name == "*" ||
          name == "names")
        return true;
  }
  return false;
}

std::shared_ptr<const policy::Decision> Session::mask_refusal(const sql::Analysis& analysis) {
  // A statement after one that changes tables or the search_path in the same text is judged as
  // the masker judges what follows such a statement in a batch (path uncertain): the catalog the
  // proxy holds may no longer say which table a name means (found by an attack round: DROP TABLE
  // of a shadowing table; COPY m_customers TO STDOUT in one Query copied the masked table raw).
  const bool was_uncertain = masker_->path_uncertain();
  bool uncertain = was_uncertain;
  std::optional<std::string> why;
  for (const auto& st : analysis.statements) {
    masker_->set_path_uncertain(uncertain);
    why = masker_->refusal_for(st);
    if (why) break;
    uncertain = uncertain || mask_changes_catalog(st) || changes_search_path(st);
  }
  masker_->set_path_uncertain(was_uncertain);
  if (why)
      return proxy_refusal("masking.unmaskable", *why,
                           "statement refused: " + *why + "; masking rules apply to your session",
                           "results are masked for you; statements whose values masking cannot follow are refused "
                           "(docs/policy.md, Masking)", "42501");
  return nullptr;
}

bool Session::judge_client_message(char type, std::string_view body, std::string& substitute) {
  if (settings_barrier_ == Barrier::AtSync) {
    // An earlier statement of this extended-protocol batch may change how the server tokenises
    // SQL, and its answer cannot be awaited inside the batch: what follows it cannot be judged.
    // That includes a Query sent before the batch's Sync (found by adversarial testing: it was
    // read with the old setting and the server ran it with the new one).
    policy::Decision d;
    d.action = policy::Action::Deny;
    d.rule = "policy.settings_barrier";
    d.reason = "sent in the same batch after a statement that may change standard_conforming_strings or "
               "client_encoding";
    d.message = "statement refused: it follows, in the same batch (before Sync), a statement that may change how "
                "the server reads SQL (standard_conforming_strings, client_encoding, or code the proxy cannot see "
                "into), so the proxy cannot check it";
    d.hint = "send it after the previous statement's result (after a Sync)";
    std::string name;
    if (type == 'P') {
      std::size_t pos = 0;
      bool ok = true;
      name = protocol::c_string_at(body, pos, ok);
    }
    if (auditing()) audit_refused_text(type, body, d);
    refuse_statement(d, nullptr, type, name, substitute);
    return false;
  }
  std::shared_ptr<const sql::Analysis> analysis;
  sql::Analysis local;
  std::string_view statement_name;
  bool ok = true;
  // A long text was analysed on the analysis pool before this scan (Session::front_analysis_).
  auto offloaded = std::move(front_analysis_);
  front_analysis_.reset();
  if (type == 'Q') {
    std::size_t pos = 0;
    const std::string_view text = protocol::c_string_at(body, pos, ok);
    if (ok) note_statement_text(text);
    // Without audit, a Query's analysis is used only to judge it and is dropped after (a Query
    // that waits for review or a row estimate was analysed again, with its text, before this):
    // the statement text in it is not read, so a cached shape serves as it is.
    if (ok) analysis = offloaded ? offloaded : worker_.analyzer.analyze(text, /*own_text=*/auditing());
  } else if (type == 'P') {
    std::size_t pos = 0;
    statement_name = server_name(protocol::c_string_at(body, pos, ok));
    if (ok) {
      const std::string_view text = protocol::c_string_at(body, pos, ok);
      if (ok) note_statement_text(text);
      if (ok) analysis = offloaded ? offloaded : worker_.analyzer.analyze(text);
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
    if (auditing()) audit_refused_text(type, body, d);
    refuse_statement(d, nullptr, type, statement_name, substitute);
    return false;
  }

  // EXECUTE of a statement prepared with SQL PREPARE (also inside EXPLAIN, CREATE TABLE AS and
  // multi-statement texts): judge what was prepared under that name.
  sql::Analysis resolved;
  const sql::Analysis* judged = nullptr;
  std::shared_ptr<const policy::Decision> decision = judge_as_run(*a, resolved, judged);
  if (!client_utf8_ && decision->action != policy::Action::Deny && names_non_ascii(*a)) [[unlikely]] {
    // The policy names tables, columns and functions in UTF-8, and the server converts the text to
    // the database's encoding before it reads identifiers; the proxy reads the client's bytes.
    // A non-ASCII name in another encoding would match no rule (found by adversarial testing).
    decision = proxy_refusal(
        "policy.client_encoding", "a non-ASCII name under client_encoding other than UTF8",
        "statement refused: it names a table, column, function, cursor or prepared statement with non-ASCII "
        "characters, which Gatehouse checks only with client_encoding UTF8",
        "SET client_encoding = 'UTF8' (the data itself may stay in any encoding PostgreSQL converts)", "0A000");
  }
  if (decision->action != policy::Action::Deny &&
      (long_non_ascii(statement_name) || names_non_ascii(*a, true))) [[unlikely]] {
    // The server cuts names at 63 bytes in the database's encoding (a LATIN1 or SQL_ASCII database
    // cuts a UTF-8 character in two where the proxy, reading UTF-8, keeps it whole), so a long
    // non-ASCII name may not be the name the proxy matched (found by an attack round: a protocol
    // Bind of a long non-ASCII name ran the UPDATE SQL PREPAREd under it after a rule denied it).
    decision = long_name_refusal();
  }
  // SET standard_conforming_strings = off (or a client-only encoding): refused before it runs, so
  // the session goes on; the server's report of such a change (set_config, ...) ends it instead.
  for (const auto& st : a->statements) {
    if (decision->action == policy::Action::Deny) break;
    for (const auto& [setting, value] : st.setting_values) {
      if (!unsafe_for_analysis(setting, value)) continue;
      decision = proxy_refusal(
          "policy.unsafe_setting", "SET " + setting + " = " + value,
          "statement refused: " + setting + " = " + value +
              " is not supported through Gatehouse: it changes how the server reads SQL, and the proxy checks SQL "
              "only with standard_conforming_strings on and an ASCII-safe client_encoding",
          kUnsafeSettingHint, "0A000");
      break;
    }
  }
  if (!held_portals_.empty() && decision->action != policy::Action::Deny) {
    // As written, and as resolved: EXECUTE of a statement that is a FETCH of the portal.
    if (auto h = held_portal_fetch(*a); h) decision = std::move(h);
    else if (judged && judged != a)
      if (auto hr = held_portal_fetch(*judged); hr) decision = std::move(hr);
  }
  if (type == 'Q' && release_front_) {
    // The Query a reviewer approved (session_hold.cpp): it runs once, exactly as submitted. A
    // policy that now denies it still wins.
    release_front_ = false;
    if (decision->action == policy::Action::Review || decision->action == policy::Action::Allow)
      decision = std::make_shared<const policy::Decision>(std::move(released_decision_));
  }
  const policy::Decision& d = *decision;
  if (spdlog::should_log(spdlog::level::debug)) {
    // The normalized text (literals as $n): a debug log must not carry values either.
    std::string shown = a->statements.empty() ? std::string(a->error ? "(unparsed)" : "(empty)") : a->statements[0].normalized;
    if (a->statements.size() > 1) shown += " (+" + std::to_string(a->statements.size() - 1) + " more)";
    if (shown.size() > 200) shown = shown.substr(0, 200) + "...";
    spdlog::debug("session {}: {} {} {}: {}{}{}", id_, identity_.subject, type == 'P' ? "Parse" : type == 'F' ? "FunctionCall" : "Query",
                  shown, policy::action_name(d.action), d.rule.empty() ? "" : " by rule ", d.rule);
  }
  // A statement prepared with the extended protocol that needs review is parsed as usual; its
  // Executes wait for a reviewer, with their parameters (session_hold.cpp). Fail closed when the
  // session cannot keep track of it.
  const bool review_at_execute = type == 'P' && analysis && d.action == policy::Action::Review &&
                                 server_.approvals() &&
                                 (statements_.size() < kMaxProtocolStatements || statements_.count(statement_name));
  if (a->error) metrics_.statements_unknown.fetch_add(1, std::memory_order_relaxed);
  if (auditing()) {
    const bool allowed = runs(d) || review_at_execute;
    if (type == 'F') {
      analysis = std::make_shared<const sql::Analysis>(std::move(local));
      if (judged == a) judged = analysis.get();
      a = analysis.get();
    }
    if (type != 'P') {
      // EXECUTE and FETCH are recorded with what they run: the prepared statement's or the cursor's
      // kinds and relations besides their own kind, so that searches by table, kind and tag (and
      // the compliance report) find them (they listed only "execute" or "fetch").
      std::shared_ptr<const sql::Analysis> recorded =
          judged == &resolved && analysis ? as_recorded(*analysis, resolved) : analysis;
      audit_query(type, recorded, decision, !allowed, query_text_of(type, body));
      if (recorded != analysis) audit_batch_.back().text = query_text_of(type, body);  // as sent, once
      // A fast-path call's arguments are its parameters (lo_write's data, lo_open's mode, ...).
      if (type == 'F' && rt_->config->audit.parameters != config::Audit::Params::None)
        read_param_values(body, 4, audit_batch_.back().params, audit_batch_.back().params_binary);
    } else if (!allowed)
      audit_parse_refused(analysis, d, query_text_of(type, body));
  }
  if (runs(d) || review_at_execute) {
    if (type == 'Q') note_deallocs(*a);  // first: a PREPARE after it in the text is kept
    // A parsed PREPARE creates its name when it runs: recorded at its Execute (execute_effects),
    // each time, so counted once however often it is parsed and run.
    if (type != 'P') remember_prepared(*a);
    remember_cursors(*a, type);
    for (const auto& st : a->statements)
      if (!st.settings.empty()) {
        note_proxy_settings(*a);  // SET gatehouse.wait / gatehouse.reason (session_hold.cpp)
        break;
      }
    // A Query or a FunctionCall gets its own ReadyForQuery; a Parse waits for its batch's Sync.
    if (may_change_tokenising(*judged)) settings_barrier_ = type == 'P' ? Barrier::AtSync : Barrier::AfterThis;
    if (type == 'P' && analysis && !estimate_skip_logged_) {
      bool writes = false;
      for (const auto& st : analysis->statements) writes |= !st.writes.empty();
      if (writes && live_policy().row_limit(target_->name)) {
        estimate_skip_logged_ = true;  // once per session: ORMs send many
        spdlog::info("session {}: row estimate skipped for an UPDATE/DELETE sent with the extended protocol "
                     "(max_rows_affected applies to simple-protocol statements)", id_);
      }
    }
    if (!d.would_have.empty())
      for (const auto& dr : d.would_have)
        spdlog::info("session {}: {} audit_only rule \"{}\" would have {}: {}", id_, identity_.subject, dr.rule,
                     policy::action_name(dr.action), dr.reason);
    if (type == 'P' && analysis) {
      std::shared_ptr<const policy::Decision> judged_by;
      if (auditing() || review_at_execute) judged_by = decision;
      Judged j{analysis, policy_generation_, std::move(judged_by), review_at_execute, {}, {}};
      j.search_path_changed = search_path_changed_;
      if (review_at_execute) {
        j.text = query_text_of('P', body);
        // The parameter types the client named, to show binary values as text to reviewers.
        std::size_t at = statement_name.size() + 1 + j.text.size() + 1;
        if (body.size() >= at + 2) {
          const std::uint16_t n = load_be16(body.data() + at);
          at += 2;
          for (std::uint16_t i = 0; i < n && body.size() >= at + 4; ++i, at += 4)
            j.param_types.push_back(load_be32(body.data() + at));
        }
      }
      note_parse(statement_name, std::move(j));
    }
    return true;
  }
  // A refused Parse leaves the name as it was: the backend gets a Parse that fails (and keeps a
  // named statement it already has under that name).
  refuse_statement(d, a, type, statement_name, substitute, {}, query_text_of(type, body));
  return false;
}

void Session::refuse_statement(const policy::Decision& d, const sql::Analysis* analysis, char type,
                               std::string_view name, std::string& substitute, std::string_view sqlstate,
                               std::string_view text) {
  protocol::ErrorFields e;
  e.severity = "ERROR";
  e.sqlstate = sqlstate.empty() ? policy::refusal_sqlstate(d) : sqlstate;
  e.message = d.message.empty() ? "statement refused by the proxy's policy" : d.message;
  e.hint = d.hint;
  e.position = d.position;
  switch (d.action) {
    case policy::Action::Review:
      metrics_.statements_reviewed.fetch_add(1, std::memory_order_relaxed);
      if (!d.approval.empty()) break;  // the hold's own outcome (session_hold.cpp) says it all
      // Not holdable (a fast-path FunctionCall, or a session that keeps too many prepared
      // statements to track one more) or approvals are off: refused (fail closed).
      e.message += server_.approvals() ? (type == 'F' ? " (approval required; fast-path function calls cannot be held "
                                                        "for approval)"
                                                      : " (approval required; this session has too many prepared "
                                                        "statements for the proxy to hold one more for approval)")
                                       : " (approval required, and approvals are not enabled on this proxy)";
      if (server_.approvals())
        e.hint = (type == 'F' ? std::string("call the function in a SELECT so that it can be held for a reviewer")
                              : std::string("close prepared statements the session no longer needs")) +
                 (e.hint.empty() ? std::string() : "; " + e.hint);
      else if (e.hint.empty())
        e.hint = "ask an administrator to run it, or change the policy";
      break;
    case policy::Action::Mask:
      // Masking is not built yet: a statement whose results would be masked is refused, and says
      // so first (the policy's words promise masked results: "Allowed with masking", "values are
      // masked in the result", which a user refused read as the opposite; found by a security
      // team's trial).
      e.message = "statement refused: its results would have to be masked, and this proxy cannot mask yet (" +
                  e.message + ")";
      e.hint = "select columns that are not classified as sensitive";
      break;
    default:
      break;
  }
  if (!d.rule.empty()) e.detail = "rule: " + d.rule;
  // Refusals because the audit trail fails are not policy blocks, and are logged (rate-limited)
  // by refuse_batch_for_audit, not once per statement.
  if (d.rule != "audit.required") {
    metrics_.statements_blocked.fetch_add(1, std::memory_order_relaxed);
    std::string what = "statement";
    if (analysis && d.statement >= 0 && std::size_t(d.statement) < analysis->statements.size())
      what = analysis->statements[std::size_t(d.statement)].normalized;
    spdlog::warn("session {}: {} refused by {} ({}): {} [{}]", id_, identity_.subject,
                 d.rule.empty() ? std::string("the default action") : d.rule, policy::action_name(d.action), d.reason,
                 what);
  }

  if (type == 'P' || type == 'B' || type == 'E') refused_in_batch_ = true;
  if (nonce_.empty()) nonce_ = make_nonce();
  // Unique per refusal ("_" + sequence, then a non-digit so _1 never matches inside _12), and
  // unpredictable each time: a substitute's text is visible in pg_stat_activity and the server's
  // log, and a client that knew the next marker could put it in an error of a statement that
  // runs, to have that error taken for the refusal's (found by adversarial testing).
  std::string marker = fmt::format("gatehouse_blocked_{}{}_{}_", nonce_, make_nonce(), ++refusal_seq_);
  substitute.clear();
  std::size_t probe = 0;
  // Text the proxy's parser rejects: the server parses it too, behind the failing statement
  // (found by running PostgreSQL's regression suite through the proxy: the proxy's parser
  // error lacked the server's SQLSTATE for some, its hints, and matched an older minor release's
  // wording). Only a deny of unparsable text that the server reads as the client sent it, and
  // only when no unsynced extended message precedes it, so that an error before the batch's end
  // is the substitute's own (found by adversarial testing). See ADR 0004.
  const bool probe_text = (type == 'Q' || type == 'P') && !batch_open_ && analysis && analysis->error &&
                          analysis->error->parser && d.rule == "policy.unknown_action" &&
                          d.action == policy::Action::Deny && !text.empty() &&
                          text.find('\0') == std::string_view::npos;
  if (type == 'P' || type == 'B' || type == 'E') {
    // A Bind or Execute is replaced by a Parse under a throwaway name: it fails at Parse,
    // before the backend stores or drops anything, and the rest of the batch is skipped as for a
    // failed Bind or Execute.
    std::string body(type != 'P' ? std::string_view(marker) : name);
    body.push_back('\0');
    body += fmt::format("SELECT '{}'::int", marker);  // fails when analysed, at Parse (25P02 first in a failed block)
    if (probe_text) {
      body += ';';
      probe = body.size() - name.size() - 1;
      body += text;
    }
    body.push_back('\0');
    body.append(2, '\0');  // no parameter types
    protocol::write_message(substitute, 'P', body);
  } else {
    // Query and FunctionCall: one ReadyForQuery each. A statement that fails when it is analysed
    // (not a syntax error): in a failed transaction block the backend answers it with 25P02 first,
    // as it would the refused statement, and that error is passed on unchanged.
    // "BEGIN; ...; <refused>": PostgreSQL would run the BEGIN, fail at the first refused statement
    // and leave the session in a failed transaction block, whose later statements fail until
    // ROLLBACK. The substitute then does the same: BEGIN, then the failing statement (a syntax
    // error would stop the whole string before the BEGIN ran).
    int first = d.statement;
    if (type == 'Q' && analysis && analysis->statements.size() > 1) {
      // The decision names the most restrictive statement; PostgreSQL stops at the first that fails.
      for (std::size_t i = 0; i < analysis->statements.size() && int(i) < first; ++i) {
        sql::Analysis one;
        one.statements.push_back(analysis->statements[i]);
        if (!runs(*judge(one))) {
          first = int(i);
          break;
        }
      }
    }
    const bool begin = type == 'Q' && opens_transaction_before(analysis, first);
    std::string query = fmt::format("{}SELECT '{}'::int", begin ? "BEGIN;" : "", marker);
    if (probe_text) {
      query += ';';
      probe = query.size();
      query += text;
    }
    protocol::write_query(substitute, query);
  }
  refusals_.push_back(Refusal{std::move(marker), syncs_sent_, std::move(e), probe, type == 'P' && probe > 0});
  if (refusals_.size() > 64) refusals_.pop_front();  // substitutes skipped long ago
}

}  // namespace gh::proxy
