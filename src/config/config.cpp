#include "config/config.h"
#include "config/yaml_load.h"

#include <sys/stat.h>

#include <limits>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <arpa/inet.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "config/policy_config.h"
#include "identity/http.h"
#include "identity/identity.h"
#include "identity/jose.h"

namespace gh::config {

namespace {

struct ParseError {
  std::string message;
};

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail_at(const YAML::Node& n, const std::string& path, const std::string& what) const {
    const auto m = n.Mark();
    std::string where = source_;
    if (m.line >= 0) where += ":" + std::to_string(m.line + 1);
    throw ParseError{where + ": " + path + ": " + what};
  }

  void require_map(const YAML::Node& n, const std::string& path) const {
    if (!n.IsMap()) fail_at(n, path, "expected a mapping");
  }

  void allowed_keys(const YAML::Node& n, const std::string& path, std::initializer_list<const char*> keys) const {
    require_map(n, path);
    std::set<std::string> ok(keys.begin(), keys.end());
    for (const auto& kv : n) {
      const auto k = kv.first.as<std::string>();
      if (!ok.count(k)) {
        std::string list;
        for (const auto* s : keys) list += (list.empty() ? "" : ", ") + std::string(s);
        fail_at(kv.first, join(path, k), "unknown key (expected one of: " + list + ")");
      }
    }
  }

  static std::string join(const std::string& path, const std::string& k) { return path.empty() ? k : path + "." + k; }

  std::string scalar(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) fail_at(n, path, "expected a value");
    if (const auto m = n.Mark(); m.line >= 0) lines_[path] = m.line + 1;
    return n.Scalar();
  }
  std::map<std::string, int, std::less<>> take_lines() const { return std::move(lines_); }

  std::string str(const YAML::Node& n, const std::string& path, bool non_empty = true) const {
    auto s = scalar(n, path);
    if (non_empty && s.empty()) fail_at(n, path, "must not be empty");
    return s;
  }

  // `file` (what n names, resolved) must be a file this process can read: found by `check`, with
  // the key and line, not by `serve` later.
  void readable(const YAML::Node& n, const std::string& path, const std::string& file) const {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) fail_at(n, path, file + " is a directory, not a file");
    std::ifstream in(file, std::ios::binary);
    if (!in) fail_at(n, path, "cannot read " + file + ": " + std::strerror(errno));
  }

  // A numeric IPv4 or IPv6 address (what the listeners bind; host names are not looked up).
  std::string ip_address(const YAML::Node& n, const std::string& path) const {
    auto s = str(n, path);
    unsigned char buf[16];
    if (::inet_pton(AF_INET, s.c_str(), buf) != 1 && ::inet_pton(AF_INET6, s.c_str(), buf) != 1)
      fail_at(n, path, "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got \"" + s + "\"");
    return s;
  }

  std::uint64_t uint(const YAML::Node& n, const std::string& path, std::uint64_t lo, std::uint64_t hi) const {
    const auto s = scalar(n, path);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
      fail_at(n, path, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got \"" +
                           s + "\"");
    return v;
  }

  std::uint16_t port(const YAML::Node& n, const std::string& path, bool allow_zero) const {
    const auto s = scalar(n, path);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v > 65535 || (!allow_zero && v == 0))
      fail_at(n, path, std::string("expected a port number (") + (allow_zero ? "0" : "1") + "-65535), got \"" + s +
                           "\"");
    return std::uint16_t(v);
  }

  Duration duration(const YAML::Node& n, const std::string& path) const {
    auto r = parse_duration(scalar(n, path));
    if (!r) fail_at(n, path, r.error().message);
    return *r;
  }

  std::uint64_t size(const YAML::Node& n, const std::string& path, std::uint64_t lo, std::uint64_t hi) const {
    auto r = parse_size(scalar(n, path));
    if (!r) fail_at(n, path, r.error().message);
    if (*r < lo || *r > hi)
      fail_at(n, path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " bytes");
    return *r;
  }

  template <class E>
  E choice(const YAML::Node& n, const std::string& path, std::initializer_list<std::pair<const char*, E>> options) const {
    const auto s = scalar(n, path);
    std::string list;
    for (const auto& [name, value] : options) {
      if (s == name) return value;
      list += (list.empty() ? "" : ", ") + std::string(name);
    }
    fail_at(n, path, "expected one of: " + list + "; got \"" + s + "\"");
  }

  std::vector<std::string> strings(const YAML::Node& n, const std::string& path) const {
    if (!n.IsSequence()) fail_at(n, path, "expected a list");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i) out.push_back(str(n[i], path + "[" + std::to_string(i) + "]"));
    return out;
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  mutable std::map<std::string, int, std::less<>> lines_;  // key -> line of each scalar read
};

// A path relative to the configuration file's directory.
std::string beside(const std::string& source, const std::string& file) {
  const auto slash = source.rfind('/');
  if (file.empty() || file[0] == '/' || file == "-" || slash == std::string::npos) return file;
  return source.substr(0, slash + 1) + file;
}

// A file the proxy creates and writes (a store): not a directory, in a directory that exists
// (found by adversarial testing: check said ok, serve then failed).
void writable_file(const Reader& r, const YAML::Node& n, const std::string& key, const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    r.fail_at(n, key, file + " is a directory (give the path of a file)");
  const auto slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : file.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    r.fail_at(n, key, "the directory of " + file + " does not exist");
}

std::string secret_value(const Reader& r, const YAML::Node& n, const std::string& path, const char* key);

