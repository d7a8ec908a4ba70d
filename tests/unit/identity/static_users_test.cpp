#include "identity/static_users.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.h"

namespace gh::identity {
namespace {

using State = AuthStep::State;

struct AuthMessage {
  std::uint32_t code = 0;
  std::string payload;
};

// Splits Authentication ('R') messages; fails the test on anything else.
std::vector<AuthMessage> split(std::string_view bytes) {
  std::vector<AuthMessage> out;
  while (!bytes.empty()) {
    EXPECT_GE(bytes.size(), 9u);
    if (bytes.size() < 9) break;
    EXPECT_EQ(bytes[0], 'R');
    const auto len = load_be32(bytes.data() + 1);
    EXPECT_GE(len, 8u);
    EXPECT_LE(len + 1, bytes.size());
    if (len < 8 || len + 1 > bytes.size()) break;
    out.push_back({load_be32(bytes.data() + 5), std::string(bytes.substr(9, len - 8))});
    bytes.remove_prefix(len + 1);
  }
  return out;
}

std::string initial_response(std::string_view mechanism, std::string_view data) {
  std::string body(mechanism);
  body.push_back('\0');
  append_be32(body, std::uint32_t(data.size()));
  body.append(data);
  return body;
}

StaticUserAuthenticator make_auth() {
  std::vector<StaticUser> users;
  users.push_back({"alice", ScramVerifier::make("wonderland", 4096), {"dba", "dev"}});
  users.push_back({"bob", ScramVerifier::make("builder", 4096), {}});
  return StaticUserAuthenticator(std::move(users));
}

AuthContext ctx(std::string user) {
  AuthContext c;
  c.user = std::move(user);
  c.database = "app";
  return c;
}

// Runs a complete exchange with ScramClient as the client; returns the last step.
AuthStep login(const Authenticator& auth, const std::string& user, const std::string& password) {
  auto ex = auth.begin(ctx(user));
  auto s = ex->start();
  EXPECT_EQ(s.state, State::Continue);
  auto msgs = split(s.to_client);
  EXPECT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs.at(0).code, 10u);
  EXPECT_EQ(msgs.at(0).payload, std::string("SCRAM-SHA-256\0\0", 15));

  ScramClient client(password);
  s = ex->step(initial_response("SCRAM-SHA-256", client.client_first()));
  if (s.state != State::Continue) return s;
  msgs = split(s.to_client);
  EXPECT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs.at(0).code, 11u);
  auto final_msg = client.handle_server_first(msgs.at(0).payload);
  EXPECT_TRUE(final_msg);
  if (!final_msg) return s;

  s = ex->step(*final_msg);
  if (s.state == State::Done) {
    msgs = split(s.to_client);
    EXPECT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs.at(0).code, 12u);
    EXPECT_TRUE(client.handle_server_final(msgs.at(0).payload));
    EXPECT_EQ(msgs.at(1).code, 0u);
    EXPECT_EQ(msgs.at(1).payload, "");
  }
  return s;
}

TEST(StaticUserAuthenticator, FullExchangeSucceeds) {
  const auto auth = make_auth();
  const auto s = login(auth, "alice", "wonderland");
  ASSERT_EQ(s.state, State::Done) << s.error << " / " << s.log_reason;
  EXPECT_EQ(s.identity.subject, "alice");
  EXPECT_EQ(s.identity.groups, (std::vector<std::string>{"dba", "dev"}));
  EXPECT_EQ(s.identity.kind, Kind::Human);
  EXPECT_EQ(s.identity.method, "scram-sha-256");

  EXPECT_EQ(login(auth, "bob", "builder").state, State::Done);
}

TEST(StaticUserAuthenticator, WrongPasswordFails) {
  const auto auth = make_auth();
  const auto s = login(auth, "alice", "looking-glass");
  ASSERT_EQ(s.state, State::Failed);
  EXPECT_EQ(s.sqlstate, "28P01");
  EXPECT_EQ(s.error, "password authentication failed for user \"alice\"");
  EXPECT_EQ(s.log_reason, "wrong password");
  EXPECT_TRUE(s.to_client.empty());
}

TEST(StaticUserAuthenticator, UnknownUserLooksLikeWrongPassword) {
  const auto auth = make_auth();
  const auto unknown = login(auth, "mallory", "wonderland");
  const auto wrong = login(auth, "alice", "nope");
  ASSERT_EQ(unknown.state, State::Failed);
  EXPECT_EQ(unknown.sqlstate, wrong.sqlstate);
  EXPECT_EQ(unknown.error, "password authentication failed for user \"mallory\"");
  EXPECT_EQ(unknown.to_client, wrong.to_client);
  EXPECT_EQ(unknown.log_reason, "unknown user");
  EXPECT_EQ(wrong.log_reason, "wrong password");
}

std::string server_first_for(const Authenticator& auth, const std::string& user) {
  auto ex = auth.begin(ctx(user));
  ex->start();
  ScramClient client("x");
  auto s = ex->step(initial_response("SCRAM-SHA-256", client.client_first()));
  EXPECT_EQ(s.state, State::Continue);
  auto msgs = split(s.to_client);
  return msgs.empty() ? std::string() : msgs[0].payload;
}

std::string salt_of(const std::string& server_first) {
  const auto s = server_first.find(",s=");
  const auto i = server_first.find(",i=");
  return server_first.substr(s + 3, i - s - 3);
}

