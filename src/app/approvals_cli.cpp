#include "app/approvals_cli.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/cli_text.h"
#include "app/saved_token.h"
#include "config/config.h"
#include "identity/http.h"

namespace gh::app {
namespace {

using nlohmann::json;
namespace http = identity::http;

struct Args {
  CLI::App *approvals = nullptr, *list = nullptr, *show = nullptr, *approve = nullptr, *reject = nullptr;
  CLI::App *request_access = nullptr, *grants = nullptr, *grants_list = nullptr, *revoke = nullptr;
  // how to reach the API
  std::string admin_url, config, token, token_file, ca_file;
  bool json = false;
  // filters
  std::string state, target, requester, kind;
  std::size_t limit = 50;
  // actions
  std::string id, comment, reason, role, duration = "1h";
  bool wait = false;
  double wait_timeout = 0, poll_interval = 2;
};

Args& args() {
  static Args a;
  return a;
}

// ---- talking to the API

struct Api {
  std::string base;  // "http://127.0.0.1:9187" (no trailing slash)
  http::Options options;
};

std::string default_admin_url() {
  if (const char* x = std::getenv("GATEHOUSE_ADMIN_URL"); x && *x) return x;
  return "http://127.0.0.1:9187";
}

Result<Api> connect() {
  auto& a = args();
  Api api;
  api.base = a.admin_url;
  if (api.base.empty() && !a.config.empty()) {
    auto cfg = config::load_file(a.config);
    if (!cfg) return fail("", cfg.error().message);
    api.base = cfg->admin.public_url;
  }
  if (api.base.empty()) api.base = default_admin_url();
  while (api.base.size() > 8 && api.base.back() == '/') api.base.pop_back();
  // A bearer token is a password: not over plain HTTP to another machine (found by adversarial
  // testing: the CLI sent it in clear to whatever --admin-url named).
  if (api.base.rfind("http://", 0) == 0 && !http::loopback_url(api.base))
    return fail("", "refusing to send your token over plain HTTP to " + api.base +
                        ": use an https:// URL (a TLS-terminating proxy in front of the admin port) or a loopback "
                        "address (an SSH tunnel to the proxy's admin port)");
  std::string token = a.token;
  if (token.empty()) {
    auto saved = load_saved_token(a.token_file.empty() ? default_token_file() : a.token_file);
    if (!saved) return tl::unexpected(saved.error());
    token = login_token(*saved);
    if (token.empty()) return fail("", "the saved token file holds no usable token; run `gatehouse login` again");
    const auto claims = unverified_claims(token);
    if (claims.contains("exp") && claims["exp"].is_number_integer() &&
        claims["exp"].get<std::int64_t>() < std::time(nullptr))
      return fail("", "the saved token expired at " + utc(claims["exp"].get<std::int64_t>()) +
                          "; run `gatehouse login` again");
  }
  api.options.ca_file = a.ca_file;
  api.options.timeout = std::chrono::seconds(15);
  api.options.headers.emplace_back("Authorization", "Bearer " + token);
  return api;
}

// The answer's JSON on 2xx; otherwise an error with the API's message.
Result<json> call(const Api& api, const std::string& method, const std::string& path, const json& body = nullptr) {
  const std::string url = api.base + path;
  auto r = method == "GET" ? http::get(url, api.options) : http::post_json(url, body.is_null() ? "{}" : body.dump(), api.options);
  if (!r) return tl::unexpected(r.error());
  auto j = json::parse(r->body, nullptr, false);
  if (r->status >= 200 && r->status < 300) {
    if (j.is_discarded()) return fail("", url + " answered HTTP " + std::to_string(r->status) + " without JSON");
    return j;
  }
  std::string message = j.is_object() ? j.value("message", j.value("error", std::string())) : std::string();
  if (message.empty()) message = "HTTP " + std::to_string(r->status) + " from " + url;
  else message += " (HTTP " + std::to_string(r->status) + ")";
  return fail("", message);
}

std::string enc(const std::string& s) { return identity::http::url_encode(s); }

std::string query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params)
    if (!v.empty()) q += (q.empty() ? "?" : "&") + k + "=" + enc(v);
  return q;
}

