#include "app/login_cli.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "app/saved_token.h"
#include "config/config.h"
#include "identity/http.h"
#include "identity/jose.h"
#include "identity/token_auth.h"
#include "proxy/runtime.h"

namespace gh::app {
namespace {

using nlohmann::json;
namespace http = identity::http;

struct Args {
  CLI::App *login = nullptr, *token = nullptr, *whoami = nullptr, *psql = nullptr;
  std::string issuer, client_id, client_secret_file, scope, resource, ca_file, token_file, client_auth = "basic";
  std::string config, token_text, host, port, user, sslmode;
  bool print = false, no_save = false;
  std::vector<std::string> psql_args;
  std::string target;
};

Args& args() {
  static Args a;
  return a;
}

std::string token_file() { return args().token_file.empty() ? default_token_file() : args().token_file; }

http::Options http_options() {
  http::Options o;
  o.ca_file = args().ca_file;
  o.timeout = std::chrono::seconds(10);
  return o;
}

std::string strip_slash(std::string s) {
  while (s.size() > 8 && s.back() == '/') s.pop_back();
  return s;
}

Result<json> get_json(const std::string& url) {
  auto r = http::get(url, http_options());
  if (!r) return tl::unexpected(r.error());
  auto j = json::parse(r->body, nullptr, false);
  if (r->status != 200 || j.is_discarded() || !j.is_object())
    return fail("", url + " answered HTTP " + std::to_string(r->status) + (j.is_discarded() ? " (not JSON)" : ""));
  return j;
}

Result<json> discovery(const std::string& issuer) {
  auto doc = get_json(strip_slash(issuer) + "/.well-known/openid-configuration");
  if (!doc) return tl::unexpected(doc.error());
  if (doc->value("issuer", "") != issuer && doc->value("issuer", "") != strip_slash(issuer))
    return fail("", "the discovery document of " + issuer + " names another issuer: " + doc->value("issuer", "(none)"));
  return doc;
}

// A token request: the JSON answer on 200, and also on 400 (OAuth errors are JSON bodies).
Result<std::pair<int, json>> post_token(const std::string& url, std::vector<std::pair<std::string, std::string>> form,
                                        const std::string& basic_user = {}, const std::string& basic_pass = {}) {
  auto opt = http_options();
  if (!basic_user.empty()) {
    opt.headers.emplace_back("Authorization", http::basic_authorization(basic_user, basic_pass));
  }
  auto r = http::post_form(url, form, opt);
  if (!r) return tl::unexpected(r.error());
  auto j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return fail("", url + " answered HTTP " + std::to_string(r->status) + " without a JSON body");
  return std::make_pair(r->status, std::move(j));
}

Result<void> save_token(const json& response) {
  const std::string path = token_file();
  // Create the directories (mode 0700) that are missing.
  for (std::size_t i = 1; i < path.size(); ++i)
    if (path[i] == '/') ::mkdir(path.substr(0, i).c_str(), 0700);
  json saved = response;
  saved["issuer"] = args().issuer;
  saved["client_id"] = args().client_id;
  if (response.contains("expires_in") && response["expires_in"].is_number())
    saved["expires_at"] = std::int64_t(std::time(nullptr)) + response["expires_in"].get<std::int64_t>();
  const std::string text = saved.dump(2) + "\n";
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("", "cannot write " + tmp + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);
  bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) return fail("", "cannot write " + path + ": " + std::strerror(errno));
  return {};
}

Result<json> load_saved() { return load_saved_token(token_file()); }

std::vector<std::pair<std::string, std::string>> with_optional(std::vector<std::pair<std::string, std::string>> form) {
  if (!args().scope.empty()) form.emplace_back("scope", args().scope);
  if (!args().resource.empty()) form.emplace_back("resource", args().resource);
  return form;
}

void print_identity_hint(const json& saved) {
  const auto claims = unverified_claims(login_token(saved));
  const std::string who = claims.value("email", claims.value("sub", std::string("?")));
  std::cerr << "Token saved to " << token_file() << " (mode 0600) for " << who;
  if (claims.contains("exp") && claims["exp"].is_number_integer()) std::cerr << ", valid until " << utc(claims["exp"]);
  std::cerr << ".\nConnect with:  gatehouse psql TARGET\n"
               "or:            PGPASSWORD=\"$(gatehouse token --print)\" psql \"host=... dbname=TARGET user=" << who
            << " sslmode=require\"\n";
}

int cmd_login() {
  auto& a = args();
  auto doc = discovery(a.issuer);
  if (!doc) return std::cerr << "error: " << doc.error().message << "\n", 1;
  const std::string device_ep = doc->value("device_authorization_endpoint", "");
  const std::string token_ep = doc->value("token_endpoint", "");
  if (device_ep.empty())
    return std::cerr << "error: " << a.issuer << " does not offer the device authorization grant "
                     << "(no device_authorization_endpoint in its discovery document)\n", 1;
  if (a.scope.empty()) a.scope = "openid email profile groups";
  auto start = post_token(device_ep, with_optional({{"client_id", a.client_id}}));
  if (!start) return std::cerr << "error: " << start.error().message << "\n", 1;
  auto& [status, dev] = *start;
  if (status != 200 || !dev.contains("device_code"))
    return std::cerr << "error: the device authorization request was refused: " << dev.value("error", "?") << " "
                     << dev.value("error_description", "") << "\n", 1;
  const std::string device_code = dev.value("device_code", "");
  const std::string uri = dev.value("verification_uri", "");
  const std::string complete = dev.value("verification_uri_complete", "");
  std::cout << "To sign in, open " << (complete.empty() ? uri : complete) << "\n"
            << "and confirm the code: " << dev.value("user_code", "") << "\n"
            << std::flush;
  int interval = dev.value("interval", 5);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(dev.value("expires_in", 600));
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::seconds(interval));
    auto r = post_token(token_ep, {{"grant_type", "urn:ietf:params:oauth:grant-type:device_code"},
                                   {"device_code", device_code},
                                   {"client_id", a.client_id}});
    if (!r) {
      std::cerr << "warning: " << r.error().message << "; retrying\n";
      continue;
    }
    auto& [st, body] = *r;
    if (st == 200 && body.contains("access_token")) {
      if (!a.no_save)
        if (auto s = save_token(body); !s) return std::cerr << "error: " << s.error().message << "\n", 1;
      print_identity_hint(body);
      return 0;
    }
    const std::string err = body.value("error", "");
    if (err == "authorization_pending") continue;
    if (err == "slow_down") {
      interval += 5;
      continue;
    }
    if (err == "access_denied") return std::cerr << "error: the sign-in was denied\n", 1;
    if (err == "expired_token") return std::cerr << "error: the code expired before the sign-in; run login again\n", 1;
    return std::cerr << "error: the token request failed: " << err << " " << body.value("error_description", "") << "\n", 1;
  }
  std::cerr << "error: the code expired before the sign-in; run login again\n";
  return 1;
}

