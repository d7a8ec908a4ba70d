#include "config/policy_cases.h"
#include "config/yaml_load.h"

#include <array>
#include <charconv>
#include <cstdio>
#include <set>

#include <yaml-cpp/yaml.h>

#include "sql/analyzer.h"

namespace gh::config {

namespace {

struct CaseError {
  std::string message;
};

constexpr std::array<std::string_view, 5> kPolicyKeys = {"targets", "classification", "policy", "rules", "policy_file"};

template <class Keys>
std::string list_of(const Keys& keys) {
  std::string out;
  for (auto k : keys) out += (out.empty() ? "" : ", ") + std::string(k);
  return out;
}

// Like config.cpp's reader: every failure names file:line: key path: reason.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  std::string where(const YAML::Node& n) const {
    const auto m = n.Mark();
    return m.line >= 0 ? source_ + ":" + std::to_string(m.line + 1) : source_;
  }

  [[noreturn]] void fail_at(const YAML::Node& n, const std::string& path, const std::string& what) const {
    throw CaseError{where(n) + ": " + path + ": " + what};
  }

  void allowed_keys(const YAML::Node& n, const std::string& path, std::initializer_list<std::string_view> keys) const {
    if (!n.IsMap()) fail_at(n, path, "expected a mapping");
    for (const auto& kv : n) {
      const auto k = kv.first.as<std::string>();
      bool ok = false;
      for (auto key : keys) ok = ok || key == k;
      if (!ok) fail_at(kv.first, join(path, k), "unknown key (expected one of: " + list_of(keys) + ")");
    }
  }

  static std::string join(const std::string& path, const std::string& k) { return path.empty() ? k : path + "." + k; }
  static std::string at(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

  std::string str(const YAML::Node& n, const std::string& path, bool non_empty = true) const {
    if (!n.IsScalar()) fail_at(n, path, "expected a value");
    if (non_empty && n.Scalar().empty()) fail_at(n, path, "must not be empty");
    return n.Scalar();
  }

  bool boolean(const YAML::Node& n, const std::string& path) const {
    const auto s = str(n, path);
    if (s == "true") return true;
    if (s == "false") return false;
    fail_at(n, path, "expected true or false, got \"" + s + "\"");
  }

  int integer(const YAML::Node& n, const std::string& path, int lo, int hi) const {
    const auto s = str(n, path);
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
      fail_at(n, path, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got \"" +
                           s + "\"");
    return v;
  }

  // A scalar or a list of scalars; an empty list is a value here ("expect no mask tags").
  std::vector<std::string> strings(const YAML::Node& n, const std::string& path) const {
    if (n.IsScalar()) return {str(n, path)};
    if (!n.IsSequence()) fail_at(n, path, "expected a value or a list");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n.size(); ++i) out.push_back(str(n[i], at(path, i)));
    return out;
  }

 private:
  std::string source_;
};

// yaml-cpp keeps one of two equal keys silently; a second `expect:` that is ignored would make
// a case test less than it says.
void reject_duplicate_keys(const Reader& r, const YAML::Node& n) {
  if (auto d = find_duplicate_key(n)) r.fail_at(d->key, d->path, "given twice; keep one");
}

std::uint8_t access_bits(const Reader& r, const YAML::Node& n, const std::string& path) {
  std::uint8_t bits = 0;
  const auto names = r.strings(n, path);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& a = names[i];
    if (a == "read") bits |= sql::kRead;
    else if (a == "insert") bits |= sql::kInsert;
    else if (a == "update") bits |= sql::kUpdate;
    else if (a == "delete") bits |= sql::kDelete;
    else if (a == "truncate") bits |= sql::kTruncate;
    else if (a == "ddl") bits |= sql::kDdl;
    else
      r.fail_at(n.IsSequence() ? n[i] : n, path,
                "unknown access \"" + a + "\" (expected one of: read, insert, update, delete, truncate, ddl)");
  }
  return bits;
}

sql::StatementKind kind(const Reader& r, const YAML::Node& n, const std::string& path) {
  const auto s = r.str(n, path);
  const auto k = sql::kind_from_name(s);
  if (!k) r.fail_at(n, path, "unknown statement kind \"" + s + "\" (the names of docs/policy.md, e.g. select, delete)");
  return *k;
}

