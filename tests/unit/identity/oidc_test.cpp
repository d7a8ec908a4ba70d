#include "identity/oidc.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "jose_test_util.h"

namespace gh::identity {
namespace {

using jose::base64url_encode;
using jose::testing::Json;
using Clock = std::chrono::system_clock;

const std::string kIssuer = "https://idp.example.com";

class OidcVerify : public ::testing::Test {
 protected:
  void SetUp() override {
    IssuerConfig c;
    c.issuer = kIssuer;
    c.audiences = {"gatehouse"};
    issuers_ = {c};
    Json keys = Json::array({jose::testing::with_kid(jose::testing::public_jwk(jose::testing::rsa_a()), "rs"),
                             jose::testing::with_kid(jose::testing::public_jwk(jose::testing::p256_a()), "ec"),
                             jose::testing::with_kid(jose::testing::public_jwk(jose::testing::ed25519_a()), "ed")});
    auto set = jose::parse_jwks(Json{{"keys", keys}}.dump());
    ASSERT_TRUE(set) << set.error().message;
    ASSERT_EQ(set->keys.size(), 3u);
    set_ = std::make_shared<const jose::JwkSet>(std::move(*set));
    lookup_ = [this](const std::string& iss) { return iss == kIssuer ? set_ : nullptr; };
  }

  std::int64_t now() const { return std::chrono::duration_cast<std::chrono::seconds>(now_.time_since_epoch()).count(); }

  Json claims() const {
    return Json{{"iss", kIssuer}, {"sub", "00u1"},    {"aud", "gatehouse"},
                {"iat", now() - 10}, {"exp", now() + 3600}, {"email", "alice@example.com"},
                {"groups", Json::array({"analysts"})}};
  }

  static std::string token(const Json& header, const Json& payload, const std::string& alg, EVP_PKEY* key) {
    std::string input = base64url_encode(header.dump()) + "." + base64url_encode(payload.dump());
    return input + "." + base64url_encode(jose::testing::sign(alg, key, input));
  }
  std::string rs256(const Json& payload, Json header = Json{{"alg", "RS256"}, {"kid", "rs"}, {"typ", "JWT"}}) const {
    return token(header, payload, "RS256", jose::testing::rsa_a());
  }

  tl::expected<VerifiedToken, TokenError> check(const std::string& t) const {
    return verify_token(t, issuers_, lookup_, now_);
  }

  std::vector<IssuerConfig> issuers_;
  std::shared_ptr<const jose::JwkSet> set_;
  KeyLookup lookup_;
  Clock::time_point now_ = Clock::time_point(std::chrono::seconds(1'800'000'000));
};

TEST_F(OidcVerify, AcceptsEachSupportedAlgorithmWithTheIssuersKeys) {
  auto ok = check(rs256(claims()));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->identity.subject, "00u1");
  EXPECT_EQ(ok->identity.email, "alice@example.com");
  EXPECT_EQ(ok->identity.groups, std::vector<std::string>{"analysts"});
  EXPECT_EQ(ok->identity.method, "oidc");
  EXPECT_EQ(ok->identity.kind, Kind::Human);
  EXPECT_EQ(ok->expires_at, Clock::time_point(std::chrono::seconds(now() + 3600)));

  auto ps = check(token(Json{{"alg", "PS256"}, {"kid", "rs"}}, claims(), "PS256", jose::testing::rsa_a()));
  EXPECT_TRUE(ps) << ps.error().message;
  auto es = check(token(Json{{"alg", "ES256"}, {"kid", "ec"}, {"typ", "at+jwt"}}, claims(), "ES256",
                        jose::testing::p256_a()));
  EXPECT_TRUE(es) << es.error().message;
  auto ed = check(token(Json{{"alg", "EdDSA"}, {"kid", "ed"}}, claims(), "EdDSA", jose::testing::ed25519_a()));
  EXPECT_TRUE(ed) << ed.error().message;
  // No kid: each key that fits the algorithm is tried.
  auto nokid = check(token(Json{{"alg", "ES256"}}, claims(), "ES256", jose::testing::p256_a()));
  EXPECT_TRUE(nokid) << nokid.error().message;
}

TEST_F(OidcVerify, RefusesExpiredNotYetValidAndFutureTokensOutsideTheLeeway) {
  auto c = claims();
  c["exp"] = now() - 61;
  auto r = check(rs256(c));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::Expired);
  EXPECT_NE(r.error().message.find("expired at"), std::string::npos) << r.error().message;
  c["exp"] = now() - 30;  // within the 60 s leeway
  EXPECT_TRUE(check(rs256(c)));
  // Far-future and out-of-range expiry times neither wrap nor overflow (found by adversarial testing)
  c["exp"] = std::uint64_t(1) << 63 | 5;
  EXPECT_TRUE(check(rs256(c)));
  c["exp"] = std::int64_t(1) << 62;
  EXPECT_TRUE(check(rs256(c)));