int cmd_token() {
  auto& a = args();
  if (a.issuer.empty()) {  // print the saved token
    auto saved = load_saved();
    if (!saved) return std::cerr << "error: " << saved.error().message << "\n", 1;
    const auto t = login_token(*saved);
    if (t.empty()) return std::cerr << "error: " << token_file() << " holds no usable token\n", 1;
    const auto claims = unverified_claims(t);
    if (claims.contains("exp") && claims["exp"].is_number_integer() && claims["exp"].get<std::int64_t>() < std::time(nullptr))
      std::cerr << "warning: the saved token expired at " << utc(claims["exp"]) << "; get a new one\n";
    std::cout << t << "\n";
    return 0;
  }
  if (a.client_id.empty() || a.client_secret_file.empty())
    return std::cerr << "error: --client-id and --client-secret-file are needed with --issuer\n", 2;
  std::ifstream in(a.client_secret_file);
  if (!in) return std::cerr << "error: cannot read " << a.client_secret_file << "\n", 1;
  std::string secret((std::istreambuf_iterator<char>(in)), {});
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  auto doc = discovery(a.issuer);
  if (!doc) return std::cerr << "error: " << doc.error().message << "\n", 1;
  const std::string token_ep = doc->value("token_endpoint", "");
  std::vector<std::pair<std::string, std::string>> form{{"grant_type", "client_credentials"}};
  Result<std::pair<int, json>> r;
  if (a.client_auth == "post") {
    form.emplace_back("client_id", a.client_id);
    form.emplace_back("client_secret", secret);
    r = post_token(token_ep, with_optional(form));
  } else {
    r = post_token(token_ep, with_optional(form), a.client_id, secret);
  }
  if (!r) return std::cerr << "error: " << r.error().message << "\n", 1;
  auto& [st, body] = *r;
  if (st != 200 || !body.contains("access_token"))
    return std::cerr << "error: the token request was refused: " << body.value("error", "?") << " "
                     << body.value("error_description", "") << "\n", 1;
  if (!a.token_file.empty())
    if (auto s = save_token(body); !s) return std::cerr << "error: " << s.error().message << "\n", 1;
  std::cout << body.value("access_token", "") << "\n";
  return 0;
}