void read_backend(const Reader& r, const YAML::Node& n, const std::string& path, Backend& b) {
  r.allowed_keys(n, path, {"host", "port", "database", "tls", "ca_file"});
  if (n["host"]) b.host = r.str(n["host"], path + ".host");
  if (n["port"]) b.port = r.port(n["port"], path + ".port", false);
  if (n["database"]) {
    b.database = r.str(n["database"], path + ".database");
    if (b.database == "*") b.database.clear();
  }
  if (n["tls"])
    b.tls = r.choice<BackendTlsMode>(n["tls"], path + ".tls",
                                     {{"disable", BackendTlsMode::Disable},
                                      {"require", BackendTlsMode::Require},
                                      {"verify-full", BackendTlsMode::VerifyFull}});
  if (n["ca_file"]) {
    b.ca_file = beside(r.source(), r.str(n["ca_file"], path + ".ca_file"));
    r.readable(n["ca_file"], path + ".ca_file", b.ca_file);
  }
  if (b.tls == BackendTlsMode::VerifyFull && b.ca_file.empty())
    r.fail_at(n, path + ".ca_file", "required when tls is verify-full");
  // libpq verifies the server's certificate with sslmode=require when a root CA file is given;
  // the proxy's require does not (it only encrypts): a ca_file there would look like verification
  // that never happens (found by adversarial testing).
  if (b.tls != BackendTlsMode::VerifyFull && n["ca_file"])
    r.fail_at(n["ca_file"], path + ".ca_file",
              "is used only with tls: verify-full (the certificate is then checked against it and the host name); "
              "with tls: require or disable it would not be checked at all");
}

void read_login(const Reader& r, const YAML::Node& n, const std::string& path, Login& l, bool with_when) {
  if (with_when)
    r.allowed_keys(n, path, {"when", "user", "password", "password_env", "password_file", "role"});
  else
    r.allowed_keys(n, path, {"user", "password", "password_env", "password_file", "role"});
  if (n["role"]) l.role = r.str(n["role"], path + ".role");
  if (auto w = n["when"]) {
    r.allowed_keys(w, path + ".when", {"groups", "subjects", "kinds", "grants"});
    if (w["grants"]) l.grants = r.strings(w["grants"], path + ".when.grants");
    if (w["groups"]) l.groups = r.strings(w["groups"], path + ".when.groups");
    if (w["subjects"]) l.subjects = r.strings(w["subjects"], path + ".when.subjects");
    if (auto k = w["kinds"]) {
      if (!k.IsSequence()) r.fail_at(k, path + ".when.kinds", "expected a list (human, agent)");
      for (std::size_t i = 0; i < k.size(); ++i)
        l.kinds.push_back(r.choice<identity::Kind>(k[i], path + ".when.kinds[" + std::to_string(i) + "]",
                                                   {{"human", identity::Kind::Human}, {"agent", identity::Kind::Agent}}));
    }
  }
  if (!n["user"]) r.fail_at(n, path + ".user", "missing (the backend role the proxy logs in as)");
  l.user = r.str(n["user"], path + ".user");
  const int sources = int(bool(n["password"])) + int(bool(n["password_env"])) + int(bool(n["password_file"]));
  if (sources > 1) r.fail_at(n, path, "give only one of password, password_env, password_file");
  if (sources == 0)
    r.fail_at(n, path + ".password_env", "missing (give password_env, password_file or password)");
  if (n["password"]) {
    l.password = r.str(n["password"], path + ".password", false);
  }
  if (!n["password"]) l.password = secret_value(r, n, path, "password");
}

