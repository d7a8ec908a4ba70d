// Policy test case files: what parses, errors that name file:line: key, and what check_case
// reports for a case that does not hold.
#include <gtest/gtest.h>

#include <string>

#include "config/policy_cases.h"
#include "config/policy_config.h"
#include "policy/policy.h"

namespace gh::config {
namespace {

std::string error_of(const std::string& yaml, PolicyKeys keys = PolicyKeys::Refuse) {
  auto r = parse_policy_cases(yaml, "cases.yaml", keys);
  if (r) return "(parsed)";
  return r.error().message;
}

const char* const kOneCase =
    "cases:\n"
    "  - name: drop is blocked\n"
    "    identity: {subject: bob}\n"
    "    target: app\n"
    "    sql: DROP TABLE orders\n"
    "    expect: {action: deny, rule: guardrail.drop}\n";

TEST(PolicyCases, ParsesACase) {
  auto r = parse_policy_cases(kOneCase, "cases.yaml");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  const auto& c = (*r)[0];
  EXPECT_EQ(c.name, "drop is blocked");
  EXPECT_EQ(c.where, "cases.yaml:2");
  EXPECT_EQ(c.path, "cases[0]");
  EXPECT_EQ(c.identity.subject, "bob");
  EXPECT_EQ(c.identity.email, "bob@example.com");
  EXPECT_FALSE(c.groups_given);
  EXPECT_EQ(c.target, "app");
  EXPECT_EQ(c.target_where, "cases.yaml:4");
  ASSERT_TRUE(c.sql);
  EXPECT_EQ(*c.sql, "DROP TABLE orders");
  EXPECT_EQ(c.expect.action, policy::Action::Deny);
  EXPECT_EQ(c.expect.rule, "guardrail.drop");
  EXPECT_FALSE(c.expect.mask_tags);
}

TEST(PolicyCases, EmptyGroupsAreGiven) {
  auto r = parse_policy_cases(
      "cases:\n  - {identity: {subject: bob, groups: []}, target: app, sql: SELECT 1, expect: {action: allow}}\n",
      "cases.yaml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE((*r)[0].groups_given);
  EXPECT_TRUE((*r)[0].identity.groups.empty());
  EXPECT_EQ((*r)[0].name, "cases[0]");
}

TEST(PolicyCases, PolicyKeysAreRefusedInDeployedCaseFiles) {
  const std::string text = std::string("rules:\n  - {name: x, when: {statements: [drop]}, action: allow}\n") + kOneCase;
  const auto e = error_of(text);
  EXPECT_NE(e.find("cases.yaml:1: rules: a policy test file holds only `cases`"), std::string::npos) << e;
  EXPECT_NE(e.find("--config"), std::string::npos) << e;
  EXPECT_NE(error_of(std::string(kOneCase) + "targets: [{name: app, environment: development}]\n")
                .find("cases.yaml:7: targets: a policy test file holds only `cases`"),
            std::string::npos);
  EXPECT_EQ(error_of(text, PolicyKeys::Allow), "(parsed)");
}

TEST(PolicyCases, UnknownKeysNameTheirLine) {
  EXPECT_EQ(error_of(std::string(kOneCase) + "extra: 1\n"), "cases.yaml:7: extra: unknown key (expected cases)");
  EXPECT_NE(error_of("cases:\n  - name: a\n    identity: {subject: bob}\n    target: app\n    sql: SELECT 1\n"
                     "    expect: {action: allow}\n    expected: {action: deny}\n")
                .find("cases.yaml:7: cases[0].expected: unknown key (expected one of: name, identity"),
            std::string::npos);
  EXPECT_NE(error_of("cases:\n  - name: a\n    identity: {subject: bob, group: [dba]}\n    target: app\n"
                     "    sql: SELECT 1\n    expect: {action: allow}\n")
                .find("cases.yaml:3: cases[0].identity.group: unknown key"),
            std::string::npos);
  EXPECT_NE(error_of("cases:\n  - name: a\n    identity: {subject: bob}\n    target: app\n    sql: SELECT 1\n"
                     "    expect: {action: allow, rules: x}\n")
                .find("cases.yaml:6: cases[0].expect.rules: unknown key"),
            std::string::npos);
}

TEST(PolicyCases, FileShape) {
  EXPECT_EQ(error_of(""), "cases.yaml: (root): empty file: expected `cases:` with a list of cases");
  EXPECT_EQ(error_of("- a\n"), "cases.yaml:1: (root): expected a mapping with `cases:`");
  EXPECT_NE(error_of("foo: [1\n").find("cases.yaml:2: invalid YAML"), std::string::npos) << error_of("foo: [1\n");
  EXPECT_EQ(error_of("cases: []\n"), "cases.yaml:1: cases: must not be an empty list");
  EXPECT_EQ(error_of("cases: {a: 1}\n"), "cases.yaml:1: cases: expected a list of cases");
  EXPECT_EQ(error_of(std::string(kOneCase) + "cases: []\n"), "cases.yaml:7: cases: given twice; keep one");
}

TEST(PolicyCases, DeployedCasesNameWhoAndWhere) {
  EXPECT_EQ(error_of("cases:\n  - {target: app, sql: SELECT 1, expect: {action: allow}}\n"),
            "cases.yaml:2: cases[0].identity: missing (give {subject: NAME}; a static user's groups are used unless "
            "`groups` is given)");
  EXPECT_EQ(error_of("cases:\n  - {identity: {subject: bob}, sql: SELECT 1, expect: {action: allow}}\n"),
            "cases.yaml:2: cases[0].target: missing (a target name from the configuration)");
  EXPECT_NE(error_of("cases:\n  - {identity: {groups: [dba]}, target: app, sql: SELECT 1, expect: {action: allow}}\n")
                .find("cases[0].identity.subject: missing"),
            std::string::npos);
  // Golden tables keep their defaults (alice, target app).
  auto r = parse_policy_cases("cases:\n  - {sql: SELECT 1, expect: {action: allow}}\n", "g.yaml", PolicyKeys::Allow);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)[0].identity.subject, "alice");
  EXPECT_EQ((*r)[0].target, "app");
  EXPECT_EQ((*r)[0].database, "app");
  EXPECT_EQ((*r)[0].client_address, "10.0.0.1");
}

std::string case_with(const std::string& lines) {
  return "cases:\n  - name: a\n    identity: {subject: bob}\n    target: app\n" + lines;
}

TEST(PolicyCases, BadValues) {
  EXPECT_EQ(error_of(case_with("    sql: SELECT 1\n    expect: {action: block}\n")),
            "cases.yaml:6: cases[0].expect.action: unknown action \"block\" (expected one of: allow, mask, review, "
            "deny)");
  EXPECT_EQ(error_of(case_with("    sql: SELECT 1\n")),
            "cases.yaml:2: cases[0].expect: missing (at least {action: allow|mask|review|deny})");
  EXPECT_EQ(error_of(case_with("    sql: SELECT 1\n    expect: {rule: x}\n")),
            "cases.yaml:6: cases[0].expect.action: missing (allow, mask, review or deny)");
  EXPECT_EQ(error_of(case_with("    expect: {action: allow}\n")),
            "cases.yaml:2: cases[0]: no statement: give one of sql, statements, parse_error");
  EXPECT_EQ(error_of(case_with("    sql: SELECT 1\n    statements: [{kinds: [select]}]\n    expect: {action: allow}\n")),
            "cases.yaml:2: cases[0]: give only one of sql, statements, parse_error");
  EXPECT_EQ(error_of(case_with("    sql: ''\n    expect: {action: allow}\n")),
            "cases.yaml:5: cases[0].sql: must not be empty");
  EXPECT_EQ(error_of(case_with("    now: 2024-05-06 10:00\n    sql: SELECT 1\n    expect: {action: allow}\n")),
            "cases.yaml:5: cases[0].now: expected a UTC time such as 2024-05-06T10:00:00Z, got \"2024-05-06 10:00\"");
  EXPECT_NE(error_of(case_with("    now: 2024-02-30T10:00Z\n    sql: SELECT 1\n    expect: {action: allow}\n"))
                .find("cases[0].now: expected a UTC time"),
            std::string::npos);
  EXPECT_EQ(error_of(case_with("    statements: [{kinds: [selekt]}]\n    expect: {action: allow}\n")),
            "cases.yaml:5: cases[0].statements[0].kinds[0]: unknown statement kind \"selekt\" (the names of "
            "docs/policy.md, e.g. select, delete)");
  EXPECT_NE(error_of(case_with("    statements:\n      - kinds: [select]\n        relations: [{name: t, access: [write]}]\n"
                               "    expect: {action: allow}\n"))
                .find("cases.yaml:7: cases[0].statements[0].relations[0].access: unknown access \"write\""),
            std::string::npos);
  EXPECT_EQ(error_of(case_with("    statements: [{kinds: [select], opaque_code: yes}]\n    expect: {action: allow}\n")),
            "cases.yaml:5: cases[0].statements[0].opaque_code: expected true or false, got \"yes\"");
  EXPECT_EQ(error_of(case_with("    sql: SELECT 1\n    expect: {action: allow, would_have: [x]}\n")),
            "cases.yaml:6: cases[0].expect.would_have: expected \"rule:action\" entries, got \"x\"");
  EXPECT_EQ(error_of("cases:\n  - {identity: {subject: bob, kind: robot}, target: app, sql: SELECT 1, expect: {action: "
                     "allow}}\n"),
            "cases.yaml:2: cases[0].identity.kind: expected human or agent, got \"robot\"");
  EXPECT_EQ(error_of(std::string(kOneCase) + "  - name: drop is blocked\n    identity: {subject: bob}\n    target: app\n"
                                             "    sql: SELECT 1\n    expect: {action: allow}\n"),
            "cases.yaml:7: cases[1].name: \"drop is blocked\" names another case too; names must tell failures apart");
}

TEST(PolicyCases, CheckCaseReportsMismatches) {
  auto pol = parse_policy("targets: [{name: app, environment: production}]\n", "p.yaml");
  ASSERT_TRUE(pol) << pol.error().message;
  auto cases = parse_policy_cases(
      "cases:\n"
      "  - {name: ok, identity: {subject: bob}, target: app, sql: DROP TABLE t, expect: {action: deny, rule: "
      "guardrail.drop}}\n"
      "  - name: wrong\n"
      "    identity: {subject: bob}\n"
      "    target: app\n"
      "    sql: DELETE FROM orders\n"
      "    expect: {action: allow, rule: \"\", mask_tags: [pii], message_contains: [nope]}\n"
      "  - {name: hand-built, identity: {subject: bob}, target: app, statements: [{kinds: [select]}], expect: {action: "
      "allow, rule: \"\", matched_rules: []}}\n"
      "  - {name: unparsable, identity: {subject: bob}, target: app, parse_error: {message: syntax error}, expect: "
      "{action: deny, rule: policy.unknown_action}}\n",
      "cases.yaml");
  ASSERT_TRUE(cases) << cases.error().message;
  ASSERT_EQ(cases->size(), 4u);
  EXPECT_TRUE(check_case(**pol, (*cases)[0]).empty());
  const auto m = check_case(**pol, (*cases)[1]);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0], "action: expected allow, got deny (rule guardrail.unbounded_write)");
  EXPECT_EQ(m[1], "rule: expected \"\" (the target's default action), got \"guardrail.unbounded_write\"");
  EXPECT_EQ(m[2], "mask_tags: expected [pii], got []");
  EXPECT_EQ(m[3].rfind("message_contains: \"nope\" is not in the message \"", 0), 0u) << m[3];
  EXPECT_TRUE(check_case(**pol, (*cases)[2]).empty());
  EXPECT_TRUE(check_case(**pol, (*cases)[3]).empty());

  const auto out = run_case(**pol, (*cases)[1]);
  EXPECT_EQ(out.decision.rule, "guardrail.unbounded_write");
  ASSERT_EQ(out.analysis.statements.size(), 1u);
}

}  // namespace
}  // namespace gh::config
