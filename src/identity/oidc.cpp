#include "identity/oidc.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include <nlohmann/json.hpp>

namespace gh::identity {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::system_clock;

tl::unexpected<TokenError> refuse(TokenError::Kind k, std::string message, std::string detail = {}) {
  return tl::unexpected<TokenError>(TokenError{k, std::move(message), std::move(detail)});
}

std::optional<Json> parse_object(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// A claim by key or dotted path; a key containing dots is tried whole first.
const Json* claim(const Json& obj, std::string_view path) {
  if (!obj.is_object()) return nullptr;
  if (auto it = obj.find(std::string(path)); it != obj.end()) return &*it;
  const Json* cur = &obj;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto dot = path.find('.', start);
    auto part = path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(std::string(part));
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string_view::npos) return cur;
    start = dot + 1;
  }
  return nullptr;
}

std::string scalar_string(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  if (v.is_number_unsigned()) return std::to_string(v.get<std::uint64_t>());
  return {};
}

std::string first_string(const Json& payload, const std::vector<std::string>& paths) {
  for (const auto& p : paths)
    if (const Json* v = claim(payload, p)) {
      auto s = scalar_string(*v);
      if (!s.empty()) return s;
    }
  return {};
}

// Values of a claim that may be a string (space-separated, as OAuth's `scope`) or an array.
std::vector<std::string> string_list(const Json& v) {
  std::vector<std::string> out;
  auto add_words = [&](std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && s[i] == ' ') ++i;
      auto j = s.find(' ', i);
      if (j == std::string_view::npos) j = s.size();
      if (j > i) out.emplace_back(s.substr(i, j - i));
      i = j;
    }
  };
  if (v.is_string()) {
    add_words(v.get_ref<const std::string&>());
  } else if (v.is_array()) {
    for (const auto& e : v) {
      auto s = scalar_string(e);
      if (!s.empty()) out.push_back(std::move(s));
    }
  }
  return out;
}

// A NumericDate claim; nullopt when absent, error text when present but not a number.
struct NumericDate {
  bool present = false;
  bool valid = false;
  std::int64_t value = 0;
};
NumericDate numeric_date(const Json& payload, const char* name) {
  NumericDate d;
  auto it = payload.find(name);
  if (it == payload.end()) return d;
  d.present = true;
  // Unsigned first: nlohmann's is_number_integer() is also true of a value above INT64_MAX, which
  // get<int64_t> would wrap (found by adversarial testing: "expired at -9223372036854775616").
  if (it->is_number_unsigned()) {
    auto u = it->get<std::uint64_t>();
    d.value = u > std::uint64_t(INT64_MAX) ? INT64_MAX : std::int64_t(u);
    d.valid = true;
  } else if (it->is_number_integer()) {
    d.value = it->get<std::int64_t>();
    d.valid = true;
  } else if (it->is_number_float()) {
    double f = it->get<double>();
    if (std::isfinite(f) && f > -9.2e18 && f < 9.2e18) {
      d.value = std::int64_t(std::floor(f));
      d.valid = true;
    }
  }
  // Within years 0..9999: later instants overflow the clocks that deadlines are kept in (an exp of
  // 2^62 ended the session at once as expired).
  constexpr std::int64_t kLast = 253402300799, kFirst = -62167219200;
  d.value = std::clamp(d.value, kFirst, kLast);
  return d;
}

