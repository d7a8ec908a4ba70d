// Held statements. A simple-protocol Query the policy sends for `review` is not forwarded: the
// proxy lets everything before it finish, opens an approval request (approvals::Service), tells
// the client with a NoticeResponse (request id, console link, CLI command), and waits up to
// approvals.timeout. Approved: the Query runs once, exactly as submitted (the scan judges it
// again and lets it pass; a policy that now denies it still wins). Rejected, timed out, cancelled
// (Ctrl-C) or not waited for (SET gatehouse.wait = off): the Query is refused the way every
// refusal is (a substitute fails on the backend, so the transaction state is PostgreSQL's own;
// docs/adr/0004), with the request id in the message. A request approved after its client
// stopped waiting may be run once by the same identity within approvals.rerun_window.
//
// With the extended protocol the Parse of such a statement goes to the backend as usual (parsing
// runs nothing), and each Bind of it records its portal and parameters (held_portals_). The
// Execute of that portal is what is held: the request carries the statement and the exact
// parameter values, and the same outcomes apply to the Execute (refused: a substitute fails in
// its place and the backend skips to Sync, as for any failed Execute). Approved, the portal runs,
// and later Executes of the same portal (fetching more rows) run too; a new Bind needs a new
// approval. While held, the backend session sits inside the batch's implicit transaction with
// the locks its Parse took (docs/policy.md says so).
#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "approvals/approvals.h"
#include "base/bytes.h"
#include "net/await.h"
#include "protocol/binary_values.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace gh::proxy {

namespace {

// The statement was not run because its approval request is still open (not waited for, or the
// wait ran out). An implementation-defined SQLSTATE class, so agents can tell it from a denial
// (42501), a rejection (42501, with the reviewer's name) and a cancel (57014).
constexpr std::string_view kApprovalPending = "RV001";

constexpr std::size_t kMaxHeldPortals = 10000;      // per session; more: the Bind is refused
constexpr std::size_t kMaxShownParameter = 10000;  // characters of one parameter shown to reviewers

std::string_view query_text(std::string_view body) {
  const auto nul = body.find('\0');
  return nul == std::string_view::npos ? body : body.substr(0, nul);
}

// The statement as reviewers, webhooks and the trail see it: a statement that holds a password
// (CREATE/ALTER ROLE ... PASSWORD '...') by its normalized text, whose literals are $n, as the
// audit records it (found by adversarial testing: reviewers read the password).
std::string shown_text(const sql::Analysis* analysis, const std::string& text) {
  if (!analysis || analysis->error) return text;
  bool secret = false;
  for (const auto& st : analysis->statements) secret |= st.secret;
  if (!secret) return text;
  std::string out;
  for (const auto& st : analysis->statements) {
    if (!out.empty()) out += "; ";
    out += st.secret ? st.normalized : st.text;
  }
  return out;
}

// The justification a person wrote into the statement: /* reason: ... */ (or -- reason: ...).
std::string reason_comment(std::string_view text) {
  for (std::size_t at = text.find("reason:"); at != std::string_view::npos; at = text.find("reason:", at + 1)) {
    const auto open = text.rfind("/*", at);
    const auto close_before = text.rfind("*/", at);
    const auto line = text.rfind("--", at);
    const auto nl = text.rfind('\n', at);
    std::string_view rest = text.substr(at + 7);
    if (open != std::string_view::npos && (close_before == std::string_view::npos || close_before < open)) {
      rest = rest.substr(0, rest.find("*/"));
    } else if (line != std::string_view::npos && (nl == std::string_view::npos || nl < line)) {
      rest = rest.substr(0, rest.find('\n'));
    } else {
      continue;
    }
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.back()))) rest.remove_suffix(1);
    if (!rest.empty()) return std::string(rest.substr(0, 1000));
  }
  return {};
}

