// /api/v1: approval requests, access requests and grants over HTTP with OIDC bearer tokens.
// Bearer tokens are sent explicitly by the client, never by a browser on its own, so these
// endpoints need no CSRF protection; the console's cookie sessions are another matter.
#include "admin/api_v1.h"

#include <strings.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/admin_server.h"
#include "admin/api_json.h"
#include "approvals/approvals.h"
#include "audit/reader.h"
#include "admin/api_call.h"
#include "admin/console_sessions.h"

namespace gh::admin {
namespace api {

void reply(Call& c, int status, const json& body) {
  c.res.status = status;
  // Invalid UTF-8 (say, from a query string echoed in a message) becomes U+FFFD, not an exception.
  c.res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", "application/json");
}

// Errors are {"error": code, "message": what to do about it}.
void reply_error(Call& c, int status, std::string_view code, const std::string& message) {
  reply(c, status, json{{"error", code}, {"message", message}});
  c.act.message = message;
}

// Percent-encoding of a query parameter's name or value: what is not unreserved (RFC 3986).
std::string query_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == ',' || c == ':' || c == '*') {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string quote_header(const std::string& s) {
  std::string out;
  for (char ch : s)
    if (ch != '"' && ch != '\\' && ch != '\r' && ch != '\n') out.push_back(ch);
  return out;
}

// RFC 6750 §3: a missing token gets the bare challenge; a bad one says invalid_token.
void unauthorized(Call& c, std::string_view code, const std::string& message, bool invalid_token) {
  std::string challenge = "Bearer realm=\"gatehouse\"";
  if (invalid_token) challenge += ", error=\"invalid_token\", error_description=\"" + quote_header(message) + "\"";
  c.res.set_header("WWW-Authenticate", challenge);
  reply_error(c, 401, code, message);
}

// The token of an "Authorization: Bearer <token>" header, without surrounding spaces; nullopt when
// the header is not of that form (empty when the token is).
std::optional<std::string> bearer_token(const std::string& header) {
  if (header.size() == 6 && strncasecmp(header.c_str(), "Bearer", 6) == 0) return std::string();  // trailing spaces trimmed
  if (header.size() < 7 || strncasecmp(header.c_str(), "Bearer ", 7) != 0) return std::nullopt;
  std::string token = header.substr(7);
  while (!token.empty() && token.front() == ' ') token.erase(token.begin());
  while (!token.empty() && token.back() == ' ') token.pop_back();
  return token;
}

// The console's session cookie (no Authorization header): the session must be live, and a POST
// must carry the session's CSRF token in X-CSRF-Token (a cookie is sent by the browser on its own;
// the header only by the console's own script).
bool authenticate_cookie(Call& c, const std::string& session_id) {
  auto* sessions = c.h.console_sessions;
  auto s = sessions ? sessions->find(session_id) : std::nullopt;
  if (!s) {
    reply_error(c, 401, "unauthorized", "your console session has ended or is not valid; sign in again at /console/login");
    return false;
  }
  c.who = s->who;
  c.act.who = c.who;
  c.console_session = session_id;
  c.roles = c.h.roles_of ? c.h.roles_of(c.who) : Roles{};
  if (c.req.method != "GET" && c.req.method != "HEAD" &&
      !ConsoleSessions::same_token(c.req.get_header_value("X-CSRF-Token"), s->csrf)) {
    reply_error(c, 403, "csrf",
                "this call came with the console's session cookie but without its CSRF token (X-CSRF-Token); reload "
                "the console");
    return false;
  }
  return true;
}

bool authenticate(Call& c) {
  const std::string header = c.req.get_header_value("Authorization");
  if (header.empty()) {
    if (const auto sid = cookie_value(c.req.get_header_value("Cookie"), kSessionCookie); !sid.empty())
      return authenticate_cookie(c, sid);
    unauthorized(c, "unauthorized",
                 "this API needs an OIDC bearer token (Authorization: Bearer <token>); people get one with "
                 "`gatehouse login`, agents with `gatehouse token`",
                 false);
    return false;
  }
  const auto bearer = bearer_token(header);
  if (!bearer) {
    // Another scheme (Basic, ...) carries no bearer token at all: the bare challenge (RFC 6750 §3.1).
    unauthorized(c, "unauthorized", "the Authorization header must be \"Bearer <token>\"", false);
    return false;
  }
  const std::string& token = *bearer;
  if (token.empty()) {
    unauthorized(c, "invalid_token", "the bearer token is empty", true);
    return false;
  }
  if (!c.h.authenticate) {
    unauthorized(c, "invalid_token", "bearer tokens cannot be checked: no oidc.issuers are configured", true);
    return false;
  }
  auto who = c.h.authenticate(token);
  if (!who) {
    unauthorized(c, "invalid_token", who.error(), true);
    return false;
  }
  c.who = std::move(*who);
  c.act.who = c.who;
  c.roles = c.h.roles_of ? c.h.roles_of(c.who) : Roles{};
  return true;
}

bool require(Call& c, Permission p) {
  if (allows(c.roles, p)) return true;
  std::string roles;
  for (const auto& r : c.roles) roles += (roles.empty() ? "" : ", ") + r;
  reply_error(c, 403, "forbidden",
              c.who.subject + " may not " + std::string(permission_name(p)) + "; roles held: " +
                  (roles.empty() ? "none" : roles));
  return false;
}

approvals::Service* service(Call& c) {
  if (!c.h.approvals) reply_error(c, 503, "unavailable", "approvals are not available on this proxy");
  return c.h.approvals;
}

std::string public_url(const Call& c) { return c.h.public_url ? c.h.public_url() : std::string(); }

// The request body as a JSON object; an empty body is an empty object.
std::optional<json> body_object(Call& c) {
  if (c.req.body.empty()) return json::object();
  // JSON only: a form or text/plain body is what a cross-site form post sends.
  const auto type = c.req.get_header_value("Content-Type");
  if (type.rfind("application/json", 0) != 0) {
    reply_error(c, 415, "unsupported_media_type", "the request body must be sent as Content-Type: application/json");
    return std::nullopt;
  }
  // A member given twice is refused: which one counts would be the parser's choice, not the caller's.
  std::vector<std::set<std::string>> seen;
  std::string twice;
  auto j = json::parse(
      c.req.body,
      [&](int depth, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
          seen.resize(std::size_t(depth) + 2);
          seen[std::size_t(depth) + 1].clear();
        } else if (event == json::parse_event_t::key && std::size_t(depth) < seen.size() &&
                   !seen[std::size_t(depth)].insert(parsed.get<std::string>()).second && twice.empty()) {
          twice = parsed.get<std::string>();
        }
        return true;
      },
      false);
  if (j.is_discarded()) {
    reply_error(c, 400, "bad_request", "the request body is not valid JSON");
    return std::nullopt;
  }
  if (!twice.empty()) {
    reply_error(c, 400, "bad_request", "member \"" + twice + "\" is given twice");
    return std::nullopt;
  }
  if (!j.is_object()) {
    reply_error(c, 400, "bad_request", "the request body must be a JSON object");
    return std::nullopt;
  }
  return j;
}

// Unknown members are refused, so that a misspelt "reason" is not silently dropped.
bool only_members(Call& c, const json& body, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    std::string names;
    for (auto a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
    reply_error(c, 400, "bad_request", "unknown member \"" + k + "\" (" + names + ")");
    return false;
  }
  return true;
}

// A string member: absent -> "", wrong type -> error (nullopt, answered).
std::optional<std::string> string_member(Call& c, const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end()) {
    if (required) {
      reply_error(c, 400, "bad_request", std::string(key) + ": missing");
      return std::nullopt;
    }
    return std::string();
  }
  if (!it->is_string()) {  // null included: a wrong type is refused, as documented
    reply_error(c, 400, "bad_request", std::string(key) + ": expected a string");
    return std::nullopt;
  }
  auto s = it->get<std::string>();
  if (s.find('\0') != std::string::npos) {  // stored and shown cut, or with a NUL: refused
    reply_error(c, 400, "bad_request", std::string(key) + ": must not contain a NUL character");
    return std::nullopt;
  }
  if (required && s.find_first_not_of(" \t\r\n") == std::string::npos) {
    reply_error(c, 400, "bad_request", std::string(key) + ": must not be empty");
    return std::nullopt;
  }
  if (s.size() > 4096) {
    reply_error(c, 400, "bad_request", std::string(key) + ": longer than 4096 characters");
    return std::nullopt;
  }
  return s;
}

