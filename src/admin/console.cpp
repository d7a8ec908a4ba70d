#include "admin/console.h"

#include <chrono>
#include <mutex>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/admin_server.h"
#include "admin/console_assets.h"
#include "admin/console_sessions.h"
#include "identity/http.h"

namespace gh::admin {
namespace {

using nlohmann::json;
using Clock = std::chrono::system_clock;

void security_headers(httplib::Response& res) {
  res.set_header("Content-Security-Policy", kConsoleCsp);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("Referrer-Policy", "no-referrer");
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

// A page of the sign-in flow: a title, a message, a link (no script, no style).
void page(httplib::Response& res, int status, const std::string& title, const std::string& message,
          const std::string& link_text = "Sign in again", const std::string& link = "/console/login") {
  security_headers(res);
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content("<!doctype html><html lang=en><meta charset=utf-8><title>Gatehouse: " + html_escape(title) +
                      "</title><h1>" + html_escape(title) + "</h1><p id=message>" + html_escape(message) +
                      "</p><p><a href=\"" + html_escape(link) + "\">" + html_escape(link_text) + "</a></p>\n",
                  "text/html; charset=utf-8");
}

bool secure_cookies(const Hooks& h) { return h.public_url && h.public_url().rfind("https://", 0) == 0; }

std::string cookie(std::string_view name, const std::string& value, const std::string& attrs, bool secure) {
  return std::string(name) + "=" + value + "; " + attrs + "; HttpOnly" + (secure ? "; Secure" : "");
}

// Only a hash route of the console's own ("#/approvals/apr_x"): anything else (another site, a
// script URL) becomes the inbox.
std::string safe_next(const std::string& next) {
  if (next.size() < 2 || next.size() > 200 || next.rfind("#/", 0) != 0) return "#/approvals";
  for (unsigned char ch : next)
    if (!(std::isalnum(ch) || ch == '/' || ch == '_' || ch == '-' || ch == '#' || ch == '.' || ch == '?' || ch == '=' ||
          ch == '&'))
      return "#/approvals";
  return next;
}

// The issuer's endpoints from its discovery document, fetched on the admin thread and kept for
// ten minutes.
struct Endpoints {
  std::string authorization, token;
};
class Discovery {
 public:
  Result<Endpoints> get(const ConsoleSettings& s) {
    {
      std::lock_guard lk(mu_);
      if (url_ == s.discovery_url && Clock::now() < until_) return cached_;
    }
    identity::http::Options opt;
    opt.ca_file = s.ca_file;
    auto r = identity::http::get(s.discovery_url, opt);
    if (!r) return fail("", "the identity provider's discovery document could not be fetched: " + r.error().message);
    if (r->status != 200)
      return fail("", "the identity provider's discovery document answered HTTP " + std::to_string(r->status));
    auto doc = json::parse(r->body, nullptr, false);
    Endpoints e;
    if (doc.is_object()) {
      if (auto it = doc.find("authorization_endpoint"); it != doc.end() && it->is_string()) e.authorization = *it;
      if (auto it = doc.find("token_endpoint"); it != doc.end() && it->is_string()) e.token = *it;
    }
    if (e.authorization.empty() || e.token.empty())
      return fail("", "the identity provider's discovery document names no authorization_endpoint or token_endpoint");
    std::lock_guard lk(mu_);
    url_ = s.discovery_url;
    cached_ = e;
    until_ = Clock::now() + std::chrono::minutes(10);
    return e;
  }

 private:
  std::mutex mu_;
  std::string url_;
  Endpoints cached_;
  Clock::time_point until_{};
};

void record(const Hooks& h, const httplib::Request& req, const char* action, int status, const identity::Identity& who,
            const std::string& message) {
  if (!h.on_action) return;
  Action a;
  a.action = action;
  a.client = req.remote_addr;
  a.status = status;
  a.who = who;
  a.message = message;
  h.on_action(a);
}

void login(const Hooks& h, Discovery& discovery, const httplib::Request& req, httplib::Response& res) {
  const ConsoleSettings s = h.console ? h.console() : ConsoleSettings{};
  if (s.client_id.empty()) {
    page(res, 503, "Console sign-in is not configured",
         "Set admin.console.client_id (the console's OpenID Connect client at your identity provider) in the "
         "Gatehouse configuration; see docs/console.md.",
         "Back", "/console/");
    return;
  }
  auto ep = discovery.get(s);
  if (!ep) {
    spdlog::error("console sign-in: {}", ep.error().message);
    page(res, 502, "The identity provider cannot be reached", ep.error().message + ". Try again in a moment.",
         "Try again", "/console/login");
    return;
  }
  const auto [id, l] = h.console_sessions->begin_login(safe_next(req.get_param_value("next")), Clock::now());
  using identity::http::url_encode;
  std::string scope;
  for (const auto& sc : s.scopes) scope += (scope.empty() ? "" : " ") + sc;
  const std::string redirect = (h.public_url ? h.public_url() : std::string()) + "/console/callback";
  std::string url = ep->authorization + (ep->authorization.find('?') == std::string::npos ? "?" : "&");
  url += "response_type=code&client_id=" + url_encode(s.client_id) + "&redirect_uri=" + url_encode(redirect) +
         "&scope=" + url_encode(scope) + "&state=" + url_encode(l.state) + "&nonce=" + url_encode(l.nonce) +
         "&code_challenge=" + pkce_challenge(l.verifier) + "&code_challenge_method=S256";
  security_headers(res);
  res.set_header("Cache-Control", "no-store");
  // Lax, not Strict: the IdP's redirect back to /console/callback is a cross-site navigation.
  res.set_header("Set-Cookie", cookie(kLoginCookie, id, "Path=/console/; Max-Age=600; SameSite=Lax", secure_cookies(h)));
  res.set_redirect(url, 302);
}

// The IdP sends the browser back with ?code=&state= (or ?error=): the pending sign-in named by the
// gh_login cookie must match the state; the code is exchanged with the PKCE verifier; the ID token
// is checked; a session starts.
void callback(const Hooks& h, Discovery& discovery, const httplib::Request& req, httplib::Response& res) {
  const identity::Identity nobody;
  auto refuse = [&](int status, const std::string& title, const std::string& why) {
    record(h, req, "console.login", status, nobody, why);
    page(res, status, title, why);
  };
  const std::string login_id = cookie_value(req.get_header_value("Cookie"), kLoginCookie);
  auto l = login_id.empty() ? std::nullopt : h.console_sessions->take_login(login_id, Clock::now());
  // The cookie is spent either way.
  res.set_header("Set-Cookie", cookie(kLoginCookie, "", "Path=/console/; Max-Age=0; SameSite=Lax", secure_cookies(h)));
  if (!l)
    return refuse(400, "Sign-in not recognised",
                  "This sign-in did not start here, or took longer than 10 minutes (its cookie is missing or "
                  "expired). Start again.");
  if (!ConsoleSessions::same_token(req.get_param_value("state"), l->state))
    return refuse(400, "Sign-in not recognised", "The identity provider's answer does not belong to this sign-in "
                                                 "(state mismatch). Start again.");
  if (req.has_param("error")) {
    std::string why = req.get_param_value("error");
    if (req.has_param("error_description")) why += ": " + req.get_param_value("error_description");
    return refuse(403, "Sign-in refused", "The identity provider refused the sign-in (" + why.substr(0, 300) + ").");
  }
  const std::string code = req.get_param_value("code");
  if (code.empty()) return refuse(400, "Sign-in failed", "The identity provider sent no authorization code.");
  const ConsoleSettings s = h.console ? h.console() : ConsoleSettings{};
  if (s.client_id.empty() || !h.verify_id_token)
    return refuse(503, "Console sign-in is not configured", "Set admin.console.client_id; see docs/console.md.");
  auto ep = discovery.get(s);
  if (!ep) return refuse(502, "The identity provider cannot be reached", ep.error().message);
  identity::http::Options opt;
  opt.ca_file = s.ca_file;
  std::vector<std::pair<std::string, std::string>> form{
      {"grant_type", "authorization_code"},
      {"code", code},
      {"redirect_uri", (h.public_url ? h.public_url() : std::string()) + "/console/callback"},
      {"code_verifier", l->verifier}};
  if (s.client_secret.empty()) {
    form.emplace_back("client_id", s.client_id);
  } else {
    opt.headers.emplace_back("Authorization", identity::http::basic_authorization(s.client_id, s.client_secret));
  }
  auto tr = identity::http::post_form(ep->token, form, opt);
  if (!tr) return refuse(502, "The identity provider cannot be reached", tr.error().message);
  auto body = json::parse(tr->body, nullptr, false);
  if (tr->status != 200 || !body.is_object()) {
    std::string why = "HTTP " + std::to_string(tr->status);
    if (body.is_object() && body.contains("error") && body["error"].is_string())
      why += ": " + body["error"].get<std::string>();
    if (body.is_object() && body.contains("error_description") && body["error_description"].is_string())
      why += " (" + body["error_description"].get<std::string>() + ")";
    return refuse(502, "Sign-in failed", "The identity provider did not exchange the code: " + why.substr(0, 400));
  }
  auto it = body.find("id_token");
  if (it == body.end() || !it->is_string())
    return refuse(502, "Sign-in failed", "The identity provider sent no ID token (is \"openid\" in admin.console.scopes?)");
  auto who = h.verify_id_token(it->get<std::string>(), l->nonce);
  if (!who) return refuse(403, "Sign-in refused", "The identity provider's ID token was refused: " + who.error());
  const std::string sid = h.console_sessions->create(*who, Clock::now(), s.session_ttl);
  record(h, req, "console.login", 200, *who, "");
  res.set_header("Set-Cookie", cookie(kSessionCookie, sid,
                                      "Path=/; Max-Age=" + std::to_string(s.session_ttl.count()) + "; SameSite=Strict",
                                      secure_cookies(h)));
  // A page that moves on by itself (no script: the CSP allows none inline). The navigation starts
  // here, on the console's own site, so the browser sends the Strict session cookie with it; a
  // redirect would still count as the IdP's cross-site navigation.
  const std::string to = "/console/" + l->next;
  security_headers(res);
  res.set_header("Cache-Control", "no-store");
  res.status = 200;
  res.set_content("<!doctype html><html lang=en><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=" +
                      html_escape(to) + "\"><title>Gatehouse: signed in</title><p>Signed in. <a href=\"" +
                      html_escape(to) + "\">Continue to the console</a></p>\n",
                  "text/html; charset=utf-8");
}

void logout(const Hooks& h, const httplib::Request& req, httplib::Response& res) {
  security_headers(res);
  const std::string sid = cookie_value(req.get_header_value("Cookie"), kSessionCookie);
  auto s = sid.empty() ? std::nullopt : h.console_sessions->find(sid);
  auto answer = [&](int status, const char* error, const std::string& message) {
    res.status = status;
    res.set_content(json{{"error", error}, {"message", message}}.dump() + "\n", "application/json");
  };
  if (!s) return answer(401, "unauthorized", "not signed in");
  if (!ConsoleSessions::same_token(req.get_header_value("X-CSRF-Token"), s->csrf)) {
    record(h, req, "console.logout", 403, s->who, "no CSRF token");
    return answer(403, "csrf", "sign out needs the console's CSRF token (X-CSRF-Token)");
  }
  h.console_sessions->end(sid);
  record(h, req, "console.logout", 200, s->who, "");
  res.set_header("Set-Cookie", cookie(kSessionCookie, "", "Path=/; Max-Age=0; SameSite=Strict", secure_cookies(h)));
  res.status = 200;
  res.set_content("{\"signed_out\":true}\n", "application/json");
}

void asset(const httplib::Request& req, httplib::Response& res, std::string_view path) {
  security_headers(res);
  const auto files = console_assets();
  if (files.empty()) {
    page(res, 503, "The console is not part of this build",
         "This gatehouse binary was built without the web console (npm or web/node_modules was missing; run "
         "scripts/install-deps.sh and rebuild). The API (/api/v1, docs/api.md) and the CLI work without it.",
         "API reference", "/api/v1/whoami");
    return;
  }
  if (path.empty()) path = "index.html";
  for (const auto& f : files) {
    if (f.path != path) continue;
    // Vite names built assets by their content hash: cache them for good; the page itself never.
    res.set_header("Cache-Control", path.rfind("assets/", 0) == 0 ? "public, max-age=31536000, immutable" : "no-cache");
    if (req.method == "HEAD") {
      res.set_header("Content-Length", std::to_string(f.body.size()));
      res.set_header("Content-Type", std::string(f.content_type));
      return;
    }
    res.set_content(f.body.data(), f.body.size(), std::string(f.content_type));
    return;
  }
  res.status = 404;
  res.set_content("no such file in the console: " + std::string(path) + "\n", "text/plain; charset=utf-8");
}

}  // namespace

void install_console(httplib::Server& s, const Hooks& h) {
  auto discovery = std::make_shared<Discovery>();
  s.Get("/console", [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/console/", 302); });
  s.Get("/console/login", [&h, discovery](const httplib::Request& req, httplib::Response& res) {
    login(h, *discovery, req, res);
  });
  s.Get("/console/callback", [&h, discovery](const httplib::Request& req, httplib::Response& res) {
    callback(h, *discovery, req, res);
  });
  s.Post("/console/logout", [&h](const httplib::Request& req, httplib::Response& res) { logout(h, req, res); });
  s.Get(R"(/console/([A-Za-z0-9_.\-/]*))", [](const httplib::Request& req, httplib::Response& res) {
    const std::string path = req.matches[1];
    if (path.find("..") != std::string::npos) {
      res.status = 404;
      return;
    }
    asset(req, res, path);
  });
  // The link in held statements' notices and webhooks (approvals' console_url).
  s.Get(R"(/approvals/((?:apr|acc)_[A-Za-z0-9]{1,64}))", [](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    res.set_redirect("/console/#/approvals/" + id, 302);  // the console shows access requests there too
  });
}

}  // namespace gh::admin
