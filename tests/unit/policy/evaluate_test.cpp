// Outcomes: precedence, defaults, unknowns, audit_only, and what a Decision says.
#include <gtest/gtest.h>

#include "policy_test_util.h"
#include "sql/analyzer.h"

namespace gh::policy::test {
namespace {

const sql::Statement kSelect = Stmt(K::Select).rel("public.orders", sql::kRead, {"id"});
const sql::Statement kDeleteAll = Stmt(K::Delete).rel("public.orders", sql::kDelete).write(K::Delete, "public.orders", false);

TEST(Evaluate, ActionsAreOrderedByRestrictiveness) {
  EXPECT_LT(Action::Allow, Action::Mask);
  EXPECT_LT(Action::Mask, Action::Review);
  EXPECT_LT(Action::Review, Action::Deny);
  EXPECT_EQ(action_name(Action::Review), "review");
  EXPECT_EQ(action_from_name("mask"), Action::Mask);
  EXPECT_FALSE(action_from_name("block"));
}

TEST(Evaluate, MostRestrictiveWinsWhateverTheOrder) {
  auto p = load(
      "rules:\n"
      "  - {name: a-allow, action: allow}\n"
      "  - {name: b-mask, action: mask}\n"
      "  - {name: c-deny, when: {statements: delete}, action: deny}\n"
      "  - {name: d-review, action: review}\n");
  auto d = Ask{}(*p, kSelect);
  EXPECT_EQ(d.action, Action::Review);
  EXPECT_EQ(d.rule, "d-review");
  EXPECT_EQ(d.matched_rules, (std::vector<std::string>{"a-allow", "b-mask", "d-review"}));
  d = Ask{}(*p, kDeleteAll);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, "c-deny");
}

TEST(Evaluate, TheLoginRoleCannotBeChangedWhateverTheRulesSay) {
  // psql's \password through the proxy asks for the login's password: changing it locked every
  // user of the target out (found by adversarial testing).
  auto p = load("rules:\n  - {name: all-ok, action: allow}\n");
  Ask ask;
  ask.login_user = "gh_login";
  for (const char* sql : {"ALTER USER gh_login PASSWORD 'x'", "ALTER ROLE CURRENT_USER SET search_path = evil",
                          "ALTER ROLE session_user NOLOGIN", "DROP ROLE IF EXISTS other, gh_login",
                          "ALTER ROLE gh_login RENAME TO old", "ALTER ROLE ALL SET work_mem = '1MB'",
                          "SELECT 1; ALTER ROLE gh_login VALID UNTIL 'yesterday'"}) {
    const auto a = sql::analyze_uncached(sql);
    const auto d = ask(*p, a);
    EXPECT_EQ(d.action, Action::Deny) << sql;
    EXPECT_EQ(d.rule, "gatehouse.login_role") << sql;
    EXPECT_NE(d.message.find("gh_login"), std::string::npos) << d.message;
  }
  for (const char* sql : {"ALTER ROLE other PASSWORD 'x'", "ALTER ROLE \"GH_LOGIN\" NOLOGIN", "DROP ROLE other",
                          "CREATE ROLE gh_login2", "GRANT other TO gh_login", "SELECT 'ALTER ROLE gh_login'"}) {
    const auto a = sql::analyze_uncached(sql);
    EXPECT_EQ(ask(*p, a).action, Action::Allow) << sql;
  }
  // Not applied when the login is not known (policy tests, explain without a login).
  EXPECT_EQ(Ask{}(*p, sql::analyze_uncached("ALTER USER gh_login PASSWORD 'x'")).action, Action::Allow);
}

TEST(Evaluate, TiesGoToTheFirstRule) {
  auto p = load("rules:\n  - {name: first, action: deny}\n  - {name: second, action: deny}\n");
  EXPECT_EQ(Ask{}(*p, kSelect).rule, "first");
}

TEST(Evaluate, DefaultActionWhenNothingMatches) {
  auto p = load("rules:\n  - {name: r, when: {statements: drop}, action: deny}\n");
  auto d = Ask{}(*p, kSelect);
  EXPECT_EQ(d.action, Action::Allow);
  EXPECT_EQ(d.rule, "");
  EXPECT_TRUE(d.matched_rules.empty());
  EXPECT_NE(d.reason.find("no rule matched"), std::string::npos);
}

TEST(Evaluate, DefaultDenyWithAllowList) {
  auto p = load(
      "policy: {default_action: deny}\n"
      "rules:\n"
      "  - {name: reads-ok, when: {statements: read}, action: allow}\n");
  EXPECT_EQ(Ask{}(*p, kSelect).action, Action::Allow);
  EXPECT_EQ(Ask{}(*p, kSelect).rule, "reads-ok");
  auto d = Ask{}(*p, kDeleteAll);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, "");
  EXPECT_EQ(d.message, "Denied: no rule allows DELETE on public.orders on target \"app\", whose default action is deny.");
  EXPECT_FALSE(d.hint.empty());
}