// ?state=&target=&requester=&limit= ; false when answered with 400.
bool read_filter(Call& c, approvals::Filter& f) {
  for (const auto& [k, v] : c.req.params) {
    if (k == "state") {
      if (v.empty()) continue;
      auto s = approvals::parse_state(v);
      if (!s) {
        reply_error(c, 400, "bad_request",
                    "state: expected pending, approved, rejected, cancelled, expired or consumed, got \"" + v + "\"");
        return false;
      }
      f.state = *s;
    } else if (k == "target") {
      f.target = v;
    } else if (k == "requester") {
      f.requester = v;
    } else if (k == "limit") {
      std::size_t n = 0;
      bool ok = !v.empty() && v.size() <= 6;
      for (char ch : v) ok = ok && ch >= '0' && ch <= '9';
      if (ok) n = std::stoul(v);
      if (!ok || n < 1 || n > 1000) {
        reply_error(c, 400, "bad_request", "limit: expected a number from 1 to 1000, got \"" + v + "\"");
        return false;
      }
      f.limit = n;
    } else {
      reply_error(c, 400, "bad_request", "unknown query parameter \"" + k + "\" (state, target, requester, limit)");
      return false;
    }
  }
  return true;
}

// Reading: everyone for reviewers, auditors and admins; one's own only for the rest (and
// another person's request looks like a missing one).
bool can_see(const Call& c, const approvals::Person& requester) {
  return allows(c.roles, Permission::ReadAll) || is_own(requester, c.who);
}

