// The policy keys of the configuration: what parses, and errors that name file:line: key.
#include <gtest/gtest.h>

#include <cstdio>

#include "config/config.h"
#include "config/policy_config.h"
#include "policy/policy.h"
#include "sql/analyzer.h"

namespace gh::config {
namespace {

const char* const kTarget =
    "targets:\n"
    "  - name: app\n"
    "    environment: production\n"
    "    backend: {host: 127.0.0.1, port: 5432, database: app}\n"
    "    login: {user: app, password: secret}\n";

TEST(PolicyConfig, NoPolicyKeysGiveTheDefaultPolicy) {
  auto c = parse(kTarget, "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_NE(c->policy, nullptr);
  EXPECT_TRUE(c->policy->rules().empty());
  EXPECT_EQ(c->policy->settings().unknown_action, policy::Action::Deny);
  EXPECT_EQ(c->policy->default_action("app"), policy::Action::Allow);
  EXPECT_TRUE(c->policy->guardrail_enabled("drop", "app"));  // production
}

TEST(PolicyConfig, DesignSample) {
  const std::string text = std::string(kTarget) +
                           "    guardrails: {off: [opaque_code]}\n"
                           "    policy: {default_action: review, max_rows_affected: 500}\n"
                           "classification:\n"
                           "  - columns: [\"public.customers.email\", \"*.*.ssn\", \"billing.cards.number\"]\n"
                           "    tags: [pii]\n"
                           "    sensitivity: high\n"
                           "policy:\n"
                           "  unknown_action: review\n"
                           "  default_action: allow\n"
                           "rules:\n"
                           "  - name: no-drop-in-production\n"
                           "    when: { environment: production, statements: [drop, truncate] }\n"
                           "    action: deny\n"
                           "  - name: review-unbounded-writes\n"
                           "    description: Whole-table writes need a second pair of eyes\n"
                           "    when: { environment: production, statements: [update, delete], without_where: true }\n"
                           "    action: review\n"
                           "    reviewers: { groups: [dba], approvals: 1 }\n"
                           "  - name: mask-pii-unless-privacy-team\n"
                           "    when: { not_groups: [privacy], tags: [pii] }\n"
                           "    action: mask\n"
                           "    mask: { strategy: keep_domain }\n"
                           "  - name: office-hours-for-agents\n"
                           "    when:\n"
                           "      identity_kind: agent\n"
                           "      not_time: [{days: mon-fri, hours: \"08:00-20:00\", utc_offset: \"+01:00\"}]\n"
                           "      not_client_address: [10.0.0.0/8, \"fd00::/8\"]\n"
                           "    action: deny\n"
                           "    audit_only: true\n"
                           "    message: Agents work in office hours from the office network\n"
                           "    hint: Schedule the job between 08:00 and 20:00 CET.\n";
  auto c = parse(text, "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  const auto& p = *c->policy;
  ASSERT_EQ(p.rules().size(), 4u);
  EXPECT_EQ(p.rules()[1].reviewers.groups, (std::vector<std::string>{"dba"}));
  EXPECT_EQ(p.rules()[1].description, "Whole-table writes need a second pair of eyes");
  EXPECT_EQ(p.rules()[2].mask.strategy, "keep_domain");
  EXPECT_TRUE(p.rules()[3].audit_only);
  EXPECT_EQ(p.rules()[3].when.not_time.size(), 1u);
  EXPECT_EQ(p.rules()[3].when.not_client_addresses.size(), 2u);
  EXPECT_EQ(p.settings().unknown_action, policy::Action::Review);
  EXPECT_EQ(p.default_action("app"), policy::Action::Review);
  EXPECT_EQ(p.row_limit("app")->max_rows_affected, 500u);
  EXPECT_FALSE(p.guardrail_enabled("opaque_code", "app"));
  EXPECT_TRUE(p.guardrail_enabled("drop", "app"));
  ASSERT_EQ(p.classification().size(), 1u);
  EXPECT_EQ(p.classification()[0].sensitivity, policy::Sensitivity::High);
}

TEST(PolicyConfig, PolicyFileRelativeToTheConfig) {
  const std::string dir = ::testing::TempDir();
  const std::string policy_path = dir + "/gh_policy_test_rules.yaml";
  FILE* f = std::fopen(policy_path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("classification:\n  - {columns: [\"*.*.ssn\"], tags: [pii]}\n"
             "rules:\n  - {name: from-file, when: {tags: pii}, action: mask}\n",
             f);
  std::fclose(f);
  const std::string text = std::string(kTarget) +
                           "policy_file: gh_policy_test_rules.yaml\n"
                           "rules:\n  - {name: in-main, when: {statements: drop}, action: deny}\n";
  auto c = parse(text, dir + "/gatehouse.yaml");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->policy->rules().size(), 2u);
  EXPECT_EQ(c->policy->rules()[0].name, "in-main");
  EXPECT_EQ(c->policy->rules()[1].name, "from-file");

  // Errors inside the policy file name that file and its line.
  f = std::fopen(policy_path.c_str(), "w");
  std::fputs("rules:\n  - name: in-main\n    action: deny\n", f);
  std::fclose(f);
  c = parse(text, dir + "/gatehouse.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(policy_path + ":2: rules[0].name: duplicate rule name \"in-main\" (first defined at " +
                                   dir + "/gatehouse.yaml:"),
            std::string::npos)
      << c.error().message;

  f = std::fopen(policy_path.c_str(), "w");
  std::fputs("targets: []\n", f);
  std::fclose(f);
  c = parse(text, dir + "/gatehouse.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(policy_path + ":1: targets: unknown key"), std::string::npos) << c.error().message;

  c = parse(std::string(kTarget) + "policy_file: /nonexistent/policy.yaml\n", "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("t.yaml:6: policy_file: cannot read /nonexistent/policy.yaml"), std::string::npos)
      << c.error().message;

  // Found by adversarial testing, each read as fewer rules than the file shows, with check ok:
  // a key given twice (yaml-cpp kept the first), a second document (dropped), an empty file
  // (truncated while being rewritten) and a directory (read as empty).
  auto write = [&](const char* content) {
    f = std::fopen(policy_path.c_str(), "w");
    std::fputs(content, f);
    std::fclose(f);
    return parse(text, dir + "/gatehouse.yaml");
  };
  c = write("rules:\n  - {name: a, when: {statements: select}, action: allow}\n"
            "rules:\n  - {name: deny-drop, when: {statements: drop}, action: deny}\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(policy_path + ":3: rules: given twice; keep one"), std::string::npos)
      << c.error().message;
  c = write("rules:\n  - name: a\n    when: {statements: drop}\n    when: {statements: select}\n    action: deny\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(policy_path + ":4: rules[0].when: given twice"), std::string::npos)
      << c.error().message;
  c = write("rules: []\n---\nrules:\n  - {name: deny-drop, when: {statements: drop}, action: deny}\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(policy_path + ":3: invalid YAML: a second YAML document starts here"),
            std::string::npos)
      << c.error().message;
  c = write("# nothing yet\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("policy_file: " + policy_path + " is empty"), std::string::npos)
      << c.error().message;
  c = parse(std::string(kTarget) + "policy_file: /tmp\n", "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("t.yaml:6: policy_file: /tmp is not a file"), std::string::npos)
      << c.error().message;
  // The same marker in the main file.
  c = parse(std::string(kTarget) + "...\nrules:\n  - {name: deny-drop, when: {statements: drop}, action: deny}\n",
            "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("t.yaml:7: invalid YAML: a second YAML document starts here"), std::string::npos)
      << c.error().message;
  // A trailing "---" with nothing after it loses nothing.
  c = parse(std::string(kTarget) + "rules: []\n---\n", "t.yaml");
  EXPECT_TRUE(c) << c.error().message;
  // A UTF-8 byte order mark: positions are counted without it, so the unclosed-quote check looked
  // three bytes early (found by adversarial testing: a deny rule swallowed with check ok, and a
  // valid file refused).
  c = parse("\xEF\xBB\xBF" + std::string(kTarget) +
                "rules:\n  - name: a\n    when: {statements: [update]}\n    action: deny\n    message: \"no updates\n"
                "  - name: b\n    when: {statements: [delete]}\n    action: deny\n",
            "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("never closed"), std::string::npos) << c.error().message;
  c = parse("\xEF\xBB\xBFthreads: 2\n" + std::string(kTarget) + "rules: [{name: 'a', when: {statements: [drop]}, action: deny}]\n",
            "t.yaml");
  EXPECT_TRUE(c) << c.error().message;
  std::remove(policy_path.c_str());
}

TEST(PolicyConfig, StandalonePolicyDocument) {
  auto p = parse_policy("targets:\n  - {name: prod, environment: production}\nrules: []\n", "p.yaml");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE((*p)->guardrail_enabled("drop", "prod"));
  auto bad = parse_policy("targets:\n  - {name: prod, backend: {}}\n", "p.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("p.yaml:2: targets[0].backend: unknown key"), std::string::npos)
      << bad.error().message;
  EXPECT_TRUE(parse_policy("", "empty.yaml"));
}

// The guardrails are on for "production" in any case; an environment that looks like production
// but is spelled otherwise must say whether it wants them (it turned them off silently: found by a
// security team's trial with `environment: Production`); rules match environments in any case.
TEST(PolicyConfig, ProductionInAnyCaseHasGuardrailsAndLookalikesMustChoose) {
  for (const char* env : {"production", "Production", "PRODUCTION"}) {
    auto p = parse_policy(std::string("targets:\n  - {name: prod, environment: ") + env + "}\nrules: []\n", "p.yaml");
    ASSERT_TRUE(p) << env << ": " << p.error().message;
    EXPECT_TRUE((*p)->guardrail_enabled("drop", "prod")) << env;
    EXPECT_TRUE((*p)->guardrail_enabled("truncate", "prod")) << env;
  }
  for (const char* env : {"prod", "Prod", "production-eu", "preprod"}) {
    auto bad = parse_policy(std::string("rules: []\ntargets:\n  - {name: t, environment: ") + env + "}\n", "p.yaml");
    ASSERT_FALSE(bad) << env;
    EXPECT_NE(bad.error().message.find("p.yaml:3: targets[0].environment: \"" + std::string(env) +
                                       "\" is not \"production\", so the built-in guardrails would be off"),
              std::string::npos)
        << bad.error().message;
    for (const char* choice : {"true", "false"}) {
      auto ok = parse_policy(std::string("targets:\n  - {name: t, environment: ") + env + ", guardrails: " + choice + "}\n",
                             "p.yaml");
      ASSERT_TRUE(ok) << env << " " << choice << ": " << ok.error().message;
      EXPECT_EQ((*ok)->guardrail_enabled("drop", "t"), std::string(choice) == "true");
    }
  }
  auto spaced = parse_policy("targets:\n  - {name: t, environment: \"production \"}\n", "p.yaml");
  ASSERT_FALSE(spaced);
  EXPECT_NE(spaced.error().message.find("targets[0].environment: \"production \" begins or ends with a space"),
            std::string::npos)
      << spaced.error().message;
  EXPECT_TRUE(parse_policy("targets:\n  - {name: t, environment: staging}\n", "p.yaml"));
  auto rule = parse_policy(
      "targets:\n  - {name: t, environment: PRODUCTION, guardrails: false}\n"
      "rules: [{name: no-drop, when: {environment: production, statements: [drop]}, action: deny}]\n",
      "p.yaml");
  ASSERT_TRUE(rule) << rule.error().message;
  sql::Analyzer analyzer;
  policy::Request req;
  req.target = "t";
  const auto a = analyzer.analyze("DROP TABLE x");
  req.analysis = a.get();
  const auto d = (*rule)->evaluate(req);
  EXPECT_EQ(d.action, policy::Action::Deny);
  EXPECT_EQ(d.rule, "no-drop");
}

struct BadCase {
  const char* name;
  std::string text;  // appended after the target
  std::string expect;
};

class PolicyConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(PolicyConfigErrors, NamesFileLineKeyAndReason) {
  auto c = parse(std::string(kTarget) + GetParam().text, "bad.yaml");
  ASSERT_FALSE(c) << "should have been rejected";
  EXPECT_NE(c.error().message.find(GetParam().expect), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().message.rfind("bad.yaml:", 0), 0u) << c.error().message;
}

std::string rule(const std::string& body) { return "rules:\n  - name: r\n" + body; }

INSTANTIATE_TEST_SUITE_P(
    All, PolicyConfigErrors,
    ::testing::Values(
        BadCase{"unknown_rule_key", rule("    action: deny\n    whenn: {}\n"), "bad.yaml:9: rules[0].whenn: unknown key"},
        BadCase{"unknown_condition", rule("    when: {statement: drop}\n    action: deny\n"),
                "bad.yaml:8: rules[0].when.statement: unknown key (expected one of: subject,"},
        BadCase{"unknown_action", rule("    action: block\n"),
                "bad.yaml:8: rules[0].action: unknown action \"block\" (expected one of: allow, mask, review, deny)"},
        BadCase{"missing_action", rule("    when: {}\n"), "rules[0].action: missing"},
        BadCase{"missing_name", "rules:\n  - {action: deny}\n", "bad.yaml:7: rules[0].name: missing"},
        BadCase{"bad_name", "rules:\n  - {name: \"no spaces\", action: deny}\n", "rules[0].name: use letters"},
        BadCase{"duplicate_name", "rules:\n  - {name: a, action: deny}\n  - {name: a, action: allow}\n",
                "bad.yaml:8: rules[1].name: duplicate rule name \"a\" (first defined at bad.yaml:7)"},
        BadCase{"unknown_kind", rule("    when: {statements: [select, delet]}\n    action: deny\n"),
                "bad.yaml:8: rules[0].when.statements[1]: unknown statement kind \"delet\""},
        BadCase{"bad_glob", rule("    when: {groups: [\"adm[in]\"]}\n    action: deny\n"),
                "rules[0].when.groups[0]: bad glob \"adm[in]\""},
        BadCase{"bad_table_pattern", rule("    when: {tables: [a.b.c]}\n    action: deny\n"),
                "rules[0].when.tables[0]: bad name pattern \"a.b.c\": expected schema.table or table"},
        BadCase{"bad_column_pattern", rule("    when: {columns: [\"a..b\"]}\n    action: deny\n"),
                "rules[0].when.columns[0]: bad name pattern"},
        BadCase{"bad_cidr", rule("    when: {client_address: [10.0.0.0/33]}\n    action: deny\n"),
                "bad.yaml:8: rules[0].when.client_address[0]: bad CIDR \"10.0.0.0/33\""},
        BadCase{"bad_days", rule("    when: {time: {days: [monday]}}\n    action: deny\n"),
                "rules[0].when.time.days[0]: bad time window: \"monday\" is not a day"},
        BadCase{"bad_hours", rule("    when:\n      time:\n        hours: 9-17\n    action: deny\n"),
                "bad.yaml:10: rules[0].when.time.hours: bad time window"},
        BadCase{"bad_offset", rule("    when: {not_time: [{utc_offset: Europe/Paris}]}\n    action: deny\n"),
                "rules[0].when.not_time[0].utc_offset: bad time window"},
        BadCase{"bad_window_key", rule("    when: {time: {day: mon}}\n    action: deny\n"),
                "rules[0].when.time.day: unknown key"},
        BadCase{"bad_bool", rule("    when: {without_where: yes please}\n    action: deny\n"),
                "rules[0].when.without_where: expected true or false"},
        BadCase{"bad_identity_kind", rule("    when: {identity_kind: robot}\n    action: deny\n"),
                "rules[0].when.identity_kind: expected human or agent"},
        BadCase{"bad_access", rule("    when: {access: [readwrite]}\n    action: deny\n"),
                "rules[0].when.access[0]: unknown access \"readwrite\""},
        BadCase{"bad_sensitivity", rule("    when: {min_sensitivity: extreme}\n    action: deny\n"),
                "rules[0].when.min_sensitivity: expected low, medium, high or critical"},
        BadCase{"undefined_tag", rule("    when: {tags: [pi]}\n    action: mask\n"),
                "bad.yaml:8: rules[0].when.tags[0]: tag \"pi\" is not given to any column by classification"},
        BadCase{"undefined_mask_tag",
                "classification:\n  - {columns: [a.b.c], tags: [pii]}\n" +
                    rule("    action: mask\n    mask: {tags: [pci]}\n"),
                "rules[0].mask.tags[0]: tag \"pci\" is not given"},
        BadCase{"empty_list", rule("    when: {groups: []}\n    action: deny\n"),
                "rules[0].when.groups: must not be an empty list"},
        BadCase{"reviewers_on_deny", rule("    action: deny\n    reviewers: {groups: [dba]}\n"),
                "bad.yaml:9: rules[0].reviewers: only for action: review"},
        BadCase{"zero_approvals", rule("    action: review\n    reviewers: {approvals: 0}\n"),
                "rules[0].reviewers.approvals: expected an integer from 1 to 10"},
        BadCase{"mask_on_allow", rule("    action: allow\n    mask: {strategy: redact}\n"),
                "rules[0].mask: only for action: mask"},
        BadCase{"bad_strategy", rule("    action: mask\n    mask: {strategy: scramble}\n"),
                "rules[0].mask.strategy: unknown strategy \"scramble\""},
        BadCase{"unknown_guardrail_override", "rules:\n  - {name: guardrail.delete, action: deny}\n",
                "rules[0].name: no built-in guardrail is named \"guardrail.delete\""},
        BadCase{"protected_guardrail", "rules:\n  - {name: guardrail.identity_settings, action: allow}\n",
                "cannot be overridden"},
        BadCase{"unknown_action_allow", "policy: {unknown_action: allow}\n",
                "bad.yaml:6: policy.unknown_action: unknown action \"allow\" (expected one of: deny, review)"},
        BadCase{"bad_default", "policy: {default_action: maybe}\n", "policy.default_action: unknown action"},
        BadCase{"unknown_policy_key", "policy: {unknwon_action: deny}\n", "policy.unknwon_action: unknown key"},
        BadCase{"over_limit_without_max", "policy: {over_limit_action: deny}\n",
                "policy.over_limit_action: needs max_rows_affected"},
        BadCase{"over_limit_mask", "policy: {max_rows_affected: 5, over_limit_action: mask}\n",
                "policy.over_limit_action: unknown action \"mask\" (expected one of: review, deny)"},
        BadCase{"bad_max_rows", "policy: {max_rows_affected: lots}\n", "policy.max_rows_affected: expected an integer"},
        BadCase{"classification_no_columns", "classification:\n  - {tags: [pii]}\n",
                "bad.yaml:7: classification[0].columns: missing"},
        BadCase{"classification_nothing", "classification:\n  - {columns: [a]}\n",
                "classification[0]: give tags, sensitivity or both"},
        BadCase{"classification_bad_sensitivity", "classification:\n  - {columns: [a], sensitivity: secret}\n",
                "classification[0].sensitivity: expected low"},
        BadCase{"rules_not_list", "rules: {name: r}\n", "bad.yaml:6: rules: expected a list"}),
    [](const auto& info) { return std::string(info.param.name); });

struct TargetBadCase {
  const char* name;
  std::string target_extra;
  std::string expect;
};

class TargetPolicyErrors : public ::testing::TestWithParam<TargetBadCase> {};

TEST_P(TargetPolicyErrors, NamesTheTargetKey) {
  auto c = parse(std::string(kTarget) + GetParam().target_extra, "bad.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find(GetParam().expect), std::string::npos) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    All, TargetPolicyErrors,
    ::testing::Values(
        TargetBadCase{"guardrails_not_bool", "    guardrails: sometimes\n",
                      "bad.yaml:6: targets[0].guardrails: expected true or false"},
        TargetBadCase{"guardrails_bad_off", "    guardrails: {off: [drop_everything]}\n",
                      "targets[0].guardrails.off[0]: no guardrail that can be turned off is named \"drop_everything\""},
        TargetBadCase{"guardrails_protected_off", "    guardrails: {off: [identity_settings]}\n",
                      "targets[0].guardrails.off[0]: no guardrail that can be turned off"},
        TargetBadCase{"guardrails_unknown_key", "    guardrails: {disabled: true}\n",
                      "targets[0].guardrails.disabled: unknown key"},
        TargetBadCase{"policy_unknown_key", "    policy: {unknown_action: review}\n",
                      "targets[0].policy.unknown_action: unknown key"},
        TargetBadCase{"policy_bad_default", "    policy: {default_action: nope}\n",
                      "bad.yaml:6: targets[0].policy.default_action: unknown action \"nope\""}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace gh::config

namespace gh::config {
namespace {

TEST(PolicyConfig, MaskRulesAndTheMaskingSection) {
  const std::string base = std::string(kTarget) +
                           "classification:\n"
                           "  - columns: [\"public.customers.email\", \"*.*.ssn\"]\n"
                           "    tags: [pii]\n"
                           "rules:\n"
                           "  - name: m\n"
                           "    when: {not_groups: [privacy], tags: [pii]}\n"
                           "    action: mask\n";
  auto c = parse(base + "    mask: {strategy: partial, keep_last: 2, deny_predicates: true, detect: [email, card]}\n"
                        "masking: {hash_key: 0123456789abcdef0123, catalog_ttl: 5s}\n",
                 "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  const auto& m = c->policy->rules().at(0).mask;
  EXPECT_EQ(m.strategy, "partial");
  EXPECT_EQ(m.keep_last, 2);
  EXPECT_TRUE(m.deny_predicates);
  EXPECT_EQ(m.detect, (std::vector<std::string>{"email", "card"}));
  EXPECT_FALSE(m.deny_binary || m.deny_undecided || m.deny_copy);  // mask, not refuse, by default
  auto d = parse(base + "    mask: {binary: deny, undecided: deny, copy: deny}\n", "t.yaml");
  ASSERT_TRUE(d) << d.error().message;
  const auto& dm = d->policy->rules().at(0).mask;
  EXPECT_TRUE(dm.deny_binary && dm.deny_undecided && dm.deny_copy);
  auto e = parse(base + "    mask: {binary: null, undecided: mask, copy: mask}\n", "t.yaml");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_FALSE(e->policy->rules().at(0).mask.deny_binary || e->policy->rules().at(0).mask.deny_copy);
  EXPECT_EQ(c->masking.hash_key, "0123456789abcdef0123");
  EXPECT_EQ(c->masking.catalog_ttl, std::chrono::milliseconds(5000));
  // The rule covers the classified columns, by its tags, for every schema the glob allows.
  policy::Request req;
  identity::Identity bob;
  bob.subject = "bob";
  req.identity = &bob;
  req.target = "app";
  const auto rules = c->policy->mask_rules_for(req);
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_NE(c->policy->column_mask(rules, "public", "customers", "email"), nullptr);
  EXPECT_NE(c->policy->column_mask(rules, "hr", "people", "ssn"), nullptr);
  EXPECT_EQ(c->policy->column_mask(rules, "public", "customers", "name"), nullptr);
  identity::Identity carol;
  carol.subject = "carol";
  carol.groups = {"privacy"};
  req.identity = &carol;
  EXPECT_TRUE(c->policy->mask_rules_for(req).empty());

  for (const auto& [extra, want] : std::vector<std::pair<std::string, std::string>>{
           {"    mask: {detect: [emails]}\n", "unknown detector \"emails\""},
           {"    mask: {strategy: fixed}\n", "mask.value"},
           {"    mask: {strategy: rot13}\n", "unknown strategy \"rot13\""},
           {"masking: {hash_key: short}\n", "too short"},
           {"masking: {colour: blue}\n", "colour"},
           {"    mask: {binary: mask}\n", "expected null or deny, not \"mask\""},
           {"    mask: {undecided: refuse}\n", "expected mask or deny"},
           {"    mask: {copy: [deny]}\n", "mask.copy"},
       }) {
    auto bad = parse(base + extra, "t.yaml");
    ASSERT_FALSE(bad) << extra;
    EXPECT_NE(bad.error().message.find(want), std::string::npos) << bad.error().message;
    EXPECT_NE(bad.error().message.find("t.yaml:"), std::string::npos) << bad.error().message;
  }
}

}  // namespace
}  // namespace gh::config