bool is_access_id(const std::string& id) { return id.rfind("acc_", 0) == 0; }
std::string record_path(const std::string& id) {
  return (is_access_id(id) ? "/api/v1/access-requests/" : "/api/v1/approvals/") + enc(id);
}

// ---- printing

// A string field for the terminal: what requesters wrote, with control characters made visible.
std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? visible(it->get<std::string>()) : std::string();
}

std::string when(const json& j, const char* key) {
  auto it = j.find(std::string(key) + "_us");
  if (it == j.end() || !it->is_number_integer()) return "-";
  return utc(it->get<std::int64_t>() / 1000000);
}

std::string who(const json& person) {
  if (!person.is_object()) return "?";
  auto d = str(person, "display_name");
  if (d.empty()) d = str(person, "subject");
  if (str(person, "kind") == "agent") d += " (agent)";
  return d;
}

std::string what(const json& r) {
  if (str(r, "kind") == "access") return "role " + str(r, "role") + " for " + str(r, "duration");
  return one_line(str(r, "statement"), 48);
}

std::string votes(const json& r) {
  return std::to_string(r.value("approvals_received", 0)) + "/" + std::to_string(r.value("approvals_required", 1));
}

void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out += std::string(width[i] - cells[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& row : rows) line(row);
}

void print_record(const json& r) {
  const bool access = str(r, "kind") == "access";
  auto field = [](const std::string& name, std::string value) {
    if (value.empty()) return;
    for (auto nl = value.find('\n'); nl != std::string::npos; nl = value.find('\n', nl + 15))
      value.insert(nl + 1, std::string(14, ' '));  // continuation lines under the value
    std::cout << fmt::format("{:<14}{}\n", name + ":", value);
  };
  field("id", str(r, "id"));
  field("kind", access ? "access request" : "statement approval");
  field("state", str(r, "state") + (r.value("break_glass", false) ? " (break-glass)" : ""));
  field("requester", who(r.value("requester", json())));
  field("target", str(r, "target"));
  if (access) {
    field("role", str(r, "role"));
    field("duration", str(r, "duration"));
    field("reason", str(r, "reason"));
  } else {
    field("environment", str(r, "environment"));
    field("database", str(r, "database"));
    field("rule", str(r, "rule"));
    field("reason", str(r, "reason"));
    field("justification", str(r, "justification"));
  }
  auto groups = r.value("reviewer_groups", json::array());
  std::string g;
  for (const auto& x : groups) g += (g.empty() ? "" : ", ") + x.get<std::string>();
  field("reviewers", g.empty() ? "any reviewer" : g);
  field("approvals", votes(r));
  field("created", when(r, "created"));
  if (r.value("decided_us", json()).is_number()) field("decided", when(r, "decided"));
  if (access && r.value("expires_us", json()).is_number())
    field("expires", when(r, "expires") + (r.value("active", false) ? " (active)" : ""));
  if (access && !str(r, "revoked_by").empty())
    field("revoked", when(r, "revoked") + " by " + str(r, "revoked_by") + ": " + str(r, "revoke_reason"));
  if (!access && r.value("rerun_until_us", json()).is_number()) field("re-run until", when(r, "rerun_until"));
  if (!access && r.value("waiting", false)) field("waiting", "yes (a client session is holding on it)");
  field("closed", str(r, "closed_reason"));
  field("console", str(r, "console_url"));
  for (const auto& v : r.value("votes", json::array())) {
    std::string line = when(v, "time") + "  " + str(v, "reviewer_display") + " " +
                       (v.value("approve", false) ? "approved" : "rejected");
    if (v.value("break_glass", false)) line += " (break-glass)";
    if (!str(v, "comment").empty()) line += ": " + str(v, "comment");
    field("vote", line);
  }
  if (!access) {
    std::cout << "statement:\n";
    for (std::size_t start = 0;;) {
      auto nl = str(r, "statement").find('\n', start);
      std::cout << "  " << str(r, "statement").substr(start, nl == std::string::npos ? nl : nl - start) << "\n";
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    const auto params = r.value("parameters", json::array());
    for (std::size_t i = 0; i < params.size(); ++i)
      std::cout << "  $" << i + 1 << " = " << (params[i].is_null() ? "NULL" : visible(params[i].get<std::string>())) << "\n";
  }
}

int error(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return 1;
}

// ---- commands

int cmd_list() {
  auto& a = args();
  auto api = connect();
  if (!api) return error(api.error().message);
  const auto q = query({{"state", a.state}, {"target", a.target}, {"requester", a.requester},
                        {"limit", std::to_string(a.limit)}});
  json all = json::array();
  if (a.kind.empty() || a.kind == "statement") {
    auto r = call(*api, "GET", "/api/v1/approvals" + q);
    if (!r) return error(r.error().message);
    for (auto& x : (*r)["approvals"]) all.push_back(std::move(x));
  }
  if (a.kind.empty() || a.kind == "access") {
    auto r = call(*api, "GET", "/api/v1/access-requests" + q);
    if (!r) return error(r.error().message);
    for (auto& x : (*r)["access_requests"]) all.push_back(std::move(x));
  }
  std::stable_sort(all.begin(), all.end(), [](const json& x, const json& y) {
    return x.value("created_us", std::int64_t(0)) > y.value("created_us", std::int64_t(0));
  });
  if (all.size() > a.limit) all.erase(all.begin() + std::ptrdiff_t(a.limit), all.end());
  if (a.json) return std::cout << all.dump(2) << "\n", 0;
  if (all.empty()) return std::cout << "no requests\n", 0;
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : all)
    rows.push_back({str(r, "id"), str(r, "kind"), str(r, "state") + (r.value("break_glass", false) ? "!" : ""),
                    who(r.value("requester", json())), str(r, "target"), votes(r), when(r, "created"), what(r)});
  print_table({"ID", "KIND", "STATE", "REQUESTER", "TARGET", "VOTES", "CREATED", "WHAT"}, rows);
  return 0;
}