  c = claims();
  c["nbf"] = now() + 120;
  r = check(rs256(c));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::NotYetValid);
  c["nbf"] = now() + 30;
  EXPECT_TRUE(check(rs256(c)));

  c = claims();
  c["iat"] = now() + 600;
  r = check(rs256(c));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::IssuedInFuture);

  c = claims();
  c.erase("exp");
  r = check(rs256(c));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::MissingClaim);
  c["exp"] = "tomorrow";
  EXPECT_FALSE(check(rs256(c)));
}

TEST_F(OidcVerify, ChecksTheAudience) {
  auto c = claims();
  c["aud"] = "another-app";
  auto r = check(rs256(c));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::Audience);
  EXPECT_NE(r.error().message.find("another-app"), std::string::npos);
  EXPECT_NE(r.error().message.find("gatehouse"), std::string::npos);
  c["aud"] = Json::array({"another-app", "gatehouse"});
  EXPECT_TRUE(check(rs256(c)));
  c["aud"] = "another-app gatehouse";  // one string is one audience (RFC 7519), not a scope list
  EXPECT_FALSE(check(rs256(c)));
  c.erase("aud");
  EXPECT_FALSE(check(rs256(c)));
  issuers_[0].audiences.clear();  // not checked when none is configured
  EXPECT_TRUE(check(rs256(c)));
}

TEST_F(OidcVerify, RefusesUnknownIssuersAndKeys) {
  auto c = claims();
  c["iss"] = "https://evil.example.com";
  auto r = check(rs256(c));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::UnknownIssuer);
  EXPECT_NE(r.error().message.find("evil.example.com"), std::string::npos);

  r = check(rs256(claims(), Json{{"alg", "RS256"}, {"kid", "rotated-away"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::UnknownKey);
  EXPECT_NE(r.error().message.find("rotated-away"), std::string::npos);

  // Signed by a key the issuer does not publish, under a kid it does.
  r = check(token(Json{{"alg", "RS256"}, {"kid", "rs"}}, claims(), "RS256", jose::testing::rsa_b()));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::BadSignature);

  // No keys fetched yet.
  lookup_ = [](const std::string&) { return std::shared_ptr<const jose::JwkSet>(); };
  r = check(rs256(claims()));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::KeysUnavailable);
}

TEST_F(OidcVerify, RefusesTamperedPayloads) {
  auto t = rs256(claims());
  auto first = t.find('.'), second = t.find('.', first + 1);
  auto c = claims();
  c["groups"] = Json::array({"dba"});
  std::string forged = t.substr(0, first + 1) + base64url_encode(c.dump()) + t.substr(second);
  auto r = check(forged);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::BadSignature);
}

TEST_F(OidcVerify, RefusesNoneAndSymmetricAlgorithms) {
  std::string none = base64url_encode(Json{{"alg", "none"}}.dump()) + "." + base64url_encode(claims().dump()) + ".";
  auto r = check(none);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().kind == TokenError::Kind::Algorithm || r.error().kind == TokenError::Kind::Malformed);
  none = base64url_encode(Json{{"alg", "NONE"}}.dump()) + "." + base64url_encode(claims().dump()) + ".c2ln";
  r = check(none);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::Algorithm);

  // HS256 "signed" with the issuer's public key as the HMAC secret: the classic confusion.
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, jose::testing::rsa_a());
  char* pem = nullptr;
  long len = BIO_get_mem_data(bio, &pem);
  std::string secret(pem, std::size_t(len));
  BIO_free(bio);
  std::string input = base64url_encode(Json{{"alg", "HS256"}, {"kid", "rs"}}.dump()) + "." +
                      base64url_encode(claims().dump());
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), int(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &mac_len);
  r = check(input + "." + base64url_encode(std::string(reinterpret_cast<char*>(mac), mac_len)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::Algorithm);
  EXPECT_NE(r.error().message.find("shared secret"), std::string::npos);

  // An RS256 header on an EC signature (algorithm/key confusion) does not verify.
  r = check(token(Json{{"alg", "RS256"}, {"kid", "ec"}}, claims(), "ES256", jose::testing::p256_a()));
  EXPECT_FALSE(r);
}