std::string secret_value(const Reader& r, const YAML::Node& n, const std::string& path, const char* key) {
  const std::string k(key);
  const int sources = int(bool(n[k])) + int(bool(n[k + "_env"])) + int(bool(n[k + "_file"]));
  if (sources > 1) r.fail_at(n, path, "give only one of " + k + ", " + k + "_env, " + k + "_file");
  if (n[k]) return r.str(n[k], path + "." + k);
  // An empty value from the environment or a file is refused like an empty literal (found by
  // adversarial testing: an empty secret file sent webhooks unsigned, a directory given as a
  // password file logged in with an empty password).
  if (n[k + "_env"]) {
    const auto var = r.str(n[k + "_env"], path + "." + k + "_env");
    const char* v = std::getenv(var.c_str());
    if (!v) r.fail_at(n[k + "_env"], path + "." + k + "_env", "environment variable " + var + " is not set");
    if (!*v) r.fail_at(n[k + "_env"], path + "." + k + "_env", "environment variable " + var + " is empty");
    return v;
  }
  if (n[k + "_file"]) {
    const auto file = beside(r.source(), r.str(n[k + "_file"], path + "." + k + "_file"));
    struct stat st {};
    if (::stat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      r.fail_at(n[k + "_file"], path + "." + k + "_file", file + " is not a file");
    std::ifstream in(file, std::ios::binary);
    if (!in) r.fail_at(n[k + "_file"], path + "." + k + "_file", "cannot read " + file);
    std::stringstream ss;
    ss << in.rdbuf();
    auto v = ss.str();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    if (v.empty()) r.fail_at(n[k + "_file"], path + "." + k + "_file", file + " is empty");
    return v;
  }
  r.fail_at(n, path + "." + k, "missing");
}

std::chrono::seconds read_seconds(const Reader& r, const YAML::Node& n, const std::string& path, std::chrono::seconds lo,
                             std::chrono::seconds hi) {
  auto d = std::chrono::duration_cast<std::chrono::seconds>(r.duration(n, path));
  if (d < lo || d > hi)
    r.fail_at(n, path, "must be between " + std::to_string(lo.count()) + "s and " + std::to_string(hi.count()) + "s");
  return d;
}

// A string or a list of strings.
std::vector<std::string> one_or_more(const Reader& r, const YAML::Node& n, const std::string& path) {
  if (n.IsScalar()) return {r.str(n, path)};
  auto v = r.strings(n, path);
  if (v.empty()) r.fail_at(n, path, "must not be empty");
  return v;
}

void read_oidc(const Reader& r, const YAML::Node& n, Oidc& o) {
  r.allowed_keys(n, "oidc", {"issuers", "allow_loopback_plaintext", "on_token_expiry", "expiry_grace"});
  if (n["allow_loopback_plaintext"])
    o.allow_loopback_plaintext = r.choice<bool>(n["allow_loopback_plaintext"], "oidc.allow_loopback_plaintext",
                                                {{"true", true}, {"false", false}});
  if (n["on_token_expiry"])
    o.on_expiry = r.choice<Oidc::OnExpiry>(n["on_token_expiry"], "oidc.on_token_expiry",
                                           {{"end_session", Oidc::OnExpiry::End}, {"keep_session", Oidc::OnExpiry::Keep}});
  if (n["expiry_grace"]) o.expiry_grace = r.duration(n["expiry_grace"], "oidc.expiry_grace");
  auto list = n["issuers"];
  if (!list) r.fail_at(n, "oidc.issuers", "missing (the identity providers whose tokens are logins)");
  if (!list.IsSequence() || list.size() == 0) r.fail_at(list, "oidc.issuers", "expected a non-empty list");
  std::set<std::string> seen;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string path = "oidc.issuers[" + std::to_string(i) + "]";
    const auto& e = list[i];
    r.allowed_keys(e, path,
                   {"issuer", "audience", "discovery_url", "jwks_uri", "ca_file", "algorithms", "leeway",
                    "refresh_interval", "min_refresh_interval", "claims", "agents"});
    identity::IssuerConfig c;
    c.qualify_subjects = i > 0;  // subjects are unique only within their issuer
    if (!e["issuer"]) r.fail_at(e, path + ".issuer", "missing (the issuer URL, exactly as the tokens' iss claim)");
    c.issuer = r.str(e["issuer"], path + ".issuer");
    auto insecure = [](const std::string& url) {
      return url.rfind("https://", 0) != 0 && !identity::http::loopback_url(url);
    };
    if (c.issuer.rfind("https://", 0) != 0 && c.issuer.rfind("http://", 0) != 0)
      r.fail_at(e["issuer"], path + ".issuer", "expected an https:// URL");
    if (!seen.insert(c.issuer).second) r.fail_at(e["issuer"], path + ".issuer", "duplicate issuer");
    if (!e["audience"])
      r.fail_at(e, path + ".audience",
                "missing (the audience your tokens carry for this proxy; without a check, any token the issuer "
                "minted for any application would log in)");
    c.audiences = one_or_more(r, e["audience"], path + ".audience");
    if (e["discovery_url"]) c.discovery_url = r.str(e["discovery_url"], path + ".discovery_url");
    if (e["jwks_uri"]) c.jwks_uri = r.str(e["jwks_uri"], path + ".jwks_uri");
    for (const auto& [key, url] : {std::pair<const char*, const std::string*>{"issuer", &c.issuer},
                                   {"discovery_url", &c.discovery_url}, {"jwks_uri", &c.jwks_uri}})
      if (!url->empty() && insecure(*url))
        r.fail_at(e[key], path + "." + key, "must be https (plain http is allowed only for localhost / 127.0.0.1)");
    if (e["ca_file"]) {
      c.ca_file = beside(r.source(), r.str(e["ca_file"], path + ".ca_file"));
      r.readable(e["ca_file"], path + ".ca_file", c.ca_file);
    }
    if (auto a = e["algorithms"]) {
      c.algorithms = r.strings(a, path + ".algorithms");
      for (std::size_t j = 0; j < c.algorithms.size(); ++j)
        if (!identity::jose::supported_algorithm(c.algorithms[j]))
          r.fail_at(a[j], path + ".algorithms[" + std::to_string(j) + "]",
                    "not a supported signature algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, "
                    "ES512, EdDSA)");
    }
    using std::chrono::seconds;
    if (e["leeway"]) c.leeway = read_seconds(r, e["leeway"], path + ".leeway", seconds(0), seconds(600));
    if (e["refresh_interval"])
      c.refresh_interval = read_seconds(r, e["refresh_interval"], path + ".refresh_interval", seconds(10), seconds(86400 * 7));
    if (e["min_refresh_interval"])
      c.min_refresh_interval =
          read_seconds(r, e["min_refresh_interval"], path + ".min_refresh_interval", seconds(1), seconds(3600));
    if (auto cl = e["claims"]) {
      const std::string cp = path + ".claims";
      r.allowed_keys(cl, cp, {"subject", "email", "name", "groups", "group_prefix"});
      if (cl["subject"]) c.subject_claims = one_or_more(r, cl["subject"], cp + ".subject");
      if (cl["email"]) c.email_claims = one_or_more(r, cl["email"], cp + ".email");
      if (cl["name"]) c.name_claims = one_or_more(r, cl["name"], cp + ".name");
      if (cl["groups"]) c.groups_claims = one_or_more(r, cl["groups"], cp + ".groups");
      if (cl["group_prefix"]) c.group_prefix = r.str(cl["group_prefix"], cp + ".group_prefix");
    }
    if (auto ag = e["agents"]) {
      const std::string ap = path + ".agents";
      r.allowed_keys(ag, ap, {"clients", "claim", "values", "auto"});
      if (ag["clients"]) c.agent_clients = r.strings(ag["clients"], ap + ".clients");
      if (ag["claim"]) c.agent_claim = r.str(ag["claim"], ap + ".claim");
      if (ag["values"]) c.agent_claim_values = one_or_more(r, ag["values"], ap + ".values");
      if (!c.agent_claim.empty() && c.agent_claim_values.empty())
        r.fail_at(ag, ap + ".values", "required with agents.claim (the claim values that mark an agent)");
      if (ag["auto"]) c.agent_auto = r.choice<bool>(ag["auto"], ap + ".auto", {{"true", true}, {"false", false}});
    }
    o.issuers.push_back(std::move(c));
  }
}

