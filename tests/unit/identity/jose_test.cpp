#include "identity/jose.h"
#include "jose_test_util.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <random>
#include <string>
#include <vector>

namespace gh::identity::jose {
namespace {

// Keys are generated here with OpenSSL, their public halves exported to JWK JSON by hand, and
// tokens signed with EVP, so the code under test meets keys and signatures it did not make.

using namespace testing;
using Json = nlohmann::json;

Result<void> verify_token(std::string_view token, const Jwk& key) {
  auto jws = split_compact(token);
  if (!jws) return tl::unexpected(jws.error());
  auto header = Json::parse(jws->header_json);
  return verify(header.at("alg").get<std::string>(), key, jws->signing_input, jws->signature);
}

// ---- base64url -------------------------------------------------------------------------------

TEST(JoseBase64url, KnownVectors) {
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("foob"), "Zm9vYg");
  EXPECT_EQ(base64url_encode("\xfb\xff\xbf"), "-_-_");
  EXPECT_EQ(*base64url_decode("-_-_"), "\xfb\xff\xbf");
  EXPECT_EQ(*base64url_decode("Zm9vYg"), "foob");
  EXPECT_EQ(*base64url_decode("Zm9vYg=="), "foob");  // padding accepted outside compact tokens
  EXPECT_EQ(*base64url_decode("Zm8="), "fo");
  EXPECT_EQ(*base64url_decode(""), "");
}

TEST(JoseBase64url, RoundTripsEveryLength) {
  std::mt19937 rng(7);
  for (std::size_t len = 0; len < 200; ++len) {
    std::string bytes(len, '\0');
    for (auto& c : bytes) c = char(rng());
    std::string text = base64url_encode(bytes);
    EXPECT_EQ(text.find_first_of("+/="), std::string::npos);
    auto back = base64url_decode(text);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, bytes);
  }
}

TEST(JoseBase64url, RejectsInvalidText) {
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "Zm9v+", "Zm9/", "Zm 9v", "Zm9v\n", std::string_view("Zm\0v", 4), "Zm.v", "Z",
           "Zm9vY", "Zh", "Zm9=", "Zg=", "Z=g=", "=", "====", "Zg===", "Zm9vYg=\xff", "\xc3\xa9"}) {
    auto r = base64url_decode(bad);
    EXPECT_FALSE(r) << "accepted " << bad;
    if (!r) {
      EXPECT_TRUE(r.error().sqlstate.empty());
      EXPECT_NE(r.error().message.find("base64url"), std::string::npos);
    }
  }
}

// ---- split_compact ---------------------------------------------------------------------------

TEST(JoseSplitCompact, SplitsAndDecodes) {
  std::string token = base64url_encode(R"({"alg":"RS256"})") + "." + base64url_encode(R"({"sub":"a"})") + "." +
                      base64url_encode("sig");
  auto jws = split_compact(token);
  ASSERT_TRUE(jws) << jws.error().message;
  EXPECT_EQ(jws->header_json, R"({"alg":"RS256"})");
  EXPECT_EQ(jws->payload_json, R"({"sub":"a"})");
  EXPECT_EQ(jws->signature, "sig");
  EXPECT_EQ(jws->signing_input, token.substr(0, token.rfind('.')));
}

TEST(JoseSplitCompact, RefusesWrongShapes) {
  auto message = [](std::string_view token) {
    auto r = split_compact(token);
    EXPECT_FALSE(r) << token;
    return r ? std::string() : r.error().message;
  };
  EXPECT_EQ(message("a.b.c.d.e"), "not a JWT: expected 3 dot-separated parts, got 5");  // JWE
  EXPECT_EQ(message("abc"), "not a JWT: expected 3 dot-separated parts, got 1");
  EXPECT_EQ(message(""), "not a JWT: expected 3 dot-separated parts, got 1");
  EXPECT_EQ(message("eyJ.e30"), "not a JWT: expected 3 dot-separated parts, got 2");
  EXPECT_NE(message("e30.e30."), "");                     // unsigned: empty signature
  EXPECT_NE(message(".e30.c2ln").find("empty header"), std::string::npos);
  EXPECT_NE(message("e30.e3+.c2ln").find("payload"), std::string::npos);
  EXPECT_NE(message("e30.e30.c2ln\n").find("signature"), std::string::npos);
  EXPECT_NE(message("e30=.e30.c2ln").find("padded"), std::string::npos);
  EXPECT_NE(message("e30.e30.c2lnc2k=").find("padded"), std::string::npos);
}