TEST(Evaluate, TargetDefaultOverridesPolicyDefault) {
  auto p = load(
      "policy: {default_action: deny}\n"
      "targets:\n"
      "  - {name: sandbox, policy: {default_action: allow}}\n"
      "  - {name: vault, policy: {default_action: review}}\n");
  Ask ask;
  EXPECT_EQ(ask(*p, kSelect).action, Action::Deny);  // "app" is not configured: policy-wide default
  ask.target = "sandbox";
  EXPECT_EQ(ask(*p, kSelect).action, Action::Allow);
  ask.target = "vault";
  const auto d = ask(*p, kSelect);
  EXPECT_EQ(d.action, Action::Review);
  EXPECT_NE(d.hint.find("approve"), std::string::npos);
  EXPECT_EQ(p->default_action("vault"), Action::Review);
  EXPECT_EQ(p->default_action("nope"), Action::Deny);
}

TEST(Evaluate, EveryStatementIsJudged) {
  auto p = load(
      "policy: {default_action: deny}\n"
      "rules:\n"
      "  - {name: reads-ok, when: {statements: read}, action: allow}\n");
  // SELECT ...; DELETE ...: the DELETE matches no allow rule, so the whole text is denied.
  const auto a = analysis({kSelect, kDeleteAll});
  const auto d = Ask{}(*p, a);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.statement, 1);
  EXPECT_NE(d.reason.find("statement 2 (DELETE on public.orders)"), std::string::npos) << d.reason;
}

TEST(Evaluate, AllowRuleDoesNotBeatAMoreRestrictiveRule) {
  auto p = load(
      "rules:\n"
      "  - {name: dba-anything, when: {groups: dba}, action: allow}\n"
      "  - {name: no-delete, when: {statements: delete}, action: deny}\n");
  Ask dba;
  dba.who.groups = {"dba"};
  EXPECT_EQ(dba(*p, kDeleteAll).action, Action::Deny);
}

TEST(Evaluate, ParseErrorGetsTheUnknownAction) {
  auto deny = load("rules: []\n");
  const auto bad = parse_error("syntax error at or near \"FORM\"", 10);
  auto d = Ask{}(*deny, bad);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, "policy.unknown_action");
  EXPECT_NE(d.reason.find("syntax error at or near \"FORM\" at character 10"), std::string::npos) << d.reason;
  EXPECT_NE(d.message.find("syntax error at or near \"FORM\""), std::string::npos) << d.message;
  EXPECT_FALSE(d.hint.empty());
  EXPECT_EQ(d.sqlstate, "42601");  // a syntax error to the client, as PostgreSQL says it
  EXPECT_EQ(Ask{}(*deny, Stmt(K::Unknown)).sqlstate, "");  // parsed but unclassified: 42501

  auto review = load("policy: {unknown_action: review}\n");
  d = Ask{}(*review, bad);
  EXPECT_EQ(d.action, Action::Review);
  EXPECT_NE(d.message.find("held for review"), std::string::npos) << d.message;
}

TEST(Evaluate, UnknownIsNeverAllowedEvenByDefaultAllow) {
  auto p = load("policy: {default_action: allow}\nrules:\n  - {name: all-ok, action: allow}\n");
  EXPECT_EQ(Ask{}(*p, Stmt(K::Unknown)).action, Action::Deny);
  EXPECT_EQ(Ask{}(*p, Stmt(K::Unknown)).rule, "policy.unknown_action");
  Request r;
  r.target = "app";
  EXPECT_EQ(p->evaluate(r).action, Action::Deny);  // no analysis at all
}