void read_approvals(const Reader& r, const YAML::Node& n, Approvals& a) {
  r.allowed_keys(n, "approvals",
                 {"store", "store_dsn", "store_dsn_env", "store_dsn_file", "timeout", "rerun_window", "pending_ttl",
                  "break_glass_groups", "max_grant", "webhooks", "on_grant_end"});
  if (n["on_grant_end"])
    a.on_grant_end = r.choice<Approvals::OnGrantEnd>(n["on_grant_end"], "approvals.on_grant_end",
                                                     {{"end_session", Approvals::OnGrantEnd::EndSession},
                                                      {"keep_session", Approvals::OnGrantEnd::KeepSession}});
  if (n["store"]) {
    a.store = beside(r.source(), r.str(n["store"], "approvals.store"));
    writable_file(r, n["store"], "approvals.store", a.store);
  }
  if (n["store_dsn"] || n["store_dsn_env"] || n["store_dsn_file"]) {
    if (n["store"]) r.fail_at(n["store"], "approvals.store", "give either store (SQLite) or store_dsn (PostgreSQL)");
    a.store_dsn = secret_value(r, n, "approvals", "store_dsn");
    if (a.store_dsn.empty()) r.fail_at(n, "approvals.store_dsn", "must not be empty");
  }
  auto positive = [&](const char* key, Duration& out) {
    if (!n[key]) return;
    out = r.duration(n[key], std::string("approvals.") + key);
    if (out < std::chrono::seconds(1)) r.fail_at(n[key], std::string("approvals.") + key, "must be at least 1s");
  };
  positive("timeout", a.timeout);
  positive("rerun_window", a.rerun_window);
  positive("pending_ttl", a.pending_ttl);
  positive("max_grant", a.max_grant);
  if (n["break_glass_groups"]) a.break_glass_groups = r.strings(n["break_glass_groups"], "approvals.break_glass_groups");
  if (auto w = n["webhooks"]) {
    if (!w.IsSequence()) r.fail_at(w, "approvals.webhooks", "expected a list");
    for (std::size_t i = 0; i < w.size(); ++i) {
      const std::string path = "approvals.webhooks[" + std::to_string(i) + "]";
      const auto& e = w[i];
      r.allowed_keys(e, path, {"url", "format", "secret", "secret_env", "secret_file"});
      Webhook hook;
      if (!e["url"]) r.fail_at(e, path + ".url", "missing");
      hook.url = r.str(e["url"], path + ".url");
      if (hook.url.rfind("http://", 0) != 0 && hook.url.rfind("https://", 0) != 0)
        r.fail_at(e["url"], path + ".url", "expected an http:// or https:// URL");
      if (e["format"])
        hook.format = r.choice<Webhook::Format>(e["format"], path + ".format",
                                                {{"json", Webhook::Format::Json}, {"slack", Webhook::Format::Slack}});
      if (e["secret"] || e["secret_env"] || e["secret_file"]) hook.secret = secret_value(r, e, path, "secret");
      a.webhooks.push_back(std::move(hook));
    }
  }
}

AuditDurability read_durability(const Reader& r, const YAML::Node& n, const std::string& path) {
  return r.choice<AuditDurability>(n, path, {{"required", AuditDurability::Required}, {"buffered", AuditDurability::Buffered}});
}