TEST(JoseSplitCompact, LimitsTokenSize) {
  std::string payload = base64url_encode(std::string(12 * 1024, 'x'));
  std::string token = "e30." + payload + ".c2ln";
  ASSERT_GT(token.size(), 16u * 1024);
  auto r = split_compact(token);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("exceeds the limit of 16384"), std::string::npos) << r.error().message;
  EXPECT_FALSE(split_compact(std::string(10 * 1024 * 1024, '.')));
}

TEST(JoseSplitCompact, GarbageNeverCrashes) {
  std::mt19937 rng(11);
  const std::string alphabet = "AZaz09-_.=+/ \0\xff";
  for (int i = 0; i < 2000; ++i) {
    std::string token(rng() % 64, '\0');
    for (auto& c : token) c = i % 2 ? char(rng()) : alphabet[rng() % alphabet.size()];
    (void)split_compact(token);
  }
}

// ---- verify ----------------------------------------------------------------------------------

struct AlgCase {
  const char* alg;
  EVP_PKEY* (*key)();
};

const std::vector<AlgCase>& all_cases() {
  static const std::vector<AlgCase> cases = {
      {"RS256", rsa_a}, {"RS384", rsa_a}, {"RS512", rsa_a}, {"PS256", rsa_a},     {"PS384", rsa_a},
      {"PS512", rsa_a}, {"ES256", p256_a}, {"ES384", p384}, {"ES512", p521}, {"EdDSA", ed25519_a},
      {"EdDSA", ed448},
  };
  return cases;
}

TEST(JoseVerify, EachAlgorithmVerifies) {
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.alg);
    Jwk jwk = to_jwk(c.key());
    auto r = verify_token(make_token(c.alg, c.key()), jwk);
    EXPECT_TRUE(r) << r.error().message;
    // A key that names its algorithm accepts that one.
    auto named = verify_token(make_token(c.alg, c.key()), to_jwk(c.key(), c.alg));
    EXPECT_TRUE(named) << named.error().message;
  }
}

TEST(JoseVerify, TamperedInputOrSignatureFails) {
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.alg);
    Jwk jwk = to_jwk(c.key());
    std::string input = base64url_encode(R"({"alg":"x"})") + "." + base64url_encode(R"({"sub":"alice"})");
    std::string sig = sign(c.alg, c.key(), input);
    ASSERT_TRUE(verify(c.alg, jwk, input, sig));
    std::string changed_input = base64url_encode(R"({"alg":"x"})") + "." + base64url_encode(R"({"sub":"mallory"})");
    EXPECT_FALSE(verify(c.alg, jwk, changed_input, sig));
    std::string flipped = sig;
    flipped[flipped.size() / 2] ^= 0x01;
    EXPECT_FALSE(verify(c.alg, jwk, input, flipped));
    EXPECT_FALSE(verify(c.alg, jwk, input, sig.substr(0, sig.size() - 1)));
    EXPECT_FALSE(verify(c.alg, jwk, input, sig + "x"));
    EXPECT_FALSE(verify(c.alg, jwk, input, ""));
    EXPECT_FALSE(verify(c.alg, jwk, input, std::string(sig.size(), '\0')));
  }
}

