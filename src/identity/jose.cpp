#include "identity/jose.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <optional>
#include <utility>

// Everything here reads input from identity providers and from clients, so every entry point
// returns a value: nlohmann exceptions are caught at each public function, and OpenSSL's
// thread-local error queue is emptied before returning (a stale entry there would make a later
// SSL_get_error on the same thread report a failure that is not its own).

namespace gh::identity::jose {
namespace {

constexpr std::size_t kMaxTokenBytes = 16 * 1024;
constexpr std::size_t kMaxJwksBytes = 1024 * 1024;
constexpr int kMaxJsonDepth = 32;
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;  // OpenSSL's own limit; bigger keys only cost CPU to check
constexpr std::size_t kMaxRsaExponentBytes = 8;

struct ErrQueueClear {
  ~ErrQueueClear() { ERR_clear_error(); }
};

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

Error error(std::string message) { return Error{"", std::move(message)}; }

// Names from the token or the JWKS end up in logs: keep them short and printable.
std::string printable(std::string_view s) {
  constexpr std::size_t kMax = 64;
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out.push_back(c >= 0x20 && c < 0x7f ? char(c) : '?');
  }
  if (s.size() > kMax) out += "...";
  return out;
}

int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// ---- algorithms -------------------------------------------------------------------------

enum class Family { Rsa, RsaPss, Ecdsa, EdDsa };

struct AlgInfo {
  std::string_view name;
  Family family;
  const EVP_MD* (*md)();  // null for EdDSA
  std::string_view curve;  // ES*: the JWK crv it requires
  std::size_t coord_len;   // ES*: bytes of r and of s
};

const EVP_MD* no_md() { return nullptr; }

constexpr std::array<AlgInfo, 10> kAlgs{{
    {"RS256", Family::Rsa, EVP_sha256, "", 0},
    {"RS384", Family::Rsa, EVP_sha384, "", 0},
    {"RS512", Family::Rsa, EVP_sha512, "", 0},
    {"PS256", Family::RsaPss, EVP_sha256, "", 0},
    {"PS384", Family::RsaPss, EVP_sha384, "", 0},
    {"PS512", Family::RsaPss, EVP_sha512, "", 0},
    {"ES256", Family::Ecdsa, EVP_sha256, "P-256", 32},
    {"ES384", Family::Ecdsa, EVP_sha384, "P-384", 48},
    {"ES512", Family::Ecdsa, EVP_sha512, "P-521", 66},
    {"EdDSA", Family::EdDsa, no_md, "", 0},
}};

const AlgInfo* find_alg(std::string_view alg) {
  for (const auto& a : kAlgs)
    if (a.name == alg) return &a;
  return nullptr;
}

std::string_view kty_for(Family f) {
  switch (f) {
    case Family::Rsa:
    case Family::RsaPss: return "RSA";
    case Family::Ecdsa: return "EC";
    case Family::EdDsa: return "OKP";
  }
  return "";
}

struct Curve {
  std::string_view crv;
  const char* group;  // OpenSSL group name
  std::size_t coord_len;
};
constexpr std::array<Curve, 3> kCurves{{
    {"P-256", "prime256v1", 32},
    {"P-384", "secp384r1", 48},
    {"P-521", "secp521r1", 66},
}};

// The JWK crv of an OpenSSL EC key, or empty when it is none of ours.
std::string ec_curve_of(EVP_PKEY* key) {
  char group[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) return "";
  std::string_view name(group, len);
  for (const auto& c : kCurves)
    if (name == c.group) return std::string(c.crv);
  return "";
}

// ---- JWK → EVP_PKEY ------------------------------------------------------------------------

// A JWK member that must be a base64url string; nullopt (with `why` set) otherwise.
std::optional<std::string> b64_member(const nlohmann::json& jwk, const char* name, std::string& why) {
  auto it = jwk.find(name);
  if (it == jwk.end()) {
    why = std::string("missing \"") + name + "\"";
    return std::nullopt;
  }
  if (!it->is_string()) {
    why = std::string("\"") + name + "\" is not a string";
    return std::nullopt;
  }
  auto decoded = base64url_decode(it->get_ref<const std::string&>());
  if (!decoded) {
    why = std::string("\"") + name + "\" is not base64url";
    return std::nullopt;
  }
  return std::move(*decoded);
}

PkeyPtr pkey_fromdata(const char* type, OSSL_PARAM* params) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
    return nullptr;
  return PkeyPtr(key);
}

