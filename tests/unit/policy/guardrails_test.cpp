// The built-in guardrail pack: each guardrail, where it applies, and how to turn it off or override it.
#include <gtest/gtest.h>

#include "policy/guardrails.h"
#include "policy_test_util.h"

namespace gh::policy::test {
namespace {

const std::string kTargets =
    "targets:\n"
    "  - {name: prod, environment: production}\n"
    "  - {name: dev, environment: development}\n"
    "  - {name: staging, environment: staging, guardrails: true}\n"
    "  - {name: prod-raw, environment: production, guardrails: false}\n"
    "  - {name: prod-etl, environment: production, guardrails: {off: [truncate, guardrail.opaque_code]}}\n";

Ask on(const std::string& target) {
  Ask a;
  a.target = target;
  return a;
}

struct RailCase {
  const char* name;
  sql::Statement statement;
  const char* what;  // expected in the message
};

class EachGuardrail : public ::testing::TestWithParam<RailCase> {};

TEST_P(EachGuardrail, DeniesOnProductionOnly) {
  const auto& c = GetParam();
  auto p = load(kTargets);
  const auto d = on("prod")(*p, c.statement);
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, c.name);
  EXPECT_NE(d.message.find(std::string("Denied by rule \"") + c.name + "\": " + c.what), std::string::npos)
      << d.message;
  EXPECT_NE(d.message.find("on target \"prod\" (production)"), std::string::npos) << d.message;
  EXPECT_EQ(d.message.back(), '.');
  EXPECT_FALSE(d.hint.empty());
  EXPECT_NE(d.reason.find(c.what), std::string::npos) << d.reason;
  EXPECT_EQ(on("dev")(*p, c.statement).action, Action::Allow);
  EXPECT_EQ(on("prod-raw")(*p, c.statement).action, Action::Allow);
  EXPECT_EQ(on("staging")(*p, c.statement).action, Action::Deny);  // turned on explicitly
  // A target the policy does not know: the request's environment decides.
  Ask unknown = on("elsewhere");
  unknown.environment = "production";
  EXPECT_EQ(unknown(*p, c.statement).action, Action::Deny);
}

INSTANTIATE_TEST_SUITE_P(
    All, EachGuardrail,
    ::testing::Values(
        RailCase{"guardrail.drop", Stmt(K::Drop).rel("public.orders", sql::kDdl), "DROP of public.orders"},
        RailCase{"guardrail.drop", Stmt(K::Drop), "DROP"},  // DROP SCHEMA, DROP FUNCTION, ...
        RailCase{"guardrail.drop_database", Stmt(K::DropDatabase), "DROP DATABASE"},
        RailCase{"guardrail.truncate", Stmt(K::Truncate).rel("public.orders", sql::kTruncate),
                 "TRUNCATE of public.orders"},
        RailCase{"guardrail.unbounded_write",
                 Stmt(K::Delete).rel("public.orders", sql::kDelete).write(K::Delete, "public.orders", false),
                 "DELETE on public.orders without a WHERE clause"},
        RailCase{"guardrail.unbounded_write",
                 Stmt(K::Update).rel("orders", sql::kUpdate).write(K::Update, "orders", true, true),
                 "UPDATE on orders with a WHERE clause that is always true"},
        RailCase{"guardrail.unbounded_write",  // WITH d AS (DELETE FROM t) SELECT ...
                 Stmt(K::Select).also(K::Delete).write(K::Delete, "t", false), "DELETE on t without a WHERE clause"},
        RailCase{"guardrail.alter_destructive",
                 Stmt(K::Alter).rel("public.orders", sql::kDdl).flag(&sql::Statement::destructive_alter),
                 "ALTER TABLE public.orders dropping a column or changing a column's type"},
        RailCase{"guardrail.privileges", Stmt(K::Grant), "GRANT"},
        RailCase{"guardrail.privileges", Stmt(K::Revoke), "REVOKE"},
        RailCase{"guardrail.privileges", Stmt(K::RoleChange).flag(&sql::Statement::role_change),
                 "a change to roles or role memberships"},
        RailCase{"guardrail.privileges", Stmt(K::SetRole).flag(&sql::Statement::role_change).setting("role"), "SET ROLE"},
        RailCase{"guardrail.server_access", Stmt(K::CopyTo).flag(&sql::Statement::server_program),
                 "COPY ... PROGRAM"},
        RailCase{"guardrail.server_access", Stmt(K::Select).fn("pg_read_file").flag(&sql::Statement::server_file_access),
                 "SELECT that reads or writes files on the database server"},
        RailCase{"guardrail.alter_system", Stmt(K::AlterSystem), "ALTER SYSTEM"},
        RailCase{"guardrail.opaque_code", Stmt(K::Do).flag(&sql::Statement::opaque_code),
                 "a DO block"},
        RailCase{"guardrail.opaque_code", Stmt(K::CreateFunction).flag(&sql::Statement::opaque_code),
                 "CREATE FUNCTION/PROCEDURE with a code body"}),
    [](const auto& info) { return std::to_string(info.index) + "_" + std::string(info.param.name).substr(10); });

TEST(Guardrails, BoundedWritesAndHarmlessStatementsPass) {
  auto p = load(kTargets);
  const Ask prod = on("prod");
  EXPECT_EQ(prod(*p, Stmt(K::Delete).rel("orders", sql::kDelete).write(K::Delete, "orders", true)).action,
            Action::Allow);
  EXPECT_EQ(prod(*p, Stmt(K::Select).rel("orders", sql::kRead)).action, Action::Allow);
  EXPECT_EQ(prod(*p, Stmt(K::Create).rel("t", sql::kDdl)).action, Action::Allow);
  EXPECT_EQ(prod(*p, Stmt(K::Alter).rel("t", sql::kDdl)).action, Action::Allow);  // ADD COLUMN
  EXPECT_EQ(prod(*p, Stmt(K::Set).setting("work_mem")).action, Action::Allow);
  EXPECT_TRUE(prod(*p, Stmt(K::Select)).matched_rules.empty());
}

TEST(Guardrails, OffListOnATarget) {
  auto p = load(kTargets);
  const Ask etl = on("prod-etl");
  EXPECT_EQ(etl(*p, Stmt(K::Truncate)).action, Action::Allow);
  EXPECT_EQ(etl(*p, Stmt(K::Do).flag(&sql::Statement::opaque_code)).action, Action::Allow);
  EXPECT_EQ(etl(*p, Stmt(K::Drop)).action, Action::Deny);
  EXPECT_FALSE(p->guardrail_enabled("truncate", "prod-etl"));
  EXPECT_TRUE(p->guardrail_enabled("guardrail.drop", "prod-etl"));
  EXPECT_FALSE(p->guardrail_enabled("guardrail.drop", "dev"));
  EXPECT_TRUE(p->guardrail_enabled("guardrail.drop", "unknown", "production"));
}

TEST(Guardrails, ExplicitEnabledFlag) {
  auto p = load("targets:\n  - {name: qa, guardrails: {enabled: true, off: [privileges]}}\n");
  EXPECT_EQ(on("qa")(*p, Stmt(K::Drop)).action, Action::Deny);
  EXPECT_EQ(on("qa")(*p, Stmt(K::Grant)).action, Action::Allow);
}

TEST(Guardrails, UserRuleWithTheSameNameOverrides) {
  auto p = load(kTargets +
                "rules:\n"
                "  - name: guardrail.truncate\n"
                "    when: {environment: production, not_groups: [dba]}\n"
                "    action: review\n"
                "    reviewers: {groups: [dba]}\n");
  Ask dba = on("prod");
  dba.who.groups = {"dba"};
  EXPECT_EQ(dba(*p, Stmt(K::Truncate)).action, Action::Allow);
  const auto d = on("prod")(*p, Stmt(K::Truncate));
  EXPECT_EQ(d.action, Action::Review);
  EXPECT_EQ(d.rule, "guardrail.truncate");
  EXPECT_EQ(d.matched_rules, (std::vector<std::string>{"guardrail.truncate"}));
  EXPECT_FALSE(p->guardrail_enabled("truncate", "prod"));
  // The other guardrails are untouched.
  EXPECT_EQ(dba(*p, Stmt(K::Drop)).action, Action::Deny);
}

TEST(Guardrails, AnAllowRuleDoesNotLiftAGuardrail) {
  auto p = load(kTargets + "rules:\n  - {name: dba-all, when: {groups: dba}, action: allow}\n");
  Ask dba = on("prod");
  dba.who.groups = {"dba"};
  const auto d = dba(*p, Stmt(K::Drop));
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.rule, "guardrail.drop");
  EXPECT_EQ(d.matched_rules, (std::vector<std::string>{"dba-all", "guardrail.drop"}));
}

