#pragma once
// JSON Web Signatures (RFC 7515, compact form) and JSON Web Keys (RFC 7517), as far as
// verifying an OIDC token needs: split and decode a token, turn a JWKS document into OpenSSL
// public keys, and check one signature with OpenSSL's EVP API. No claim is checked here
// (identity/oidc.h does that), and no cryptography is written here: ECDSA signatures are
// re-encoded from JOSE's r||s to DER, everything else is OpenSSL.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace gh::identity::jose {

// base64url (RFC 4648 §5) without padding; decode also accepts padding. nullopt-like failure
// is an Error with an empty sqlstate.
Result<std::string> base64url_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);

// A compact JWS split into its parts. Nothing is verified yet.
struct Jws {
  std::string header_json;      // decoded protected header
  std::string payload_json;     // decoded payload
  std::string signing_input;    // "<b64 header>.<b64 payload>", exactly as in the token
  std::string signature;        // decoded signature bytes
};
// Refuses anything that is not three base64url parts (JWE's five parts included), with a
// message naming what is wrong ("not a JWT: expected 3 dot-separated parts, got 5").
Result<Jws> split_compact(std::string_view token);

// One public key from a JWKS.
struct Jwk {
  std::string kid;   // may be empty
  std::string kty;   // "RSA", "EC", "OKP"
  std::string alg;   // may be empty (then any algorithm matching kty is allowed)
  std::string use;   // "sig", "enc" or empty
  std::string crv;   // EC: "P-256", "P-384", "P-521"; OKP: "Ed25519", "Ed448"
  std::shared_ptr<EVP_PKEY> key;  // never null in a parsed set
};

struct JwkSet {
  std::vector<Jwk> keys;
  std::vector<std::string> skipped;  // why each unusable entry was skipped ("kid x: use enc")
  const Jwk* find(std::string_view kid) const;  // first key with this kid
};

// Parses a JWKS document ({"keys": [...]}). Entries that cannot verify signatures (use "enc",
// symmetric "oct" keys, unknown kty/crv, malformed numbers) are skipped and listed in `skipped`;
// a document that is not JSON or has no "keys" array is an error. Private members ("d", "p"…)
// are ignored: only the public part is kept.
Result<JwkSet> parse_jwks(std::string_view json);

// True for the algorithms tokens may use: RS256/384/512, PS256/384/512, ES256/384/512, EdDSA.
// "none" and every HS* (symmetric) algorithm are false.
bool supported_algorithm(std::string_view alg);

// Verifies `signature` over `input` with `alg` and `key`. Fails (empty sqlstate, a message
// for logs) when the algorithm is unsupported, does not fit the key (RS256 with an EC key,
// ES256 with a P-384 key, a key whose own "alg" differs), or the signature does not verify.
Result<void> verify(std::string_view alg, const Jwk& key, std::string_view input, std::string_view signature);

}  // namespace gh::identity::jose