PkeyPtr rsa_key(const nlohmann::json& jwk, std::string& why) {
  auto n = b64_member(jwk, "n", why);
  if (!n) return nullptr;
  auto e = b64_member(jwk, "e", why);
  if (!e) return nullptr;
  BnPtr bn_n(BN_bin2bn(u8(*n), int(n->size()), nullptr));
  BnPtr bn_e(BN_bin2bn(u8(*e), int(e->size()), nullptr));
  if (!bn_n || !bn_e) {
    why = "out of memory";
    return nullptr;
  }
  int bits = BN_num_bits(bn_n.get());
  if (bits < kMinRsaBits) {
    why = "RSA key of " + std::to_string(bits) + " bits (at least " + std::to_string(kMinRsaBits) + " required)";
    return nullptr;
  }
  if (bits > kMaxRsaBits) {
    why = "RSA key of " + std::to_string(bits) + " bits (at most " + std::to_string(kMaxRsaBits) + " accepted)";
    return nullptr;
  }
  // An exponent of 1 (or any even one) makes every signature trivial or the key unusable.
  if (!BN_is_odd(bn_n.get()) || !BN_is_odd(bn_e.get()) || BN_is_one(bn_e.get()) ||
      std::size_t(BN_num_bytes(bn_e.get())) > kMaxRsaExponentBytes) {
    why = "implausible RSA modulus or exponent";
    return nullptr;
  }
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    why = "OpenSSL could not build the RSA parameters";
    return nullptr;
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyPtr key = params ? pkey_fromdata("RSA", params.get()) : nullptr;
  if (!key) why = "OpenSSL refused the RSA key";
  return key;
}

PkeyPtr ec_key(const nlohmann::json& jwk, std::string_view crv, std::string& why) {
  const Curve* curve = nullptr;
  for (const auto& c : kCurves)
    if (c.crv == crv) curve = &c;
  if (curve == nullptr) {
    why = "unsupported EC curve \"" + printable(crv) + "\"";
    return nullptr;
  }
  auto x = b64_member(jwk, "x", why);
  if (!x) return nullptr;
  auto y = b64_member(jwk, "y", why);
  if (!y) return nullptr;
  // RFC 7518 §6.2.1.2: coordinates are full length, leading zeros kept.
  if (x->size() != curve->coord_len || y->size() != curve->coord_len) {
    why = "EC coordinates of " + std::to_string(x->size()) + "/" + std::to_string(y->size()) + " bytes, " +
          std::to_string(curve->coord_len) + " expected for " + std::string(crv);
    return nullptr;
  }
  std::string point;
  point.reserve(1 + 2 * curve->coord_len);
  point.push_back('\x04');
  point.append(*x).append(*y);
  std::array<OSSL_PARAM, 3> params{
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve->group), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end(),
  };
  PkeyPtr key = pkey_fromdata("EC", params.data());
  if (!key) {
    why = "EC point is not on " + std::string(crv);
    return nullptr;
  }
  // fromdata already rejects points off the curve; this also checks the point's order.
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    why = "EC public key fails OpenSSL's check";
    return nullptr;
  }
  return key;
}

PkeyPtr okp_key(const nlohmann::json& jwk, std::string_view crv, std::string& why) {
  int type = 0;
  std::size_t len = 0;
  if (crv == "Ed25519") {
    type = EVP_PKEY_ED25519;
    len = 32;
  } else if (crv == "Ed448") {
    type = EVP_PKEY_ED448;
    len = 57;
  } else {
    why = "unsupported OKP curve \"" + printable(crv) + "\" (only Ed25519 and Ed448 sign)";
    return nullptr;
  }
  auto x = b64_member(jwk, "x", why);
  if (!x) return nullptr;
  if (x->size() != len) {
    why = "\"x\" of " + std::to_string(x->size()) + " bytes, " + std::to_string(len) + " expected for " +
          std::string(crv);
    return nullptr;
  }
  PkeyPtr key(EVP_PKEY_new_raw_public_key(type, nullptr, u8(*x), x->size()));
  if (!key) why = "OpenSSL refused the " + std::string(crv) + " key";
  return key;
}