int decide_status(approvals::DecideError::Kind k) {
  using K = approvals::DecideError::Kind;
  switch (k) {
    case K::NotFound: return 404;
    case K::NotPending: return 409;
    case K::AlreadyVoted: return 409;
    case K::SelfApproval: return 403;
    case K::NotAReviewer: return 403;
    case K::Store: return 503;
  }
  return 500;
}

std::string_view decide_code(approvals::DecideError::Kind k) {
  using K = approvals::DecideError::Kind;
  switch (k) {
    case K::NotFound: return "not_found";
    case K::NotPending: return "not_pending";
    case K::AlreadyVoted: return "already_voted";
    case K::SelfApproval: return "self_approval";
    case K::NotAReviewer: return "not_a_reviewer";
    case K::Store: return "unavailable";
  }
  return "error";
}

void store_error(Call& c, const Error& e) { reply_error(c, 503, "unavailable", "the approvals store failed: " + e.message); }

// ---- handlers

void whoami(Call& c) { reply(c, 200, identity_json(c.who, c.roles)); }

void list_approvals(Call& c) {
  if (!require(c, Permission::ReadOwn)) return;
  approvals::Filter f;
  if (!read_filter(c, f)) return;
  auto* svc = service(c);
  if (!svc) return;
  const bool all = allows(c.roles, Permission::ReadAll);
  if (!all) f.requester = c.who.principal();
  auto list = svc->list(f);
  if (!list) return store_error(c, list.error());
  json out = json::array();
  const auto base = public_url(c);
  for (const auto& r : *list)
    if (all || is_own(r.requester, c.who)) out.push_back(request_json(r, base));
  c.act.message = std::to_string(out.size()) + " request(s)";
  reply(c, 200, json{{"approvals", std::move(out)}});
}

// A record as the API shows it to this caller.
json record_json(Call& c, const approvals::Request& r) { return request_json(r, public_url(c)); }
json record_json(Call& c, const approvals::AccessRequest& a) {
  return access_json(a, public_url(c), approvals::now_us());
}

// GET of one statement review or access request: `get` is the Service's read (get or
// get_access), `noun` names the record in the 404.
template <class Get>
void get_record(Call& c, Get get, const char* noun) {
  if (!require(c, Permission::ReadOwn)) return;
  auto* svc = service(c);
  if (!svc) return;
  const std::string id = c.req.matches[1];
  auto r = std::invoke(get, *svc, id);
  if (!r) return store_error(c, r.error());
  if (!*r || !can_see(c, (*r)->requester))
    return reply_error(c, 404, "not_found", std::string("no ") + noun + " " + id);
  reply(c, 200, record_json(c, **r));
}