TEST(Guardrails, IdentitySettingsAreProtectedEverywhere) {
  auto p = load(kTargets);
  for (const char* target : {"prod", "dev", "prod-raw", "nowhere"}) {
    const auto d = on(target)(*p, Stmt(K::Set).setting("gatehouse.identity"));
    EXPECT_EQ(d.action, Action::Deny) << target;
    EXPECT_EQ(d.rule, "guardrail.identity_settings");
    EXPECT_EQ(d.message,
              "Denied by rule \"guardrail.identity_settings\": changing gatehouse.identity is not allowed: these "
              "settings carry the identity Gatehouse vouches for and cannot be changed from a session.");
  }
  EXPECT_EQ(on("dev")(*p, Stmt(K::Select).setting("gatehouse.identity_groups")).action, Action::Deny);  // set_config
  EXPECT_EQ(on("dev")(*p, Stmt(K::Discard).setting("all")).action, Action::Allow);  // restores them
  EXPECT_EQ(on("dev")(*p, Stmt(K::Set).setting("gatehouse.identity_kind")).action, Action::Deny);
  EXPECT_EQ(on("dev")(*p, Stmt(K::Set).setting("gatehouse.wait")).action, Action::Allow);  // the proxy's own
  // set_config with a name the proxy cannot read (a cast, upper(), a parameter, fast path): it
  // could be gatehouse.identity, and the target does not matter.
  const auto computed = on("dev")(*p, Stmt(K::Select).setting("*"));
  EXPECT_EQ(computed.action, Action::Deny);
  EXPECT_EQ(computed.rule, "guardrail.identity_settings");
  // Code the proxy cannot see into that names set_config or gatehouse.*, where opaque code is allowed.
  const auto code = Stmt(K::Do).flag(&gh::sql::Statement::opaque_code);
  EXPECT_EQ(on("dev")(*p, Stmt(code).text("DO $$ BEGIN PERFORM SET_CONFIG('GateHouse.Identity', 'y', false); END $$"))
                .action,
            Action::Deny);
  EXPECT_EQ(on("dev")(*p, Stmt(code).text("DO $$ BEGIN PERFORM set_config('work_mem', '8MB', false); END $$")).action,
            Action::Allow);
  EXPECT_EQ(on("dev")(*p, Stmt(code).text("DO $$ BEGIN RAISE NOTICE '%', current_setting('Gatehouse.Identity'); END $$"))
                .action,
            Action::Deny);
  EXPECT_EQ(on("dev")(*p, Stmt(code).text("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")).action, Action::Allow);
}

TEST(Guardrails, Registry) {
  EXPECT_EQ(guardrails().size(), 12u);
  EXPECT_EQ(find_guardrail("remote_access")->name, "guardrail.remote_access");
  EXPECT_EQ(find_guardrail("guardrail.extensions")->name, "guardrail.extensions");
  EXPECT_EQ(find_guardrail("drop")->name, "guardrail.drop");
  EXPECT_EQ(find_guardrail("guardrail.drop_database")->name, "guardrail.drop_database");
  EXPECT_EQ(find_guardrail("guardrail.nope"), nullptr);
  EXPECT_EQ(find_guardrail("nope"), nullptr);
  for (const auto& g : guardrails()) {
    EXPECT_EQ(g.name.rfind("guardrail.", 0), 0u);
    EXPECT_FALSE(g.summary.empty());
    EXPECT_FALSE(g.why.empty());
    EXPECT_FALSE(g.hint.empty());
    EXPECT_EQ(g.hint.back(), '.');
  }
}

}  // namespace
}  // namespace gh::policy::test