std::string utc_text(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  if (!gmtime_r(&tt, &tm)) return std::to_string(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

bool key_fits(const jose::Jwk& k, std::string_view alg) {
  if (!k.use.empty() && k.use != "sig") return false;
  if (!k.alg.empty()) return k.alg == alg;
  if (alg.starts_with("RS") || alg.starts_with("PS")) return k.kty == "RSA";
  if (alg.starts_with("ES")) return k.kty == "EC";
  if (alg == "EdDSA") return k.kty == "OKP";
  return false;
}

}  // namespace

std::string peek_issuer(std::string_view token) {
  auto jws = jose::split_compact(token);
  if (!jws) return {};
  auto payload = parse_object(jws->payload_json);
  if (!payload) return {};
  auto it = payload->find("iss");
  return it != payload->end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string peek_kid(std::string_view token) {
  auto jws = jose::split_compact(token);
  if (!jws) return {};
  auto header = parse_object(jws->header_json);
  if (!header) return {};
  auto it = header->find("kid");
  return it != header->end() && it->is_string() ? it->get<std::string>() : std::string();
}

tl::expected<Identity, TokenError> map_claims(const IssuerConfig& iss, std::string_view payload_json) {
  auto payload = parse_object(payload_json);
  if (!payload) return refuse(TokenError::Kind::Malformed, "the token's payload is not a JSON object");
  Identity id;
  id.method = "oidc";
  id.issuer = iss.issuer;
  id.qualified = iss.qualify_subjects;
  id.subject = first_string(*payload, iss.subject_claims);
  if (id.subject.empty())
    return refuse(TokenError::Kind::MissingClaim,
                  "the token has no subject (claim " + joined(iss.subject_claims) + "); ask your administrator to "
                  "check the issuer's claim mapping");
  id.email = first_string(*payload, iss.email_claims);
  // An address the IdP says it has not verified is anyone's to type: it is not taken (rules and
  // logins match emails; found by adversarial testing).
  if (const auto v = payload->find("email_verified"); v != payload->end() && v->is_boolean() && !v->get<bool>())
    id.email.clear();
  id.display_name = first_string(*payload, iss.name_claims);
  for (const auto& path : iss.groups_claims)
    if (const Json* v = claim(*payload, path))
      for (auto& g : string_list(*v)) {
        std::string name = iss.group_prefix + g;
        if (!contains(id.groups, name)) id.groups.push_back(std::move(name));
      }
  id.client_id = first_string(*payload, {"azp", "client_id", "appid", "cid"});

  bool agent = !id.client_id.empty() && contains(iss.agent_clients, id.client_id);
  if (!agent && !iss.agent_claim.empty())
    if (const Json* v = claim(*payload, iss.agent_claim)) {
      auto values = string_list(*v);
      if (v->is_boolean()) values.push_back(v->get<bool>() ? "true" : "false");
      for (const auto& x : values) agent = agent || contains(iss.agent_claim_values, x);
    }
  if (!agent && iss.agent_auto) {
    auto str = [&](const char* k) {
      auto it = payload->find(k);
      return it != payload->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    agent = (!id.client_id.empty() && id.subject == id.client_id) ||  // Okta, Auth0, oidc-provider
            str("idtyp") == "app" ||                                  // Azure AD app-only tokens
            str("gty") == "client-credentials" ||                     // Auth0
            str("preferred_username").starts_with("service-account-");  // Keycloak service accounts
  }
  id.kind = agent ? Kind::Agent : Kind::Human;
  // No claim has a reason to carry control characters (identity.h).
  auto control = [](const std::string& v) { return has_control_characters(v); };
  const char* bad = control(id.subject)        ? "subject"
                    : control(id.email)        ? "email"
                    : control(id.display_name) ? "name"
                    : control(id.client_id)    ? "client id"
                    : std::any_of(id.groups.begin(), id.groups.end(), control) ? "group name"
                                                                               : nullptr;
  if (bad)
    return refuse(TokenError::Kind::BadClaim, std::string("the identity's ") + bad + " contains control characters");
  return id;
}

tl::expected<VerifiedToken, TokenError> verify_token(std::string_view token, const std::vector<IssuerConfig>& issuers,
                                                    const KeyLookup& keys, Clock::time_point now_tp) {
  using K = TokenError::Kind;
  auto jws = jose::split_compact(token);
  if (!jws) {
    // An unsigned token (alg "none", empty signature) deserves its own answer.
    if (auto dot = token.find('.'); dot != std::string_view::npos && dot < 4096)
      if (auto h = jose::base64url_decode(token.substr(0, dot)))
        if (auto header = parse_object(*h))
          if (auto a = header->find("alg"); a != header->end() && a->is_string() && iequals(a->get<std::string>(), "none"))
            return refuse(K::Algorithm, "unsigned tokens (alg \"none\") are refused");
    return refuse(K::Malformed, "the password is not an OIDC token: " + jws.error().message,
                  jws.error().message);
  }
  auto header = parse_object(jws->header_json);
  if (!header) return refuse(K::Malformed, "the token's header is not a JSON object");
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string())
    return refuse(K::Algorithm, "the token's header names no signature algorithm (alg)");
  const std::string alg = alg_it->get<std::string>();
  if (iequals(alg, "none"))
    return refuse(K::Algorithm, "unsigned tokens (alg \"none\") are refused");
  if (alg.size() >= 2 && (alg[0] == 'H' || alg[0] == 'h') && (alg[1] == 'S' || alg[1] == 's'))
    return refuse(K::Algorithm, "tokens signed with a shared secret (alg \"" + alg +
                                    "\") are refused; use a token signed by your identity provider's keys");
  if (!jose::supported_algorithm(alg))
    return refuse(K::Algorithm, "the token's signature algorithm \"" + alg + "\" is not supported");
  if (auto typ = header->find("typ"); typ != header->end()) {
    const std::string t = typ->is_string() ? typ->get<std::string>() : std::string();
    if (!iequals(t, "JWT") && !iequals(t, "at+jwt") && !iequals(t, "application/at+jwt") &&
        !iequals(t, "application/jwt"))
      return refuse(K::Malformed, "tokens of type \"" + t + "\" are not accepted; use an access token or ID token");
  }
  if (header->contains("crit"))
    return refuse(K::Malformed, "the token requires extensions (crit) this proxy does not understand");

  auto payload = parse_object(jws->payload_json);
  if (!payload) return refuse(K::Malformed, "the token's payload is not a JSON object");
  auto iss_it = payload->find("iss");
  if (iss_it == payload->end() || !iss_it->is_string())
    return refuse(K::MissingClaim, "the token names no issuer (iss)");
  const std::string iss = iss_it->get<std::string>();
  const IssuerConfig* cfg = nullptr;
  for (const auto& c : issuers)
    if (c.issuer == iss) cfg = &c;
  if (!cfg)
    return refuse(K::UnknownIssuer, "tokens from issuer \"" + iss + "\" are not accepted by this proxy",
                  "untrusted issuer " + iss);
  if (!cfg->algorithms.empty() && !contains(cfg->algorithms, alg))
    return refuse(K::Algorithm, "issuer \"" + iss + "\" is configured not to use algorithm \"" + alg + "\"");

  auto set = keys(iss);
  if (!set || set->keys.empty())
    return refuse(K::KeysUnavailable, "the signing keys of issuer \"" + iss +
                                          "\" could not be fetched yet; try again shortly",
                  "no keys for " + iss);
  std::string kid;
  if (auto k = header->find("kid"); k != header->end() && k->is_string()) kid = k->get<std::string>();
  bool verified = false;
  bool any_key = false;
  std::string why;
  for (const auto& k : set->keys) {
    if (!kid.empty() && k.kid != kid) continue;
    if (!key_fits(k, alg)) {
      if (!kid.empty()) why = "key " + kid + " is a " + k.kty + " key" + (k.alg.empty() ? "" : " for " + k.alg);
      continue;
    }
    any_key = true;
    auto r = jose::verify(alg, k, jws->signing_input, jws->signature);
    if (r) {
      verified = true;
      break;
    }
    why = r.error().message;
  }
  if (!any_key && why.empty())
    return refuse(K::UnknownKey,
                  kid.empty() ? "the token names no key (kid) and no key of issuer \"" + iss + "\" fits " + alg
                              : "the token is signed with key \"" + kid + "\", which issuer \"" + iss +
                                    "\" does not publish; get a new token",
                  "unknown kid " + kid);
  if (!verified)
    return refuse(K::BadSignature, "the token's signature does not verify; it was altered or not issued by \"" +
                                       iss + "\"",
                  why);

  const std::int64_t now = std::chrono::duration_cast<Seconds>(now_tp.time_since_epoch()).count();
  const std::int64_t leeway = cfg->leeway.count();
  auto exp = numeric_date(*payload, "exp");
  if (!exp.present || !exp.valid)
    return refuse(K::MissingClaim, "the token has no valid expiry time (exp); tokens that never expire are refused");
  if (exp.value <= now - leeway)
    return refuse(K::Expired, "the token expired at " + utc_text(exp.value) + "; get a new token (e.g. gatehouse login)",
                  "expired " + std::to_string(now - exp.value) + " s ago");
  auto nbf = numeric_date(*payload, "nbf");
  if (nbf.present && (!nbf.valid || nbf.value > now + leeway))
    return refuse(K::NotYetValid, "the token is not valid before " + (nbf.valid ? utc_text(nbf.value) : "?") +
                                      "; check the clock of this machine and your identity provider's");
  auto iat = numeric_date(*payload, "iat");
  if (iat.present && (!iat.valid || iat.value > now + leeway))
    return refuse(K::IssuedInFuture, "the token claims to be issued in the future (" +
                                         (iat.valid ? utc_text(iat.value) : "?") + "); check the clocks");
  if (!cfg->audiences.empty()) {
    std::vector<std::string> aud;
    // One string is one audience (RFC 7519 4.1.3), not a space-separated list like `scope`.
    if (auto a = payload->find("aud"); a != payload->end())
      aud = a->is_string() ? std::vector<std::string>{a->get<std::string>()} : string_list(*a);
    bool ok = false;
    for (const auto& x : aud) ok = ok || contains(cfg->audiences, x);
    if (!ok)
      return refuse(K::Audience, "the token is for audience " + (aud.empty() ? std::string("(none)") : "\"" + joined(aud) + "\"") +
                                     ", not for this proxy (expected \"" + joined(cfg->audiences) +
                                     "\"); request a token for that audience");
  }
  auto id = map_claims(*cfg, jws->payload_json);
  if (!id) return tl::unexpected<TokenError>(id.error());
  VerifiedToken out;
  out.identity = std::move(*id);
  out.issuer = iss;
  out.expires_at = Clock::time_point(Seconds(exp.value));
  // The session ends when the token stops being accepted at login, exp + leeway: ending it at exp
  // let a token accepted within the leeway log in only to be cut off at once (found by adversarial
  // testing).
  out.identity.expires_at = out.expires_at + Seconds(leeway);
  return out;
}

}  // namespace gh::identity