// The value of `SET gatehouse.<name> = value` / `TO value` in one statement's text; nullopt
// when the statement does not set it. RESET gives "".
std::optional<std::string> set_value(std::string_view text, std::string_view name) {
  std::string lower(text);
  for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  const std::string key = "gatehouse." + std::string(name);
  const auto at = lower.find(key);
  if (at == std::string::npos) return std::nullopt;
  if (lower.find("reset") != std::string::npos && lower.find("reset") < at) return std::string();
  std::size_t i = at + key.size();
  auto skip = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  skip();
  if (i < text.size() && text[i] == '=')
    ++i;
  else if (lower.compare(i, 2, "to") == 0)
    i += 2;
  else
    return std::nullopt;
  skip();
  std::string value;
  if (i < text.size() && text[i] == '\'') {
    for (++i; i < text.size(); ++i) {
      if (text[i] == '\'') {
        if (i + 1 < text.size() && text[i + 1] == '\'') {
          value.push_back('\'');
          ++i;
          continue;
        }
        break;
      }
      value.push_back(text[i]);
    }
  } else {
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i])) && text[i] != ';') value.push_back(text[i++]);
  }
  return value;
}

// A gatehouse.wait value: anything but a false boolean (off, false, no, 0; any case) waits.
bool waits(std::string_view v) {
  std::string lower(v);
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  return !(lower == "off" || lower == "false" || lower == "0" || lower == "no");
}

std::string minutes_text(std::chrono::milliseconds d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s % 3600 == 0) return fmt::format("{} h", s / 3600);
  if (s % 60 == 0) return fmt::format("{} min", s / 60);
  return fmt::format("{} s", s);
}

}  // namespace

void Session::note_proxy_settings(const sql::Analysis& a) {
  for (const auto& st : a.statements)
    for (const auto& name : st.settings) {
      if (name == "gatehouse.wait" || name == "all" || name == "*") {
        if (auto v = set_value(st.text, "wait"))
          wait_for_approval_ = waits(*v);
        else if (name != "gatehouse.wait")
          wait_for_approval_ = true;  // RESET ALL
      }
      if (name == "gatehouse.reason" || name == "all" || name == "*") {
        if (auto v = set_value(st.text, "reason"))
          reason_ = *v;
        else if (name != "gatehouse.reason")
          reason_.clear();
      }
    }
}

bool Session::wants_hold(std::string_view body) {
  if (!server_.approvals() || !live_policy().may_review()) return false;  // the common case: no extra work
  const auto text = query_text(body);
  const auto a = front_analysis_ ? front_analysis_ : worker_.analyzer.analyze(text);
  sql::Analysis resolved;
  const sql::Analysis* judged = resolve_executes(*a, resolved) ? &resolved : a.get();
  return decide(*judged).action == policy::Action::Review;
}

void Session::on_client_cancel() {
  if (!holding_) return;
  hold_cancelled_ = true;
  relay_signal_.cancel();
}

bool Session::wants_hold_execute(std::string_view body) {
  const auto portal = server_name(body.substr(0, body.find('\0')));
  const auto h = held_portals_.find(portal);
  // Rebound from another statement in this very batch: this Execute runs that portal, or nothing
  // if the Bind failed (the server skips the rest of the batch).
  return h != held_portals_.end() && !h->second.approved && h->second.rebound_group != syncs_sent_;
}

