#include "admin/api_json.h"

#include <gtest/gtest.h>

namespace gh::admin {
namespace {

using nlohmann::json;

constexpr approvals::TimeUs kT0 = 1714564800'250000;  // 2024-05-01T12:00:00.250Z

approvals::Person person(std::string sub, std::string email, std::string kind = "human") {
  approvals::Person p;
  p.subject = std::move(sub);
  p.email = std::move(email);
  p.groups = {"dba"};
  p.kind = std::move(kind);
  return p;
}

TEST(AdminJson, TimesAreRfc3339Utc) {
  EXPECT_EQ(rfc3339(kT0), "2024-05-01T12:00:00.250Z");
  EXPECT_EQ(rfc3339(1), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(rfc3339(0), "");
}

TEST(AdminJson, GrantDurations) {
  EXPECT_EQ(parse_grant_duration(json("1h")).value(), 3600);
  EXPECT_EQ(parse_grant_duration(json("90m")).value(), 5400);
  EXPECT_EQ(parse_grant_duration(json("1h30m")).value(), 5400);
  EXPECT_EQ(parse_grant_duration(json("2d")).value(), 172800);
  EXPECT_EQ(parse_grant_duration(json("45s")).value(), 45);
  EXPECT_EQ(parse_grant_duration(json("600")).value(), 600);
  EXPECT_EQ(parse_grant_duration(json(900)).value(), 900);
  for (const json& bad : {json("1w"), json(""), json("h"), json("1h30"), json(0), json(-5), json("0m"), json(1.5),
                          json(true), json::array(), json("99999999999999h")})
    EXPECT_FALSE(parse_grant_duration(bad)) << bad.dump();
  EXPECT_EQ(format_duration(3600), "1h");
  EXPECT_EQ(format_duration(5400), "1h30m");
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(172800), "2d");
  EXPECT_EQ(format_duration(90061), "25h1m1s");
}

TEST(AdminJson, RequestHasEveryFieldVotesWithDisplayNamesAndTheConsoleLink) {
  approvals::Request r;
  r.id = "apr_abc";
  r.state = approvals::State::Approved;
  r.requester = person("alice", "alice@example.com");
  r.target = "prod";
  r.environment = "production";
  r.database = "app";
  r.statement = "DELETE FROM t WHERE id = $1";
  r.parameters = {std::string("42"), std::nullopt};
  r.fingerprint = "fp";
  r.match_key = "mk";
  r.rule = "deletes-need-review";
  r.reason = "deletes on prod need a second pair of eyes";
  r.justification = "ticket 7";
  r.reviewer_groups = {"dba"};
  r.approvals_required = 1;
  approvals::Vote v;
  v.reviewer = person("bob", "bob@example.com");
  v.approve = true;
  v.comment = "ok";
  v.time_us = kT0 + 1000000;
  v.break_glass = true;
  r.votes = {v};
  r.created_us = kT0;
  r.decided_us = kT0 + 1000000;
  r.rerun_until_us = kT0 + 3601000000;
  r.node = "n1";
  r.waiting = true;
  r.closed_reason = "";
  const auto j = request_json(r, "https://gh.example.com");
  EXPECT_EQ(j["id"], "apr_abc");
  EXPECT_EQ(j["kind"], "statement");
  EXPECT_EQ(j["state"], "approved");
  EXPECT_EQ(j["requester"]["subject"], "alice");
  EXPECT_EQ(j["requester"]["display_name"], "alice@example.com");
  EXPECT_EQ(j["parameters"], json::parse(R"(["42", null])"));
  EXPECT_EQ(j["created"], "2024-05-01T12:00:00.250Z");
  EXPECT_EQ(j["created_us"], kT0);
  EXPECT_EQ(j["decided"], "2024-05-01T12:00:01.250Z");
  EXPECT_EQ(j["rerun_until_us"], kT0 + 3601000000);
  EXPECT_EQ(j["votes"][0]["reviewer_display"], "bob@example.com");
  EXPECT_EQ(j["votes"][0]["decision"], "approve");
  EXPECT_EQ(j["votes"][0]["time"], "2024-05-01T12:00:01.250Z");
  EXPECT_EQ(j["votes"][0]["break_glass"], true);
  EXPECT_EQ(j["break_glass"], true);
  EXPECT_EQ(j["approvals_received"], 1);
  EXPECT_EQ(j["waiting"], true);
  EXPECT_EQ(j["console_url"], "https://gh.example.com/approvals/apr_abc");
  for (const char* key : {"environment", "database", "statement", "fingerprint", "match_key", "rule", "reason",
                          "justification", "reviewer_groups", "approvals_required", "node", "closed_reason"})
    EXPECT_TRUE(j.contains(key)) << key;
}

TEST(AdminJson, UnsetTimesAreNull) {
  approvals::Request r;
  r.id = "apr_x";
  r.created_us = kT0;
  const auto j = request_json(r, "http://127.0.0.1:9187");
  EXPECT_TRUE(j["decided"].is_null());
  EXPECT_TRUE(j["decided_us"].is_null());
  EXPECT_TRUE(j["rerun_until"].is_null());
  EXPECT_EQ(j["state"], "pending");
  EXPECT_EQ(j["break_glass"], false);
  EXPECT_EQ(j["votes"], json::array());
}

TEST(AdminJson, AccessRequestAndWhetherTheGrantIsActive) {
  approvals::AccessRequest a;
  a.id = "acc_x";
  a.state = approvals::State::Approved;
  a.requester = person("etl-agent", "", "agent");
  a.target = "prod";
  a.role = "read_write";
  a.reason = "backfill";
  a.duration_s = 5400;
  a.created_us = kT0;
  a.decided_us = kT0;
  a.expires_us = kT0 + 5400'000000;
  auto j = access_json(a, "http://h", kT0 + 1);
  EXPECT_EQ(j["kind"], "access");
  EXPECT_EQ(j["duration"], "1h30m");
  EXPECT_EQ(j["duration_s"], 5400);
  EXPECT_EQ(j["requester"]["kind"], "agent");
  EXPECT_EQ(j["requester"]["display_name"], "etl-agent");
  EXPECT_EQ(j["expires"], "2024-05-01T13:30:00.250Z");
  EXPECT_EQ(j["active"], true);
  EXPECT_TRUE(j["revoked"].is_null());
  EXPECT_EQ(j["console_url"], "http://h/approvals/acc_x");
  EXPECT_FALSE(grant_active(a, a.expires_us));  // expired at expires_us
  a.revoked_us = kT0 + 5;
  a.revoked_by = "sam";
  EXPECT_FALSE(grant_active(a, kT0 + 10));
  a.revoked_us = 0;
  a.state = approvals::State::Pending;
  EXPECT_FALSE(grant_active(a, kT0 + 10));
}

TEST(AdminJson, IdentityAndOwnership) {
  identity::Identity who;
  who.subject = "bob";
  who.email = "Bob@Example.com";
  who.groups = {"dba"};
  who.kind = identity::Kind::Human;
  who.issuer = "https://idp";
  const auto j = identity_json(who, Roles{"reviewer", "requester"});
  EXPECT_EQ(j["roles"], json::parse(R"(["requester", "reviewer"])"));
  EXPECT_EQ(j["kind"], "human");
  EXPECT_TRUE(j["token_expires"].is_null());
  const auto p = person_of(who);
  EXPECT_EQ(p.subject, "bob");
  EXPECT_EQ(p.kind, "human");
  EXPECT_TRUE(is_own(person("bob", ""), who));
  EXPECT_TRUE(is_own(person("other-sub", "bob@example.com"), who));  // same person, another issuer
  EXPECT_FALSE(is_own(person("alice", "alice@example.com"), who));
  identity::Identity agent;
  agent.subject = "etl-agent";
  agent.kind = identity::Kind::Agent;
  EXPECT_FALSE(is_own(person("x", ""), agent));  // no email: only the subject counts
}

}  // namespace
}  // namespace gh::admin
