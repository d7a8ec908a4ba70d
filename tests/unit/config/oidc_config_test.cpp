#include <gtest/gtest.h>

#include "config/config.h"

namespace gh::config {
namespace {

std::string with_oidc(const std::string& issuer_extra, const std::string& target_logins = "") {
  return "oidc:\n"
         "  allow_loopback_plaintext: true\n"
         "  on_token_expiry: end_session\n"
         "  expiry_grace: 30s\n"
         "  issuers:\n"
         "    - issuer: https://idp.example.com\n" +
         issuer_extra +
         "targets:\n"
         "  - name: app\n"
         "    backend: {host: 127.0.0.1, port: 5432, database: app}\n" +
         (target_logins.empty() ? "    login: {user: app, password: secret}\n" : target_logins);
}

TEST(OidcConfig, ReadsIssuersWithDefaultsAndClaimPaths) {
  auto c = parse(with_oidc("      audience: [gatehouse, db]\n"
                           "      leeway: 30s\n"
                           "      claims: {groups: [realm_access.roles, groups], group_prefix: 'kc:'}\n"
                           "      agents: {clients: [etl], claim: gty, values: client-credentials}\n"),
                 "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->oidc.issuers.size(), 1u);
  const auto& i = c->oidc.issuers[0];
  EXPECT_EQ(i.issuer, "https://idp.example.com");
  EXPECT_EQ(i.audiences, (std::vector<std::string>{"gatehouse", "db"}));
  EXPECT_EQ(i.leeway, std::chrono::seconds(30));
  EXPECT_EQ(i.groups_claims, (std::vector<std::string>{"realm_access.roles", "groups"}));
  EXPECT_EQ(i.group_prefix, "kc:");
  EXPECT_EQ(i.agent_clients, std::vector<std::string>{"etl"});
  EXPECT_EQ(i.agent_claim_values, std::vector<std::string>{"client-credentials"});
  EXPECT_EQ(i.subject_claims, std::vector<std::string>{"sub"});
  EXPECT_TRUE(c->oidc.allow_loopback_plaintext);
  EXPECT_EQ(c->oidc.expiry_grace, std::chrono::seconds(30));
}

TEST(OidcConfig, RefusesMissingAudienceInsecureUrlsAndUnknownAlgorithms) {
  auto c = parse(with_oidc(""), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("oidc.issuers[0].audience: missing"), std::string::npos) << c.error().message;

  c = parse("oidc:\n  issuers:\n    - {issuer: 'http://idp.example.com', audience: x}\n"
            "targets:\n  - {name: a, backend: {host: h}, login: {user: u, password: p}}\n",
            "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("must be https"), std::string::npos) << c.error().message;
  c = parse("oidc:\n  allow_loopback_plaintext: true\n  issuers:\n    - {issuer: 'http://127.0.0.1:9000', audience: x}\n"
            "targets:\n  - {name: a, backend: {host: h}, login: {user: u, password: p}}\n",
            "t.yaml");
  EXPECT_TRUE(c) << c.error().message;

  c = parse(with_oidc("      audience: x\n      algorithms: [RS256, HS256]\n"), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("algorithms[1]"), std::string::npos) << c.error().message;
}

TEST(OidcConfig, LoginsPerIdentityFirstMatchWins) {
  auto c = parse(with_oidc("      audience: x\n",
                           "    logins:\n"
                           "      - when: {groups: [dba]}\n"
                           "        user: app_admin\n"
                           "        password: a\n"
                           "        role: dba_role\n"
                           "      - when: {kinds: [agent]}\n"
                           "        user: app_etl\n"
                           "        password: e\n"
                           "      - when: {subjects: [carol@example.com]}\n"
                           "        user: app_carol\n"
                           "        password: c\n"),
                 "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  const auto& t = c->targets[0];
  identity::Identity dba;
  dba.groups = {"analysts", "dba"};
  ASSERT_NE(t.login_for(dba), nullptr);
  EXPECT_EQ(t.login_for(dba)->user, "app_admin");
  EXPECT_EQ(t.login_for(dba)->role, "dba_role");
  identity::Identity agent;
  agent.kind = identity::Kind::Agent;
  agent.groups = {"dba"};
  EXPECT_EQ(t.login_for(agent)->user, "app_admin");  // first match wins
  agent.groups.clear();
  EXPECT_EQ(t.login_for(agent)->user, "app_etl");
  identity::Identity carol;
  carol.subject = "00u3";
  carol.email = "carol@example.com";
  EXPECT_EQ(t.login_for(carol)->user, "app_carol");
  identity::Identity nobody;
  nobody.subject = "x";
  EXPECT_EQ(t.login_for(nobody), nullptr);
}

TEST(OidcConfig, LoginAfterLoginsIsTheFallback) {
  auto c = parse(with_oidc("      audience: x\n",
                           "    logins:\n"
                           "      - {when: {groups: [dba]}, user: admin, password: a}\n"
                           "    login: {user: readonly, password: r}\n"),
                 "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  identity::Identity someone;
  EXPECT_EQ(c->targets[0].login_for(someone)->user, "readonly");
  auto bad = parse(with_oidc("      audience: x\n", "    logins:\n      - {when: {kinds: [robot]}, user: u, password: p}\n"),
                   "t.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("kinds[0]"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace gh::config

namespace gh::config {
namespace {

TEST(OidcConfig, TokenLoginsWithoutAnyWayToUseThemAreAConfigError) {
  auto c = parse("oidc:\n  issuers:\n    - {issuer: 'https://idp.example.com', audience: x}\n"
                 "targets:\n  - {name: a, backend: {host: h}, login: {user: u, password: p}}\n",
                 "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("token logins need TLS"), std::string::npos) << c.error().message;
}

}  // namespace
}  // namespace gh::config

namespace gh::config {
namespace {

TEST(OidcConfig, SecondAndLaterIssuersQualifyTheirSubjects) {
  auto c = parse(with_oidc("      audience: x\n"
                           "    - {issuer: 'https://second.example.com', audience: x}\n"),
                 "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->oidc.issuers.size(), 2u);
  EXPECT_FALSE(c->oidc.issuers[0].qualify_subjects);
  EXPECT_TRUE(c->oidc.issuers[1].qualify_subjects);
}

}  // namespace
}  // namespace gh::config

namespace gh::config {
namespace {

std::string with_console(const std::string& console, bool issuers = true) {
  return std::string("admin:\n  console:\n") + console +
         (issuers ? "oidc:\n"
                    "  allow_loopback_plaintext: true\n"
                    "  issuers:\n"
                    "    - {issuer: https://idp.example.com, audience: gatehouse}\n"
                    "    - {issuer: https://other.example.com, audience: gatehouse}\n"
                  : "") +
         "targets:\n  - {name: a, backend: {host: h}, login: {user: u, password: p}}\n";
}

TEST(ConsoleConfig, DefaultsToTheFirstIssuerAPublicClientAndEightHours) {
  auto c = parse(with_console("    client_id: gh-console\n"), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  const auto& o = c->admin.console;
  EXPECT_EQ(o.client_id, "gh-console");
  EXPECT_EQ(o.client_secret, "");
  EXPECT_EQ(o.issuer, "https://idp.example.com");
  EXPECT_EQ(o.session_ttl, std::chrono::hours(8));
  EXPECT_EQ(o.scopes, (std::vector<std::string>{"openid", "email", "profile", "groups"}));

  ::setenv("GH_TEST_CONSOLE_SECRET", "s3cret", 1);
  c = parse(with_console("    client_id: gh-console\n    client_secret_env: GH_TEST_CONSOLE_SECRET\n"
                         "    issuer: https://other.example.com\n    session_ttl: 30m\n    scopes: [openid, roles]\n"),
            "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->admin.console.client_secret, "s3cret");
  EXPECT_EQ(c->admin.console.issuer, "https://other.example.com");
  EXPECT_EQ(c->admin.console.session_ttl, std::chrono::minutes(30));
}

TEST(ConsoleConfig, RefusesWhatCannotSignAnyoneIn) {
  const std::pair<std::string, std::string> cases[] = {
      {with_console("    issuer: https://idp.example.com\n"), "admin.console.client_id: missing"},
      {with_console("    client_id: c\n", false), "needs oidc.issuers"},
      {with_console("    client_id: c\n    issuer: https://evil.example.com\n"), "is not one of oidc.issuers"},
      {with_console("    client_id: c\n    session_ttl: 30s\n"), "between 1m and 7d"},
      {with_console("    client_id: c\n    scopes: [email]\n"), "must contain openid"},
      {with_console("    client_id: c\n    client_secret: a\n    client_secret_env: B\n"), "give only one"},
      {with_console("    client_id: c\n    cliend_secret: a\n"), "cliend_secret"},
  };
  for (const auto& [text, want] : cases) {
    auto c = parse(text, "t.yaml");
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.error().message.find(want), std::string::npos) << c.error().message;
  }
}

}  // namespace
}  // namespace gh::config