std::string read_token_arg() {
  auto& a = args();
  if (a.token_text == "-") {
    std::string t((std::istreambuf_iterator<char>(std::cin)), {});
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    return t;
  }
  if (!a.token_text.empty()) return a.token_text;
  auto saved = load_saved();
  return saved ? login_token(*saved) : std::string();
}

int cmd_whoami() {
  auto& a = args();
  spdlog::set_level(spdlog::level::warn);  // the key cache's "N signing keys" line is noise here
  const std::string token = read_token_arg();
  if (token.empty()) return std::cerr << "error: no token: give --token TOKEN (or - for stdin), or log in first\n", 2;
  if (a.config.empty()) {
    std::cout << "Unverified claims (give --config to verify the token as the proxy would):\n"
              << unverified_claims(token).dump(2) << "\n";
    return 0;
  }
  auto cfg = config::load_file(a.config);
  if (!cfg) return std::cerr << "error: " << cfg.error().message << "\n", 2;
  if (cfg->oidc.issuers.empty()) return std::cerr << "error: " << a.config << " configures no oidc.issuers\n", 2;
  identity::LoginAuthenticator auth(std::make_unique<identity::StaticUserAuthenticator>(std::vector<identity::StaticUser>{}),
                                    cfg->oidc.issuers, proxy::key_registry().use(cfg->oidc.issuers), {});
  auto v = auth.verify(token, std::chrono::seconds(10));
  if (!v) {
    std::cout << "refused: " << v.error().message << "\n";
    if (!v.error().detail.empty() && v.error().detail != v.error().message) std::cout << "detail: " << v.error().detail << "\n";
    return 1;
  }
  const auto& id = v->identity;
  std::string groups;
  for (const auto& g : id.groups) groups += (groups.empty() ? "" : ", ") + g;
  std::cout << "subject:  " << id.subject << "\n"
            << "email:    " << (id.email.empty() ? "-" : id.email) << "\n"
            << "name:     " << (id.display_name.empty() ? "-" : id.display_name) << "\n"
            << "groups:   " << (groups.empty() ? "-" : groups) << "\n"
            << "kind:     " << (id.kind == identity::Kind::Agent ? "agent" : "human") << "\n"
            << "issuer:   " << v->issuer << "\n"
            << "client:   " << (id.client_id.empty() ? "-" : id.client_id) << "\n"
            << "expires:  " << utc(std::chrono::duration_cast<std::chrono::seconds>(v->expires_at.time_since_epoch()).count())
            << "\n";
  for (const auto& t : cfg->targets) {
    const auto* l = t.login_for(id);
    std::cout << "target " << t.name << ": "
              << (l ? "logs in as " + l->user + (l->role.empty() ? "" : " (role " + l->role + ")") : "no login (refused)")
              << "\n";
  }
  return 0;
}

int cmd_psql() {
  auto& a = args();
  auto saved = load_saved();
  if (!saved) return std::cerr << "error: " << saved.error().message << "\n", 1;
  const std::string token = login_token(*saved);
  if (token.empty()) return std::cerr << "error: " << token_file() << " holds no usable token\n", 1;
  const auto claims = unverified_claims(token);
  if (claims.contains("exp") && claims["exp"].is_number_integer() && claims["exp"].get<std::int64_t>() < std::time(nullptr))
    return std::cerr << "error: the saved token expired at " << utc(claims["exp"]) << "; run `gatehouse login` again\n", 1;
  std::string host = a.host, port = a.port;
  if (!a.config.empty()) {
    if (auto cfg = config::load_file(a.config)) {
      if (host.empty()) host = cfg->listen.address == "0.0.0.0" ? "127.0.0.1" : cfg->listen.address;
      if (port.empty()) port = std::to_string(cfg->listen.port);
    } else {
      return std::cerr << "error: " << cfg.error().message << "\n", 2;
    }
  }
  if (host.empty()) host = "127.0.0.1";
  if (port.empty()) port = "6432";
  std::string user = a.user;
  if (user.empty()) user = claims.value("email", claims.value("sub", std::string("gatehouse")));
  ::setenv("PGPASSWORD", token.c_str(), 1);
  std::string conninfo = "host=" + host + " port=" + port + " dbname=" + a.target + " user=" + user;
  if (!a.sslmode.empty()) conninfo += " sslmode=" + a.sslmode;
  std::vector<std::string> argv{"psql", conninfo};
  for (const auto& x : a.psql_args) argv.push_back(x);
  std::vector<char*> cargv;
  for (auto& s : argv) cargv.push_back(s.data());
  cargv.push_back(nullptr);
  ::execvp("psql", cargv.data());
  std::cerr << "error: cannot run psql: " << std::strerror(errno) << "\n";
  return 127;
}

}  // namespace