TEST(JoseVerify, WrongKeyFails) {
  struct Case {
    const char* alg;
    EVP_PKEY* signer;
    EVP_PKEY* other;
  };
  for (const auto& c : {Case{"RS256", rsa_a(), rsa_b()}, Case{"PS256", rsa_a(), rsa_b()},
                        Case{"ES256", p256_a(), p256_b()}, Case{"EdDSA", ed25519_a(), ed25519_b()}}) {
    SCOPED_TRACE(c.alg);
    auto r = verify_token(make_token(c.alg, c.signer), to_jwk(c.other));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "signature does not verify");
    EXPECT_TRUE(r.error().sqlstate.empty());
  }
}

TEST(JoseVerify, AlgorithmMustFitTheKey) {
  std::string input = "e30.e30";
  auto refused = [&](std::string_view alg, EVP_PKEY* signer, const Jwk& key) {
    auto r = verify(alg, key, input, sign(alg, signer, input));
    EXPECT_FALSE(r) << alg;
    return r ? std::string() : r.error().message;
  };
  // A valid signature, checked against a key of another type or curve.
  EXPECT_NE(refused("RS256", rsa_a(), to_jwk(p256_a())).find("does not fit"), std::string::npos);
  EXPECT_NE(refused("ES256", p256_a(), to_jwk(p384())).find("does not fit"), std::string::npos);
  EXPECT_NE(refused("ES384", p384(), to_jwk(p256_a())).find("does not fit"), std::string::npos);
  EXPECT_NE(refused("ES512", p521(), to_jwk(p384())).find("does not fit"), std::string::npos);
  EXPECT_NE(refused("EdDSA", ed25519_a(), to_jwk(rsa_a())).find("does not fit"), std::string::npos);
  EXPECT_NE(refused("ES256", p256_a(), to_jwk(ed25519_a())).find("does not fit"), std::string::npos);
  // The same RSA key, but the other padding: PKCS#1 v1.5 and PSS signatures are not interchangeable.
  Jwk rsa = to_jwk(rsa_a());
  EXPECT_FALSE(verify("PS256", rsa, input, sign("RS256", rsa_a(), input)));
  EXPECT_FALSE(verify("RS256", rsa, input, sign("PS256", rsa_a(), input)));
  EXPECT_FALSE(verify("RS384", rsa, input, sign("RS256", rsa_a(), input)));
  // A key that names its algorithm refuses any other, even with a valid signature.
  auto r = verify("PS256", to_jwk(rsa_a(), "RS256"), input, sign("PS256", rsa_a(), input));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("is for RS256"), std::string::npos) << r.error().message;
  // The JWK's strings cannot talk an EC key into RSA verification.
  Jwk lying = to_jwk(p256_a());
  lying.kty = "RSA";
  lying.crv.clear();
  EXPECT_FALSE(verify("RS256", lying, input, std::string(256, 'x')));
  Jwk empty;
  empty.kty = "RSA";
  EXPECT_FALSE(verify("RS256", empty, input, "sig"));
}

TEST(JoseVerify, PssNeedsSaltOfDigestLength) {
  std::string input = "e30.e30";
  Jwk rsa = to_jwk(rsa_a());
  EXPECT_TRUE(verify("PS256", rsa, input, evp_sign(rsa_a(), EVP_sha256(), input, 32, true)));
  EXPECT_FALSE(verify("PS256", rsa, input, evp_sign(rsa_a(), EVP_sha256(), input, 0, true)));
  EXPECT_FALSE(verify("PS256", rsa, input, evp_sign(rsa_a(), EVP_sha256(), input, RSA_PSS_SALTLEN_MAX, true)));
}

TEST(JoseVerify, EcdsaWantsRawRAndS) {
  std::string input = "e30.e30";
  Jwk p256 = to_jwk(p256_a());
  std::string der = evp_sign(p256_a(), EVP_sha256(), input);
  auto r = verify("ES256", p256, input, der);  // DER as some libraries wrongly send it
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("64 expected"), std::string::npos) << r.error().message;
  std::string raw = der_to_raw(der, 32);
  EXPECT_TRUE(verify("ES256", p256, input, raw));
  EXPECT_FALSE(verify("ES256", p256, input, raw.substr(0, 32) + std::string(32, '\0')));  // s = 0
  EXPECT_FALSE(verify("ES256", p256, input, std::string(64, '\xff')));                     // r, s >= n
}

