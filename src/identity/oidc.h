#pragma once
// OIDC tokens as logins: which issuers are trusted, how a token is checked, and how its
// claims become an Identity. Pure functions over a token, the issuers' keys and the time;
// fetching keys is identity/jwks.h, the login exchange identity/token_auth.h.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/identity.h"
#include "identity/jose.h"

namespace gh::identity {

using Seconds = std::chrono::seconds;

// One trusted issuer, from the configuration (`oidc.issuers[]`).
struct IssuerConfig {
  std::string issuer;                 // exactly the token's `iss`
  bool qualify_subjects = false;      // not the first issuer: Identity::qualified
  std::string discovery_url;          // default: issuer + "/.well-known/openid-configuration"
  std::string jwks_uri;               // set: skip discovery
  std::string ca_file;                // https: CA bundle to trust (default: the system's)
  std::vector<std::string> audiences; // the token's `aud` must contain one (empty: not checked)
  std::vector<std::string> algorithms;  // allowed `alg`s (empty: every supported one)
  Seconds leeway{60};                 // clock skew allowed for exp, nbf, iat
  Seconds refresh_interval{3600};     // keys refetched at least this often
  Seconds min_refresh_interval{10};   // an unknown kid triggers a refetch at most this often
  // Claim paths: a key, or a dotted path into nested objects ("realm_access.roles"). A key
  // that itself contains dots (Azure's URL-shaped claims) is tried whole first.
  std::vector<std::string> subject_claims{"sub"};
  std::vector<std::string> email_claims{"email", "upn", "preferred_username"};
  std::vector<std::string> name_claims{"name"};
  std::vector<std::string> groups_claims{"groups"};
  std::string group_prefix;           // prepended to every group from this issuer ("okta:")
  // Machine identities. kind = agent when any of these says so:
  std::vector<std::string> agent_clients;  // `azp` / `client_id` / `appid` values
  std::string agent_claim;                 // a claim path ...
  std::vector<std::string> agent_claim_values;  // ... whose value (or one of them) is one of these
  bool agent_auto = true;  // also: sub equals the client id (client-credentials grants of
                           // Okta, Auth0, oidc-provider), or Azure's idtyp = app
};

// Why a token was refused. `message` is for the client: it says what to fix and never
// contains the token or a key; `detail` is for the operator's log.
struct TokenError {
  enum class Kind {
    Malformed, Algorithm, UnknownIssuer, UnknownKey, KeysUnavailable, BadSignature, Expired, NotYetValid,
    IssuedInFuture, Audience, MissingClaim,
    BadClaim  // a claim the identity is made of carries control characters
  } kind = Kind::Malformed;
  std::string message;
  std::string detail;
};

struct VerifiedToken {
  Identity identity;
  std::string issuer;
  std::chrono::system_clock::time_point expires_at;
};

// Keys of one issuer, as the verifier sees them (null: none fetched yet).
using KeyLookup = std::function<std::shared_ptr<const jose::JwkSet>(const std::string& issuer)>;

// Only the unverified `iss` of a token, to choose which issuer's keys to wait for; empty
// when the token is not a JWT with a string `iss`.
std::string peek_issuer(std::string_view token);
// The unverified `kid` of a token's header ("" when absent or not a JWT).
std::string peek_kid(std::string_view token);

// Verifies signature and claims and maps the claims. `issuers` are the trusted ones.
tl::expected<VerifiedToken, TokenError> verify_token(std::string_view token,
                                                    const std::vector<IssuerConfig>& issuers,
                                                    const KeyLookup& keys,
                                                    std::chrono::system_clock::time_point now);

// Claims -> Identity for one issuer (exposed for tests with real-shaped payloads).
// Fails when no subject claim is present.
tl::expected<Identity, TokenError> map_claims(const IssuerConfig& issuer, std::string_view payload_json);

}  // namespace gh::identity