bool Session::note_held_portal(std::string_view portal, std::string_view body, std::size_t pos,
                               const std::shared_ptr<const sql::Analysis>& analysis, const std::string& text,
                               const std::vector<std::uint32_t>& param_types) {
  auto it = held_portals_.find(portal);
  const bool existed = it != held_portals_.end();
  if (!existed) {
    if (held_portals_.size() >= kMaxHeldPortals) return false;
    it = held_portals_.emplace(std::string(portal), HeldPortal{}).first;
  }
  HeldPortal& h = it->second;
  // Replacing a held portal bound in an earlier batch (this Bind may yet fail and leave it).
  const bool shadows = existed && !h.approved && h.group < syncs_sent_;
  h = HeldPortal{};
  h.shadows = shadows;
  h.group = syncs_sent_;
  h.seq = ++portal_ops_;
  h.analysis = analysis;
  h.text = text;
  // The values as reviewers see them, and the exact bytes with their format for the match key
  // (so that a text "\x41" and a binary 'A' are different requests).
  std::vector<std::optional<std::string>> exact;
  auto fail = [&] {
    h.params.emplace_back("<malformed Bind message>");
    exact.emplace_back("malformed");
  };
  do {
    if (body.size() < pos + 2) { fail(); break; }
    const std::uint16_t nfmt = load_be16(body.data() + pos);
    pos += 2;
    if (body.size() < pos + 2u * nfmt + 2) { fail(); break; }
    const char* fmts = body.data() + pos;
    pos += 2u * nfmt;
    const std::uint16_t nparams = load_be16(body.data() + pos);
    pos += 2;
    for (std::uint16_t i = 0; i < nparams; ++i) {
      if (body.size() < pos + 4) { fail(); break; }
      const auto len = std::int32_t(load_be32(body.data() + pos));
      pos += 4;
      if (len < 0) {
        h.params.emplace_back(std::nullopt);
        exact.emplace_back(std::nullopt);
        continue;
      }
      if (body.size() < pos + std::size_t(len)) { fail(); break; }
      const auto value = body.substr(pos, std::size_t(len));
      pos += std::size_t(len);
      const bool binary = nfmt != 0 && load_be16(fmts + 2 * (nfmt == 1 ? 0 : std::min<std::uint16_t>(i, nfmt - 1))) == 1;
      std::string shown;
      if (binary) {
        // As text when the Parse named a type the proxy can decode; otherwise the bytes in hex.
        const std::uint32_t oid = i < param_types.size() ? param_types[i] : 0;
        auto text_value = value.size() <= kMaxShownParameter ? protocol::binary_value_text(oid, value) : std::nullopt;
        if (text_value && oid != 17) {
          shown = std::move(*text_value);
        } else {
          shown = protocol::hex_text(value.substr(0, kMaxShownParameter / 2));
          if (value.size() > kMaxShownParameter / 2) shown += fmt::format("... ({} bytes, binary)", value.size());
        }
        exact.emplace_back("b:" + std::string(value));
      } else {
        shown = std::string(value.substr(0, kMaxShownParameter));
        if (value.size() > kMaxShownParameter) shown += fmt::format("... ({} bytes)", value.size());
        exact.emplace_back("t:" + std::string(value));
      }
      h.params.emplace_back(std::move(shown));
    }
  } while (false);
  h.key = scoped_match_key(approvals::match_key(text, exact));
  return true;
}

std::string Session::scoped_match_key(const std::string& statement_key, const std::string* search_path) const {
  // An approval covers the statement in the database and search_path it was held in: the same
  // text elsewhere (another database through a "*" target, another schema after SET search_path)
  // is another request (found by adversarial testing: an approved DELETE re-run in another
  // database; then in another schema, when only "search_path set" was part of the key).
  std::string scope = statement_key;
  scope += '\0';
  scope += database_;
  scope += '\0';
  if (search_path)
    scope += "search_path=" + *search_path;
  else
    scope += search_path_changed_ ? "search_path set" : "search_path default";
  return approvals::match_key(scope, {});
}

void Session::approve_held_portal(const std::string& portal, const policy::Decision& by) {
  auto& h = held_portals_[portal];
  h.approved = true;
  h.approved_generation = server_.generation();
  if (auditing())
    if (auto p = portals_.find(portal); p != portals_.end()) p->second.decision = std::make_shared<const policy::Decision>(by);
}

asio::awaitable<std::error_code> Session::write_client_between_messages(const std::string& bytes) {
  while (client_writer_ == ClientWriter::Relay && !ending_) {
    client_writer_waiter_ = true;
    co_await wait_relay_signal();
  }
  client_writer_waiter_ = false;
  client_writer_ = ClientWriter::Hold;
  const auto ec = co_await client_->write_all(bytes.data(), bytes.size());
  client_writer_ = ClientWriter::None;
  relay_signal_.cancel();  // the relay may wait for its turn
  co_return ec;
}