int cmd_show() {
  auto& a = args();
  auto api = connect();
  if (!api) return error(api.error().message);
  auto r = call(*api, "GET", record_path(a.id));
  if (!r) return error(r.error().message);
  if (a.json) return std::cout << r->dump(2) << "\n", 0;
  print_record(*r);
  return 0;
}

int cmd_decide(bool approve) {
  auto& a = args();
  auto api = connect();
  if (!api) return error(api.error().message);
  json body = approve ? json{{"comment", a.comment}} : json{{"reason", a.reason}};
  auto r = call(*api, "POST", record_path(a.id) + (approve ? "/approve" : "/reject"), body);
  if (!r) return error(r.error().message);
  if (a.json) return std::cout << r->dump(2) << "\n", 0;
  std::cout << (approve ? "approved " : "rejected ") << a.id << ": now " << str(*r, "state");
  if (approve && str(*r, "state") == "pending") std::cout << " (" << votes(*r) << " approvals)";
  if (str(*r, "state") == "approved" && r->value("expires_us", json()).is_number())
    std::cout << ", granted until " << when(*r, "expires");
  std::cout << "\n";
  return 0;
}

int cmd_request_access() {
  auto& a = args();
  auto api = connect();
  if (!api) return error(api.error().message);
  json body{{"target", a.target}, {"role", a.role}, {"reason", a.reason}};
  // A bare number is seconds; anything else goes as written ("1h", "30m").
  if (!a.duration.empty() && std::all_of(a.duration.begin(), a.duration.end(), ::isdigit))
    body["duration"] = std::stoll(a.duration);
  else
    body["duration"] = a.duration;
  auto r = call(*api, "POST", "/api/v1/access-requests", body);
  if (!r) return error(r.error().message);
  const std::string id = str(*r, "id");
  if (!a.wait) {
    if (a.json) return std::cout << r->dump(2) << "\n", 0;
    std::cout << "access request " << id << ": " << str(*r, "state") << "\n"
              << "A reviewer decides it at " << str(*r, "console_url") << "\n"
              << "or with: gatehouse approvals approve " << id << "\n";
    return 0;
  }
  std::cerr << "access request " << id << " is " << str(*r, "state") << "; waiting for a reviewer ("
            << str(*r, "console_url") << ")\n";
  const auto start = std::chrono::steady_clock::now();
  json cur = *r;
  while (str(cur, "state") == "pending") {
    if (a.wait_timeout > 0 &&
        std::chrono::steady_clock::now() - start > std::chrono::duration<double>(a.wait_timeout))
      return error("no decision on " + id + " after " + fmt::format("{:g}", a.wait_timeout) + "s; it stays pending");
    std::this_thread::sleep_for(std::chrono::duration<double>(a.poll_interval));
    auto next = call(*api, "GET", "/api/v1/access-requests/" + enc(id));
    if (!next) {
      std::cerr << "warning: " << next.error().message << "; retrying\n";
      continue;
    }
    cur = std::move(*next);
  }
  if (a.json) std::cout << cur.dump(2) << "\n";
  const std::string state = str(cur, "state");
  if (state == "approved") {
    if (!a.json)
      std::cout << "granted: role " << str(cur, "role") << " on " << str(cur, "target") << " until "
                << when(cur, "expires") << " (" << id << ")\n";
    return 0;
  }
  std::string why;
  for (const auto& v : cur.value("votes", json::array()))
    if (!v.value("approve", true)) why = str(v, "reviewer_display") + ": " + str(v, "comment");
  return error(id + " was " + state + (why.empty() ? "" : " (" + why + ")"));
}