// Approve or reject a statement review or an access request: `decide` is the Service's
// decision (decide or decide_access).
template <class Decide>
void decide_record(Call& c, bool approve, Decide decide) {
  if (!require(c, Permission::Decide)) return;
  auto body = body_object(c);
  if (!body) return;
  if (!only_members(c, *body, {approve ? "comment" : "reason"})) return;
  auto text = approve ? string_member(c, *body, "comment", false) : string_member(c, *body, "reason", true);
  if (!text) return;
  auto* svc = service(c);
  if (!svc) return;
  const std::string id = c.req.matches[1];
  auto r = std::invoke(decide, *svc, id, approvals::person_of(c.who), approve, *text);
  if (!r) return reply_error(c, decide_status(r.error().kind), decide_code(r.error().kind), r.error().message);
  c.act.message = *text;
  reply(c, 200, record_json(c, *r));
}

// A route's approve or reject handler: decide_with<&approvals::Service::decide, true>.
template <auto Decide, bool Approve>
void decide_with(Call& c) {
  decide_record(c, Approve, Decide);
}

void get_approval(Call& c) { get_record(c, &approvals::Service::get, "approval request"); }

void create_access(Call& c) {
  if (!require(c, Permission::RequestAccess)) return;
  auto body = body_object(c);
  if (!body) return;
  if (!only_members(c, *body, {"target", "role", "duration", "reason"})) return;
  auto target = string_member(c, *body, "target", true);
  if (!target) return;
  auto role = string_member(c, *body, "role", true);
  if (!role) return;
  auto reason = string_member(c, *body, "reason", true);
  if (!reason) return;
  std::int64_t duration = 3600;
  if (body->contains("duration")) {
    auto d = parse_grant_duration((*body)["duration"]);
    if (!d) return reply_error(c, 400, "bad_request", d.error().message);
    duration = *d;
  }
  if (c.h.target_exists && !c.h.target_exists(*target))
    return reply_error(c, 400, "bad_request", "target: no target \"" + *target + "\" is configured");
  auto* svc = service(c);
  if (!svc) return;
  const auto max = svc->settings().max_grant.count();
  if (duration > max)
    return reply_error(c, 400, "bad_request",
                       "duration: " + format_duration(duration) + " is longer than the longest grant (" +
                           format_duration(max) + ", approvals.max_grant)");
  approvals::AccessRequest a;
  a.requester = approvals::person_of(c.who);
  a.target = *target;
  a.role = *role;
  a.reason = *reason;
  a.duration_s = duration;
  auto r = svc->request_access(std::move(a));
  if (!r) {
    // The service's own checks carry no SQLSTATE; the store's failures do.
    if (r.error().sqlstate.empty()) return reply_error(c, 400, "bad_request", r.error().message);
    return store_error(c, r.error());
  }
  c.act.object = r->id;
  c.act.message = *reason;
  c.res.set_header("Location", "/api/v1/access-requests/" + r->id);
  reply(c, 201, access_json(*r, public_url(c), approvals::now_us()));
}

// Access requests and grants: `grants_only` keeps the ones in force now.
void list_access(Call& c, bool grants_only) {
  if (!require(c, Permission::ReadOwn)) return;
  approvals::Filter f;
  if (!read_filter(c, f)) return;
  auto* svc = service(c);
  if (!svc) return;
  const bool all = allows(c.roles, Permission::ReadAll);
  if (!all) f.requester = c.who.principal();
  const std::size_t limit = f.limit;
  if (grants_only) {
    if (f.state && *f.state != approvals::State::Approved)
      return reply_error(c, 400, "bad_request", "state: grants are approved access requests; leave it out");
    f.state = approvals::State::Approved;
    f.limit = 1000;  // expired ones are skipped below
  }
  auto list = svc->list_access(f);
  if (!list) return store_error(c, list.error());
  const auto now = approvals::now_us();
  const auto base = public_url(c);
  json out = json::array();
  for (const auto& a : *list) {
    if (!all && !is_own(a.requester, c.who)) continue;
    if (grants_only && !grant_active(a, now)) continue;
    if (out.size() >= limit) break;
    out.push_back(access_json(a, base, now));
  }
  c.act.message = std::to_string(out.size()) + (grants_only ? " grant(s)" : " request(s)");
  reply(c, 200, json{{grants_only ? "grants" : "access_requests", std::move(out)}});
}

void list_access_requests(Call& c) { list_access(c, false); }
void list_grants(Call& c) { list_access(c, true); }