void read_audit(const Reader& r, const YAML::Node& n, Audit& a) {
  r.allowed_keys(n, "audit",
                 {"enabled", "node", "durability", "sinks", "spool", "queue_size", "max_text", "parameters",
                  "checkpoint", "retention", "flush_interval"});
  if (n["flush_interval"]) {
    a.flush_interval = r.duration(n["flush_interval"], "audit.flush_interval");
    if (a.flush_interval > std::chrono::seconds(10))
      r.fail_at(n["flush_interval"], "audit.flush_interval", "must be at most 10s");
  }
  if (n["enabled"]) a.enabled = r.choice<bool>(n["enabled"], "audit.enabled", {{"true", true}, {"false", false}});
  if (n["node"]) a.node = r.str(n["node"], "audit.node");
  if (n["durability"]) a.durability = read_durability(r, n["durability"], "audit.durability");
  if (auto s = n["sinks"]) {
    if (!s.IsSequence() || s.size() == 0) r.fail_at(s, "audit.sinks", "expected a non-empty list");
    for (std::size_t i = 0; i < s.size(); ++i) {
      const std::string path = "audit.sinks[" + std::to_string(i) + "]";
      const auto& e = s[i];
      r.require_map(e, path);
      if (!e["type"]) r.fail_at(e, path + ".type", "missing (sqlite, jsonl or postgres)");
      AuditSink sink;
      sink.type = r.choice<AuditSink::Type>(e["type"], path + ".type",
                                            {{"sqlite", AuditSink::Type::Sqlite},
                                             {"jsonl", AuditSink::Type::JsonLines},
                                             {"postgres", AuditSink::Type::Postgres}});
      if (sink.type == AuditSink::Type::Postgres) {
        r.allowed_keys(e, path, {"type", "dsn", "dsn_env", "dsn_file", "table"});
        sink.dsn = secret_value(r, e, path, "dsn");
        if (e["table"]) {
          sink.table = r.str(e["table"], path + ".table");
          for (char c : sink.table)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'))
              r.fail_at(e["table"], path + ".table", "letters, digits, '_' and '.' only");
        }
      } else {
        if (sink.type == AuditSink::Type::JsonLines) {
          r.allowed_keys(e, path, {"type", "path", "fsync", "max_size", "keep"});
          // 0 (the default, written out): never rotate
          if (e["max_size"] && !(e["max_size"].IsScalar() && e["max_size"].Scalar() == "0"))
            sink.max_size = r.size(e["max_size"], path + ".max_size", 64u << 10, 1ull << 40);
          if (e["keep"]) sink.keep = std::uint32_t(r.uint(e["keep"], path + ".keep", 1, 1000));
        } else {
          r.allowed_keys(e, path, {"type", "path", "fsync", "layout"});
          if (e["layout"])
            sink.blocks = r.choice<bool>(e["layout"], path + ".layout", {{"blocks", true}, {"rows", false}});
        }
        if (!e["path"]) r.fail_at(e, path + ".path", sink.type == AuditSink::Type::Sqlite ? "missing" : "missing (a file, or - for standard output)");
        sink.path = beside(r.source(), r.str(e["path"], path + ".path"));
        if (sink.type == AuditSink::Type::Sqlite && sink.path == "-")
          r.fail_at(e["path"], path + ".path", "an SQLite store needs a file");
        if (sink.path != "-") writable_file(r, e["path"], path + ".path", sink.path);
        if (e["fsync"]) sink.fsync = r.choice<bool>(e["fsync"], path + ".fsync", {{"true", true}, {"false", false}});
      }
      a.sinks.push_back(std::move(sink));
    }
  }
  if (auto s = n["spool"]) {
    r.allowed_keys(s, "audit.spool", {"dir", "max_size"});
    if (s["dir"]) {
      a.spool_dir = beside(r.source(), r.str(s["dir"], "audit.spool.dir"));
      struct stat st {};
      if (::stat(a.spool_dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
        r.fail_at(s["dir"], "audit.spool.dir", a.spool_dir + " is not a directory");
    }
    if (s["max_size"]) a.spool_max_size = r.size(s["max_size"], "audit.spool.max_size", 1u << 20, 1ull << 40);
  }
  if (n["queue_size"]) a.queue_size = std::uint32_t(r.uint(n["queue_size"], "audit.queue_size", 64, 1u << 24));
  if (n["max_text"]) a.max_text = std::uint32_t(r.size(n["max_text"], "audit.max_text", 256, 1u << 26));
  if (n["parameters"])
    a.parameters = r.choice<Audit::Params>(n["parameters"], "audit.parameters",
                                           {{"masked", Audit::Params::Masked},
                                            {"full", Audit::Params::Full},
                                            {"none", Audit::Params::None}});
  if (auto c = n["checkpoint"]) {
    r.allowed_keys(c, "audit.checkpoint", {"interval", "key_file", "algorithm"});
    if (c["interval"]) a.checkpoint_interval = r.duration(c["interval"], "audit.checkpoint.interval");
    if (a.checkpoint_interval < std::chrono::seconds(1))
      r.fail_at(c["interval"], "audit.checkpoint.interval", "must be at least 1s");
    if (c["key_file"]) {
      a.checkpoint_key_file = beside(r.source(), r.str(c["key_file"], "audit.checkpoint.key_file"));
      r.readable(c["key_file"], "audit.checkpoint.key_file", a.checkpoint_key_file);
    }
    if (c["algorithm"])
      a.checkpoint_algorithm = r.choice<std::string>(c["algorithm"], "audit.checkpoint.algorithm",
                                                     {{"ed25519", "ed25519"}, {"hmac-sha256", "hmac-sha256"}});
  }
  if (auto t = n["retention"]) {
    r.allowed_keys(t, "audit.retention", {"max_age", "max_records"});
    if (t["max_age"]) a.retention_max_age = r.duration(t["max_age"], "audit.retention.max_age");
    if (t["max_records"])
      a.retention_max_records = r.uint(t["max_records"], "audit.retention.max_records", 0, 1ull << 50);
  }
}

Config read_config(const Reader& r, const YAML::Node& root) {
  Config c;
  c.source = r.source();
  if (root.IsNull()) r.fail_at(root, "(root)", "the file is empty");
  r.allowed_keys(root, "",
                 {"listen", "threads", "admin", "tls", "limits", "log", "users", "targets", "rules", "classification",
                  "policy", "policy_file", "audit", "oidc", "approvals", "masking"});
  if (auto n = root["masking"]) {
    r.allowed_keys(n, "masking", {"hash_key", "hash_key_env", "hash_key_file", "max_catalog_size", "catalog_ttl"});
    if (n["hash_key"] || n["hash_key_env"] || n["hash_key_file"]) {
      c.masking.hash_key = secret_value(r, n, "masking", "hash_key");
      if (c.masking.hash_key.size() < 16)
        r.fail_at(n, "masking.hash_key", "too short: give at least 16 bytes (32 random bytes recommended)");
    }
    if (auto v = n["max_catalog_size"]) c.masking.max_catalog_bytes = std::size_t(r.size(v, "masking.max_catalog_size", 1u << 16, std::uint64_t(1) << 30));
    if (auto v = n["catalog_ttl"]) c.masking.catalog_ttl = r.duration(v, "masking.catalog_ttl");
  }
  if (auto n = root["listen"]) {
    r.allowed_keys(n, "listen", {"address", "port"});
    if (n["address"]) c.listen.address = r.ip_address(n["address"], "listen.address");
    if (n["port"]) c.listen.port = r.port(n["port"], "listen.port", true);
  }
  if (auto n = root["threads"]) c.threads = unsigned(r.uint(n, "threads", 0, 256));
  if (auto n = root["admin"]) {
    r.allowed_keys(n, "admin", {"address", "port", "public_url", "roles", "console"});
    if (n["address"]) c.admin.address = r.ip_address(n["address"], "admin.address");
    if (n["port"]) c.admin.port = r.port(n["port"], "admin.port", true);
    if (n["public_url"]) {
      c.admin.public_url = r.str(n["public_url"], "admin.public_url");
      while (c.admin.public_url.size() > 1 && c.admin.public_url.back() == '/') c.admin.public_url.pop_back();
      if (c.admin.public_url.rfind("http://", 0) != 0 && c.admin.public_url.rfind("https://", 0) != 0)
        r.fail_at(n["public_url"], "admin.public_url", "expected an http:// or https:// URL");
    }
    if (auto roles = n["roles"]) {
      r.allowed_keys(roles, "admin.roles", {"admin", "reviewer", "auditor", "requester"});
      if (roles["admin"]) c.admin.admin_groups = r.strings(roles["admin"], "admin.roles.admin");
      if (roles["reviewer"]) c.admin.reviewer_groups = r.strings(roles["reviewer"], "admin.roles.reviewer");
      if (roles["auditor"]) c.admin.auditor_groups = r.strings(roles["auditor"], "admin.roles.auditor");
      if (roles["requester"]) c.admin.requester_groups = r.strings(roles["requester"], "admin.roles.requester");
    }
    if (auto con = n["console"]) {
      r.allowed_keys(con, "admin.console",
                     {"client_id", "client_secret", "client_secret_env", "client_secret_file", "issuer", "session_ttl",
                      "scopes"});
      auto& o = c.admin.console;
      if (con["client_id"]) o.client_id = r.str(con["client_id"], "admin.console.client_id");
      if (con["client_secret"] || con["client_secret_env"] || con["client_secret_file"])
        o.client_secret = secret_value(r, con, "admin.console", "client_secret");
      if (con["issuer"]) o.issuer = r.str(con["issuer"], "admin.console.issuer");
      if (con["session_ttl"]) {
        o.session_ttl = r.duration(con["session_ttl"], "admin.console.session_ttl");
        if (o.session_ttl < std::chrono::minutes(1) || o.session_ttl > std::chrono::hours(24 * 7))
          r.fail_at(con["session_ttl"], "admin.console.session_ttl", "must be between 1m and 7d");
      }
      if (con["scopes"]) {
        o.scopes = r.strings(con["scopes"], "admin.console.scopes");
        if (std::find(o.scopes.begin(), o.scopes.end(), "openid") == o.scopes.end())
          r.fail_at(con["scopes"], "admin.console.scopes", "must contain openid");
      }
      if (o.client_id.empty()) r.fail_at(con, "admin.console.client_id", "missing (the console's OIDC client id)");
    }
  }
  if (c.admin.public_url.empty()) {
    // An IPv6 address goes in brackets; the any-address is reached through loopback.
    std::string host = c.admin.address == "0.0.0.0" ? std::string("127.0.0.1")
                       : c.admin.address == "::"    ? std::string("::1")
                                                    : c.admin.address;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    c.admin.public_url = "http://" + host + ":" + std::to_string(c.admin.port);
  }
  if (auto n = root["approvals"]) read_approvals(r, n, c.approvals);
  if (c.approvals.store.empty()) c.approvals.store = beside(r.source(), "gatehouse-approvals.db");
  if (auto n = root["tls"]) {
    r.allowed_keys(n, "tls", {"mode", "cert_file", "key_file", "min_version", "ciphers"});
    if (n["min_version"])
      c.tls.tls13_only = r.choice<bool>(n["min_version"], "tls.min_version", {{"TLSv1.2", false}, {"TLSv1.3", true}});
    if (n["ciphers"]) {
      c.tls.ciphers = r.str(n["ciphers"], "tls.ciphers");
      if (c.tls.ciphers.empty()) r.fail_at(n["ciphers"], "tls.ciphers", "must not be empty (leave it out for OpenSSL's defaults)");
    }
    if (n["mode"])
      c.tls.mode = r.choice<ClientTlsMode>(n["mode"], "tls.mode",
                                           {{"disable", ClientTlsMode::Disable},
                                            {"allow", ClientTlsMode::Allow},
                                            {"require", ClientTlsMode::Require}});
    if (n["cert_file"]) {
      c.tls.cert_file = beside(r.source(), r.str(n["cert_file"], "tls.cert_file"));
      r.readable(n["cert_file"], "tls.cert_file", c.tls.cert_file);
    }
    if (n["key_file"]) {
      c.tls.key_file = beside(r.source(), r.str(n["key_file"], "tls.key_file"));
      r.readable(n["key_file"], "tls.key_file", c.tls.key_file);
    }
    if (c.tls.mode != ClientTlsMode::Disable) {
      if (c.tls.cert_file.empty()) r.fail_at(n, "tls.cert_file", "required when tls.mode is allow or require");
      if (c.tls.key_file.empty()) r.fail_at(n, "tls.key_file", "required when tls.mode is allow or require");
    }
  }
  if (auto n = root["limits"]) {
    r.allowed_keys(n, "limits",
                   {"max_connections", "max_message_size", "max_statement_size", "handshake_timeout", "idle_timeout",
                    "shutdown_timeout", "backend_connect_timeout", "failed_login_max_delay"});
    if (n["failed_login_max_delay"])
      c.limits.failed_login_max_delay = r.duration(n["failed_login_max_delay"], "limits.failed_login_max_delay");
    if (n["max_connections"]) c.limits.max_connections = std::uint32_t(r.uint(n["max_connections"], "limits.max_connections", 1, 1000000));
    if (n["max_message_size"])
      c.limits.max_message_size = std::uint32_t(r.size(n["max_message_size"], "limits.max_message_size", 8192, 1u << 30));
    if (n["max_statement_size"])
      c.limits.max_statement_size =
          std::uint32_t(r.size(n["max_statement_size"], "limits.max_statement_size", 16384, 1u << 30));
    if (n["handshake_timeout"]) c.limits.handshake_timeout = r.duration(n["handshake_timeout"], "limits.handshake_timeout");
    if (n["idle_timeout"]) c.limits.idle_timeout = r.duration(n["idle_timeout"], "limits.idle_timeout");
    if (n["shutdown_timeout"]) c.limits.shutdown_timeout = r.duration(n["shutdown_timeout"], "limits.shutdown_timeout");
    if (n["backend_connect_timeout"])
      c.limits.backend_connect_timeout = r.duration(n["backend_connect_timeout"], "limits.backend_connect_timeout");
    if (c.limits.handshake_timeout == Duration::zero())
      r.fail_at(n["handshake_timeout"], "limits.handshake_timeout", "must be greater than 0");
    if (c.limits.backend_connect_timeout == Duration::zero())
      r.fail_at(n["backend_connect_timeout"], "limits.backend_connect_timeout", "must be greater than 0");
  }
  if (auto n = root["log"]) {
    r.allowed_keys(n, "log", {"level", "format"});
    if (n["level"])
      c.log.level = r.choice<std::string>(n["level"], "log.level",
                                          {{"trace", "trace"}, {"debug", "debug"}, {"info", "info"},
                                           {"warn", "warn"}, {"error", "error"}});
    if (n["format"])
      c.log.format = r.choice<std::string>(n["format"], "log.format", {{"text", "text"}, {"json", "json"}});
  }
  if (auto n = root["users"]) {
    if (!n.IsSequence()) r.fail_at(n, "users", "expected a list");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::string path = "users[" + std::to_string(i) + "]";
      const auto& u = n[i];
      r.allowed_keys(u, path, {"name", "password", "groups"});
      User user;
      if (!u["name"]) r.fail_at(u, path + ".name", "missing");
      user.name = r.str(u["name"], path + ".name");
      if (!seen.insert(user.name).second) r.fail_at(u["name"], path + ".name", "duplicate user \"" + user.name + "\"");
      if (!u["password"])
        r.fail_at(u, path + ".password", "missing (a SCRAM-SHA-256 verifier; make one with `gatehouse hash-password`)");
      auto v = identity::ScramVerifier::parse(r.str(u["password"], path + ".password"));
      if (!v)
        r.fail_at(u["password"], path + ".password",
                  "not a SCRAM-SHA-256 verifier (" + v.error().message + "); make one with `gatehouse hash-password`");
      user.verifier = std::move(*v);
      if (u["groups"]) user.groups = r.strings(u["groups"], path + ".groups");
      // As for token claims (identity/oidc.cpp): these reach the database's startup packet.
      auto control = [](const std::string& v) { return identity::has_control_characters(v); };
      if (control(user.name)) r.fail_at(u["name"], path + ".name", "contains control characters");
      if (std::any_of(user.groups.begin(), user.groups.end(), control))
        r.fail_at(u["groups"], path + ".groups", "a group name contains control characters");
      c.users.push_back(std::move(user));
    }
  }
  if (auto n = root["targets"]) {
    if (!n.IsSequence()) r.fail_at(n, "targets", "expected a list");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::string path = "targets[" + std::to_string(i) + "]";
      const auto& t = n[i];
      r.allowed_keys(t, path, {"name", "environment", "backend", "login", "logins", "guardrails", "policy", "audit"});
      Target target;
      if (!t["name"]) r.fail_at(t, path + ".name", "missing");
      target.name = r.str(t["name"], path + ".name");
      if (!seen.insert(target.name).second)
        r.fail_at(t["name"], path + ".name", "duplicate target \"" + target.name + "\"");
      if (t["environment"]) target.environment = r.str(t["environment"], path + ".environment");
      if (!t["backend"]) r.fail_at(t, path + ".backend", "missing");
      read_backend(r, t["backend"], path + ".backend", target.backend);
      if (!t["login"] && !t["logins"])
        r.fail_at(t, path + ".login", "missing (the backend login: `login:`, or `logins:` per identity)");
      if (auto ls = t["logins"]) {
        if (!ls.IsSequence() || ls.size() == 0) r.fail_at(ls, path + ".logins", "expected a non-empty list");
        for (std::size_t j = 0; j < ls.size(); ++j) {
          Login l;
          read_login(r, ls[j], path + ".logins[" + std::to_string(j) + "]", l, true);
          target.logins.push_back(std::move(l));
        }
      }
      if (t["login"]) {  // after `logins`: the entry for everyone else
        Login l;
        read_login(r, t["login"], path + ".login", l, false);
        target.logins.push_back(std::move(l));
      }
      if (auto a = t["audit"]) {
        r.allowed_keys(a, path + ".audit", {"durability"});
        if (a["durability"]) target.audit_durability = read_durability(r, a["durability"], path + ".audit.durability");
      }
      c.targets.push_back(std::move(target));
    }
  }
  if (c.targets.empty()) r.fail_at(root, "targets", "at least one target is required");
  if (auto n = root["oidc"]) {
    read_oidc(r, n, c.oidc);
    if (c.tls.mode == ClientTlsMode::Disable && !c.oidc.allow_loopback_plaintext)
      r.fail_at(n, "oidc",
                "token logins need TLS from the client, and tls.mode is disable: configure tls, or set "
                "oidc.allow_loopback_plaintext: true for clients on this machine");
  }
  if (auto con = root["admin"] ? root["admin"]["console"] : YAML::Node(); con && !c.admin.console.client_id.empty()) {
    const auto& list = c.oidc.issuers;
    auto& iss = c.admin.console.issuer;
    if (list.empty())
      r.fail_at(con, "admin.console", "needs oidc.issuers: people sign in to the console with an issuer tokens are trusted from");
    if (iss.empty()) iss = list.front().issuer;
    if (std::none_of(list.begin(), list.end(), [&](const auto& i) { return i.issuer == iss; }))
      r.fail_at(con["issuer"] ? con["issuer"] : con, "admin.console.issuer",
                "\"" + iss + "\" is not one of oidc.issuers[].issuer");
  }
  if (auto n = root["audit"]) read_audit(r, n, c.audit);
  if (c.audit.sinks.empty()) {
    AuditSink sqlite;
    sqlite.path = beside(r.source(), "gatehouse-audit.db");
    c.audit.sinks.push_back(std::move(sqlite));
  }
  if (c.audit.spool_dir.empty()) {
    for (const auto& s : c.audit.sinks)
      if (s.type == AuditSink::Type::Sqlite) {
        c.audit.spool_dir = s.path + ".spool";
        break;
      }
    if (c.audit.spool_dir.empty()) c.audit.spool_dir = beside(r.source(), "gatehouse-audit.spool");
  }
  return c;
}

}  // namespace