template <class F>
void each_item(const Reader& r, const YAML::Node& n, const std::string& path, F&& fn) {
  if (!n.IsSequence()) r.fail_at(n, path, "expected a list");
  for (std::size_t i = 0; i < n.size(); ++i) fn(n[i], Reader::at(path, i));
}

// The hand-built form mirrors sql::to_json's field names.
sql::Statement statement(const Reader& r, const YAML::Node& n, const std::string& path) {
  r.allowed_keys(n, path,
                 {"kinds", "relations", "functions", "writes", "settings", "unresolved_columns", "returning",
                  "whole_row", "opaque_code", "server_file_access", "server_program", "remote_access", "role_change",
                  "transaction_control", "destructive_alter"});
  sql::Statement s;
  if (!n["kinds"]) r.fail_at(n, path + ".kinds", "missing (a statement has at least one kind, e.g. [select])");
  if (const auto& k = n["kinds"]; k.IsScalar())
    s.kinds.push_back(kind(r, k, path + ".kinds"));
  else
    each_item(r, k, path + ".kinds", [&](const YAML::Node& e, const std::string& p) { s.kinds.push_back(kind(r, e, p)); });
  if (const auto& rels = n["relations"])
    each_item(r, rels, path + ".relations", [&](const YAML::Node& e, const std::string& p) {
      r.allowed_keys(e, p, {"schema", "name", "access", "columns_read", "columns_written", "all_columns"});
      sql::Relation rel;
      if (e["schema"]) rel.schema = r.str(e["schema"], p + ".schema", false);
      if (!e["name"]) r.fail_at(e, p + ".name", "missing");
      rel.name = r.str(e["name"], p + ".name");
      if (e["access"]) rel.access = access_bits(r, e["access"], p + ".access");
      if (e["columns_read"]) rel.columns_read = r.strings(e["columns_read"], p + ".columns_read");
      if (e["columns_written"]) rel.columns_written = r.strings(e["columns_written"], p + ".columns_written");
      if (e["all_columns"]) rel.all_columns = r.boolean(e["all_columns"], p + ".all_columns");
      s.relations.push_back(std::move(rel));
    });
  if (n["functions"]) s.functions = r.strings(n["functions"], path + ".functions");
  if (n["settings"]) s.settings = r.strings(n["settings"], path + ".settings");
  if (n["unresolved_columns"]) s.unresolved_columns = r.strings(n["unresolved_columns"], path + ".unresolved_columns");
  if (const auto& ws = n["writes"])
    each_item(r, ws, path + ".writes", [&](const YAML::Node& e, const std::string& p) {
      r.allowed_keys(e, p, {"kind", "relation", "has_where", "where_trivially_true"});
      sql::WriteFilter f;
      if (!e["kind"]) r.fail_at(e, p + ".kind", "missing (update or delete)");
      f.kind = kind(r, e["kind"], p + ".kind");
      if (!e["relation"]) r.fail_at(e, p + ".relation", "missing");
      f.relation = r.str(e["relation"], p + ".relation");
      if (e["has_where"]) f.has_where = r.boolean(e["has_where"], p + ".has_where");
      if (e["where_trivially_true"])
        f.where_trivially_true = r.boolean(e["where_trivially_true"], p + ".where_trivially_true");
      s.writes.push_back(std::move(f));
    });
  const auto flag = [&](const char* key, bool& field) {
    if (n[key]) field = r.boolean(n[key], path + "." + key);
  };
  flag("returning", s.returning);
  flag("whole_row", s.whole_row);
  flag("opaque_code", s.opaque_code);
  flag("server_file_access", s.server_file_access);
  flag("server_program", s.server_program);
  flag("remote_access", s.remote_access);
  flag("role_change", s.role_change);
  flag("transaction_control", s.transaction_control);
  flag("destructive_alter", s.destructive_alter);
  return s;
}

