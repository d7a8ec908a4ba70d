// Policy::evaluate on a realistic policy (12 rules, classification, the guardrail pack):
// an allowed read, a masked read and a denied write. Target: a few microseconds per decision
// (matching allocates nothing; the decision's strings are built once, for the deciding rule).
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "config/policy_config.h"
#include "policy/policy.h"

namespace {

const char* const kPolicy = R"(
targets:
  - {name: prod, environment: production}
classification:
  - {columns: ["public.customers.email", "public.customers.phone", "*.*.ssn"], tags: [pii], sensitivity: high}
  - {columns: ["billing.cards.number"], tags: [pci], sensitivity: critical}
rules:
  - {name: everyone-reads, when: {statements: [read, transaction, show, explain]}, action: allow}
  - {name: dba-writes, when: {groups: [dba], statements: [write, ddl]}, action: allow}
  - {name: support-refunds, when: {groups: [support], statements: [insert, update], tables: [public.refunds]}, action: review}
  - {name: agents-read-only, when: {identity_kind: agent, statements: [write, ddl, role, call, do]}, action: deny}
  - {name: agents-hours, when: {identity_kind: agent, not_time: {days: mon-fri, hours: "08:00-18:00"}}, action: deny}
  - {name: agents-vpc, when: {identity_kind: agent, not_client_address: ["10.0.0.0/8"]}, action: deny}
  - {name: contractors, when: {email: "*@contractor.example", schemas: [billing]}, action: deny}
  - {name: mask-pii, when: {not_groups: [privacy], tags: [pii]}, action: mask}
  - {name: critical-review, when: {min_sensitivity: critical, not_groups: [finance]}, action: review}
  - {name: no-remote, when: {remote_access: true}, action: deny}
  - {name: watch-sleep, when: {functions: [pg_sleep]}, action: deny, audit_only: true}
  - {name: search-path, when: {settings: [search_path]}, action: review}
)";

const gh::policy::Policy& policy() {
  static const auto p = [] {
    auto r = gh::config::parse_policy(kPolicy, "bench.yaml");
    if (!r) std::abort();
    return *r;
  }();
  return *p;
}

gh::sql::Analysis read_orders() {
  gh::sql::Statement s;
  s.kinds = {gh::sql::StatementKind::Select};
  gh::sql::Relation o{"", "orders", gh::sql::kRead, {"customer_id", "id", "total"}, {}, false};
  gh::sql::Relation c{"", "customers", gh::sql::kRead, {"id", "name"}, {}, false};
  s.relations = {o, c};
  gh::sql::Analysis a;
  a.statements.push_back(s);
  return a;
}

void run(benchmark::State& state, const gh::sql::Analysis& a, gh::policy::Action expected) {
  gh::identity::Identity id;
  id.subject = "alice";
  id.email = "alice@example.com";
  id.groups = {"dev", "oncall"};
  gh::policy::Request r;
  r.identity = &id;
  r.target = "prod";
  r.database = "app";
  r.client_address = "10.1.2.3";
  r.analysis = &a;
  if (policy().evaluate(r).action != expected) std::abort();
  for (auto _ : state) benchmark::DoNotOptimize(policy().evaluate(r));
}

void BM_PolicyAllowRead(benchmark::State& state) { run(state, read_orders(), gh::policy::Action::Allow); }

void BM_PolicyMaskRead(benchmark::State& state) {
  auto a = read_orders();
  a.statements[0].relations[1].columns_read.push_back("email");
  run(state, a, gh::policy::Action::Mask);
}

void BM_PolicyDenyUnboundedDelete(benchmark::State& state) {
  gh::sql::Statement s;
  s.kinds = {gh::sql::StatementKind::Delete};
  s.relations = {gh::sql::Relation{"", "orders", gh::sql::kDelete, {}, {}, false}};
  s.writes = {gh::sql::WriteFilter{gh::sql::StatementKind::Delete, "orders", false, false}};
  gh::sql::Analysis a;
  a.statements.push_back(s);
  run(state, a, gh::policy::Action::Deny);
}

}  // namespace

BENCHMARK(BM_PolicyAllowRead);
BENCHMARK(BM_PolicyMaskRead);
BENCHMARK(BM_PolicyDenyUnboundedDelete);