TEST(StaticUserAuthenticator, UnknownUserGetsStableSaltAndSameShape) {
  const auto auth = make_auth();
  const auto a = server_first_for(auth, "mallory");
  const auto b = server_first_for(auth, "mallory");
  const auto other = server_first_for(auth, "trent");
  const auto real = server_first_for(auth, "alice");
  EXPECT_EQ(salt_of(a), salt_of(b));  // deterministic per name, like a real user
  EXPECT_NE(salt_of(a), salt_of(other));
  EXPECT_EQ(salt_of(a).size(), salt_of(real).size());
  EXPECT_EQ(a.substr(a.find(",i=")), real.substr(real.find(",i=")));
  EXPECT_EQ(salt_of(real), salt_of(server_first_for(auth, "alice")));
}

TEST(StaticUserAuthenticator, NoInitialResponse) {
  const auto auth = make_auth();
  auto ex = auth.begin(ctx("alice"));
  ex->start();
  std::string body("SCRAM-SHA-256\0", 14);
  append_be32(body, 0xffffffffu);  // -1: no initial response
  auto s = ex->step(body);
  ASSERT_EQ(s.state, State::Continue);
  auto msgs = split(s.to_client);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].code, 11u);
  EXPECT_EQ(msgs[0].payload, "");

  ScramClient client("wonderland");
  s = ex->step(client.client_first());
  ASSERT_EQ(s.state, State::Continue);
  msgs = split(s.to_client);
  auto final_msg = client.handle_server_first(msgs.at(0).payload);
  ASSERT_TRUE(final_msg);
  s = ex->step(*final_msg);
  EXPECT_EQ(s.state, State::Done);
}

TEST(StaticUserAuthenticator, MalformedInitialResponseFails) {
  const auto auth = make_auth();
  const std::string first = "n,,n=,r=abcdef";
  std::vector<std::string> bad = {
      "",
      "SCRAM-SHA-256",                                 // no terminator
      std::string("SCRAM-SHA-256\0", 14),              // no length
      std::string("SCRAM-SHA-256\0\0\0", 16),          // short length
      initial_response("SCRAM-SHA-256-PLUS", first),   // mechanism we did not offer
      initial_response("SCRAM-SHA-1", first),
      initial_response("SCRAM-SHA-256", first) + "x",  // length mismatch
      initial_response("SCRAM-SHA-256", "garbage"),    // bad SCRAM
      initial_response("SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc"),
  };
  {
    std::string body("SCRAM-SHA-256\0", 14);
    append_be32(body, 100);  // claims more than present
    body += first;
    bad.push_back(body);
    std::string neg("SCRAM-SHA-256\0", 14);
    append_be32(neg, 0xfffffffeu);  // -2
    bad.push_back(neg);
    std::string minus_one_with_data("SCRAM-SHA-256\0", 14);
    append_be32(minus_one_with_data, 0xffffffffu);
    minus_one_with_data += first;
    bad.push_back(minus_one_with_data);
  }
  for (const auto& body : bad) {
    for (const char* user : {"alice", "mallory"}) {
      auto ex = auth.begin(ctx(user));
      ex->start();
      auto s = ex->step(body);
      EXPECT_EQ(s.state, State::Failed) << body;
      EXPECT_EQ(s.sqlstate, "08P01") << body;
      EXPECT_FALSE(s.error.empty());
      // A failed exchange stays failed.
      EXPECT_EQ(ex->step(initial_response("SCRAM-SHA-256", first)).state, State::Failed);
    }
  }
}

TEST(StaticUserAuthenticator, MalformedClientFinalFails) {
  const auto auth = make_auth();
  auto ex = auth.begin(ctx("alice"));
  ex->start();
  auto s = ex->step(initial_response("SCRAM-SHA-256", "n,,n=,r=abcdef"));
  ASSERT_EQ(s.state, State::Continue);
  s = ex->step("c=biws,r=wrong,p=AAAA");
  EXPECT_EQ(s.state, State::Failed);
  EXPECT_EQ(s.sqlstate, "08P01");
}

TEST(StaticUserAuthenticator, OutOfOrderMessagesFail) {
  const auto auth = make_auth();
  {
    auto ex = auth.begin(ctx("alice"));
    auto s = ex->step(initial_response("SCRAM-SHA-256", "n,,n=,r=abc"));  // before start
    EXPECT_EQ(s.state, State::Failed);
    EXPECT_EQ(s.sqlstate, "08P01");
  }
  {
    auto ex = auth.begin(ctx("alice"));
    ex->start();
    EXPECT_EQ(ex->start().state, State::Failed);
  }
  {
    const auto done = login(auth, "alice", "wonderland");
    ASSERT_EQ(done.state, State::Done);
  }
  {
    auto ex = auth.begin(ctx("alice"));
    ex->start();
    ScramClient client("wonderland");
    auto s = ex->step(initial_response("SCRAM-SHA-256", client.client_first()));
    auto final_msg = client.handle_server_first(split(s.to_client).at(0).payload);
    ASSERT_TRUE(final_msg);
    ASSERT_EQ(ex->step(*final_msg).state, State::Done);
    EXPECT_EQ(ex->step(*final_msg).state, State::Failed);  // nothing after Done
  }
}

}  // namespace
}  // namespace gh::identity