// "2024-05-06T10:00:00Z" or "2024-05-06T10:00Z" (UTC only).
std::optional<std::chrono::system_clock::time_point> parse_time(const std::string& s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, used = 0;
  const bool full = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &sec, &used) == 6 &&
                    std::size_t(used) == s.size();
  if (!full) {
    sec = 0;
    used = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &used) != 5 ||
        std::size_t(used) != s.size())
      return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
  if (!ymd.ok() || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return std::nullopt;
  return sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec};
}

PolicyExpect expectation(const Reader& r, const YAML::Node& e, const std::string& path) {
  r.allowed_keys(e, path,
                 {"action", "rule", "matched_rules", "would_have", "mask_tags", "reviewers", "message_contains",
                  "hint_contains", "reason_contains"});
  PolicyExpect x;
  if (!e["action"]) r.fail_at(e, path + ".action", "missing (allow, mask, review or deny)");
  const auto action = r.str(e["action"], path + ".action");
  const auto a = policy::action_from_name(action);
  if (!a)
    r.fail_at(e["action"], path + ".action",
              "unknown action \"" + action + "\" (expected one of: allow, mask, review, deny)");
  x.action = *a;
  if (e["rule"]) x.rule = r.str(e["rule"], path + ".rule", false);
  if (e["matched_rules"]) x.matched_rules = r.strings(e["matched_rules"], path + ".matched_rules");
  if (e["would_have"]) {
    x.would_have = r.strings(e["would_have"], path + ".would_have");
    for (const auto& w : *x.would_have) {
      const auto colon = w.rfind(':');
      if (colon == std::string::npos || !policy::action_from_name(w.substr(colon + 1)))
        r.fail_at(e["would_have"], path + ".would_have", "expected \"rule:action\" entries, got \"" + w + "\"");
    }
  }
  if (e["mask_tags"]) x.mask_tags = r.strings(e["mask_tags"], path + ".mask_tags");
  if (const auto& rv = e["reviewers"]) {
    r.allowed_keys(rv, path + ".reviewers", {"groups", "approvals"});
    if (rv["groups"]) x.reviewer_groups = r.strings(rv["groups"], path + ".reviewers.groups");
    if (rv["approvals"]) x.reviewer_approvals = r.integer(rv["approvals"], path + ".reviewers.approvals", 0, 1000);
  }
  if (e["message_contains"]) x.message_contains = r.strings(e["message_contains"], path + ".message_contains");
  if (e["hint_contains"]) x.hint_contains = r.strings(e["hint_contains"], path + ".hint_contains");
  if (e["reason_contains"]) x.reason_contains = r.strings(e["reason_contains"], path + ".reason_contains");
  return x;
}