void get_access(Call& c) { get_record(c, &approvals::Service::get_access, "access request"); }

void revoke_grant(Call& c) {
  if (!require(c, Permission::ReadOwn)) return;
  auto body = body_object(c);
  if (!body) return;
  if (!only_members(c, *body, {"reason"})) return;
  auto reason = string_member(c, *body, "reason", true);
  if (!reason) return;
  auto* svc = service(c);
  if (!svc) return;
  const std::string id = c.req.matches[1];
  auto cur = svc->get_access(id);
  if (!cur) return store_error(c, cur.error());
  if (!*cur || !can_see(c, (*cur)->requester)) return reply_error(c, 404, "not_found", "no grant " + id);
  if (!allows(c.roles, Permission::RevokeAny) && !is_own((*cur)->requester, c.who))
    return reply_error(c, 403, "forbidden", "only an admin or the grant's holder may revoke " + id);
  if (!grant_active(**cur, approvals::now_us()))
    return reply_error(c, 409, "not_active",
                       id + " is not an active grant (state " + std::string(approvals::state_name((*cur)->state)) +
                           ((*cur)->state == approvals::State::Approved ? ", expired" : "") + ")");
  auto r = svc->revoke(id, approvals::person_of(c.who), *reason);
  if (!r) return reply_error(c, decide_status(r.error().kind), decide_code(r.error().kind), r.error().message);
  c.act.message = *reason;
  reply(c, 200, record_json(c, *r));
}

// GET /api/v1/audit?identity=..&table=..&since=24h&limit=50&cursor=..: one page, newest first, as
// {"records": [...], "next_cursor": "..." | null}; the filters of `gatehouse audit search`. The
// trail holds statement texts and parameters: auditors and admins only.
void search_audit(Call& c) {
  if (!require(c, Permission::ReadAudit)) return;
  if (c.h.audit_store.empty()) return reply_error(c, 404, "not_found", "no audit store is configured for reading");
  audit::SearchFilter f;
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  for (const auto& [k, v] : c.req.params)
    if (auto r = audit::set_filter(f, k, v, now); !r) return reply_error(c, 400, "bad_request", r.error().message);
  auto reader = audit::AuditReader::open(c.h.audit_store);
  if (!reader) return reply_error(c, 503, "unavailable", reader.error().message);
  auto page = (*reader)->search(f);
  if (!page) return reply_error(c, 500, "internal", page.error().message);
  std::string body = "{\"records\":[";
  for (std::size_t i = 0; i < page->hits.size(); ++i) {
    if (i) body += ',';
    body += audit::hit_json(page->hits[i]);
  }
  body += "],\"next_cursor\":";
  body += page->next_cursor.empty() ? "null" : json(page->next_cursor).dump();
  body += "}\n";
  c.res.status = 200;
  c.res.set_content(body, "application/json");
}

void route(httplib::Server& s, bool post, const std::string& pattern, const char* action, const Hooks& h, Handler fn) {
  auto wrapped = [&h, action, fn](const httplib::Request& req, httplib::Response& res) {
    Call c{req, res, h, {}, {}, {}};
    c.act.action = action;
    c.act.client = req.remote_addr;
    // Encoded again, so the record reads back as exactly the parameters given (decoded, a value
    // holding "&identity=bob" read as a filter of its own; found by adversarial testing).
    for (const auto& [k, v] : req.params)
      c.act.query += (c.act.query.empty() ? "" : "&") + query_encode(k) + "=" + query_encode(v);
    if (req.matches.size() > 1) c.act.object = req.matches[1];
    try {
      // A query parameter given twice is refused, not read as its first or last value: a filter in
      // front of the API (a gateway, a log rule) may read the other one (parameter pollution).
      std::string twice;
      for (auto it = req.params.begin(); it != req.params.end() && twice.empty(); ++it)
        if (req.params.count(it->first) > 1) twice = it->first;
      if (!authenticate(c)) {
      } else if (!twice.empty()) {
        reply_error(c, 400, "bad_request", "query parameter \"" + twice + "\" given more than once");
      } else {
        fn(c);
      }
    } catch (const std::exception& e) {
      spdlog::error("admin api {}: {}", action, e.what());
      reply_error(c, 500, "internal", "internal error");
    }
    c.act.status = res.status;
    if (h.on_action) h.on_action(c.act);
  };
  if (post)
    s.Post(pattern, wrapped);
  else
    s.Get(pattern, wrapped);
}

}  // namespace api