TEST(JoseVerify, RefusesNoneSymmetricAndUnknownAlgorithms) {
  Jwk rsa = to_jwk(rsa_a());
  std::string input = "e30.e30";
  std::string sig = sign("RS256", rsa_a(), input);
  for (std::string_view alg : std::initializer_list<std::string_view>{
           "none", "None", "HS256", "HS384", "HS512", "", "RS1", "rs256", "ES256K", "Ed25519",
           "RSA-OAEP", std::string_view("RS256\0", 6)}) {
    auto r = verify(alg, rsa, input, sig);
    EXPECT_FALSE(r) << alg;
    EXPECT_FALSE(supported_algorithm(alg)) << alg;
  }
  EXPECT_NE(verify("none", rsa, input, "").error().message.find("alg none"), std::string::npos);
  EXPECT_NE(verify("HS256", rsa, input, sig).error().message.find("symmetric"), std::string::npos);
  for (std::string_view alg :
       {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
    EXPECT_TRUE(supported_algorithm(alg)) << alg;
}

TEST(JoseVerify, RefusesHs256SignedWithThePublicKey) {
  // The classic confusion: an attacker MACs the token with the server's public key as secret.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  ASSERT_EQ(PEM_write_bio_PUBKEY(bio.get(), rsa_a()), 1);
  char* pem_data = nullptr;
  long pem_len = BIO_get_mem_data(bio.get(), &pem_data);
  std::string pem(pem_data, std::size_t(pem_len));
  std::string input = base64url_encode(R"({"alg":"HS256","kid":"k"})") + "." + base64url_encode(R"({"sub":"root"})");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), pem.data(), int(pem.size()), u8(input), input.size(), mac, &mac_len), nullptr);
  std::string token = input + "." + base64url_encode(std::string(reinterpret_cast<char*>(mac), mac_len));
  auto r = verify_token(token, to_jwk(rsa_a()));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("HS256"), std::string::npos);
  // And relabelled as RS256 the MAC is no RSA signature either.
  EXPECT_FALSE(verify("RS256", to_jwk(rsa_a()), input, std::string(reinterpret_cast<char*>(mac), mac_len)));
}

TEST(JoseVerify, LeavesNoOpenSslErrorsBehind) {
  ERR_clear_error();
  Jwk rsa = to_jwk(rsa_a());
  Jwk p256 = to_jwk(p256_a());
  EXPECT_FALSE(verify("RS256", rsa, "e30.e30", std::string(256, '\x01')));
  EXPECT_FALSE(verify("ES256", p256, "e30.e30", std::string(64, '\x01')));
  EXPECT_FALSE(verify("EdDSA", to_jwk(ed25519_a()), "e30.e30", std::string(64, '\x01')));
  EXPECT_EQ(ERR_peek_error(), 0u);
  (void)parse_jwks(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",)"
                   R"("y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]})");
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// ---- JWKS ------------------------------------------------------------------------------------

std::string skipped_reason(const JwkSet& set, std::string_view label) {
  for (const auto& s : set.skipped)
    if (s.starts_with(label)) return s;
  return "(not skipped)";
}