PolicyCase read_case(const Reader& r, const YAML::Node& c, const std::string& path, PolicyKeys policy_keys) {
  r.allowed_keys(c, path,
                 {"name", "identity", "target", "environment", "database", "client_address", "now", "sql",
                  "statements", "parse_error", "expect"});
  PolicyCase pc;
  pc.where = r.where(c);
  pc.path = path;
  pc.name = c["name"] ? r.str(c["name"], path + ".name") : path;
  const bool deployed = policy_keys == PolicyKeys::Refuse;

  pc.identity.subject = "alice";
  if (const auto& id = c["identity"]) {
    const auto ip = path + ".identity";
    r.allowed_keys(id, ip, {"subject", "email", "groups", "kind"});
    pc.identity_given = true;
    if (id["subject"])
      pc.identity.subject = r.str(id["subject"], ip + ".subject");
    else if (deployed)
      r.fail_at(id, ip + ".subject", "missing (who runs the statement: a static user's name or any subject)");
    if (id["email"]) pc.identity.email = r.str(id["email"], ip + ".email");
    if (id["groups"]) {
      pc.identity.groups = r.strings(id["groups"], ip + ".groups");
      pc.groups_given = true;
    }
    if (id["kind"]) {
      const auto k = r.str(id["kind"], ip + ".kind");
      if (k == "agent")
        pc.identity.kind = identity::Kind::Agent;
      else if (k == "human")
        pc.identity.kind = identity::Kind::Human;
      else
        r.fail_at(id["kind"], ip + ".kind", "expected human or agent, got \"" + k + "\"");
    }
  } else if (deployed) {
    r.fail_at(c, path + ".identity",
              "missing (give {subject: NAME}; a static user's groups are used unless `groups` is given)");
  }
  if (pc.identity.email.empty()) pc.identity.email = pc.identity.subject + "@example.com";
  pc.identity.display_name = pc.identity.subject;
  pc.identity.method = "test";

  pc.target_where = pc.where;
  if (c["target"]) {
    pc.target = r.str(c["target"], path + ".target");
    pc.target_given = true;
    pc.target_where = r.where(c["target"]);
  } else if (deployed) {
    r.fail_at(c, path + ".target", "missing (a target name from the configuration)");
  }
  if (c["environment"]) {
    pc.environment = r.str(c["environment"], path + ".environment");
    pc.environment_where = r.where(c["environment"]);
  }
  if (c["database"]) {
    pc.database = r.str(c["database"], path + ".database");
    pc.database_given = true;
  }
  if (c["client_address"]) pc.client_address = r.str(c["client_address"], path + ".client_address", false);
  pc.now = *parse_time("2024-05-06T10:00:00Z");
  if (c["now"]) {
    const auto s = r.str(c["now"], path + ".now");
    const auto t = parse_time(s);
    if (!t) r.fail_at(c["now"], path + ".now", "expected a UTC time such as 2024-05-06T10:00:00Z, got \"" + s + "\"");
    pc.now = *t;
  }

  const int sources = int(bool(c["sql"])) + int(bool(c["statements"])) + int(bool(c["parse_error"]));
  if (sources != 1)
    r.fail_at(c, path, sources == 0 ? "no statement: give one of sql, statements, parse_error"
                                    : "give only one of sql, statements, parse_error");
  if (c["sql"]) {
    pc.sql = r.str(c["sql"], path + ".sql");
  } else if (const auto& st = c["statements"]) {
    each_item(r, st, path + ".statements", [&](const YAML::Node& e, const std::string& p) {
      pc.analysis.statements.push_back(statement(r, e, p));
    });
    if (pc.analysis.statements.empty()) r.fail_at(st, path + ".statements", "must not be an empty list");
  } else {
    const auto& pe = c["parse_error"];
    const auto pp = path + ".parse_error";
    r.allowed_keys(pe, pp, {"message", "cursor"});
    if (!pe["message"]) r.fail_at(pe, pp + ".message", "missing");
    sql::ParseError err;
    err.message = r.str(pe["message"], pp + ".message");
    if (pe["cursor"]) err.cursor = r.integer(pe["cursor"], pp + ".cursor", 0, 1 << 30);
    pc.analysis.error = std::move(err);
  }

  if (!c["expect"]) r.fail_at(c, path + ".expect", "missing (at least {action: allow|mask|review|deny})");
  pc.expect = expectation(r, c["expect"], path + ".expect");
  return pc;
}

std::vector<PolicyCase> read_file(const Reader& r, const YAML::Node& root, PolicyKeys policy_keys) {
  if (root.IsNull()) r.fail_at(root, "(root)", "empty file: expected `cases:` with a list of cases");
  if (!root.IsMap()) r.fail_at(root, "(root)", "expected a mapping with `cases:`");
  reject_duplicate_keys(r, root);
  for (const auto& kv : root) {
    const auto k = kv.first.as<std::string>();
    if (k == "cases") continue;
    bool policy_key = false;
    for (auto p : kPolicyKeys) policy_key = policy_key || p == k;
    if (policy_key && policy_keys == PolicyKeys::Allow) continue;
    if (policy_key)
      r.fail_at(kv.first, k,
                "a policy test file holds only `cases`; the policy under test is the configuration's (--config), "
                "so that the cases test the policy that is deployed. Move this key to the configuration or drop it");
    r.fail_at(kv.first, k,
              "unknown key (expected " +
                  std::string(policy_keys == PolicyKeys::Allow ? "cases, " + list_of(kPolicyKeys) : "cases") + ")");
  }
  const auto& cases = root["cases"];
  if (!cases) r.fail_at(root, "cases", "missing (a list of cases)");
  if (!cases.IsSequence()) r.fail_at(cases, "cases", "expected a list of cases");
  if (cases.size() == 0) r.fail_at(cases, "cases", "must not be an empty list");
  std::vector<PolicyCase> out;
  std::set<std::string> names;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    out.push_back(read_case(r, cases[i], Reader::at("cases", i), policy_keys));
    if (cases[i]["name"] && !names.insert(out.back().name).second)
      r.fail_at(cases[i]["name"], Reader::at("cases", i) + ".name",
                "\"" + out.back().name + "\" names another case too; names must tell failures apart");
  }
  return out;
}

