// The console's additions to /api/v1 (docs/console.md): the console session, live proxy sessions,
// one audit record, export, chain verification, dashboard counts, and the live-update stream.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "admin/api_call.h"
#include "admin/api_json.h"
#include "admin/console_sessions.h"
#include "approvals/approvals.h"
#include "audit/reader.h"
#include "audit/verify.h"

namespace gh::admin::api {
namespace {

using approvals::now_us;

// GET /api/v1/console/session: who is signed in, with the CSRF token the console sends on POSTs.
void console_session(Call& c) {
  if (c.console_session.empty() || !c.h.console_sessions)
    return reply_error(c, 401, "unauthorized", "not signed in to the console (this call needs its session cookie)");
  auto s = c.h.console_sessions->find(c.console_session);
  if (!s) return reply_error(c, 401, "unauthorized", "your console session has ended; sign in again");
  json j = identity_json(c.who, c.roles);
  j["csrf_token"] = s->csrf;
  put_time(j, "expires", std::chrono::duration_cast<std::chrono::microseconds>(s->expires.time_since_epoch()).count());
  reply(c, 200, j);
}

bool no_params(Call& c) {
  if (c.req.params.empty()) return true;
  reply_error(c, 400, "bad_request", "unknown query parameter \"" + c.req.params.begin()->first + "\"");
  return false;
}

json session_json(const LiveSession& s) {
  const auto& w = s.who;
  json j{{"id", s.id},
         {"subject", w.subject},
         {"email", w.email},
         {"display_name", w.display_name.empty() ? (w.email.empty() ? w.subject : w.email) : w.display_name},
         {"kind", w.kind == identity::Kind::Agent ? "agent" : "human"},
         {"groups", w.groups},
         {"target", s.target},
         {"database", s.database},
         {"login", s.login},
         {"client", s.client},
         {"application_name", s.application_name},
         {"tls", s.tls},
         {"state", s.state},
         {"statement", s.statement}};
  put_time(j, "started", s.started_us);
  put_time(j, "statement_started", s.statement_started_us);
  return j;
}

void list_sessions(Call& c) {
  if (!require(c, Permission::ReadSessions) || !no_params(c)) return;
  if (!c.h.sessions) return reply_error(c, 503, "unavailable", "live sessions are not available on this server");
  json list = json::array();
  for (const auto& s : c.h.sessions()) list.push_back(session_json(s));
  reply(c, 200, json{{"sessions", std::move(list)}});
}

void end_session(Call& c) {
  if (!require(c, Permission::EndSession)) return;
  auto body = body_object(c);
  if (!body || !only_members(c, *body, {"reason"})) return;
  auto reason = string_member(c, *body, "reason", true);
  if (!reason) return;
  if (!c.h.end_session) return reply_error(c, 503, "unavailable", "sessions cannot be ended on this server");
  const std::string id_text = c.req.matches[1];
  std::uint32_t id = 0;
  if (id_text.size() > 10 || std::stoull(id_text) > 0xffffffffull)
    return reply_error(c, 404, "not_found", "no session " + id_text);
  id = std::uint32_t(std::stoull(id_text));
  const std::string who = c.who.email.empty() ? c.who.subject : c.who.email;
  c.act.message = *reason;
  if (!c.h.end_session(id, "ended by an administrator (" + who + "): " + *reason))
    return reply_error(c, 404, "not_found", "no session " + id_text + " (it may have ended already)");
  reply(c, 200, json{{"id", id}, {"ended", true}});
}

// The filters of the audit search from the query string, but for `skip` (format, ...).
bool audit_filter(Call& c, audit::SearchFilter& f, std::initializer_list<std::string_view> skip) {
  const auto now = now_us();
  for (const auto& [k, v] : c.req.params) {
    if (std::find(skip.begin(), skip.end(), k) != skip.end()) continue;
    if (auto r = audit::set_filter(f, k, v, now); !r) {
      reply_error(c, 400, "bad_request", r.error().message);
      return false;
    }
  }
  return true;
}

// The audit store for reading (the caller's role was checked).
std::unique_ptr<audit::AuditReader> open_audit(Call& c) {
  if (c.h.audit_store.empty()) {
    reply_error(c, 404, "not_found", "no audit store is configured for reading");
    return nullptr;
  }
  auto reader = audit::AuditReader::open(c.h.audit_store);
  if (!reader) {
    reply_error(c, 503, "unavailable", reader.error().message);
    return nullptr;
  }
  return std::move(*reader);
}

// GET /api/v1/audit/records/{node}/{seq}: one record, joined to its Result as the search does.
void audit_record(Call& c) {
  if (!require(c, Permission::ReadAudit) || !no_params(c)) return;
  auto reader = open_audit(c);
  if (!reader) return;
  const std::string node = c.req.matches[1], seq_text = c.req.matches[2];
  const std::int64_t seq = seq_text.size() > 18 ? -1 : std::stoll(seq_text);
  std::optional<audit::Record> found;
  auto scanned = reader->scan(node, seq > 0 ? seq - 1 : 0, [&](const audit::StoredRecord& s) {
    if (s.seq == seq) {
      if (auto r = audit::record_of(s.hash, s.body)) found = std::move(*r);
      return false;
    }
    return s.seq < seq;
  });
  if (!scanned) return reply_error(c, 500, "internal", scanned.error().message);
  if (!found) return reply_error(c, 404, "not_found", "no record " + node + "/" + seq_text);
  auto answer = [&c](const audit::SearchHit& hit) {
    c.res.status = 200;
    c.res.set_content("{\"record\":" + audit::hit_json(hit) + "}\n", "application/json");
  };
  // The search joins a Statement to its Result: look the record up there, by its time.
  audit::SearchFilter f;
  f.node = node;
  f.since_us = found->index.time_us;
  f.until_us = found->index.time_us + 1;
  f.limit = 1000;
  for (;;) {
    auto page = reader->search(f);
    if (!page) return reply_error(c, 500, "internal", page.error().message);
    for (const auto& hit : page->hits)
      if (std::int64_t(hit.record.seq) == seq) return answer(hit);
    if (page->next_cursor.empty()) break;
    f.cursor = page->next_cursor;
  }
  // A Result record (the search shows it inside its Statement): the record alone.
  answer(audit::SearchHit{std::move(*found), std::nullopt});
}

std::string csv_field(std::string_view s) {
  // Cells a spreadsheet would run as a formula are prefixed with ' (CSV injection).
  std::string v(s);
  if (!v.empty() && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' || v[0] == '\t' || v[0] == '\r'))
    v.insert(v.begin(), '\'');
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

std::string list_field(std::string_view commas) {  // ",a,b," -> "a b"
  std::string out;
  for (char ch : commas) out += ch == ',' ? ' ' : ch;
  while (!out.empty() && out.front() == ' ') out.erase(out.begin());
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

constexpr std::size_t kExportMax = 100000;

// GET /api/v1/audit/export?format=csv|json&<filters>: the matching records, oldest first.
void audit_export(Call& c) {
  if (!require(c, Permission::ReadAudit)) return;
  const std::string format = c.req.has_param("format") ? c.req.get_param_value("format") : "csv";
  if (format != "csv" && format != "json")
    return reply_error(c, 400, "bad_request", "format: expected csv or json, got \"" + format + "\"");
  if (c.req.has_param("cursor"))
    return reply_error(c, 400, "bad_request", "cursor: an export has no pages (narrow it with since and until)");
  std::size_t max = kExportMax;
  if (c.req.has_param("limit")) {
    const auto v = c.req.get_param_value("limit");
    bool ok = !v.empty() && v.size() <= 6 && v.find_first_not_of("0123456789") == std::string::npos;
    if (ok) max = std::stoul(v);
    if (!ok || max < 1 || max > kExportMax)
      return reply_error(c, 400, "bad_request", "limit: expected a number from 1 to 100000, got \"" + v + "\"");
  }
  audit::SearchFilter f;
  if (!audit_filter(c, f, {"format", "limit"})) return;
  auto reader = open_audit(c);
  if (!reader) return;
  std::string out;
  if (format == "csv")
    out = "time,seq,node,type,identity,email,groups,target,database,kinds,tables,tags,decision,rule,outcome,sqlstate,rows,"
          "text\r\n";
  else
    out = "[";
  std::size_t n = 0;
  bool more = false;
  auto r = reader->each(f, [&](const audit::Record& rec) {
    if (n == max) {
      more = true;
      return false;
    }
    const auto& x = rec.index;
    if (format == "csv") {
      out += csv_field(x.time) + "," + std::to_string(rec.seq) + "," + csv_field(x.node) + "," + csv_field(x.type) + "," +
             csv_field(x.subject) + "," + csv_field(x.email) + "," + csv_field(list_field(x.groups)) + "," +
             csv_field(x.target) + "," + csv_field(x.database) + "," + csv_field(list_field(x.kinds)) + "," +
             csv_field(list_field(x.relations)) + "," + csv_field(list_field(x.tags)) + "," + csv_field(x.decision) + "," +
             csv_field(x.rule) + "," + csv_field(x.outcome) + "," + csv_field(x.sqlstate) + "," +
             (x.rows >= 0 ? std::to_string(x.rows) : std::string()) + "," + csv_field(x.text) + "\r\n";
    } else {
      if (n) out += ",\n";
      out += audit::hit_json(audit::SearchHit{rec, std::nullopt});
    }
    ++n;
    return true;
  });
  if (!r) return reply_error(c, 500, "internal", r.error().message);
  if (format == "json") out += "]\n";
  c.res.status = 200;
  c.res.set_header("Content-Disposition",
                   std::string("attachment; filename=\"gatehouse-audit.") + (format == "csv" ? "csv" : "json") + "\"");
  c.res.set_header("X-Gatehouse-Records", std::to_string(n));
  if (more) c.res.set_header("X-Gatehouse-Truncated", "more than " + std::to_string(max) + " records; narrow the filters");
  c.res.set_content(out, format == "csv" ? "text/csv; charset=utf-8" : "application/json");
}

// GET /api/v1/audit/verify: the hash chain of every node in the store, checked now; kept 30 s
// (a whole-store read per page view would be the console's most expensive habit).
void audit_verify(Call& c) {
  if (!require(c, Permission::ReadAudit) || !no_params(c)) return;
  auto reader = open_audit(c);
  if (!reader) return;
  static std::mutex mu;
  static std::string cached_store, cached;
  static std::int64_t cached_at = 0;
  std::lock_guard lk(mu);
  const auto now = now_us();
  if (cached_store == c.h.audit_store && now - cached_at < 30'000'000) {
    c.res.status = 200;
    c.res.set_content(cached, "application/json");
    return;
  }
  auto nodes = reader->nodes();
  if (!nodes) return reply_error(c, 500, "internal", nodes.error().message);
  json j{{"ok", true}, {"records", 0}, {"nodes", json::array()}, {"message", ""}};
  std::uint64_t records = 0;
  std::string message;
  for (const auto& node : *nodes) {
    audit::VerifyOptions o;
    auto rep = audit::verify_chain(*reader, node, o);
    if (!rep) return reply_error(c, 500, "internal", rep.error().message);
    records += rep->records;
    json n{{"node", node}, {"records", rep->records}, {"first_seq", rep->first_seq}, {"last_seq", rep->last_seq},
           {"last_hash", rep->last_hash}, {"checkpoints", rep->checkpoints}, {"ok", !rep->problem}};
    if (rep->problem) {
      j["ok"] = false;
      n["problem"] = std::string(audit::problem_name(rep->problem->kind));
      n["problem_seq"] = rep->problem->seq;
      n["message"] = rep->problem->message;
      if (message.empty())
        message = "node " + node + ": " + std::string(audit::problem_name(rep->problem->kind)) + " at seq " +
                  std::to_string(rep->problem->seq) + ": " + rep->problem->message;
    }
    j["nodes"].push_back(std::move(n));
  }
  j["records"] = records;
  j["message"] = message.empty() ? "every record chains to the one before it" : message;
  j["signatures_checked"] = false;  // the console does not hold the checkpoint key: `gatehouse audit verify --key`
  put_time(j, "checked", now);
  cached_store = c.h.audit_store;
  cached = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  cached_at = now;
  c.res.status = 200;
  c.res.set_content(cached, "application/json");
}

// GET /api/v1/stats?since=1h: statements per time bucket (a minute up to 4 h, then wider so that
// a chart has at most 240 bars), per target, and who touched tagged (sensitive) tables.
void stats(Call& c) {
  if (!require(c, Permission::ReadAudit)) return;
  audit::SearchFilter f;
  std::string since = "1h";
  for (const auto& [k, v] : c.req.params) {
    if (k != "since") return reply_error(c, 400, "bad_request", "unknown query parameter \"" + k + "\" (since)");
    since = v;
  }
  const auto now = now_us();
  auto from = audit::parse_time(since, now);
  if (!from) return reply_error(c, 400, "bad_request", "since: " + from.error().message);
  if (now - *from > 31LL * 86400 * 1'000'000)
    return reply_error(c, 400, "bad_request", "since: at most 31 days back");
  auto reader = open_audit(c);
  if (!reader) return;
  f.since_us = *from;
  f.type = "statement";
  const std::int64_t span = std::max<std::int64_t>(now - *from, 60'000'000);
  const std::int64_t bucket = std::max<std::int64_t>(60'000'000, (span / 240 + 59'999'999) / 60'000'000 * 60'000'000);
  const std::int64_t first = *from / bucket * bucket;
  struct Counts {
    std::uint64_t statements = 0, blocked = 0, masked = 0, reviewed = 0;
  };
  std::vector<Counts> buckets(std::size_t((now - first) / bucket + 1));
  std::map<std::string, Counts> targets;
  struct Person {
    std::uint64_t statements = 0;
    std::set<std::string> tables;
  };
  std::map<std::string, Person> people;
  auto add = [](Counts& k, const std::string& decision) {
    ++k.statements;
    if (decision == "deny") ++k.blocked;
    if (decision == "mask") ++k.masked;
    if (decision == "review") ++k.reviewed;
  };
  auto r = reader->each(f, [&](const audit::Record& rec) {
    const auto& x = rec.index;
    if (x.time_us >= first && x.time_us <= now) add(buckets[std::size_t((x.time_us - first) / bucket)], x.decision);
    add(targets[x.target], x.decision);
    if (x.tags.size() > 2) {  // ",pii," : the statement touched a classified column
      auto& p = people[x.email.empty() ? x.subject : x.email];
      ++p.statements;
      std::string_view rel = x.relations;
      while (!rel.empty()) {
        const auto comma = rel.find(',');
        if (comma != 0 && p.tables.size() < 50) p.tables.emplace(rel.substr(0, comma));
        if (comma == std::string_view::npos) break;
        rel.remove_prefix(comma + 1);
      }
    }
    return true;
  });
  if (!r) return reply_error(c, 500, "internal", r.error().message);
  json per = json::array();
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const auto& k = buckets[i];
    per.push_back({{"minute_us", first + std::int64_t(i) * bucket},
                   {"statements", k.statements},
                   {"blocked", k.blocked},
                   {"masked", k.masked},
                   {"reviewed", k.reviewed}});
  }
  json tl = json::array();
  for (const auto& [t, k] : targets)
    tl.push_back({{"target", t}, {"statements", k.statements}, {"blocked", k.blocked}, {"masked", k.masked},
                  {"reviewed", k.reviewed}});
  std::vector<std::pair<std::string, Person>> top(people.begin(), people.end());
  std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) { return a.second.statements > b.second.statements; });
  if (top.size() > 10) top.resize(10);
  json tops = json::array();
  for (const auto& [who, p] : top) tops.push_back({{"identity", who}, {"statements", p.statements}, {"tables", p.tables}});
  reply(c, 200, json{{"since_us", *from}, {"until_us", now}, {"bucket_s", bucket / 1'000'000}, {"per_minute", per},
                     {"targets", tl}, {"top_sensitive", tops}});
}

// Server-Sent Events: "changed" when the approvals, access or sessions lists change, checked each
// second; a comment every 15 s keeps proxies from closing the stream. A stream lasts at most 10
// minutes (the browser reconnects) and at most 16 are open, so that they cannot take the admin
// server's 64 threads.
std::atomic<int> open_streams{0};
std::atomic<bool> streams_stopping{false};
constexpr int kMaxStreams = 16;

std::string fingerprint_approvals(const Hooks& h) {
  if (!h.approvals) return {};
  approvals::Filter f;
  f.state = approvals::State::Pending;
  f.limit = 1000;
  std::string fp;
  if (auto l = h.approvals->list(f))
    for (const auto& r : *l) fp += r.id + ":" + std::to_string(r.revision) + (r.waiting ? "w" : "") + ",";
  return fp;
}

std::string fingerprint_access(const Hooks& h) {
  if (!h.approvals) return {};
  approvals::Filter f;
  f.limit = 200;
  std::string fp;
  if (auto l = h.approvals->list_access(f))
    for (const auto& a : *l) fp += a.id + ":" + std::to_string(a.revision) + ",";
  return fp;
}

std::string fingerprint_sessions(const Hooks& h) {
  if (!h.sessions) return {};
  std::string fp;
  for (const auto& s : h.sessions()) fp += std::to_string(s.id) + ":" + s.state + ":" + std::to_string(s.statement_started_us) + ",";
  return fp;
}

void events(Call& c) {
  if (!no_params(c)) return;
  if (open_streams.fetch_add(1) >= kMaxStreams) {
    --open_streams;
    return reply_error(c, 503, "unavailable", "too many live-update streams are open; the console polls instead");
  }
  const Hooks& h = c.h;
  const std::string session = c.console_session;
  const bool sessions_visible = allows(c.roles, Permission::ReadSessions);
  c.res.status = 200;
  c.res.set_header("Cache-Control", "no-store");
  c.res.set_header("X-Accel-Buffering", "no");
  struct State {
    std::string approvals, access, sessions;
    std::chrono::steady_clock::time_point opened = std::chrono::steady_clock::now(), last_write = opened,
                                          sessions_checked{};
    bool first = true;
  };
  auto st = std::make_shared<State>();
  c.res.set_chunked_content_provider(
      "text/event-stream",
      [&h, session, sessions_visible, st](std::size_t, httplib::DataSink& sink) {
        const auto now = std::chrono::steady_clock::now();
        // A stream holds its pool thread: it ends when the server stops or drains, or the
        // server's stop would wait for it.
        if (streams_stopping.load() || (h.serving && !h.serving())) return false;
        if (now - st->opened > std::chrono::minutes(10)) return false;
        if (!session.empty() && (!h.console_sessions || !h.console_sessions->find(session))) return false;
        std::string out;
        if (st->first) {
          out = "retry: 3000\n\n";
          st->first = false;
        }
        std::vector<std::string> topics;
        auto check = [&](std::string& last, std::string now_fp, const char* topic) {
          if (now_fp != last) {
            if (!st->first) topics.push_back(topic);
            last = std::move(now_fp);
          }
        };
        check(st->approvals, fingerprint_approvals(h), "approvals");
        check(st->access, fingerprint_access(h), "access");
        // Sessions change with every statement on a busy proxy: looked at every 5 s, so that an open
        // sessions page refreshes (an audited call) at most that often.
        if (sessions_visible && now - st->sessions_checked >= std::chrono::seconds(5)) {
          st->sessions_checked = now;
          check(st->sessions, fingerprint_sessions(h), "sessions");
        }
        if (!topics.empty() && out.empty()) {
          out = "event: changed\ndata: {\"topics\":[";
          for (std::size_t i = 0; i < topics.size(); ++i) out += (i ? ",\"" : "\"") + topics[i] + "\"";
          out += "]}\n\n";
        } else if (now - st->last_write > std::chrono::seconds(15)) {
          out += ": ping\n\n";
        }
        if (!out.empty()) {
          if (!sink.write(out.data(), out.size())) return false;
          st->last_write = now;
        }
        std::this_thread::sleep_for(std::chrono::seconds(1));
        return sink.is_writable();
      },
      [](bool) { --open_streams; });
}

}  // namespace

void stop_event_streams() { streams_stopping.store(true); }

void install_console_api(httplib::Server& s, const Hooks& h) {
  streams_stopping.store(false);
  constexpr bool kGet = false, kPost = true;
  route(s, kGet, "/api/v1/console/session", "console.session", h, console_session);
  route(s, kGet, "/api/v1/sessions", "sessions.list", h, list_sessions);
  route(s, kPost, "/api/v1/sessions/([0-9]{1,10})/end", "sessions.end", h, end_session);
  route(s, kGet, "/api/v1/audit/records/([A-Za-z0-9_.:-]{1,128})/([0-9]{1,18})", "audit.record", h, audit_record);
  route(s, kGet, "/api/v1/audit/export", "audit.export", h, audit_export);
  route(s, kGet, "/api/v1/audit/verify", "audit.verify", h, audit_verify);
  route(s, kGet, "/api/v1/stats", "stats", h, stats);
  route(s, kGet, "/api/v1/events", "events", h, events);
}

}  // namespace gh::admin::api