// A string member, empty when absent; nullopt when present but not a string.
std::optional<std::string> string_member(const nlohmann::json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end()) return std::string();
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// One JWKS entry: a usable key, or nullopt with the reason in `why`.
std::optional<Jwk> parse_jwk(const nlohmann::json& entry, std::string& why) {
  if (!entry.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  Jwk jwk;
  for (auto [name, field] : {std::pair{"kid", &jwk.kid}, std::pair{"kty", &jwk.kty}, std::pair{"alg", &jwk.alg},
                             std::pair{"use", &jwk.use}, std::pair{"crv", &jwk.crv}}) {
    auto value = string_member(entry, name);
    if (!value) {
      why = std::string("\"") + name + "\" is not a string";
      return std::nullopt;
    }
    *field = std::move(*value);
  }
  if (!jwk.use.empty() && jwk.use != "sig") {
    why = "use " + printable(jwk.use);
    return std::nullopt;
  }
  if (auto ops = entry.find("key_ops"); ops != entry.end()) {
    bool verifies = false;
    if (ops->is_array())
      for (const auto& op : *ops) verifies = verifies || (op.is_string() && op.get_ref<const std::string&>() == "verify");
    if (!verifies) {
      why = "key_ops without \"verify\"";
      return std::nullopt;
    }
  }
  if (jwk.kty == "oct") {
    why = "symmetric key (kty oct)";
    return std::nullopt;
  }
  if (jwk.kty != "RSA" && jwk.kty != "EC" && jwk.kty != "OKP") {
    why = jwk.kty.empty() ? "missing \"kty\"" : "unsupported kty " + printable(jwk.kty);
    return std::nullopt;
  }
  if (!jwk.alg.empty()) {
    const AlgInfo* alg = find_alg(jwk.alg);
    if (alg == nullptr) {
      why = "alg " + printable(jwk.alg) + " is not a supported signature algorithm";
      return std::nullopt;
    }
    if (kty_for(alg->family) != jwk.kty || (alg->family == Family::Ecdsa && alg->curve != jwk.crv)) {
      why = "alg " + jwk.alg + " does not fit kty " + jwk.kty + (jwk.crv.empty() ? "" : " crv " + printable(jwk.crv));
      return std::nullopt;
    }
  }
  PkeyPtr key;
  if (jwk.kty == "RSA") {
    jwk.crv.clear();
    key = rsa_key(entry, why);
  } else if (jwk.kty == "EC") {
    key = ec_key(entry, jwk.crv, why);
  } else {
    key = okp_key(entry, jwk.crv, why);
  }
  if (!key) return std::nullopt;
  jwk.key = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
  return jwk;
}

// Nesting depth of a JSON text, strings skipped; a cheap bound before building a DOM.
int json_depth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// ---- verification --------------------------------------------------------------------------

Result<void> digest_verify(EVP_PKEY* key, const EVP_MD* md, bool pss, std::string_view input,
                           std::string_view signature) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key) != 1)
    return tl::unexpected(error("OpenSSL could not set up the signature check"));
  if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
              EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1 ||
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
    return tl::unexpected(error("OpenSSL could not set up RSA-PSS"));
  if (EVP_DigestVerify(ctx.get(), u8(signature), signature.size(), u8(input), input.size()) != 1)
    return tl::unexpected(error("signature does not verify"));
  return {};
}