std::string list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

std::string rule_text(const std::string& rule) {
  return rule.empty() ? "\"\" (the target's default action)" : "\"" + rule + "\"";
}

}  // namespace

Result<std::vector<PolicyCase>> parse_policy_cases(std::string_view yaml, std::string_view source,
                                                   PolicyKeys policy_keys) {
  Reader r{std::string(source)};
  try {
    const YAML::Node root = load_yaml(yaml);
    return read_file(r, root, policy_keys);
  } catch (const CaseError& e) {
    return fail("", e.message);
  } catch (const YAML::Exception& e) {
    std::string where(source);
    if (e.mark.line >= 0) where += ":" + std::to_string(e.mark.line + 1);
    return fail("", where + ": invalid YAML: " + e.msg);
  }
}

CaseOutcome run_case(const policy::Policy& pol, const PolicyCase& c) {
  CaseOutcome out;
  out.analysis = c.sql ? sql::analyze_uncached(*c.sql) : c.analysis;
  policy::Request req;
  req.identity = &c.identity;
  req.target = c.target;
  req.environment = c.environment;
  req.database = c.database;
  req.client_address = c.client_address;
  req.analysis = &out.analysis;
  req.now = c.now;
  out.decision = pol.evaluate(req);
  const auto& d = out.decision;
  const auto& e = c.expect;
  auto& m = out.mismatches;

  if (d.action != e.action)
    m.push_back("action: expected " + std::string(policy::action_name(e.action)) + ", got " +
                std::string(policy::action_name(d.action)) + (d.rule.empty() ? "" : " (rule " + d.rule + ")"));
  if (e.rule && *e.rule != d.rule) m.push_back("rule: expected " + rule_text(*e.rule) + ", got " + rule_text(d.rule));
  if (e.matched_rules && *e.matched_rules != d.matched_rules)
    m.push_back("matched_rules: expected " + list(*e.matched_rules) + ", got " + list(d.matched_rules));
  if (e.would_have) {
    std::vector<std::string> got;
    for (const auto& w : d.would_have) got.push_back(w.rule + ":" + std::string(policy::action_name(w.action)));
    if (got != *e.would_have) m.push_back("would_have: expected " + list(*e.would_have) + ", got " + list(got));
  }
  if (e.mask_tags && *e.mask_tags != d.mask_tags)
    m.push_back("mask_tags: expected " + list(*e.mask_tags) + ", got " + list(d.mask_tags));
  if (e.reviewer_groups && *e.reviewer_groups != d.reviewers.groups)
    m.push_back("reviewers.groups: expected " + list(*e.reviewer_groups) + ", got " + list(d.reviewers.groups));
  if (e.reviewer_approvals && *e.reviewer_approvals != d.reviewers.approvals)
    m.push_back("reviewers.approvals: expected " + std::to_string(*e.reviewer_approvals) + ", got " +
                std::to_string(d.reviewers.approvals));
  const auto contains = [&m](const char* key, const char* what, const std::vector<std::string>& wants,
                             const std::string& text) {
    for (const auto& want : wants)
      if (text.find(want) == std::string::npos)
        m.push_back(std::string(key) + ": \"" + want + "\" is not in the " + what + " \"" + text + "\"");
  };
  contains("message_contains", "message", e.message_contains, d.message);
  contains("hint_contains", "hint", e.hint_contains, d.hint);
  contains("reason_contains", "reason", e.reason_contains, d.reason);
  return out;
}

std::vector<std::string> check_case(const policy::Policy& pol, const PolicyCase& c) {
  return run_case(pol, c).mismatches;
}

}  // namespace gh::config