bool Login::matches(const identity::Identity& id, const std::vector<std::string>& active_grants) const {
  if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), id.kind) == kinds.end()) return false;
  if (!grants.empty()) {
    bool held = false;
    for (const auto& g : grants) held = held || std::find(active_grants.begin(), active_grants.end(), g) != active_grants.end();
    if (!held) return false;
  }
  if (groups.empty() && subjects.empty()) return true;
  for (const auto& g : groups)
    if (std::find(id.groups.begin(), id.groups.end(), g) != id.groups.end()) return true;
  for (const auto& s : subjects)
    if (s == id.subject || (!id.email.empty() && s == id.email)) return true;
  return false;
}

const Login* Target::login_for(const identity::Identity& id, const std::vector<std::string>& active_grants) const {
  for (const auto& l : logins)
    if (l.matches(id, active_grants)) return &l;
  return nullptr;
}

bool Target::logins_use_grants() const {
  for (const auto& l : logins)
    if (!l.grants.empty()) return true;
  return false;
}

const Target* Config::find_target(std::string_view dbname) const {
  const Target* wildcard = nullptr;
  for (const auto& t : targets) {
    if (t.name == dbname) return &t;
    if (t.name == "*") wildcard = &t;
  }
  return wildcard;
}

Result<Duration> parse_duration(std::string_view s) {
  if (s == "0") return Duration::zero();
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data())
    return fail("", "expected a duration such as 500ms, 10s, 5m or 1h; got \"" + std::string(s) + "\"");
  const std::string_view unit(p, std::size_t(s.data() + s.size() - p));
  std::uint64_t ms_per = 0;
  if (unit == "ms") ms_per = 1;
  if (unit == "s") ms_per = 1000;
  if (unit == "m") ms_per = 60'000;
  if (unit == "h") ms_per = 3'600'000;
  if (unit == "d") ms_per = 86'400'000;
  if (!ms_per) return fail("", "expected a duration such as 500ms, 10s, 5m or 1h; got \"" + std::string(s) + "\"");
  // Timers add durations to the clock (nanoseconds since boot in 64 bits): far beyond any use,
  // and far below where that sum would wrap around.
  constexpr std::uint64_t kMaxMs = 3650ull * 86'400'000;
  if (v > kMaxMs / ms_per) return fail("", "\"" + std::string(s) + "\" is too long: at most 3650d (10 years)");
  return Duration(std::int64_t(v * ms_per));
}