TEST(Evaluate, UnknownReviewLosesToADeny) {
  auto p = load("policy: {unknown_action: review}\nrules:\n  - {name: no-agents, when: {identity_kind: agent}, action: deny}\n");
  Ask agent;
  agent.who.kind = identity::Kind::Agent;
  const auto d = agent(*p, analysis({Stmt(K::Unknown)}));
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, "no-agents");
}

TEST(Evaluate, EmptyQueryIsAllowed) {
  auto p = load("policy: {default_action: deny}\n");
  const auto d = Ask{}(*p, analysis({}));
  EXPECT_EQ(d.action, Action::Allow);
  EXPECT_EQ(d.statement, -1);
}

TEST(Evaluate, AuditOnlyNeverChangesTheOutcome) {
  auto p = load(
      "rules:\n"
      "  - {name: try-deny-deletes, when: {statements: delete}, action: deny, audit_only: true}\n"
      "  - {name: try-review, action: review, audit_only: true}\n");
  auto d = Ask{}(*p, kDeleteAll);
  EXPECT_EQ(d.action, Action::Allow);
  EXPECT_EQ(d.rule, "");
  EXPECT_TRUE(d.matched_rules.empty());
  ASSERT_EQ(d.would_have.size(), 2u);
  EXPECT_EQ(d.would_have[0].rule, "try-deny-deletes");
  EXPECT_EQ(d.would_have[0].action, Action::Deny);
  EXPECT_EQ(d.would_have[0].reason, "DELETE on public.orders: statements: delete");
  EXPECT_EQ(d.would_have[1].rule, "try-review");
  d = Ask{}(*p, kSelect);
  ASSERT_EQ(d.would_have.size(), 1u);
  EXPECT_EQ(d.would_have[0].rule, "try-review");
}

TEST(Evaluate, AuditOnlyListedOnceAcrossStatements) {
  auto p = load("rules:\n  - {name: watch, action: deny, audit_only: true}\n");
  const auto d = Ask{}(*p, analysis({kSelect, kSelect}));
  ASSERT_EQ(d.would_have.size(), 1u);
  EXPECT_NE(d.would_have[0].reason.find("statement 1"), std::string::npos);
}

TEST(Evaluate, MessagesNameTheRuleAndEndWithAPeriod) {
  auto p = load(
      "rules:\n"
      "  - name: no-deletes\n"
      "    when: {statements: delete}\n"
      "    action: deny\n"
      "    message: Deleting orders is not allowed\n"
      "    hint: Cancel the order in the admin tool instead.\n"
      "  - {name: generated, when: {statements: insert}, action: deny}\n");
  auto d = Ask{}(*p, kDeleteAll);
  EXPECT_EQ(d.message, "Denied by rule \"no-deletes\": Deleting orders is not allowed.");
  EXPECT_EQ(d.hint, "Cancel the order in the admin tool instead.");
  d = Ask{}(*p, Stmt(K::Insert).rel("public.orders", sql::kInsert));
  EXPECT_EQ(d.message, "Denied by rule \"generated\": INSERT on public.orders matches this rule (statements: insert).");
  EXPECT_EQ(d.hint, "If you need this, ask a policy owner to change rule \"generated\".");
}

TEST(Evaluate, ReviewCarriesReviewers) {
  auto p = load(
      "rules:\n"
      "  - name: review-unbounded\n"
      "    when: {statements: [update, delete], without_where: true}\n"
      "    action: review\n"
      "    reviewers: {groups: [dba, sre], approvals: 2}\n");
  const auto d = Ask{}(*p, kDeleteAll);
  EXPECT_EQ(d.action, Action::Review);
  EXPECT_EQ(d.reviewers.groups, (std::vector<std::string>{"dba", "sre"}));
  EXPECT_EQ(d.reviewers.approvals, 2);
  EXPECT_EQ(d.message,
            "Held for review by rule \"review-unbounded\": DELETE on public.orders matches this rule (statements: "
            "delete; without_where: DELETE public.orders).");
  EXPECT_EQ(d.hint, "Ask a reviewer in dba or sre to approve the request; it runs once 2 approvals are given.");
}

