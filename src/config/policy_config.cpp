#include "config/policy_config.h"
#include "config/yaml_load.h"

#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <sys/stat.h>

#include <yaml-cpp/yaml.h>

#include "masking/detect.h"
#include "policy/guardrails.h"

namespace gh::config {

namespace {

using policy::Action;

struct PolicyError {
  std::string message;
};

// Like config.cpp's reader: every failure names file:line: key path: reason.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail_at(const YAML::Node& n, const std::string& path, const std::string& what) const {
    fail_mark(n.Mark(), path, what);
  }
  [[noreturn]] void fail_mark(const YAML::Mark& m, const std::string& path, const std::string& what) const {
    std::string where = source_;
    if (m.line >= 0) where += ":" + std::to_string(m.line + 1);
    throw PolicyError{where + ": " + path + ": " + what};
  }

  void allowed_keys(const YAML::Node& n, const std::string& path, const std::vector<std::string_view>& keys) const {
    if (!n.IsMap()) fail_at(n, path, "expected a mapping");
    for (const auto& kv : n) {
      const auto k = kv.first.as<std::string>();
      bool ok = false;
      for (auto key : keys) ok = ok || key == k;
      if (!ok) {
        std::string list;
        for (auto key : keys) list += (list.empty() ? "" : ", ") + std::string(key);
        fail_at(kv.first, join(path, k), "unknown key (expected one of: " + list + ")");
      }
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

  std::uint64_t uint(const YAML::Node& n, const std::string& path, std::uint64_t lo, std::uint64_t hi) const {
    const auto s = str(n, path);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
      fail_at(n, path, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got \"" +
                           s + "\"");
    return v;
  }

  // A scalar or a list of scalars; calls fn(node, path) for each.
  template <class F>
  void each(const YAML::Node& n, const std::string& path, F&& fn) const {
    if (n.IsScalar()) {
      fn(n, path);
      return;
    }
    if (!n.IsSequence()) fail_at(n, path, "expected a value or a list");
    if (n.size() == 0) fail_at(n, path, "must not be an empty list (leave the key out instead)");
    for (std::size_t i = 0; i < n.size(); ++i) fn(n[i], at(path, i));
  }

  std::vector<std::string> strings(const YAML::Node& n, const std::string& path) const {
    std::vector<std::string> out;
    each(n, path, [&](const YAML::Node& e, const std::string& p) { out.push_back(str(e, p)); });
    return out;
  }

  template <class T>
  T ok(Result<T> r, const YAML::Node& n, const std::string& path) const {
    if (!r) fail_at(n, path, r.error().message);
    if constexpr (!std::is_void_v<T>) return std::move(*r);
  }

  Action action(const YAML::Node& n, const std::string& path, std::initializer_list<Action> allowed) const {
    const auto s = str(n, path);
    const auto a = policy::action_from_name(s);
    std::string list;
    for (auto x : allowed) list += (list.empty() ? "" : ", ") + std::string(policy::action_name(x));
    bool ok = false;
    for (auto x : allowed) ok = ok || (a && *a == x);
    if (!ok) fail_at(n, path, "unknown action \"" + s + "\" (expected one of: " + list + ")");
    return *a;
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

constexpr std::initializer_list<Action> kAllActions = {Action::Allow, Action::Mask, Action::Review, Action::Deny};

struct TagRef {
  YAML::Mark mark;
  std::string path;
  std::string tag;
  const Reader* reader;
};

// Collects the policy from the main file and an optional policy file.
struct Builder {
  policy::PolicySpec spec;
  std::map<std::string, std::pair<const Reader*, YAML::Mark>> rule_names;
  std::set<std::string> defined_tags;
  std::vector<TagRef> tag_refs;  // checked once every classification entry is known
  bool settings_seen = false;
};

std::vector<policy::Glob> globs(const Reader& r, const YAML::Node& n, const std::string& path, bool fold = false) {
  std::vector<policy::Glob> out;
  r.each(n, path, [&](const YAML::Node& e, const std::string& p) {
    out.push_back(r.ok(policy::Glob::parse(r.str(e, p), fold), e, p));
  });
  return out;
}

std::vector<policy::NamePattern> names(const Reader& r, const YAML::Node& n, const std::string& path, int min_parts,
                                       int max_parts, std::string_view shapes) {
  std::vector<policy::NamePattern> out;
  r.each(n, path, [&](const YAML::Node& e, const std::string& p) {
    out.push_back(r.ok(policy::NamePattern::parse(r.str(e, p), min_parts, max_parts, shapes), e, p));
  });
  return out;
}

std::vector<policy::Cidr> cidrs(const Reader& r, const YAML::Node& n, const std::string& path) {
  std::vector<policy::Cidr> out;
  r.each(n, path, [&](const YAML::Node& e, const std::string& p) {
    out.push_back(r.ok(policy::Cidr::parse(r.str(e, p)), e, p));
  });
  return out;
}

policy::TimeWindow window(const Reader& r, const YAML::Node& n, const std::string& path) {
  r.allowed_keys(n, path, {"days", "hours", "utc_offset"});
  std::uint8_t days = 0x7f;
  if (n["days"]) {
    days = 0;
    r.each(n["days"], path + ".days", [&](const YAML::Node& e, const std::string& p) {
      days |= r.ok(policy::TimeWindow::parse_days(r.str(e, p)), e, p);
    });
  }
  std::pair<int, int> hours{0, 24 * 60};
  if (n["hours"]) hours = r.ok(policy::TimeWindow::parse_hours(r.str(n["hours"], path + ".hours")), n["hours"], path + ".hours");
  int offset = 0;
  if (n["utc_offset"])
    offset = r.ok(policy::TimeWindow::parse_offset(r.str(n["utc_offset"], path + ".utc_offset")), n["utc_offset"],
                  path + ".utc_offset");
  return r.ok(policy::TimeWindow::make(days, hours.first, hours.second, offset), n, path);
}

std::vector<policy::TimeWindow> windows(const Reader& r, const YAML::Node& n, const std::string& path) {
  std::vector<policy::TimeWindow> out;
  if (n.IsMap()) {
    out.push_back(window(r, n, path));
  } else if (n.IsSequence() && n.size() > 0) {
    for (std::size_t i = 0; i < n.size(); ++i) out.push_back(window(r, n[i], Reader::at(path, i)));
  } else {
    r.fail_at(n, path, "expected a time window {days, hours, utc_offset} or a list of them");
  }
  return out;
}

std::uint8_t access_bits(const Reader& r, const YAML::Node& n, const std::string& path) {
  std::uint8_t bits = 0;
  r.each(n, path, [&](const YAML::Node& e, const std::string& p) {
    const auto s = r.str(e, p);
    if (s == "read") bits |= sql::kRead;
    else if (s == "insert") bits |= sql::kInsert;
    else if (s == "update") bits |= sql::kUpdate;
    else if (s == "delete") bits |= sql::kDelete;
    else if (s == "truncate") bits |= sql::kTruncate;
    else if (s == "ddl") bits |= sql::kDdl;
    else if (s == "write") bits |= sql::kInsert | sql::kUpdate | sql::kDelete | sql::kTruncate;
    else r.fail_at(e, p, "unknown access \"" + s + "\" (expected read, write, insert, update, delete, truncate or ddl)");
  });
  return bits;
}

const std::vector<std::string_view>& condition_keys() {
  static const std::vector<std::string_view> keys = [] {
    std::vector<std::string_view> k = {"subject",    "email",    "groups",     "not_groups",         "identity_kind",
                                       "target",     "environment", "database", "client_address",     "not_client_address",
                                       "time",       "not_time", "statements", "access",             "schemas",
                                       "tables",     "columns",  "tags",       "min_sensitivity",    "functions",
                                       "settings"};
    for (std::size_t f = 0; f < policy::kFeatureCount; ++f) k.push_back(policy::feature_name(policy::Feature(f)));
    return k;
  }();
  return keys;
}

policy::Conditions conditions(const Reader& r, const YAML::Node& n, const std::string& path, Builder& b) {
  r.allowed_keys(n, path, condition_keys());
  policy::Conditions c;
  const auto key = [&](const char* k) { return Reader::join(path, k); };
  if (n["subject"]) c.subjects = globs(r, n["subject"], key("subject"));
  if (n["email"]) c.emails = globs(r, n["email"], key("email"), true);
  if (n["groups"]) c.groups = globs(r, n["groups"], key("groups"));
  if (n["not_groups"]) c.not_groups = globs(r, n["not_groups"], key("not_groups"));
  if (auto k = n["identity_kind"]) {
    const auto s = r.str(k, key("identity_kind"));
    if (s == "human") c.identity_kind = identity::Kind::Human;
    else if (s == "agent") c.identity_kind = identity::Kind::Agent;
    else r.fail_at(k, key("identity_kind"), "expected human or agent, got \"" + s + "\"");
  }
  if (n["target"]) c.targets = globs(r, n["target"], key("target"));
  if (n["environment"]) c.environments = globs(r, n["environment"], key("environment"), true);  // as guardrails: any case
  if (n["database"]) c.databases = globs(r, n["database"], key("database"));
  if (n["client_address"]) c.client_addresses = cidrs(r, n["client_address"], key("client_address"));
  if (n["not_client_address"]) c.not_client_addresses = cidrs(r, n["not_client_address"], key("not_client_address"));
  if (n["time"]) c.time = windows(r, n["time"], key("time"));
  if (n["not_time"]) c.not_time = windows(r, n["not_time"], key("not_time"));
  if (auto s = n["statements"]) {
    r.each(s, key("statements"), [&](const YAML::Node& e, const std::string& p) {
      r.ok(c.statements.add(r.str(e, p)), e, p);
    });
  }
  if (n["access"]) c.access = access_bits(r, n["access"], key("access"));
  if (n["schemas"]) c.schemas = globs(r, n["schemas"], key("schemas"));
  if (n["tables"]) c.tables = names(r, n["tables"], key("tables"), 1, 2, "schema.table or table");
  if (n["columns"])
    c.columns = names(r, n["columns"], key("columns"), 1, 3, "schema.table.column, table.column or column");
  if (auto t = n["tags"]) {
    r.each(t, key("tags"), [&](const YAML::Node& e, const std::string& p) {
      c.tags.push_back(r.str(e, p));
      b.tag_refs.push_back({e.Mark(), p, c.tags.back(), &r});
    });
  }
  if (auto s = n["min_sensitivity"]) {
    const auto v = policy::sensitivity_from_name(r.str(s, key("min_sensitivity")));
    if (!v) r.fail_at(s, key("min_sensitivity"), "expected low, medium, high or critical");
    c.min_sensitivity = *v;
  }
  if (n["functions"]) c.functions = names(r, n["functions"], key("functions"), 1, 2, "schema.function or function");
  if (n["settings"]) c.settings = globs(r, n["settings"], key("settings"));
  for (std::size_t f = 0; f < policy::kFeatureCount; ++f) {
    const auto name = std::string(policy::feature_name(policy::Feature(f)));
    if (auto v = n[name]) c.features.push_back({policy::Feature(f), r.boolean(v, key(name.c_str()))});
  }
  return c;
}

bool valid_rule_name(const std::string& s) {
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.' || c == ':'))
      return false;
  return !s.empty();
}

policy::Rule rule(const Reader& r, const YAML::Node& n, const std::string& path, Builder& b) {
  r.allowed_keys(n, path,
                 {"name", "description", "when", "action", "message", "hint", "audit_only", "reviewers", "mask",
                  "requires_grant"});
  policy::Rule rule;
  if (!n["name"]) r.fail_at(n, path + ".name", "missing");
  rule.name = r.str(n["name"], path + ".name");
  if (!valid_rule_name(rule.name))
    r.fail_at(n["name"], path + ".name", "use letters, digits, '-', '_', '.' and ':' only");
  if (rule.name.rfind("guardrail.", 0) == 0) {
    const auto* g = policy::find_guardrail(rule.name);
    if (!g || g->name != rule.name) {
      std::string list;
      for (const auto& x : policy::guardrails())
        if (!x.always_on) list += (list.empty() ? "" : ", ") + std::string(x.name);
      r.fail_at(n["name"], path + ".name",
                "no built-in guardrail is named \"" + rule.name + "\" (names starting with guardrail. override one of: " +
                    list + ")");
    }
    if (g->always_on) r.fail_at(n["name"], path + ".name", rule.name + " protects Gatehouse itself and cannot be overridden");
  }
  if (auto [it, fresh] = b.rule_names.try_emplace(rule.name, &r, n["name"].Mark()); !fresh) {
    std::string first = it->second.first->source();
    if (it->second.second.line >= 0) first += ":" + std::to_string(it->second.second.line + 1);
    r.fail_at(n["name"], path + ".name", "duplicate rule name \"" + rule.name + "\" (first defined at " + first + ")");
  }
  if (n["description"]) rule.description = r.str(n["description"], path + ".description", false);
  if (n["when"] && !n["when"].IsNull()) rule.when = conditions(r, n["when"], path + ".when", b);
  if (!n["action"]) r.fail_at(n, path + ".action", "missing (deny, review, mask or allow)");
  rule.action = r.action(n["action"], path + ".action", kAllActions);
  if (n["message"]) rule.message = r.str(n["message"], path + ".message");
  if (n["hint"]) rule.hint = r.str(n["hint"], path + ".hint");
  if (n["audit_only"]) rule.audit_only = r.boolean(n["audit_only"], path + ".audit_only");
  if (n["requires_grant"]) rule.requires_grant = r.str(n["requires_grant"], path + ".requires_grant");
  if (auto v = n["reviewers"]) {
    if (rule.action != Action::Review) r.fail_at(v, path + ".reviewers", "only for action: review");
    r.allowed_keys(v, path + ".reviewers", {"groups", "approvals"});
    if (v["groups"]) rule.reviewers.groups = r.strings(v["groups"], path + ".reviewers.groups");
    if (v["approvals"]) rule.reviewers.approvals = int(r.uint(v["approvals"], path + ".reviewers.approvals", 1, 10));
  }
  if (auto v = n["mask"]) {
    if (rule.action != Action::Mask) r.fail_at(v, path + ".mask", "only for action: mask");
    r.allowed_keys(v, path + ".mask", {"tags", "strategy", "keep_first", "keep_last", "value", "deny_predicates", "detect",
                                             "binary", "undecided", "copy"});
    if (auto t = v["tags"]) {
      r.each(t, path + ".mask.tags", [&](const YAML::Node& e, const std::string& p) {
        rule.mask.tags.push_back(r.str(e, p));
        b.tag_refs.push_back({e.Mark(), p, rule.mask.tags.back(), &r});
      });
    }
    if (auto s = v["strategy"]) {
      rule.mask.strategy = r.str(s, path + ".mask.strategy");
      if (!policy::is_mask_strategy(rule.mask.strategy))
        r.fail_at(s, path + ".mask.strategy",
                  "unknown strategy \"" + rule.mask.strategy +
                      "\" (expected redact, partial, hash, keep_domain, null, fixed or digits)");
    }
    if (auto k = v["keep_first"]) rule.mask.keep_first = int(r.uint(k, path + ".mask.keep_first", 0, 64));
    if (auto k = v["keep_last"]) rule.mask.keep_last = int(r.uint(k, path + ".mask.keep_last", 0, 64));
    if (auto k = v["value"]) rule.mask.value = r.str(k, path + ".mask.value");
    if (auto k = v["deny_predicates"]) rule.mask.deny_predicates = r.boolean(k, path + ".mask.deny_predicates");
    // Each either masks (the default) or refuses the statement.
    auto mask_or_deny = [&](const char* key, std::string_view masks) {
      const YAML::Node k = v[key];
      if (!k) return false;
      const std::string p = path + ".mask." + key;
      if (k.IsNull()) {  // `binary: null` unquoted is YAML's null
        if (masks == "null") return false;
        r.fail_at(k, p, "expected " + std::string(masks) + " or deny");
      }
      const std::string s = r.str(k, p);
      if (s == "deny") return true;
      if (s != masks) r.fail_at(k, p, "expected " + std::string(masks) + " or deny, not \"" + s + "\"");
      return false;
    };
    rule.mask.deny_binary = mask_or_deny("binary", "null");
    rule.mask.deny_undecided = mask_or_deny("undecided", "mask");
    rule.mask.deny_copy = mask_or_deny("copy", "mask");
    if (auto k = v["detect"]) {
      r.each(k, path + ".mask.detect", [&](const YAML::Node& e, const std::string& p) {
        const std::string name = r.str(e, p);
        if (name != "all" && !masking::detector_from_name(name)) {
          std::string known;
          for (std::size_t i = 0; i < masking::kDetectorCount; ++i)
            known += std::string(i ? ", " : "") + std::string(masking::detector_name(masking::Detector(i)));
          r.fail_at(e, p, "unknown detector \"" + name + "\" (expected all, " + known + ")");
        }
        rule.mask.detect.push_back(name);
      });
    }
    if (rule.mask.strategy == "fixed" && !v["value"])
      r.fail_at(v, path + ".mask.value", "missing: the value masked values become (strategy fixed)");
  }
  return rule;
}

std::optional<policy::RowLimit> row_limit(const Reader& r, const YAML::Node& n, const std::string& path) {
  if (!n["max_rows_affected"]) {
    if (n["over_limit_action"])
      r.fail_at(n["over_limit_action"], path + ".over_limit_action", "needs max_rows_affected");
    return std::nullopt;
  }
  policy::RowLimit l;
  l.max_rows_affected = r.uint(n["max_rows_affected"], path + ".max_rows_affected", 1, std::uint64_t(1) << 62);
  if (n["over_limit_action"])
    l.over_limit_action = r.action(n["over_limit_action"], path + ".over_limit_action", {Action::Review, Action::Deny});
  return l;
}

// Top-level keys rules, classification, policy of one document.
void read_document(const Reader& r, const YAML::Node& root, Builder& b) {
  if (auto n = root["classification"]) {
    if (!n.IsSequence()) r.fail_at(n, "classification", "expected a list");
    for (std::size_t i = 0; i < n.size(); ++i) {
      const auto path = Reader::at("classification", i);
      const auto& e = n[i];
      r.allowed_keys(e, path, {"columns", "tags", "sensitivity"});
      policy::ClassificationEntry entry;
      if (!e["columns"]) r.fail_at(e, path + ".columns", "missing");
      entry.columns = names(r, e["columns"], path + ".columns", 1, 3, "schema.table.column, table.column or column");
      if (e["tags"]) entry.tags = r.strings(e["tags"], path + ".tags");
      if (auto s = e["sensitivity"]) {
        const auto v = policy::sensitivity_from_name(r.str(s, path + ".sensitivity"));
        if (!v) r.fail_at(s, path + ".sensitivity", "expected low, medium, high or critical");
        entry.sensitivity = *v;
      }
      if (entry.tags.empty() && entry.sensitivity == policy::Sensitivity::None)
        r.fail_at(e, path, "give tags, sensitivity or both");
      for (const auto& t : entry.tags) b.defined_tags.insert(t);
      b.spec.classification.push_back(std::move(entry));
    }
  }
  if (auto n = root["rules"]) {
    if (!n.IsSequence()) r.fail_at(n, "rules", "expected a list");
    for (std::size_t i = 0; i < n.size(); ++i) b.spec.rules.push_back(rule(r, n[i], Reader::at("rules", i), b));
  }
  if (auto n = root["policy"]) {
    if (b.settings_seen) r.fail_at(n, "policy", "given both in the configuration file and in policy_file; keep one");
    b.settings_seen = true;
    r.allowed_keys(n, "policy", {"unknown_action", "default_action", "max_rows_affected", "over_limit_action"});
    if (n["unknown_action"])
      b.spec.settings.unknown_action = r.action(n["unknown_action"], "policy.unknown_action", {Action::Deny, Action::Review});
    if (n["default_action"])
      b.spec.settings.default_action = r.action(n["default_action"], "policy.default_action", kAllActions);
    b.spec.settings.row_limit = row_limit(r, n, "policy");
  }
}

void read_targets(const Reader& r, const YAML::Node& root, Builder& b) {
  const auto n = root["targets"];
  if (!n) return;
  if (!n.IsSequence()) r.fail_at(n, "targets", "expected a list");
  for (std::size_t i = 0; i < n.size(); ++i) {
    const auto path = Reader::at("targets", i);
    const auto& t = n[i];
    if (!t.IsMap()) r.fail_at(t, path, "expected a mapping");
    policy::TargetSettings ts;
    if (!t["name"]) r.fail_at(t, path + ".name", "missing");
    ts.name = r.str(t["name"], path + ".name");
    if (t["environment"]) {
      ts.environment = r.str(t["environment"], path + ".environment");
      if (ts.environment.find_first_of(" \t") == 0 || ts.environment.find_last_of(" \t") == ts.environment.size() - 1)
        r.fail_at(t["environment"], path + ".environment", "\"" + ts.environment + "\" begins or ends with a space");
    }
    if (auto g = t["guardrails"]) {
      const auto gp = path + ".guardrails";
      if (g.IsScalar()) {
        ts.guardrails = r.boolean(g, gp);
      } else {
        r.allowed_keys(g, gp, {"enabled", "off"});
        if (g["enabled"]) ts.guardrails = r.boolean(g["enabled"], gp + ".enabled");
        if (auto off = g["off"]) {
          r.each(off, gp + ".off", [&](const YAML::Node& e, const std::string& p) {
            const auto name = r.str(e, p);
            const auto* rail = policy::find_guardrail(name);
            if (!rail || rail->always_on) {
              std::string list;
              for (const auto& x : policy::guardrails())
                if (!x.always_on) list += (list.empty() ? "" : ", ") + std::string(x.name);
              r.fail_at(e, p, "no guardrail that can be turned off is named \"" + name + "\" (expected one of: " + list + ")");
            }
            ts.guardrails_off.emplace_back(rail->name);
          });
        }
      }
    }
    // The built-in guardrails are on for "production" (in any case). An environment that looks
    // like production but is spelled otherwise ("prod", "production-eu") would turn them off
    // without a word (found by a security team's trial): it has to say which it wants.
    if (!ts.guardrails && !policy::is_production(ts.environment) && policy::contains_nocase(ts.environment, "prod"))
      r.fail_at(t["environment"], path + ".environment",
                "\"" + ts.environment + "\" is not \"production\", so the built-in guardrails would be off for this "
                "target; write environment: production to have them, or say guardrails: true or guardrails: false "
                "(or, in the map form, guardrails: {enabled: true|false, ...})");
    if (auto p = t["policy"]) {
      const auto pp = path + ".policy";
      r.allowed_keys(p, pp, {"default_action", "max_rows_affected", "over_limit_action"});
      if (p["default_action"]) ts.default_action = r.action(p["default_action"], pp + ".default_action", kAllActions);
      ts.row_limit = row_limit(r, p, pp);
    }
    b.spec.targets.push_back(std::move(ts));
  }
}

std::string resolve(const std::string& file, const std::string& source) {
  if (file.empty() || file[0] == '/') return file;
  const auto slash = source.rfind('/');
  return slash == std::string::npos ? file : source.substr(0, slash + 1) + file;
}

Result<std::shared_ptr<const policy::Policy>> finish(Builder& b, const std::string& source) {
  for (const auto& ref : b.tag_refs)
    if (!b.defined_tags.count(ref.tag))
      ref.reader->fail_mark(ref.mark, ref.path,
                            "tag \"" + ref.tag + "\" is not given to any column by classification (a typo here would "
                            "make the rule never match)");
  auto p = policy::Policy::build(std::move(b.spec));
  if (!p) return fail("", source + ": " + p.error().message);
  return std::make_shared<const policy::Policy>(std::move(*p));
}

Result<std::shared_ptr<const policy::Policy>> read_all(const YAML::Node& root, const std::string& source,
                                                       bool standalone) {
  Reader r{source};
  std::unique_ptr<Reader> file_reader;
  try {
    Builder b;
    if (root.IsNull()) return finish(b, source);
    if (standalone) {
      r.allowed_keys(root, "", {"rules", "classification", "policy", "policy_file", "targets"});
      if (auto t = root["targets"]) {
        if (!t.IsSequence()) r.fail_at(t, "targets", "expected a list");
        for (std::size_t i = 0; i < t.size(); ++i)
          r.allowed_keys(t[i], Reader::at("targets", i), {"name", "environment", "guardrails", "policy"});
      }
    } else if (!root.IsMap()) {
      r.fail_at(root, "(root)", "expected a mapping");
    }
    read_document(r, root, b);
    read_targets(r, root, b);
    if (auto f = root["policy_file"]) {
      const auto path = resolve(r.str(f, "policy_file"), source);
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        r.fail_at(f, "policy_file", path + " is not a file");
      std::ifstream in(path, std::ios::binary);
      if (!in) r.fail_at(f, "policy_file", "cannot read " + path);
      std::stringstream ss;
      ss << in.rdbuf();
      file_reader = std::make_unique<Reader>(path);
      YAML::Node doc;
      try {
        doc = load_yaml(ss.str());
      } catch (const YAML::Exception& e) {
        std::string where = path;
        if (e.mark.line >= 0) where += ":" + std::to_string(e.mark.line + 1);
        return fail("", where + ": invalid YAML: " + e.msg);
      }
      // Empty (or only comments): refused, as an empty configuration is. A policy file truncated
      // while being rewritten was read as "no rules" and reloaded (found by adversarial testing);
      // a policy without rules says `rules: []`.
      if (doc.IsNull())
        r.fail_at(f, "policy_file", path + " is empty (a policy without rules says `rules: []`)");
      if (auto d = find_duplicate_key(doc)) file_reader->fail_at(d->key, d->path, "given twice; keep one");
      file_reader->allowed_keys(doc, "", {"rules", "classification", "policy"});
      read_document(*file_reader, doc, b);
    }
    return finish(b, source);
  } catch (const PolicyError& e) {
    return fail("", e.message);
  } catch (const YAML::Exception& e) {
    std::string where = source;
    if (e.mark.line >= 0) where += ":" + std::to_string(e.mark.line + 1);
    return fail("", where + ": invalid YAML: " + e.msg);
  }
}

}  // namespace

Result<std::shared_ptr<const policy::Policy>> read_policy(const YAML::Node& root, const std::string& source) {
  return read_all(root, source, false);
}

Result<std::shared_ptr<const policy::Policy>> parse_policy(std::string_view yaml_text, std::string_view source_name) {
  try {
    const YAML::Node root = load_yaml(yaml_text);
    return read_all(root, std::string(source_name), true);
  } catch (const YAML::Exception& e) {
    std::string where(source_name);
    if (e.mark.line >= 0) where += ":" + std::to_string(e.mark.line + 1);
    return fail("", where + ": invalid YAML: " + e.msg);
  }
}

}  // namespace gh::config