TEST_F(OidcVerify, AcceptsJwtAndAccessTokenTypesOnly) {
  for (const char* typ : {"JWT", "jwt", "at+jwt", "application/at+jwt"})
    EXPECT_TRUE(check(rs256(claims(), Json{{"alg", "RS256"}, {"kid", "rs"}, {"typ", typ}}))) << typ;
  auto r = check(rs256(claims(), Json{{"alg", "RS256"}, {"kid", "rs"}, {"typ", "logout+jwt"}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, TokenError::Kind::Malformed);
  r = check(rs256(claims(), Json{{"alg", "RS256"}, {"kid", "rs"}, {"crit", Json::array({"exp"})}}));
  EXPECT_FALSE(r);
}

TEST_F(OidcVerify, GarbageIsAMalformedTokenWithAMessage) {
  for (const std::string& junk : std::vector<std::string>{"", "hunter2", "a.b", "a.b.c", "a.b.c.d.e", std::string(20000, 'x')}) {
    auto r = check(junk);
    ASSERT_FALSE(r) << junk;
    EXPECT_FALSE(r.error().message.empty());
  }
}

// ---- claims mapping with real-shaped payloads -------------------------------------------------

IssuerConfig issuer(std::string url) {
  IssuerConfig c;
  c.issuer = std::move(url);
  return c;
}

TEST(OidcClaims, OktaAccessTokenForAPerson) {
  const char* okta = R"({"ver":1,"jti":"AT.x","iss":"https://acme.okta.com/oauth2/default","aud":"api://gatehouse",
    "iat":1700000000,"exp":1700003600,"cid":"0oa1cli","uid":"00u1alice","scp":["openid","email","groups"],
    "auth_time":1699999990,"sub":"alice@acme.com","groups":["Everyone","analysts"]})";
  auto id = map_claims(issuer("https://acme.okta.com/oauth2/default"), okta);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->subject, "alice@acme.com");
  EXPECT_EQ(id->groups, (std::vector<std::string>{"Everyone", "analysts"}));
  EXPECT_EQ(id->client_id, "0oa1cli");
  EXPECT_EQ(id->kind, Kind::Human);
}

TEST(OidcClaims, OktaClientCredentialsTokenIsAnAgent) {
  const char* okta = R"({"ver":1,"jti":"AT.y","iss":"https://acme.okta.com/oauth2/default","aud":"api://gatehouse",
    "iat":1700000000,"exp":1700003600,"cid":"0oa9etl","scp":["db.read"],"sub":"0oa9etl"})";
  auto id = map_claims(issuer("https://acme.okta.com/oauth2/default"), okta);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, Kind::Agent);
  EXPECT_EQ(id->subject, "0oa9etl");
}

TEST(OidcClaims, AzureAdUserAndAppTokens) {
  auto cfg = issuer("https://login.microsoftonline.com/tid/v2.0");
  cfg.groups_claims = {"groups", "roles"};
  const char* user = R"({"aud":"api://gatehouse","iss":"https://login.microsoftonline.com/tid/v2.0","iat":1700000000,
    "nbf":1700000000,"exp":1700003600,"azp":"cli-app-id","azpacr":"0","name":"Alice Smith",
    "oid":"11111111-2222","preferred_username":"alice@contoso.com","roles":["Db.Reader"],
    "groups":["6f1c-analysts"],"scp":"access_as_user","sub":"pairwise-sub","tid":"tid","ver":"2.0"})";
  auto id = map_claims(cfg, user);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->email, "alice@contoso.com");  // no email claim: preferred_username
  EXPECT_EQ(id->display_name, "Alice Smith");
  EXPECT_EQ(id->groups, (std::vector<std::string>{"6f1c-analysts", "Db.Reader"}));
  EXPECT_EQ(id->kind, Kind::Human);

  const char* app = R"({"aud":"api://gatehouse","iss":"https://login.microsoftonline.com/tid/v2.0","iat":1700000000,
    "exp":1700003600,"azp":"etl-app-id","azpacr":"1","idtyp":"app","oid":"sp-object-id","roles":["Db.Writer"],
    "sub":"sp-object-id","tid":"tid","ver":"2.0"})";
  id = map_claims(cfg, app);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, Kind::Agent);
  EXPECT_EQ(id->client_id, "etl-app-id");
  EXPECT_EQ(id->groups, std::vector<std::string>{"Db.Writer"});
}