const std::string kClassification =
    "classification:\n"
    "  - {columns: [\"public.customers.email\"], tags: [pii, email], sensitivity: high}\n"
    "  - {columns: [\"billing.cards.number\"], tags: [pci], sensitivity: critical}\n";

TEST(Evaluate, MaskCarriesTagsAndStrategy) {
  auto p = load(kClassification +
                "rules:\n"
                "  - {name: mask-pii, when: {not_groups: privacy, tags: pii}, action: mask}\n"
                "  - {name: hash-cards, when: {tags: pci}, action: mask, mask: {tags: [pci], strategy: hash}}\n"
                "  - {name: mask-touched, when: {identity_kind: agent}, action: mask, mask: {strategy: partial}}\n");
  const sql::Statement both = Stmt(K::Select)
                                  .rel("public.customers", sql::kRead, {"email", "name"})
                                  .rel("billing.cards", sql::kRead, {"number"});
  auto d = Ask{}(*p, both);
  EXPECT_EQ(d.action, Action::Mask);
  EXPECT_EQ(d.rule, "mask-pii");
  ASSERT_EQ(d.masks.size(), 2u);
  EXPECT_EQ(d.masks[0].rule, "mask-pii");
  EXPECT_EQ(d.masks[0].tags, (std::vector<std::string>{"pii"}));
  EXPECT_EQ(d.masks[0].strategy, "redact");
  EXPECT_EQ(d.masks[1].tags, (std::vector<std::string>{"pci"}));
  EXPECT_EQ(d.masks[1].strategy, "hash");
  EXPECT_EQ(d.mask_tags, (std::vector<std::string>{"pii", "pci"}));
  EXPECT_NE(d.hint.find("pii, pci"), std::string::npos) << d.hint;

  Ask privacy_agent;
  privacy_agent.who.groups = {"privacy"};
  privacy_agent.who.kind = identity::Kind::Agent;
  d = privacy_agent(*p, Stmt(K::Select).rel("public.customers", sql::kRead, {"email"}));
  EXPECT_EQ(d.action, Action::Mask);
  EXPECT_EQ(d.rule, "mask-touched");
  ASSERT_EQ(d.masks.size(), 1u);
  EXPECT_EQ(d.masks[0].tags, (std::vector<std::string>{"pii", "email"}));  // every tag the statement touches

  Ask privacy;
  privacy.who.groups = {"privacy"};
  d = privacy(*p, Stmt(K::Select).rel("public.customers", sql::kRead, {"email"}));
  EXPECT_EQ(d.action, Action::Allow);
  EXPECT_TRUE(d.masks.empty());
}

TEST(Evaluate, MasksSurviveReviewButNotDeny) {
  auto p = load(kClassification +
                "rules:\n"
                "  - {name: mask-pii, when: {tags: pii}, action: mask}\n"
                "  - {name: review-agents, when: {identity_kind: agent}, action: review}\n"
                "  - {name: deny-bots, when: {subject: \"bot-*\"}, action: deny}\n");
  const sql::Statement s = Stmt(K::Select).rel("public.customers", sql::kRead, {"email"});
  Ask agent;
  agent.who.kind = identity::Kind::Agent;
  auto d = agent(*p, s);
  EXPECT_EQ(d.action, Action::Review);
  EXPECT_EQ(d.mask_tags, (std::vector<std::string>{"pii"}));  // once approved, it still runs masked
  agent.who.subject = "bot-1";
  d = agent(*p, s);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_TRUE(d.masks.empty());
  EXPECT_TRUE(d.mask_tags.empty());
}

TEST(Evaluate, BuiltByHandWithoutConfig) {
  PolicySpec spec;
  Rule r;
  r.name = "agents-read-only";
  r.when.identity_kind = identity::Kind::Agent;
  ASSERT_TRUE(r.when.statements.add("write"));
  ASSERT_TRUE(r.when.statements.add("ddl"));
  r.action = Action::Deny;
  spec.rules.push_back(r);
  auto p = Policy::build(std::move(spec));
  ASSERT_TRUE(p) << p.error().message;
  Ask agent;
  agent.who.kind = identity::Kind::Agent;
  EXPECT_EQ(agent(*p, kDeleteAll).action, Action::Deny);
  EXPECT_EQ(agent(*p, kSelect).action, Action::Allow);
  EXPECT_EQ(Ask{}(*p, kDeleteAll).action, Action::Allow);
}

