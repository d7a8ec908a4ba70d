// `gatehouse explain`: what the policy in a configuration decides for one identity, target and
// SQL text, and why. Runs the same analyzer and the same Policy::evaluate as the proxy.
#include "app/policy_tools.h"

#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "policy/describe.h"
#include "policy/policy.h"
#include "sql/analyzer.h"
#include "sql/json.h"

namespace gh::app {

namespace {

std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

std::string statement_summary(const sql::Statement& st) {
  std::vector<std::string> kinds;
  for (auto k : st.kinds) kinds.emplace_back(sql::kind_name(k));
  std::string out = "kinds: " + join(kinds);
  if (!st.relations.empty()) {
    std::vector<std::string> rels;
    for (const auto& r : st.relations) rels.push_back(policy::relation_name(r) + " (" + sql::access_names(r.access) + ")");
    out += "; relations: " + join(rels);
  }
  for (const auto& w : st.writes)
    out += fmt::format("; {} on {}: {}", sql::kind_name(w.kind), w.relation,
                       !w.has_where ? "no WHERE" : (w.where_trivially_true ? "WHERE is always true" : "WHERE present"));
  if (!st.functions.empty()) out += "; functions: " + join(st.functions);
  if (!st.settings.empty()) out += "; settings: " + join(st.settings);
  std::vector<std::string> flags;
  if (st.opaque_code) flags.emplace_back("opaque code");
  if (st.server_file_access) flags.emplace_back("server file access");
  if (st.server_program) flags.emplace_back("server program");
  if (st.remote_access) flags.emplace_back("remote access");
  if (st.role_change) flags.emplace_back("role change");
  if (st.destructive_alter) flags.emplace_back("destructive ALTER");
  if (st.whole_row) flags.emplace_back("whole-row reference");
  if (st.returning) flags.emplace_back("RETURNING");
  if (!flags.empty()) out += "; " + join(flags);
  return out;
}

Result<identity::Identity> identity_for(const config::Config& cfg, const IdentityArgs& a) {
  identity::Identity id;
  id.subject = a.subject;
  id.email = a.email;
  id.display_name = a.subject;
  id.method = "explain";
  for (const auto& u : cfg.users)
    if (u.name == a.subject) id.groups = u.groups;
  if (!a.groups.empty()) id.groups = a.groups;
  if (a.kind == "agent")
    id.kind = identity::Kind::Agent;
  else if (a.kind.empty() || a.kind == "human")
    id.kind = identity::Kind::Human;
  else
    return fail("", "--kind must be human or agent, not \"" + a.kind + "\"");
  return id;
}

int cmd_explain(const std::string& config_path, const IdentityArgs& who, const std::string& target_name,
                const std::string& database, const std::string& address, const std::string& sql_text, bool json) {
  auto cfg = config::load_file(config_path);
  if (!cfg) {
    std::cerr << "error: " << cfg.error().message << "\n";
    return 2;
  }
  const config::Target* target = nullptr;
  for (const auto& t : cfg->targets)
    if (t.name == target_name) target = &t;
  if (!target) {
    std::cerr << "error: target \"" << target_name << "\" is not in " << config_path << " (targets:";
    for (const auto& t : cfg->targets) std::cerr << " " << t.name;
    std::cerr << ")\n";
    return 2;
  }
  auto id = identity_for(*cfg, who);
  if (!id) {
    std::cerr << "error: " << id.error().message << "\n";
    return 2;
  }
  const auto analysis = sql::analyze_uncached(sql_text);
  policy::Request req;
  req.identity = &*id;
  req.target = target->name;
  req.environment = target->environment;
  const std::string db = target->backend_database(database.empty() ? target->name : database);
  req.database = db;
  req.client_address = address;
  req.analysis = &analysis;
  req.now = std::chrono::system_clock::now();
  if (const auto* login = target->login_for(*id)) req.login_user = login->user;
  const policy::Decision d = cfg->policy->evaluate(req);

  if (json) {
    nlohmann::ordered_json out;
    out["action"] = policy::action_name(d.action);
    out["rule"] = d.rule;
    out["reason"] = d.reason;
    out["message"] = d.message;
    out["hint"] = d.hint;
    out["analysis"] = nlohmann::ordered_json::parse(sql::to_json(analysis));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "identity:  " << id->subject << (id->groups.empty() ? "" : " (groups: " + join(id->groups) + ")")
            << (id->kind == identity::Kind::Agent ? ", agent" : "") << "\n";
  std::cout << "target:    " << target->name << " (environment " << target->environment << ", database " << db
            << ")\n";
  if (analysis.error) {
    std::cout << "sql:       does not parse: " << analysis.error->message;
    if (analysis.error->cursor > 0) std::cout << " at character " << analysis.error->cursor;
    std::cout << "\n";
  }
  for (std::size_t i = 0; i < analysis.statements.size(); ++i) {
    const auto& st = analysis.statements[i];
    std::cout << "statement " << i + 1 << ": " << st.text << "\n           " << statement_summary(st) << "\n";
  }
  std::cout << "decision:  " << policy::action_name(d.action) << "\n";
  std::cout << "rule:      " << (d.rule.empty() ? "(none matched: the target's default action)" : d.rule) << "\n";
  if (!d.reason.empty()) std::cout << "reason:    " << d.reason << "\n";
  if (!d.message.empty()) std::cout << "message:   " << d.message << "\n";
  if (!d.hint.empty()) std::cout << "hint:      " << d.hint << "\n";
  if (d.action == policy::Action::Review && !d.reviewers.groups.empty())
    std::cout << "reviewers: " << join(d.reviewers.groups) << " (" << d.reviewers.approvals << " approval(s))\n";
  if (!d.mask_tags.empty()) std::cout << "masks:     " << join(d.mask_tags) << "\n";
  if (d.matched_rules.size() > 1) std::cout << "matched:   " << join(d.matched_rules) << "\n";
  for (const auto& w : d.would_have)
    std::cout << "audit_only: rule " << w.rule << " would have decided " << policy::action_name(w.action) << ": "
              << w.reason << "\n";
  return 0;
}

}  // namespace gh::app