TEST(OidcClaims, KeycloakRealmRolesAndServiceAccounts) {
  auto cfg = issuer("https://kc.example.com/realms/acme");
  cfg.groups_claims = {"realm_access.roles", "groups"};
  cfg.group_prefix = "kc:";
  const char* user = R"({"exp":1700003600,"iat":1700000000,"jti":"j","iss":"https://kc.example.com/realms/acme",
    "aud":"gatehouse","sub":"f:1234:bob","typ":"Bearer","azp":"gatehouse-cli","realm_access":{"roles":["dba",
    "offline_access"]},"scope":"openid email profile","email_verified":true,"name":"Bob Admin",
    "preferred_username":"bob","email":"bob@acme.com"})";
  auto id = map_claims(cfg, user);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->email, "bob@acme.com");
  EXPECT_EQ(id->groups, (std::vector<std::string>{"kc:dba", "kc:offline_access"}));
  EXPECT_EQ(id->kind, Kind::Human);

  const char* svc = R"({"exp":1700003600,"iat":1700000000,"iss":"https://kc.example.com/realms/acme",
    "aud":"gatehouse","sub":"5b7e-uuid","typ":"Bearer","azp":"etl","realm_access":{"roles":["etl"]},
    "clientId":"etl","preferred_username":"service-account-etl"})";
  id = map_claims(cfg, svc);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, Kind::Agent);
  EXPECT_EQ(id->groups, std::vector<std::string>{"kc:etl"});
}

TEST(OidcClaims, ConfiguredAgentRulesAndMissingSubject) {
  auto cfg = issuer("https://idp");
  cfg.agent_auto = false;
  cfg.agent_clients = {"robot"};
  auto id = map_claims(cfg, R"({"sub":"robot","client_id":"robot"})");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, Kind::Agent);
  id = map_claims(cfg, R"({"sub":"x","client_id":"x"})");  // auto off: sub == client_id is not enough
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, Kind::Human);
  cfg.agent_claim = "token_use.kind";
  cfg.agent_claim_values = {"machine"};
  id = map_claims(cfg, R"({"sub":"x","token_use":{"kind":"machine"}})");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->kind, Kind::Agent);
  // URL-shaped claim names (dots inside a key) are looked up whole.
  cfg.groups_claims = {"https://acme.com/groups"};
  id = map_claims(cfg, R"({"sub":"x","https://acme.com/groups":"a b"})");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->groups, (std::vector<std::string>{"a", "b"}));

  auto missing = map_claims(cfg, R"({"email":"x@y"})");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, TokenError::Kind::MissingClaim);
}

}  // namespace
}  // namespace gh::identity