int cmd_grants_list() {
  auto& a = args();
  auto api = connect();
  if (!api) return error(api.error().message);
  auto r = call(*api, "GET",
                "/api/v1/grants" + query({{"target", a.target}, {"requester", a.requester}, {"limit", std::to_string(a.limit)}}));
  if (!r) return error(r.error().message);
  const auto grants = (*r)["grants"];
  if (a.json) return std::cout << grants.dump(2) << "\n", 0;
  if (grants.empty()) return std::cout << "no active grants\n", 0;
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : grants) {
    std::string by;
    for (const auto& v : g.value("votes", json::array()))
      if (v.value("approve", false)) by += (by.empty() ? "" : ", ") + str(v, "reviewer_display");
    rows.push_back({str(g, "id"), who(g.value("requester", json())), str(g, "target"), str(g, "role"),
                    when(g, "expires"), by});
  }
  print_table({"ID", "HOLDER", "TARGET", "ROLE", "EXPIRES", "APPROVED BY"}, rows);
  return 0;
}

int cmd_revoke() {
  auto& a = args();
  auto api = connect();
  if (!api) return error(api.error().message);
  auto r = call(*api, "POST", "/api/v1/grants/" + enc(a.id) + "/revoke", json{{"reason", a.reason}});
  if (!r) return error(r.error().message);
  if (a.json) return std::cout << r->dump(2) << "\n", 0;
  std::cout << "revoked " << a.id << " (role " << str(*r, "role") << " on " << str(*r, "target") << " of "
            << who(r->value("requester", json())) << ")\n";
  return 0;
}

void add_common(CLI::App* c) {
  auto& a = args();
  c->add_option("--admin-url", a.admin_url,
                "the admin API's base URL (default: admin.public_url of --config, $GATEHOUSE_ADMIN_URL, "
                "http://127.0.0.1:9187)");
  c->add_option("-c,--config", a.config, "take the admin API's URL (admin.public_url) from this configuration");
  c->add_option("--token", a.token, "bearer token (default: the token `gatehouse login` saved)");
  c->add_option("--token-file", a.token_file, "saved token file (default ~/.config/gatehouse/token.json)");
  c->add_option("--ca-file", a.ca_file, "CA bundle that signs the admin API's certificate (https)");
  c->add_flag("--json", a.json, "print the API's JSON");
}

}  // namespace