asio::awaitable<std::optional<End>> Session::refuse_front_query(const policy::Decision& d,
                                                                const std::shared_ptr<const sql::Analysis>& analysis,
                                                                std::string_view sqlstate) {
  const char type = cin_.data()[0];
  const std::uint32_t wire = load_be32(cin_.data() + 1) + 1;
  const std::string_view body(cin_.data() + 5, wire - 5);
  std::string substitute;
  if (type == 'E') {
    // Refused in its batch: the backend skips what follows up to Sync, as for a failed Execute.
    if (auditing()) audit_execute_refused(body, d, sqlstate);
    refuse_statement(d, analysis.get(), 'E', {}, substitute, sqlstate);
    metrics_.statements.fetch_add(1, std::memory_order_relaxed);
    forwarded('P');
    if (masker_) masker_->on_ext();
  } else {
    if (auditing()) {
      audit_query('Q', analysis, d, true, query_text(body));
      audit_batch_.back().sqlstate = std::string(sqlstate);
    }
    refuse_statement(d, analysis.get(), 'Q', {}, substitute, sqlstate);
    metrics_.statements.fetch_add(1, std::memory_order_relaxed);
    statement_started();
    ++syncs_sent_;
    forwarded('Q');
    if (masker_) masker_->on_query(nullptr);
  }
  // A held statement the client cancelled (57014) ends as cancelled, as one cancelled while it
  // runs does (recorded as refused, `--outcome cancelled` missed it: found by a security team's trial).
  if (sqlstate == "57014" && !audit_batch_.empty() && audit_batch_.back().outcome == "refused")
    audit_batch_.back().outcome = "cancelled";
  cin_.consume(wire);
  front_analysis_.reset();
  front_estimated_ = false;
  if (!audit_batch_.empty()) {
    bool rewritten = false;
    co_await audit_submit_batch(rewritten, 0);
    if (ending_) co_return End{};
  }
  const auto wec = co_await backend_->write_all(substitute.data(), substitute.size());
  if (ending_) co_return End{};
  if (wec) co_return backend_io_end(wec);
  co_return std::nullopt;
}