void add_login_commands(CLI::App& app) {
  auto& a = args();
  a.login = app.add_subcommand("login", "Sign in with the OAuth 2.0 device flow (people) and save the token");
  a.login->add_option("--issuer", a.issuer, "the IdP's issuer URL")->required();
  a.login->add_option("--client-id", a.client_id, "the OAuth client registered for the CLI")->required();
  a.login->add_option("--scope", a.scope, "scopes to ask for (default: openid email profile groups)");
  a.login->add_option("--resource", a.resource, "resource indicator (RFC 8707) for the access token's audience");
  a.login->add_option("--ca-file", a.ca_file, "CA bundle that signs the IdP's certificate");
  a.login->add_option("--token-file", a.token_file, "where to save the token (default ~/.config/gatehouse/token.json)");
  a.login->add_flag("--no-save", a.no_save, "do not save the token");

  a.token = app.add_subcommand(
      "token", "Print the saved token, or get one with the client-credentials grant (agents and services)");
  a.token->add_option("--issuer", a.issuer, "the IdP's issuer URL (omit to print the saved token)");
  a.token->add_option("--client-id", a.client_id, "the agent's OAuth client id");
  a.token->add_option("--client-secret-file", a.client_secret_file, "file holding the client secret");
  a.token->add_option("--client-auth", a.client_auth, "how to send the secret: basic (default) or post")
      ->check(CLI::IsMember({"basic", "post"}));
  a.token->add_option("--scope", a.scope, "scopes to ask for");
  a.token->add_option("--resource", a.resource, "resource indicator (RFC 8707) for the token's audience");
  a.token->add_option("--ca-file", a.ca_file, "CA bundle that signs the IdP's certificate");
  a.token->add_option("--token-file", a.token_file, "save the token here as well (client credentials); read from here (--print)");
  a.token->add_flag("--print", a.print, "print the saved token (the default without --issuer)");

  a.whoami = app.add_subcommand("whoami", "Show the identity Gatehouse derives from a token");
  a.whoami->add_option("--token", a.token_text, "the token (- reads standard input; default: the saved token)");
  a.whoami->add_option("--token-file", a.token_file, "saved token file");
  a.whoami->add_option("-c,--config", a.config, "verify as this configuration's proxy would (else: unverified claims)");

  a.psql = app.add_subcommand("psql", "Run psql against a target through the proxy with the saved token");
  a.psql->add_option("target", a.target, "target (database name) to connect to")->required();
  a.psql->add_option("-c,--config", a.config, "take the proxy's address from this configuration");
  a.psql->add_option("--host", a.host, "proxy host (default 127.0.0.1)");
  a.psql->add_option("--port", a.port, "proxy port (default 6432)");
  a.psql->add_option("--user", a.user, "user name (default: the token's email)");
  a.psql->add_option("--sslmode", a.sslmode, "libpq sslmode (default: libpq's, or PGSSLMODE)");
  a.psql->add_option("--token-file", a.token_file, "saved token file");
  a.psql->add_option("psql_args", a.psql_args, "arguments after -- go to psql");
}

std::optional<int> run_login_command() {
  auto& a = args();
  if (a.login && *a.login) return cmd_login();
  if (a.token && *a.token) return cmd_token();
  if (a.whoami && *a.whoami) return cmd_whoami();
  if (a.psql && *a.psql) return cmd_psql();
  return std::nullopt;
}

}  // namespace gh::app