Result<std::uint64_t> parse_size(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data())
    return fail("", "expected a size such as 65536, 64KiB, 16MiB or 1GiB; got \"" + std::string(s) + "\"");
  const std::string_view unit(p, std::size_t(s.data() + s.size() - p));
  // kB, MB and GB count in 1024s, as in postgresql.conf.
  int shift = -1;
  if (unit.empty() || unit == "B") shift = 0;
  if (unit == "KiB" || unit == "kB") shift = 10;
  if (unit == "MiB" || unit == "MB") shift = 20;
  if (unit == "GiB" || unit == "GB") shift = 30;
  if (shift >= 0) {
    if (v > (std::numeric_limits<std::uint64_t>::max() >> shift))  // it wrapped around (found by adversarial testing)
      return fail("", "\"" + std::string(s) + "\" is too large");
    return v << shift;
  }
  return fail("", "expected a size such as 65536, 64KiB, 16MiB or 1GiB; got \"" + std::string(s) + "\"");
}

// yaml-cpp keeps one of two equal keys silently; a second `rules:` block that is ignored is the
// kind of mistake a security team must hear about.
void reject_duplicate_keys(const Reader& r, const YAML::Node& n) {
  if (auto d = find_duplicate_key(n)) r.fail_at(d->key, d->path, "given twice; keep one");
}