// JOSE's ECDSA signature is r||s, each left-padded to the curve size; OpenSSL wants DER.
std::optional<std::string> ecdsa_der(std::string_view raw) {
  std::size_t half = raw.size() / 2;
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  BnPtr r(BN_bin2bn(u8(raw.substr(0, half)), int(half), nullptr));
  BnPtr s(BN_bin2bn(u8(raw.substr(half)), int(half), nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return std::nullopt;
  r.release();  // owned by sig now
  s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::string der(std::size_t(len), '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &out) != len) return std::nullopt;
  return der;
}

Result<void> verify_impl(std::string_view alg_name, const Jwk& jwk, std::string_view input,
                         std::string_view signature) {
  const AlgInfo* alg = supported_algorithm(alg_name) ? find_alg(alg_name) : nullptr;
  if (alg == nullptr) {
    if (alg_name == "none") return tl::unexpected(error("unsigned token (alg none) refused"));
    if (alg_name.starts_with("HS"))
      return tl::unexpected(error("symmetric algorithm " + printable(alg_name) + " refused"));
    return tl::unexpected(error("unsupported algorithm \"" + printable(alg_name) + "\""));
  }
  if (!jwk.key) return tl::unexpected(error("no key"));
  std::string kid = jwk.kid.empty() ? "key" : "key " + printable(jwk.kid);
  if (!jwk.alg.empty() && jwk.alg != alg_name)
    return tl::unexpected(error("token alg " + std::string(alg_name) + " but " + kid + " is for " + printable(jwk.alg)));
  // Judge by the OpenSSL key itself, not only by the JWK's strings.
  EVP_PKEY* key = jwk.key.get();
  int type = EVP_PKEY_get_base_id(key);
  auto mismatch = [&] {
    return tl::unexpected(error("token alg " + std::string(alg_name) + " does not fit " + kid + " (kty " +
                                printable(jwk.kty) + (jwk.crv.empty() ? "" : " crv " + printable(jwk.crv)) + ")"));
  };
  if (jwk.kty != kty_for(alg->family)) return mismatch();
  if (signature.empty()) return tl::unexpected(error("empty signature"));
  switch (alg->family) {
    case Family::Rsa:
    case Family::RsaPss: {
      if (type != EVP_PKEY_RSA) return mismatch();
      if (EVP_PKEY_get_bits(key) < kMinRsaBits) return tl::unexpected(error(kid + " is a weak RSA key"));
      if (signature.size() != std::size_t(EVP_PKEY_get_size(key)))
        return tl::unexpected(error("RSA signature of " + std::to_string(signature.size()) + " bytes, " +
                                    std::to_string(EVP_PKEY_get_size(key)) + " expected"));
      return digest_verify(key, alg->md(), alg->family == Family::RsaPss, input, signature);
    }
    case Family::Ecdsa: {
      if (type != EVP_PKEY_EC || ec_curve_of(key) != alg->curve || jwk.crv != alg->curve) return mismatch();
      if (signature.size() != 2 * alg->coord_len)
        return tl::unexpected(error("ECDSA signature of " + std::to_string(signature.size()) + " bytes, " +
                                    std::to_string(2 * alg->coord_len) + " expected for " + std::string(alg_name)));
      auto der = ecdsa_der(signature);
      if (!der) return tl::unexpected(error("OpenSSL could not encode the ECDSA signature"));
      return digest_verify(key, alg->md(), false, input, *der);
    }
    case Family::EdDsa: {
      if (type != EVP_PKEY_ED25519 && type != EVP_PKEY_ED448) return mismatch();
      return digest_verify(key, nullptr, false, input, signature);
    }
  }
  return tl::unexpected(error("unsupported algorithm"));
}

}  // namespace

// ---- public functions ----------------------------------------------------------------------

std::string base64url_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = std::uint32_t(std::uint8_t(bytes[i])) << 16 | std::uint32_t(std::uint8_t(bytes[i + 1])) << 8 |
                      std::uint8_t(bytes[i + 2]);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= std::uint32_t(std::uint8_t(bytes[i + 1])) << 8;
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

Result<std::string> base64url_decode(std::string_view text) {
  // Padding is accepted only where it belongs: at the end, making the length a multiple of 4.
  std::size_t pad = 0;
  while (pad < text.size() && pad < 2 && text[text.size() - 1 - pad] == '=') ++pad;
  if (pad > 0 && text.size() % 4 != 0) return tl::unexpected(error("invalid base64url: misplaced padding"));
  text.remove_suffix(pad);
  if (text.size() % 4 == 1) return tl::unexpected(error("invalid base64url: truncated"));
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = b64url_value(static_cast<unsigned char>(c));
    if (v < 0) return tl::unexpected(error("invalid base64url character"));
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero: one encoding per byte string, so nothing can be re-encoded
  // into a different-looking but equal token.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
    return tl::unexpected(error("invalid base64url: non-zero trailing bits"));
  return out;
}

Result<Jws> split_compact(std::string_view token) {
  if (token.size() > kMaxTokenBytes)
    return tl::unexpected(error("token of " + std::to_string(token.size()) + " bytes exceeds the limit of " +
                                std::to_string(kMaxTokenBytes)));
  std::size_t dots = 0;
  for (char c : token) dots += c == '.';
  if (dots != 2)
    return tl::unexpected(
        error("not a JWT: expected 3 dot-separated parts, got " + std::to_string(dots + 1)));
  std::size_t d1 = token.find('.');
  std::size_t d2 = token.find('.', d1 + 1);
  std::string_view parts[3] = {token.substr(0, d1), token.substr(d1 + 1, d2 - d1 - 1), token.substr(d2 + 1)};
  static constexpr const char* kNames[3] = {"header", "payload", "signature"};
  std::string decoded[3];
  for (int i = 0; i < 3; ++i) {
    if (parts[i].empty()) return tl::unexpected(error(std::string("not a JWT: empty ") + kNames[i]));
    // RFC 7515 §2: the compact form is unpadded base64url.
    if (parts[i].find('=') != std::string_view::npos)
      return tl::unexpected(error(std::string("not a JWT: padded base64url in the ") + kNames[i]));
    auto d = base64url_decode(parts[i]);
    if (!d) return tl::unexpected(error(std::string("not a JWT: ") + kNames[i] + ": " + d.error().message));
    decoded[i] = std::move(*d);
  }
  Jws jws;
  jws.header_json = std::move(decoded[0]);
  jws.payload_json = std::move(decoded[1]);
  jws.signing_input = std::string(token.substr(0, d2));
  jws.signature = std::move(decoded[2]);
  return jws;
}

const Jwk* JwkSet::find(std::string_view kid) const {
  for (const auto& k : keys)
    if (k.kid == kid) return &k;
  return nullptr;
}

Result<JwkSet> parse_jwks(std::string_view json) {
  ErrQueueClear clear_errors;
  if (json.size() > kMaxJwksBytes)
    return tl::unexpected(error("JWKS of " + std::to_string(json.size()) + " bytes exceeds the limit of " +
                                std::to_string(kMaxJwksBytes)));
  if (json_depth(json) > kMaxJsonDepth) return tl::unexpected(error("JWKS is nested too deeply"));
  try {
    auto doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return tl::unexpected(error("JWKS is not valid JSON"));
    if (!doc.is_object()) return tl::unexpected(error("JWKS is not a JSON object"));
    auto keys = doc.find("keys");
    if (keys == doc.end() || !keys->is_array()) return tl::unexpected(error("JWKS has no \"keys\" array"));
    JwkSet set;
    std::size_t index = 0;
    for (const auto& entry : *keys) {
      std::string why;
      auto jwk = parse_jwk(entry, why);
      if (jwk) {
        set.keys.push_back(std::move(*jwk));
      } else {
        std::string label = "entry " + std::to_string(index);
        if (entry.is_object())
          if (auto kid = entry.find("kid"); kid != entry.end() && kid->is_string())
            label = "kid " + printable(kid->get_ref<const std::string&>());
        set.skipped.push_back(label + ": " + why);
      }
      ++index;
    }
    return set;
  } catch (const std::exception& e) {
    return tl::unexpected(error(std::string("JWKS could not be read: ") + e.what()));
  }
}

bool supported_algorithm(std::string_view alg) { return find_alg(alg) != nullptr; }

Result<void> verify(std::string_view alg, const Jwk& key, std::string_view input, std::string_view signature) {
  ErrQueueClear clear_errors;
  try {
    return verify_impl(alg, key, input, signature);
  } catch (const std::exception& e) {  // std::bad_alloc from building messages
    return tl::unexpected(error(std::string("signature check failed: ") + e.what()));
  }
}

}  // namespace gh::identity::jose