namespace gh::identity {
namespace {

TEST(OidcIssuers, EachTokenIsCheckedWithItsOwnIssuersKeysAndRules) {
  IssuerConfig okta, kc;
  okta.issuer = "https://acme.okta.com";
  okta.audiences = {"api://gatehouse"};
  kc.issuer = "https://kc.example.com/realms/acme";
  kc.audiences = {"gatehouse"};
  kc.groups_claims = {"realm_access.roles"};
  auto set_of = [](EVP_PKEY* key, const char* kid) {
    auto s = jose::parse_jwks(
        jose::testing::Json{{"keys", jose::testing::Json::array({jose::testing::with_kid(jose::testing::public_jwk(key), kid)})}}
            .dump());
    return std::make_shared<const jose::JwkSet>(std::move(*s));
  };
  auto okta_keys = set_of(jose::testing::rsa_a(), "o1");
  auto kc_keys = set_of(jose::testing::p256_a(), "k1");
  KeyLookup keys = [&](const std::string& iss) {
    return iss == okta.issuer ? okta_keys : iss == kc.issuer ? kc_keys : nullptr;
  };
  const auto now = Clock::time_point(std::chrono::seconds(1'800'000'000));
  auto token = [](const jose::testing::Json& h, const jose::testing::Json& p, const char* alg, EVP_PKEY* k) {
    std::string in = base64url_encode(h.dump()) + "." + base64url_encode(p.dump());
    return in + "." + base64url_encode(jose::testing::sign(alg, k, in));
  };
  const jose::testing::Json okta_claims = {{"iss", okta.issuer}, {"aud", "api://gatehouse"}, {"sub", "00u1"},
                                           {"exp", 1'800'000'600}, {"groups", {"analysts"}}};
  const jose::testing::Json kc_claims = {{"iss", kc.issuer},  {"aud", "gatehouse"},
                                         {"sub", "f:1:bob"},  {"exp", 1'800'000'600},
                                         {"realm_access", {{"roles", {"dba"}}}}};
  auto a = verify_token(token({{"alg", "RS256"}, {"kid", "o1"}}, okta_claims, "RS256", jose::testing::rsa_a()),
                        {okta, kc}, keys, now);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->issuer, okta.issuer);
  EXPECT_EQ(a->identity.groups, std::vector<std::string>{"analysts"});
  auto b = verify_token(token({{"alg", "ES256"}, {"kid", "k1"}}, kc_claims, "ES256", jose::testing::p256_a()),
                        {okta, kc}, keys, now);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->identity.groups, std::vector<std::string>{"dba"});
  // A token of one issuer signed with the other issuer's key (same kid name or not) is refused,
  // and one issuer's audience does not open the other.
  auto c = verify_token(token({{"alg", "ES256"}, {"kid", "k1"}}, okta_claims, "ES256", jose::testing::p256_a()),
                        {okta, kc}, keys, now);
  EXPECT_FALSE(c);
  auto wrong_aud = kc_claims;
  wrong_aud["aud"] = "api://gatehouse";
  auto d = verify_token(token({{"alg", "ES256"}, {"kid", "k1"}}, wrong_aud, "ES256", jose::testing::p256_a()),
                        {okta, kc}, keys, now);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().kind, TokenError::Kind::Audience);
}


// Claims become the database's startup options, log lines and reviewers' screens: a control
// character in any of them refuses the token, whatever it is used for (proxy login, admin API).
TEST(OidcClaims, ControlCharactersInAnIdentityClaimRefuseTheToken) {
  for (const char* payload : {R"({"sub":"mallory","email":"bob@example.com\t-c x=y"})", R"({"sub":"mal\u0000lory"})",
                              R"({"sub":"m","groups":["ops\n-c gatehouse.identity_groups=dba"]})",
                              R"({"sub":"m","name":"\u001b[2J"})"}) {
    auto id = map_claims(issuer("https://idp.example.com"), payload);
    ASSERT_FALSE(id) << payload;
    EXPECT_EQ(id.error().kind, TokenError::Kind::BadClaim) << payload << ": " << id.error().message;
    EXPECT_NE(id.error().message.find("control characters"), std::string::npos);
  }
  EXPECT_TRUE(map_claims(issuer("https://idp.example.com"), R"({"sub":"m","groups":["cn=ops,ou=teams"]})"));
  // C1 controls and the bidirectional overrides and isolates read a name differently from what it is
  for (const char* payload : {R"({"sub":"mallory\u202ealice"})", R"({"sub":"m\u0085x"})", R"({"sub":"a\u2066b"})",
                              R"({"sub":"m","email":"x\u202d@example.com"})"}) {
    auto id = map_claims(issuer("https://idp.example.com"), payload);
    ASSERT_FALSE(id) << payload;
    EXPECT_EQ(id.error().kind, TokenError::Kind::BadClaim) << payload;
  }
  EXPECT_TRUE(map_claims(issuer("https://idp.example.com"), R"({"sub":"Jos\u00e9 \u00c5ngstr\u00f6m \u4e2d"})"));
}

// An address the IdP has not verified is not taken as the identity's email.
TEST(OidcClaims, AnUnverifiedEmailIsNotTaken) {
  auto id = map_claims(issuer("https://idp.example.com"), R"({"sub":"m","email":"bob@example.com","email_verified":false})");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->email, "");
  id = map_claims(issuer("https://idp.example.com"), R"({"sub":"m","email":"bob@example.com","email_verified":true})");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->email, "bob@example.com");
}

// Subjects are unique only within their issuer: an identity from the second or a later configured
// issuer is, for approvals and grants, "<issuer>#<subject>", never the first issuer's "alice".
TEST(OidcClaims, SubjectsOfLaterIssuersAreQualifiedForApprovalsAndGrants) {
  const char* token = R"({"iss":"https://other.example.com","sub":"alice","groups":["dba"]})";
  auto first = issuer("https://other.example.com");
  auto id = map_claims(first, token);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->principal(), "alice");
  auto later = first;
  later.qualify_subjects = true;
  id = map_claims(later, token);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->subject, "alice");  // what the database and the policy see
  EXPECT_EQ(id->principal(), "https://other.example.com#alice");
}

}  // namespace
}  // namespace gh::identity