std::string locate(const Config& c, const std::string& message) {
  // The key ends at ": " or at " (" ("targets[0].backend.ca_file (target \"app\"): ...").
  const auto colon = std::min(message.find(": "), message.find(" ("));
  if (colon == std::string::npos) return message;
  const auto it = c.key_lines.find(std::string_view(message).substr(0, colon));
  if (it == c.key_lines.end()) return message;
  return c.source + ":" + std::to_string(it->second) + ": " + message;
}

Result<Config> parse(std::string_view text, std::string_view source_name) {
  Reader r{std::string(source_name)};
  try {
    const YAML::Node root = load_yaml(text);
    reject_duplicate_keys(r, root);
    Config c = read_config(r, root);
    c.key_lines = r.take_lines();
    auto policy = read_policy(root, r.source());
    if (!policy) return tl::unexpected(policy.error());
    c.policy = std::move(*policy);
    c.files.push_back(r.source());
    if (auto f = root["policy_file"]; f && f.IsScalar()) {
      const std::string file = f.as<std::string>();
      const auto slash = r.source().rfind('/');
      c.files.push_back(file.empty() || file[0] == '/' || slash == std::string::npos
                            ? file
                            : r.source().substr(0, slash + 1) + file);
    }
    return c;
  } catch (const ParseError& e) {
    return fail("", e.message);
  } catch (const YAML::Exception& e) {
    std::string where(source_name);
    if (e.mark.line >= 0) where += ":" + std::to_string(e.mark.line + 1);
    return fail("", where + ": invalid YAML: " + e.msg);
  }
}

Result<Config> load_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return fail("", path + ": is a directory, not a configuration file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("", path + ": cannot open the configuration file: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace gh::config