using namespace api;

void install_api_v1(httplib::Server& s, const Hooks& h) {
  constexpr bool kGet = false, kPost = true;
  const std::string id = "([A-Za-z0-9_-]{1,64})";
  const std::string approval = "/api/v1/approvals/" + id, access = "/api/v1/access-requests/" + id;
  route(s, kGet, "/api/v1/whoami", "whoami", h, whoami);
  route(s, kGet, "/api/v1/audit", "audit.search", h, search_audit);
  route(s, kGet, "/api/audit", "audit.search", h, search_audit);  // the path before /api/v1
  route(s, kGet, "/api/v1/approvals", "approvals.list", h, list_approvals);
  route(s, kGet, approval, "approvals.get", h, get_approval);
  route(s, kPost, approval + "/approve", "approvals.approve", h, decide_with<&approvals::Service::decide, true>);
  route(s, kPost, approval + "/reject", "approvals.reject", h, decide_with<&approvals::Service::decide, false>);
  route(s, kPost, "/api/v1/access-requests", "access.request", h, create_access);
  route(s, kGet, "/api/v1/access-requests", "access.list", h, list_access_requests);
  route(s, kGet, access, "access.get", h, get_access);
  route(s, kPost, access + "/approve", "access.approve", h, decide_with<&approvals::Service::decide_access, true>);
  route(s, kPost, access + "/reject", "access.reject", h, decide_with<&approvals::Service::decide_access, false>);
  route(s, kGet, "/api/v1/grants", "grants.list", h, list_grants);
  route(s, kPost, "/api/v1/grants/" + id + "/revoke", "grants.revoke", h, revoke_grant);
  install_console_api(s, h);
}

namespace {
// A request the HTTP library or the pre-routing check refused before any route ran (unknown path
// or method, body over 64 KiB, percent-encoded path, malformed request): recorded like every
// other /api call (found by adversarial testing: they left no admin record). Who sent it is
// recorded when its bearer token checks out.
void record_refused(const Hooks& h, const httplib::Request& req, int status, const std::string& message) {
  if (!h.on_action || req.path.rfind("/api", 0) != 0) return;
  Action a;
  a.action = "api.refused";
  a.client = req.remote_addr;
  a.status = status;
  a.message = message;
  a.object = req.method + " " + req.path.substr(0, 256);
  if (const auto token = bearer_token(req.get_header_value("Authorization")); h.authenticate && token && !token->empty())
    if (auto who = h.authenticate(*token)) a.who = std::move(*who);
  h.on_action(a);
}
}  // namespace

void refuse_encoded_paths(httplib::Server& s, const Hooks& h) {
  // Routes match the decoded path, so /api/v1/approvals/x%2Fapprove reached the approve action:
  // a front proxy that filters by path would not see it (found by adversarial testing). No
  // endpoint needs a percent-encoded path: such requests are refused before routing.
  s.set_pre_routing_handler([&h](const httplib::Request& req, httplib::Response& res) {
    const std::string_view target(req.target);
    if (target.substr(0, target.find('?')).find('%') == std::string_view::npos)
      return httplib::Server::HandlerResponse::Unhandled;
    res.status = 400;
    res.set_content(json{{"error", "bad_request"}, {"message", "percent-encoded characters in the path are not accepted"}}
                            .dump() + "\n",
                    "application/json");
    record_refused(h, req, 400, "percent-encoded characters in the path are not accepted");
    return httplib::Server::HandlerResponse::Handled;
  });
}

void install_error_bodies(httplib::Server& s, const Hooks& h) {
  s.set_error_handler(httplib::Server::HandlerWithResponse([&h](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // a route answered (and recorded) it
    std::string code = "error", message = "HTTP " + std::to_string(res.status);
    if (res.status == 404) code = "not_found", message = "no such endpoint: " + req.method + " " + req.path;
    if (res.status == 413) code = "payload_too_large", message = "the request body is larger than 64 KiB";
    if (res.status == 400) code = "bad_request", message = "malformed HTTP request";
    record_refused(h, req, res.status, message);
    res.set_content(json{{"error", code}, {"message", message}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
}

}  // namespace gh::admin