TEST(Evaluate, BuildValidates) {
  auto spec_with = [](auto&& edit) {
    PolicySpec spec;
    Rule r;
    r.name = "r";
    spec.rules.push_back(r);
    edit(spec);
    return Policy::build(std::move(spec));
  };
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.rules.push_back(s.rules[0]); }));  // duplicate name
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.rules[0].name = "guardrail.nope"; }));
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.rules[0].name = "guardrail.identity_settings"; }));
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.rules[0].when.tags = {"undefined"}; }));
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.settings.unknown_action = Action::Allow; }));
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.targets.push_back({}), s.targets.back().guardrails_off = {"nope"}; }));
  EXPECT_FALSE(spec_with([](PolicySpec& s) { s.settings.row_limit = RowLimit{10, Action::Mask}; }));
  EXPECT_TRUE(spec_with([](PolicySpec&) {}));
}

TEST(Evaluate, KindSetRejectsUnknownNames) {
  KindSet k;
  EXPECT_TRUE(k.add("copy_from"));
  EXPECT_TRUE(k.contains(K::CopyFrom));
  auto bad = k.add("delet");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("unknown statement kind \"delet\""), std::string::npos);
}

TEST(Evaluate, RowLimits) {
  auto p = load(
      "policy: {max_rows_affected: 1000}\n"
      "targets:\n"
      "  - {name: prod, environment: production, policy: {max_rows_affected: 50, over_limit_action: deny}}\n"
      "  - {name: dev}\n");
  ASSERT_TRUE(p->row_limit("dev"));
  EXPECT_EQ(p->row_limit("dev")->max_rows_affected, 1000u);
  EXPECT_EQ(p->row_limit("dev")->over_limit_action, Action::Review);
  EXPECT_EQ(p->row_limit("prod")->max_rows_affected, 50u);
  EXPECT_EQ(p->row_limit("prod")->over_limit_action, Action::Deny);
  EXPECT_FALSE(load("rules: []\n")->row_limit("prod"));
}

TEST(Evaluate, SharedPolicyIsConstAndReentrant) {
  // evaluate() is const and keeps no state between calls: the same request twice gives equal decisions.
  auto p = load("rules:\n  - {name: r, when: {statements: delete}, action: review, audit_only: false}\n");
  const auto a = Ask{}(*p, kDeleteAll);
  const auto b = Ask{}(*p, kDeleteAll);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.reason, b.reason);
}

}  // namespace
}  // namespace gh::policy::test