void add_approvals_commands(CLI::App& app) {
  auto& a = args();
  a.approvals = app.add_subcommand("approvals", "Review held statements and access requests (admin API)");
  a.approvals->require_subcommand(1);
  a.list = a.approvals->add_subcommand("list", "List approval and access requests, newest first");
  a.list->add_option("--state", a.state, "pending, approved, rejected, cancelled, expired or consumed");
  a.list->add_option("--target", a.target, "only this target");
  a.list->add_option("--requester", a.requester, "only this requester (subject or email)");
  a.list->add_option("--kind", a.kind, "statement or access (default both)")
      ->check(CLI::IsMember({"statement", "access"}));
  a.list->add_option("--limit", a.limit, "at most this many (default 50)")->check(CLI::Range(1, 1000));
  a.show = a.approvals->add_subcommand("show", "Show one request (apr_... or acc_...)");
  a.show->add_option("id", a.id, "request id")->required();
  a.approve = a.approvals->add_subcommand("approve", "Approve a request (apr_... or acc_...)");
  a.approve->add_option("id", a.id, "request id")->required();
  a.approve->add_option("--comment", a.comment, "a note for the record");
  a.reject = a.approvals->add_subcommand("reject", "Reject a request (apr_... or acc_...)");
  a.reject->add_option("id", a.id, "request id")->required();
  a.reject->add_option("--reason", a.reason, "why (shown to the requester)")->required();
  for (auto* c : {a.list, a.show, a.approve, a.reject}) add_common(c);

  a.request_access = app.add_subcommand("request-access", "Ask for a role on a target for a limited time");
  a.request_access->add_option("--target", a.target, "target name")->required();
  a.request_access->add_option("--role", a.role, "the role to be granted")->required();
  a.request_access->add_option("--for", a.duration, "how long: 30m, 1h, 2d or seconds (default 1h)");
  a.request_access->add_option("--reason", a.reason, "why (reviewers see it)")->required();
  a.request_access->add_flag("--wait", a.wait, "wait for the decision; exit 0 when granted, 1 otherwise");
  a.request_access->add_option("--wait-timeout", a.wait_timeout, "give up waiting after this many seconds (default: never)");
  a.request_access->add_option("--poll-interval", a.poll_interval, "seconds between checks while waiting (default 2)")
      ->check(CLI::Range(0.1, 60.0));
  add_common(a.request_access);

  a.grants = app.add_subcommand("grants", "Active access grants");
  a.grants->require_subcommand(1);
  a.grants_list = a.grants->add_subcommand("list", "List active grants (yours, or all for reviewers and auditors)");
  a.grants_list->add_option("--target", a.target, "only this target");
  a.grants_list->add_option("--requester", a.requester, "only this holder (subject or email)");
  a.grants_list->add_option("--limit", a.limit, "at most this many (default 50)")->check(CLI::Range(1, 1000));
  a.revoke = a.grants->add_subcommand("revoke", "End a grant now (admins, or the grant's holder)");
  a.revoke->add_option("id", a.id, "grant id (acc_...)")->required();
  a.revoke->add_option("--reason", a.reason, "why")->required();
  for (auto* c : {a.grants_list, a.revoke}) add_common(c);
}

std::optional<int> run_approvals_command() {
  auto& a = args();
  if (a.list && *a.list) return cmd_list();
  if (a.show && *a.show) return cmd_show();
  if (a.approve && *a.approve) return cmd_decide(true);
  if (a.reject && *a.reject) return cmd_decide(false);
  if (a.request_access && *a.request_access) return cmd_request_access();
  if (a.grants_list && *a.grants_list) return cmd_grants_list();
  if (a.revoke && *a.revoke) return cmd_revoke();
  return std::nullopt;
}

}  // namespace gh::app