TEST(JoseJwks, ParsesUsableKeysAndSkipsTheRestWithReasons) {
  Json rsa = with_kid(public_jwk(rsa_a()), "rsa");
  rsa["use"] = "sig";
  rsa["alg"] = "RS256";
  rsa["d"] = "not even base64!";  // private members are ignored
  rsa["x5c"] = Json::array({"MII..."});
  Json enc = with_kid(public_jwk(rsa_b()), "enc");
  enc["use"] = "enc";
  Json oaep = with_kid(public_jwk(rsa_b()), "oaep");
  oaep["alg"] = "RSA-OAEP";
  Json ops = with_kid(public_jwk(rsa_b()), "ops");
  ops["key_ops"] = Json::array({"encrypt"});
  Json bad_n = with_kid(public_jwk(rsa_b()), "bad-n");
  bad_n["n"] = "a+b/c";
  Json no_e = with_kid(public_jwk(rsa_b()), "no-e");
  no_e.erase("e");
  Json e_one = with_kid(public_jwk(rsa_b()), "e-one");
  e_one["e"] = base64url_encode("\x01");
  Pkey small = rsa_key(1024);
  Json weak = with_kid(public_jwk(small.get()), "weak");
  Json short_x = with_kid(public_jwk(p256_a()), "short-x");
  short_x["x"] = base64url_encode(base64url_decode(short_x["x"].get<std::string>())->substr(1));
  Json off_curve = with_kid(public_jwk(p256_a()), "off-curve");
  std::string y = *base64url_decode(off_curve["y"].get<std::string>());
  y.back() ^= 1;
  off_curve["y"] = base64url_encode(y);
  Json crv_swap = with_kid(public_jwk(p384()), "crv-swap");
  crv_swap["crv"] = "P-256";
  Json es_on_384 = with_kid(public_jwk(p384()), "es256-on-p384");
  es_on_384["alg"] = "ES256";
  Json p192 = Json{{"kid", "p192"}, {"kty", "EC"}, {"crv", "P-192"}, {"x", "AA"}, {"y", "AA"}};
  Json x25519 = Json{{"kid", "x25519"}, {"kty", "OKP"}, {"crv", "X25519"}, {"x", base64url_encode(std::string(32, 'a'))}};
  Json oct = Json{{"kid", "oct"}, {"kty", "oct"}, {"k", "c2VjcmV0"}};
  Json unknown = Json{{"kid", "unknown"}, {"kty", "DSA"}};
  Json kid_number = public_jwk(p256_b());
  kid_number["kid"] = 42;
  Json ec = with_kid(public_jwk(p256_b()), "ec");
  Json ed = with_kid(public_jwk(ed25519_a()), "ed");
  ed["use"] = "sig";
  ed["key_ops"] = Json::array({"verify"});
  Json ed448_key = with_kid(public_jwk(ed448()), "ed448");

  Json doc = {{"keys", Json::array({rsa, enc, oaep, ops, bad_n, no_e, e_one, weak, short_x, off_curve, crv_swap,
                                    es_on_384, p192, x25519, oct, unknown, kid_number, "a string", nullptr, ec, ed,
                                    ed448_key})}};
  auto set = parse_jwks(doc.dump());
  ASSERT_TRUE(set) << set.error().message;
  std::vector<std::string> kids;
  for (const auto& k : set->keys) {
    kids.push_back(k.kid);
    EXPECT_NE(k.key, nullptr);
  }
  EXPECT_EQ(kids, (std::vector<std::string>{"rsa", "ec", "ed", "ed448"}));
  EXPECT_EQ(set->skipped.size(), 18u);
  for (const auto& s : set->skipped) SCOPED_TRACE(s);

  EXPECT_EQ(skipped_reason(*set, "kid enc:"), "kid enc: use enc");
  EXPECT_EQ(skipped_reason(*set, "kid oct:"), "kid oct: symmetric key (kty oct)");
  EXPECT_NE(skipped_reason(*set, "kid oaep:").find("RSA-OAEP"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid ops:").find("key_ops"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid bad-n:").find("\"n\" is not base64url"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid no-e:").find("missing \"e\""), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid e-one:").find("exponent"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid weak:").find("1024 bits"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid short-x:").find("31/32 bytes"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid off-curve:").find("not on P-256"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid crv-swap:").find("32 expected"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid es256-on-p384:").find("does not fit"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid p192:").find("P-192"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid x25519:").find("X25519"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "kid unknown:").find("unsupported kty DSA"), std::string::npos);
  EXPECT_NE(skipped_reason(*set, "entry 16:").find("\"kid\" is not a string"), std::string::npos);
  EXPECT_EQ(skipped_reason(*set, "entry 17:"), "entry 17: not a JSON object");
  EXPECT_EQ(skipped_reason(*set, "entry 18:"), "entry 18: not a JSON object");

  const Jwk* r = set->find("rsa");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->kty, "RSA");
  EXPECT_EQ(r->alg, "RS256");
  EXPECT_EQ(r->use, "sig");
  EXPECT_TRUE(verify_token(make_token("RS256", rsa_a()), *r));
  EXPECT_EQ(set->find("ec")->crv, "P-256");
  EXPECT_EQ(set->find("ed448")->crv, "Ed448");
  EXPECT_EQ(set->find("enc"), nullptr);
  EXPECT_EQ(set->find("nope"), nullptr);
}