namespace gh::policy::test {
namespace {

TEST(Evaluate, RequiresGrantAppliesOnlyWithoutTheGrant) {
  auto p = load(
      "rules:\n"
      "  - name: writes-need-a-grant\n"
      "    when: {statements: [delete, update, insert]}\n"
      "    requires_grant: read_write\n"
      "    action: deny\n");
  EXPECT_TRUE(p->uses_grants());
  Ask ask;
  auto d = ask(*p, kDeleteAll);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_NE(d.message.find("needs an active access grant of role \"read_write\" on target \"app\""),
            std::string::npos)
      << d.message;
  EXPECT_NE(d.hint.find("gatehouse request-access --target app --role read_write"), std::string::npos) << d.hint;
  ask.grants = std::vector<std::string>{"read_only"};
  EXPECT_EQ(ask(*p, kDeleteAll).action, Action::Deny);
  ask.grants = std::vector<std::string>{"read_only", "read_write"};
  EXPECT_EQ(ask(*p, kDeleteAll).action, Action::Allow);
  EXPECT_EQ(ask(*p, kSelect).action, Action::Allow);
  EXPECT_FALSE(load("rules:\n  - {name: r, action: deny}\n")->uses_grants());
}


// A relation named without a schema is found through the session's search_path, which the
// session can change: restricting rules and classifications take it for any schema; an allow
// rule only for public (the default), so it never opens more than it names.
TEST(Evaluate, UnqualifiedNamesMeetRestrictingRulesOfAnySchema) {
  auto p = load(
      "classification:\n"
      "  - {columns: [hr.people.ssn], tags: [pii]}\n"
      "rules:\n"
      "  - {name: hr-deny, when: {tables: [hr.salaries]}, action: deny}\n"
      "  - {name: hr-schema-review, when: {schemas: [hr], statements: [update]}, action: review}\n"
      "  - {name: pii-deny, when: {tags: [pii]}, action: deny}\n"
      "  - {name: ops-allow, when: {tables: [ops.jobs]}, action: allow}\n"
      "policy: {default_action: deny}\n");
  const auto unqualified = Stmt(K::Select).rel("salaries", sql::kRead, {"amount"});
  EXPECT_EQ(Ask{}(*p, unqualified).rule, "hr-deny");
  EXPECT_EQ(Ask{}(*p, Stmt(K::Select).rel("people", sql::kRead, {"ssn"})).rule, "pii-deny");
  EXPECT_EQ(Ask{}(*p, Stmt(K::Update).rel("accounts", sql::kUpdate, {"x"}, false, true)).rule, "hr-schema-review");
  // Qualified names are what they say.
  EXPECT_EQ(Ask{}(*p, Stmt(K::Select).rel("public.salaries", sql::kRead, {"amount"})).action, Action::Deny);
  EXPECT_NE(Ask{}(*p, Stmt(K::Select).rel("public.salaries", sql::kRead, {"amount"})).rule, "hr-deny");
  // The allow rule does not take an unqualified jobs for ops.jobs: the target's default decides.
  EXPECT_EQ(Ask{}(*p, Stmt(K::Select).rel("ops.jobs", sql::kRead, {"id"})).action, Action::Allow);
  EXPECT_EQ(Ask{}(*p, Stmt(K::Select).rel("jobs", sql::kRead, {"id"})).action, Action::Deny);
}

// Once the session set its search_path, an allow rule does not take an unqualified name for one
// in public either (found by adversarial testing: SET search_path = hr, then orders was hr.orders).
TEST(Evaluate, AllowRulesAfterTheSearchPathChanged) {
  auto p = load(
      "rules:\n"
      "  - {name: orders-allow, when: {tables: [public.orders]}, action: allow}\n"
      "  - {name: public-allow, when: {schemas: [public], statements: [select]}, action: allow}\n"
      "  - {name: any-orders-deny, when: {tables: [secret.orders]}, action: deny}\n"
      "policy: {default_action: deny}\n");
  const auto unqualified = Stmt(K::Select).rel("orders", sql::kRead, {"id"});
  EXPECT_EQ(Ask{}(*p, unqualified).action, Action::Deny);  // the restricting rule: any schema
  auto q = load(
      "rules:\n"
      "  - {name: orders-allow, when: {tables: [public.orders]}, action: allow}\n"
      "  - {name: public-allow, when: {schemas: [public], statements: [select]}, action: allow}\n"
      "policy: {default_action: deny}\n");
  EXPECT_EQ(Ask{}(*q, unqualified).action, Action::Allow);
  Ask changed;
  changed.search_path_changed = true;
  EXPECT_EQ(changed(*q, unqualified).action, Action::Deny);
  EXPECT_EQ(changed(*q, Stmt(K::Select).rel("public.orders", sql::kRead, {"id"})).action, Action::Allow);
  // pg_catalog comes before the search_path: an unqualified pg_* name is not taken for public
  // (round 2 of adversarial testing: `public.*` opened pg_stats and pg_authid).
  auto star = load(
      "rules:\n"
      "  - {name: public-star, when: {tables: [\"public.*\"]}, action: allow}\n"
      "  - {name: public-schema, when: {schemas: [public], statements: [update]}, action: allow}\n"
      "policy: {default_action: deny}\n");
  EXPECT_EQ(Ask{}(*star, Stmt(K::Select).rel("pg_authid", sql::kRead, {"rolpassword"})).action, Action::Deny);
  EXPECT_EQ(Ask{}(*star, Stmt(K::Update).rel("pg_stats", sql::kUpdate, {"x"})).action, Action::Deny);
  EXPECT_EQ(Ask{}(*star, Stmt(K::Select).rel("orders", sql::kRead, {"id"})).action, Action::Allow);
}

}  // namespace
}  // namespace gh::policy::test
