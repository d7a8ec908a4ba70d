#pragma once
// Test helpers: real keys generated with OpenSSL, their public halves as JWKs, and JOSE
// signatures made with EVP, so code under test meets keys and tokens it did not make.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "identity/jose.h"

namespace gh::identity::jose::testing {

using Json = nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

inline const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

inline Pkey rsa_key(unsigned bits) {
  return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
}
inline Pkey ec_key(const char* group) { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group)); }
inline Pkey ed_key(const char* type) { return Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, type)); }

// Generated once: RSA key generation takes a noticeable fraction of a second.
inline EVP_PKEY* rsa_a() {
  static Pkey k = rsa_key(2048);
  return k.get();
}
inline EVP_PKEY* rsa_b() {
  static Pkey k = rsa_key(2048);
  return k.get();
}
inline EVP_PKEY* p256_a() {
  static Pkey k = ec_key("P-256");
  return k.get();
}
inline EVP_PKEY* p256_b() {
  static Pkey k = ec_key("P-256");
  return k.get();
}
inline EVP_PKEY* p384() {
  static Pkey k = ec_key("P-384");
  return k.get();
}
inline EVP_PKEY* p521() {
  static Pkey k = ec_key("P-521");
  return k.get();
}
inline EVP_PKEY* ed25519_a() {
  static Pkey k = ed_key("ED25519");
  return k.get();
}
inline EVP_PKEY* ed25519_b() {
  static Pkey k = ed_key("ED25519");
  return k.get();
}
inline EVP_PKEY* ed448() {
  static Pkey k = ed_key("ED448");
  return k.get();
}

inline std::string bn_param(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1);
  std::string out(std::size_t(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

// The public half of `key` as a JWK (without kid/alg/use; callers add those).
inline Json public_jwk(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return Json{{"kty", "RSA"},
                  {"n", base64url_encode(bn_param(key, OSSL_PKEY_PARAM_RSA_N))},
                  {"e", base64url_encode(bn_param(key, OSSL_PKEY_PARAM_RSA_E))}};
    case EVP_PKEY_EC: {
      unsigned char point[256];
      std::size_t len = 0;
      EXPECT_EQ(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &len), 1);
      EXPECT_EQ(point[0], 0x04);  // uncompressed
      std::size_t half = (len - 1) / 2;
      std::string x(reinterpret_cast<char*>(point) + 1, half), y(reinterpret_cast<char*>(point) + 1 + half, half);
      const char* crv = half == 32 ? "P-256" : half == 48 ? "P-384" : "P-521";
      return Json{{"kty", "EC"}, {"crv", crv}, {"x", base64url_encode(x)}, {"y", base64url_encode(y)}};
    }
    default: {
      unsigned char raw[64];
      std::size_t len = sizeof raw;
      EXPECT_EQ(EVP_PKEY_get_raw_public_key(key, raw, &len), 1);
      const char* crv = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? "Ed25519" : "Ed448";
      return Json{{"kty", "OKP"}, {"crv", crv}, {"x", base64url_encode(std::string(reinterpret_cast<char*>(raw), len))}};
    }
  }
}

inline Json with_kid(Json jwk, std::string kid) {
  jwk["kid"] = std::move(kid);
  return jwk;
}

// A parsed JWK for `key`: through parse_jwks, the way keys reach verify() in the proxy.
inline Jwk to_jwk(EVP_PKEY* key, std::string alg = "") {
  Json j = with_kid(public_jwk(key), "k");
  if (!alg.empty()) j["alg"] = alg;
  auto set = parse_jwks(Json{{"keys", Json::array({j})}}.dump());
  EXPECT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->keys.size(), 1u) << (set->skipped.empty() ? "" : set->skipped[0]);
  return set->keys.at(0);
}

inline const EVP_MD* md_for(std::string_view alg) {
  if (alg.ends_with("256")) return EVP_sha256();
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  return nullptr;  // EdDSA
}

inline std::string evp_sign(EVP_PKEY* key, const EVP_MD* md, std::string_view input, int pss_saltlen = 0, bool pss = false) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, key), 1);
  if (pss) {
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_saltlen), 1);
  }
  std::size_t len = 0;
  EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, u8(input), input.size()), 1);
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, u8(input), input.size()), 1);
  sig.resize(len);
  return sig;
}

inline std::string der_to_raw(std::string_view der, std::size_t coord_len) {
  const unsigned char* p = u8(der);
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, long(der.size()));
  EXPECT_NE(sig, nullptr);
  std::string raw(2 * coord_len, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  EXPECT_EQ(BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, int(coord_len)), int(coord_len));
  EXPECT_EQ(BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + coord_len, int(coord_len)), int(coord_len));
  ECDSA_SIG_free(sig);
  return raw;
}

// The JOSE signature of `input` under `alg`.
inline std::string sign(std::string_view alg, EVP_PKEY* key, std::string_view input) {
  const EVP_MD* md = md_for(alg);
  if (alg.starts_with("PS")) return evp_sign(key, md, input, RSA_PSS_SALTLEN_DIGEST, true);
  if (alg.starts_with("ES")) {
    std::size_t coord = alg == "ES256" ? 32 : alg == "ES384" ? 48 : 66;
    return der_to_raw(evp_sign(key, md, input), coord);
  }
  return evp_sign(key, md, input);
}

inline std::string make_token(std::string_view alg, EVP_PKEY* key, std::string_view payload = R"({"sub":"alice"})") {
  std::string input = base64url_encode(Json{{"alg", alg}, {"kid", "k"}, {"typ", "JWT"}}.dump()) + "." +
                      base64url_encode(payload);
  return input + "." + base64url_encode(sign(alg, key, input));
}


}  // namespace gh::identity::jose::testing
