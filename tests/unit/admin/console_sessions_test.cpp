#include "admin/console_sessions.h"

#include <gtest/gtest.h>

#include <set>

namespace gh::admin {
namespace {

using namespace std::chrono_literals;
using Clock = ConsoleSessions::Clock;

TEST(ConsolePkce, ChallengeIsRfc7636AppendixB) {
  EXPECT_EQ(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

TEST(ConsoleCookies, ValueByNameAmongOthers) {
  EXPECT_EQ(cookie_value("a=1; gh_session=abc; b=2", "gh_session"), "abc");
  EXPECT_EQ(cookie_value("gh_session=abc", "gh_session"), "abc");
  EXPECT_EQ(cookie_value("gh_session=\"q\"", "gh_session"), "q");
  EXPECT_EQ(cookie_value("xgh_session=abc; gh_sessionx=1", "gh_session"), "");
  EXPECT_EQ(cookie_value("", "gh_session"), "");
  EXPECT_EQ(cookie_value(";;  gh_login=z ;", "gh_login"), "z");
}

TEST(ConsoleTokens, RandomAndComparedWhole) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto t = random_token();
    EXPECT_EQ(t.size(), 43u);
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_TRUE(ConsoleSessions::same_token("abc", "abc"));
  EXPECT_FALSE(ConsoleSessions::same_token("abc", "abd"));
  EXPECT_FALSE(ConsoleSessions::same_token("abc", "ab"));
  EXPECT_FALSE(ConsoleSessions::same_token("", ""));  // an empty token never matches
}

TEST(ConsoleSessions, ALoginServesOneCallbackWithinItsTime) {
  ConsoleSessions s;
  const auto t0 = Clock::now();
  auto [id, login] = s.begin_login("#/sessions", t0);
  EXPECT_NE(login.state, login.nonce);
  EXPECT_NE(login.verifier, login.state);
  auto taken = s.take_login(id, t0 + 1s);
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->state, login.state);
  EXPECT_EQ(taken->next, "#/sessions");
  EXPECT_FALSE(s.take_login(id, t0 + 2s));  // spent

  auto [late, l2] = s.begin_login("", t0);
  EXPECT_FALSE(s.take_login(late, t0 + 11min));  // older than 10 minutes
  EXPECT_FALSE(s.take_login("nonsense", t0));
}

TEST(ConsoleSessions, SessionsExpireAndEnd) {
  ConsoleSessions s;
  const auto t0 = Clock::now();
  identity::Identity bob;
  bob.subject = "bob";
  const auto id = s.create(bob, t0, 3600s);
  auto found = s.find(id, t0 + 10s);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->who.subject, "bob");
  EXPECT_EQ(found->csrf.size(), 43u);
  EXPECT_FALSE(s.find(id, t0 + 3601s));  // expired (and forgotten)
  EXPECT_FALSE(s.find(id, t0 + 10s));
  const auto id2 = s.create(bob, t0, 3600s);
  s.end(id2);
  EXPECT_FALSE(s.find(id2, t0));
}

TEST(ConsoleSessions, BoundedMemoryUnderAFloodOfSignIns) {
  ConsoleSessions s(8);
  const auto t0 = Clock::now();
  auto [first, l] = s.begin_login("", t0);
  for (int i = 0; i < 100; ++i) (void)s.begin_login("", t0 + std::chrono::seconds(i + 1));
  EXPECT_FALSE(s.take_login(first, t0 + 200s));  // the oldest gave way
  identity::Identity who;
  for (int i = 0; i < 20; ++i) (void)s.create(who, t0, 3600s);
  EXPECT_LE(s.size(), 8u);
}

}  // namespace
}  // namespace gh::admin