// g++ 12 warns (-Wmismatched-new-delete) on the coroutine frame's deallocation in this function:
// asio allocates and frees awaitable frames with its own matching operators; the e2e hold tests
// (approve, reject, cancel, no-wait, re-run, shutdown) run clean under AddressSanitizer.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<std::optional<End>> Session::hold_front_query(std::optional<policy::Decision> given) {
  auto* svc = server_.approvals();
  const bool given_estimate = given.has_value();
  const char type = cin_.data()[0];
  const std::uint32_t wire = load_be32(cin_.data() + 1) + 1;
  const std::string_view body(cin_.data() + 5, wire - 5);
  // What is held: the Query's text, or the statement and parameters of the Execute's portal.
  std::string text, key, portal, search_path_now;
  std::vector<std::optional<std::string>> params;
  std::shared_ptr<const sql::Analysis> analysis;
  if (type == 'E') {
    portal = std::string(server_name(body.substr(0, body.find('\0'))));
    const auto h = held_portals_.find(portal);
    // Gone since the scan found it: the server closed the portal or ended its transaction, so
    // the Execute finds no portal there.
    if (h == held_portals_.end()) co_return std::nullopt;
    text = h->second.text;
    params = h->second.params;
    key = h->second.key;
    analysis = h->second.analysis;
  } else {
    text = std::string(query_text(body));
    analysis = front_analysis_ ? front_analysis_ : worker_.analyzer.analyze(text);
  }
  sql::Analysis resolved;
  const sql::Analysis* judged = resolve_executes(*analysis, resolved) ? &resolved : analysis.get();
  // `given`: a review decided outside the policy (the row-estimate limit, session_estimate.cpp).
  // An Execute is judged again: the policy or the identity's grants may have changed since Bind.
  policy::Decision d = given ? std::move(*given) : decide(*judged);
  if (type == 'E' && runs(d)) {
    approve_held_portal(portal, d);
    co_return std::nullopt;
  }
  if (type == 'E' && (!svc || d.action != policy::Action::Review)) {
    // Denied now, or approvals were turned off: refused (fail closed).
    co_return co_await refuse_front_query(d, analysis, "42501");
  }
  if (type == 'E') {
    const auto h = held_portals_.find(portal);
    if (h != held_portals_.end() && h->second.shadows && h->second.group != syncs_sent_) {
      // Bound over another held portal of the name in an earlier batch: if that Bind failed (the
      // name taken, then ROLLBACK TO), the server runs the other portal, and a reviewer would
      // approve a statement that is not the one that runs. Refused; a Bind in the same batch as
      // its Execute is unambiguous.
      policy::Decision refuse = d;
      refuse.action = policy::Action::Deny;
      refuse.rule = "approvals.held_portal";
      refuse.reason = "the portal was bound over another portal waiting for approval, in an earlier batch";
      refuse.message = fmt::format("statement refused: portal \"{}\" was bound over a portal waiting for approval, "
                                   "and the proxy cannot tell which of the two the server holds",
                                   portal);
      refuse.hint = "send the Bind and the Execute in one batch (before one Sync), or close the portal first";
      co_return co_await refuse_front_query(refuse, analysis, "42501");
    }
  }
  if (!svc || d.action != policy::Action::Review) co_return std::nullopt;  // judged as usual by the scan

  // Everything sent before it is answered first: then the client may hear from the proxy
  // without interleaving with the backend's answers, and the server can be asked for its settings
  // (before, a Query pipelined ahead of it answered the proxy's question: found by adversarial
  // testing, the client chose the search_path an approval was matched against).
  while (inflight_ > 0 && !ending_) co_await wait_relay_signal();
  if (ending_) co_return End{};
  if (type == 'Q' && tx_status_ != 'E') {
    // gatehouse.wait and gatehouse.reason as the server holds them now: SET LOCAL, a rolled-back
    // SET and set_config() all count as PostgreSQL counts them (found by adversarial testing: the
    // proxy's own reading of SET statements ignored transactions); and the search_path, which an
    // approval is bound to. The backend is idle here (everything sent before was answered, and no
    // extended-protocol batch is open before a simple Query). When it cannot be asked, the proxy's reading stands.
    if (auto stop = co_await capture_query(
            "SELECT octet_length(current_setting('search_path')) || ':' || current_setting('search_path') || "
            "coalesce(current_setting('gatehouse.wait', true), '') || E'\\n' || "
            "coalesce(current_setting('gatehouse.reason', true), '')"))
      co_return std::move(*stop);
    if (!explain_.error) {
      const std::string& got = explain_.json;
      const auto colon = got.find(':');
      std::size_t n = 0;
      for (std::size_t i = 0; i < colon && colon != std::string::npos; ++i) n = n * 10 + std::size_t(got[i] - '0');
      if (colon != std::string::npos && colon + 1 + n <= got.size()) {
        search_path_now = got.substr(colon + 1, n);
        const std::string rest = got.substr(colon + 1 + n);
        const auto nl = rest.find('\n');
        wait_for_approval_ = waits(std::string_view(rest).substr(0, nl));
        reason_ = nl == std::string::npos ? std::string() : rest.substr(nl + 1);
      }
    }
  }
  if (type == 'Q') {
    // What the text runs: for EXECUTE (or FETCH) the statements prepared (declared) under the
    // name now, so that an approval of `EXECUTE x` does not cover another statement prepared as
    // x later (found by adversarial testing: a one-row DELETE's approval ran an all-rows DELETE).
    std::string material = text;
    for (const auto& st : analysis->statements)
      for (const auto* versions : {prepared_versions(st), cursor_versions(st)})
        if (versions)
          for (const auto& v : *versions) {
            material += '\0';
            material += v && !v->statements.empty() ? v->statements.front().text : std::string("<untracked>");
          }
    key = scoped_match_key(approvals::match_key(material, {}), search_path_now.empty() ? nullptr : &search_path_now);
  }

  auto release = [&](const approvals::Request& r) {
    policy::Decision released = d;
    released.action = policy::Action::Allow;
    released.approval = r.id;
    std::string who;
    for (const auto& v : r.votes)
      if (v.approve) who += (who.empty() ? "" : ", ") + v.reviewer.display() + (v.break_glass ? " (break-glass)" : "");
    released.reason = d.reason + "; approved by " + who + " (request " + r.id + ")";
    if (type == 'E') {
      approve_held_portal(portal, released);
    } else {
      released_decision_ = std::move(released);
      release_front_ = true;
    }
    spdlog::info("session {}: {} runs statement approved in request {} by {}", id_, identity_.subject, r.id, who);
  };

  // An approval counts only while the policy asks for no more than it was given: the same rule,
  // no more approvals, the same reviewer groups (found by adversarial testing: an approval given
  // under a weaker rule still ran after a reload tightened it). `now`: the decision now.
  auto still_enough = [](const approvals::Request& r, const policy::Decision& now) {
    if (now.action == policy::Action::Allow || now.action == policy::Action::Mask) return true;
    if (now.action != policy::Action::Review || now.rule != r.rule || now.reviewers.approvals > r.approvals_required)
      return false;
    auto a = now.reviewers.groups, b = r.reviewer_groups;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    return a == b;
  };

  // Approved after an earlier wait ran out: the same identity may run exactly this once.
  if (auto again = svc->take_rerun(identity_.principal(), target_->name, key); again && *again) {
    if (still_enough(**again, d)) {
      release(**again);
      co_return std::nullopt;
    }
    spdlog::info("session {}: approval {} no longer meets rule \"{}\" (the policy changed); held again", id_,
                 (*again)->id, d.rule);
  }

  approvals::Request req;
  req.requester = approvals::person_of(identity_);
  req.target = target_->name;
  req.environment = target_->environment;
  req.database = target_->backend_database(database_);
  req.statement = shown_text(analysis.get(), text);
  req.parameters = params;
  req.match_key = key;
  // As the audit trail writes it: 16 hex digits (an integer assigned to a string kept one char).
  if (d.statement >= 0 && std::size_t(d.statement) < analysis->statements.size())
    req.fingerprint = fmt::format("{:016x}", analysis->statements[std::size_t(d.statement)].fingerprint);
  else if (!analysis->statements.empty())
    req.fingerprint = fmt::format("{:016x}", analysis->statements.front().fingerprint);
  req.rule = d.rule;
  req.reason = d.reason;
  req.justification = reason_comment(text);
  if (req.justification.empty()) req.justification = reason_;
  req.reviewer_groups = d.reviewers.groups;
  req.approvals_required = d.reviewers.approvals;
  req.waiting = wait_for_approval_;
  for (const auto& st : judged->statements)
    for (const auto& rel : st.relations) {
      std::string name = rel.schema.empty() ? rel.name : rel.schema + "." + rel.name;
      if (std::find(req.tables.begin(), req.tables.end(), name) == req.tables.end()) req.tables.push_back(std::move(name));
    }
  req.sensitive_columns = live_policy().touched_columns(*judged);
  req.row_estimate = type == 'Q' && (given_estimate || front_estimated_) ? last_row_estimate_ : -1;
  auto submitted = svc->submit(std::move(req));
  if (!submitted) {
    policy::Decision fail = d;
    fail.approval = "-";
    fail.message = d.message + " -- and the approval request could not be stored (" + submitted.error().message + ")";
    fail.hint = "try again later; the proxy's log has the details";
    spdlog::error("session {}: approval request not stored: {}", id_, submitted.error().message);
    co_return co_await refuse_front_query(fail, analysis, "58030");
  }
  const approvals::Request r = std::move(*submitted);
  const std::string& public_url = rt_->config->admin.public_url;
  const std::string link = public_url + "/approvals/" + r.id;
  std::string who_may = d.reviewers.groups.empty() ? std::string("any reviewer") : "a member of ";
  for (std::size_t i = 0; i < d.reviewers.groups.size(); ++i)
    who_may += (i ? ", " : "") + d.reviewers.groups[i];
  spdlog::info("session {}: {} statement held for approval in request {} (rule {})", id_, identity_.subject, r.id,
               d.rule);

  policy::Decision outcome = d;
  outcome.approval = r.id;
  if (!wait_for_approval_) {
    outcome.message = fmt::format("approval required by rule \"{}\": request {} is open; the statement was not run",
                                  d.rule, r.id);
    outcome.hint = fmt::format("once it is approved ({}), run the same statement again within {}; follow it at {}",
                               who_may, minutes_text(rt_->config->approvals.rerun_window), link);
    co_return co_await refuse_front_query(outcome, analysis, kApprovalPending);
  }

  // Held from before the notice is sent: a client that reads it and presses Ctrl-C at once must
  // find its cancel taken here, not forwarded to a server that runs nothing (a race CI hit).
  holding_ = true;
  held_now_.store(true, std::memory_order_release);
  hold_cancelled_ = false;
  hold_decided_ = false;
  {
    protocol::ErrorFields n;
    n.severity = "NOTICE";
    n.sqlstate = "01000";
    n.message = fmt::format("statement held for approval: request {} (rule \"{}\"); waiting up to {} for {} ({} "
                            "approval{})",
                            r.id, d.rule, minutes_text(rt_->config->approvals.timeout), who_may,
                            d.reviewers.approvals, d.reviewers.approvals == 1 ? "" : "s");
    n.detail = d.reason;
    n.hint = fmt::format("approve at {} or with `gatehouse approvals approve {}`; Ctrl-C cancels the request", link,
                         r.id);
    std::string out;
    protocol::write_notice_response(out, n);
    if (auto wec = co_await write_client_between_messages(out); wec) {
      holding_ = false;
      held_now_.store(false, std::memory_order_release);
      (void)svc->cancel(r.id, "the client went away");
      co_return client_io_end(wec);
    }
  }

  auto ex = co_await asio::this_coro::executor;
  const auto token = svc->watch(r.id, [weak = weak_from_this(), ex](const approvals::Request&) {
    asio::post(ex, [weak] {
      if (auto self = weak.lock()) {
        self->hold_decided_ = true;
        self->relay_signal_.cancel();
      }
    });
  });
  const auto deadline = Clock::now() + rt_->config->approvals.timeout;
  // A client that goes away while held (closes, is killed) cancels the request: approved later,
  // the statement ran for nobody, and a retry ran it again (found by adversarial testing).
  bool client_gone = false;
  while (!hold_decided_ && !hold_cancelled_ && !ending_ && Clock::now() < deadline) {
    relay_signal_.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(500)));
    co_await relay_signal_.async_wait(net::use_tuple);
    if (client_->peer_closed()) {
      client_gone = true;
      break;
    }
  }
  if (!client_gone && client_->peer_closed()) client_gone = true;  // gone as it was decided
  svc->unwatch(token);
  holding_ = false;
  held_now_.store(false, std::memory_order_release);
  svc->set_waiting(r.id, false);
  if (ending_) co_return End{};  // the request stays open (proxy shutdown, session ended)
  if (client_gone) {
    (void)svc->cancel(r.id, "the client went away while its statement was held");
    spdlog::info("session {}: client went away while request {} was held; the request is cancelled", id_, r.id);
    co_return client_io_end(asio::error::eof);
  }

  if (hold_cancelled_) {
    (void)svc->cancel(r.id, "cancelled by the client (Ctrl-C)");
    outcome.message = fmt::format("canceling statement due to user request: approval request {} cancelled", r.id);
    outcome.hint.clear();
    co_return co_await refuse_front_query(outcome, analysis, "57014");
  }
  auto now = svc->get(r.id);
  const approvals::Request cur = now && *now ? **now : r;
  switch (cur.state) {
    case approvals::State::Approved: {
      if (const policy::Decision now = given ? d : decide(*judged); !still_enough(cur, now)) {
        outcome = now.action == policy::Action::Deny ? now : outcome;
        if (now.action != policy::Action::Deny) {
          outcome.message = fmt::format("approval request {} was approved under rule \"{}\", but the policy changed "
                                        "while it was held and now asks for more; the statement was not run",
                                        cur.id, cur.rule);
          outcome.hint = "run the statement again to request an approval under the current policy";
        }
        co_return co_await refuse_front_query(outcome, analysis, "42501");
      }
      auto consumed = svc->consume(cur.id);
      if (consumed && *consumed) {
        release(cur);
        co_return std::nullopt;  // the scan now forwards it
      }
      outcome.message = fmt::format("approval request {} was approved but has already been used", cur.id);
      co_return co_await refuse_front_query(outcome, analysis, "42501");
    }
    case approvals::State::Rejected: {
      std::string by, why;
      for (const auto& v : cur.votes)
        if (!v.approve) {
          by = v.reviewer.display();
          why = v.comment;
        }
      outcome.message = fmt::format("statement rejected by {}{}{} (approval request {}, rule \"{}\")", by,
                                    why.empty() ? "" : ": ", why, cur.id, d.rule);
      outcome.hint.clear();
      co_return co_await refuse_front_query(outcome, analysis, "42501");
    }
    case approvals::State::Pending: {
      outcome.message = fmt::format("not approved within {}: approval request {} stays open and the statement was "
                                    "not run",
                                    minutes_text(rt_->config->approvals.timeout), cur.id);
      outcome.hint = fmt::format("once it is approved, run the same statement again within {}; follow it at {}",
                                 minutes_text(rt_->config->approvals.rerun_window), link);
      co_return co_await refuse_front_query(outcome, analysis, kApprovalPending);
    }
    default: {
      outcome.message = fmt::format("approval request {} is {}; the statement was not run", cur.id,
                                    approvals::state_name(cur.state));
      outcome.hint.clear();
      co_return co_await refuse_front_query(outcome, analysis, "42501");
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace gh::proxy