TEST(JoseJwks, FindReturnsTheFirstKeyWithTheKid) {
  Json a = with_kid(public_jwk(p256_a()), "same");
  Json b = with_kid(public_jwk(p256_b()), "same");
  Json none = public_jwk(ed25519_a());
  auto set = parse_jwks(Json{{"keys", {a, b, none}}}.dump());
  ASSERT_TRUE(set);
  ASSERT_EQ(set->keys.size(), 3u);
  EXPECT_EQ(set->find("same"), &set->keys[0]);
  EXPECT_EQ(set->find(""), &set->keys[2]);  // a key without kid is found by the empty kid
  EXPECT_TRUE(verify_token(make_token("ES256", p256_a()), *set->find("same")));
}

TEST(JoseJwks, MalformedDocumentsAreErrors) {
  for (std::string_view doc : {"", "{", "null", "[]", "42", R"("keys")", R"({"keys":{}})", R"({"keys":null})",
                               R"({"key":[]})", R"({"keys":[]}garbage)", "{\"keys\":[],\"x\":\"\xff\"}",
                               R"({"keys":[{"kty":"EC",}]})"}) {
    auto r = parse_jwks(doc);
    EXPECT_FALSE(r) << doc;
    if (!r) {
      EXPECT_TRUE(r.error().sqlstate.empty());
    }
  }
  EXPECT_TRUE(parse_jwks(R"({"keys":[]})"));
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(parse_jwks(deep));
  std::string nested = R"({"keys":[{"kty":"RSA","x":)" + std::string(50, '[') + std::string(50, ']') + "}]}";
  EXPECT_FALSE(parse_jwks(nested));
  std::string huge = R"({"keys":[],"pad":")" + std::string(2 * 1024 * 1024, 'a') + "\"}";
  auto r = parse_jwks(huge);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("exceeds"), std::string::npos);
}

TEST(JoseJwks, HostileEntriesNeverCrash) {
  // Every member of a real key replaced by values of every JSON type.
  std::vector<Json> values = {nullptr, true, 0, -1, 1.5, "", "AA", "!!", Json::array(), Json::object(),
                              Json::array({"verify"}), std::string(5000, 'A')};
  Json base_rsa = public_jwk(rsa_a());
  Json base_ec = public_jwk(p256_a());
  Json base_ed = public_jwk(ed25519_a());
  for (const Json* base : {&base_rsa, &base_ec, &base_ed}) {
    for (const char* member : {"kty", "kid", "alg", "use", "crv", "n", "e", "x", "y", "key_ops"}) {
      for (const auto& v : values) {
        Json k = *base;
        k[member] = v;
        auto set = parse_jwks(Json{{"keys", {k}}}.dump());
        ASSERT_TRUE(set);
        EXPECT_EQ(set->keys.size() + set->skipped.size(), 1u);
      }
    }
  }
  std::mt19937 rng(3);
  std::string real = Json{{"keys", {base_rsa, base_ec, base_ed}}}.dump();
  for (int i = 0; i < 300; ++i) {
    std::string doc = real;
    for (int j = 0; j < 3; ++j) doc[rng() % doc.size()] = char(rng());
    (void)parse_jwks(doc);
  }
}

}  // namespace
}  // namespace gh::identity::jose
