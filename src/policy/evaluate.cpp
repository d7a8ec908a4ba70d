// Policy::evaluate: judge every statement against the rules and the guardrails, keep the most
// restrictive outcome, and explain it. Matching runs without allocating; the explanation
// (evidence, messages) is built once, for the deciding rule and for audit_only matches.
#include <algorithm>

#include "policy/describe.h"
#include "policy/guardrails.h"
#include "policy/policy.h"

namespace gh::policy {

namespace {


// The schema of a relation named without one is the first on the session's search_path that has
// it, which the session can change (SET, set_config, a startup option) and the proxy does not
// track. A rule that restricts (deny, review, mask) or a classification therefore takes it for a
// relation of ANY schema; an allow rule only for one in public (the default search_path).
// How a relation named without a schema matches a rule's schema: as any schema (restricting
// rules, classification), as public (allow rules, default search_path), or as no schema at all
// (allow rules once the session changed its search_path: found by adversarial testing, an allow
// rule for public.orders opened hr.orders).
enum class Unqualified : std::uint8_t { AnySchema, Public, Unknown };

// Whether an unqualified relation is taken for one in public. PostgreSQL looks in pg_catalog
// before the search_path: an unqualified pg_* name is likely a catalog relation (pg_authid,
// pg_stats), never taken for public (found by adversarial testing: `public.*` opened pg_stats).
bool taken_for_public(const sql::Relation& r, Unqualified u) {
  return u == Unqualified::Public && r.name.rfind("pg_", 0) != 0;
}

bool schema_matches(const Glob& g, const sql::Relation& r, Unqualified u) {
  if (r.schema.empty()) return u == Unqualified::AnySchema || (taken_for_public(r, u) && g.matches("public"));
  return g.matches(r.schema);
}

bool has_kind(const sql::Statement& s, sql::StatementKind k) {
  return std::find(s.kinds.begin(), s.kinds.end(), k) != s.kinds.end();
}

bool table_matches(const NamePattern& p, const sql::Relation& r, Unqualified any_schema) {
  if (p.size() == 1) return p.part(0).matches(r.name);
  return schema_matches(p.part(0), r, any_schema) && p.part(1).matches(r.name);
}

// Whether a column pattern's table part (if any) names relation `r`.
bool column_pattern_names(const NamePattern& p, const sql::Relation& r, Unqualified any_schema) {
  if (p.size() == 3) return schema_matches(p.part(0), r, any_schema) && p.part(1).matches(r.name);
  if (p.size() == 2) return p.part(0).matches(r.name);
  return true;
}

// A column pattern (column, table.column or schema.table.column) against the columns a statement
// touches in one relation. A relation read or written as a whole touches every column; a column
// the analyzer could not tie to one relation (`unresolved`) may be a column of any of them.
bool column_matches(const NamePattern& p, const sql::Relation& r, const std::vector<std::string>& unresolved,
                    std::string* which, Unqualified any_schema) {
  if (!column_pattern_names(p, r, any_schema)) return false;
  if (r.all_columns) {
    if (which) *which = relation_name(r) + ".* (all columns)";
    return true;
  }
  for (const auto* cols : {&r.columns_read, &r.columns_written})
    for (const auto& c : *cols)
      if (p.last().matches(c)) {
        if (which) *which = relation_name(r) + "." + c;
        return true;
      }
  for (const auto& c : unresolved)
    if (p.last().matches(c)) {
      if (which) *which = relation_name(r) + "." + c + " (possibly: the column is not qualified)";
      return true;
    }
  return false;
}

bool function_matches(const NamePattern& p, std::string_view fn) {
  const auto dot = fn.rfind('.');
  const auto name = dot == std::string_view::npos ? fn : fn.substr(dot + 1);
  if (p.size() == 1) return p.part(0).matches(name);
  if (dot == std::string_view::npos)  // unqualified: found through the default search path
    return (p.part(0).matches("pg_catalog") || p.part(0).matches("public")) && p.part(1).matches(name);
  return p.part(0).matches(fn.substr(0, dot)) && p.part(1).matches(name);
}

bool feature_holds(Feature f, const sql::Statement& s, const sql::Analysis& a, std::string* what) {
  const auto found = [&](std::string text) {
    if (what) *what = std::move(text);
    return true;
  };
  switch (f) {
    case Feature::WithoutWhere:
    case Feature::TrivialWhere:
      for (const auto& w : s.writes) {
        const bool hit = f == Feature::TrivialWhere ? (w.has_where && w.where_trivially_true)
                                                    : (!w.has_where || w.where_trivially_true);
        if (hit) return found(kind_label(w.kind) + " " + w.relation);
      }
      return false;
    case Feature::MultiStatement:
      return a.multi_statement() && found(std::to_string(a.statements.size()) + " statements");
    case Feature::OpaqueCode: return s.opaque_code && found("yes");
    case Feature::ServerFileAccess: return s.server_file_access && found("yes");
    case Feature::ServerProgram: return s.server_program && found("yes");
    case Feature::RemoteAccess: return s.remote_access && found("yes");
    case Feature::RoleChange: return s.role_change && found("yes");
    case Feature::DestructiveAlter: return s.destructive_alter && found("yes");
    case Feature::Returning: return s.returning && found("yes");
    case Feature::WholeRow: return s.whole_row && found("yes");
    case Feature::TransactionControl: return s.transaction_control && found("yes");
  }
  return false;
}

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : std::string(sep)) + i;
  return out;
}

std::string sentence(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (!s.empty() && s.back() != '.' && s.back() != '!' && s.back() != '?') s += '.';
  return s;
}

std::string_view verb(Action a) {
  switch (a) {
    case Action::Allow: return "Allowed";
    case Action::Mask: return "Allowed with masking";
    case Action::Review: return "Held for review";
    case Action::Deny: return "Denied";
  }
  return "Denied";
}

std::string review_hint(const Reviewers& r) {
  std::string who = r.groups.empty() ? "a reviewer" : "a reviewer in " + join(r.groups, " or ");
  return "Ask " + who + " to approve the request; it runs once " + std::to_string(r.approvals) + " approval" +
         (r.approvals == 1 ? " is" : "s are") + " given.";
}

class Evaluator {
 public:
  Evaluator(const Request& req, const sql::Analysis& a, std::string_view environment,
            const std::vector<ClassificationEntry>& classes, const std::vector<TagSet>& class_tags,
            const std::vector<std::string>& tag_names)
      : req_(req), a_(a), environment_(environment), classes_(classes), class_tags_(class_tags),
        tag_names_(tag_names) {}

  // All conditions of `c` hold for statement `s`. With `why`, appends "key: detail" evidence.
  // any_schema: a relation named without a schema may be of any schema (restricting rules).
  bool matches(const Conditions& c, const sql::Statement& s, std::vector<std::string>* why, bool any_schema) const;
  // How unqualified names match for a rule that restricts (any_schema) or allows.
  Unqualified unqualified(bool any_schema) const {
    if (any_schema) return Unqualified::AnySchema;
    return req_.search_path_changed ? Unqualified::Unknown : Unqualified::Public;
  }

  // The conditions on who, where and when (not on the statement).
  bool context_matches(const Conditions& c) const { return identity_matches(c, nullptr) && where_matches(c, nullptr); }

  // Tags and highest sensitivity of the classified columns the statement touches (in relations
  // with any of `access`, 0 = any). With `where`, lists "tag on schema.table.column".
  void classify(const sql::Statement& s, std::uint8_t access, TagSet& tags, Sensitivity& max,
                std::vector<std::string>* where) const;

  std::vector<std::string> tag_names(const TagSet& tags) const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < tag_names_.size(); ++i)
      if (tags.test(i)) out.push_back(tag_names_[i]);
    return out;
  }

 private:
  bool identity_matches(const Conditions& c, std::vector<std::string>* why) const;
  bool where_matches(const Conditions& c, std::vector<std::string>* why) const;

  const Request& req_;
  const sql::Analysis& a_;
  std::string_view environment_;
  const std::vector<ClassificationEntry>& classes_;
  const std::vector<TagSet>& class_tags_;
  const std::vector<std::string>& tag_names_;
  // The client's address, parsed when a rule first asks (most policies never do).
  const std::optional<IpAddress>& address() const {
    if (!address_parsed_) {
      address_ = IpAddress::parse(req_.client_address);
      address_parsed_ = true;
    }
    return address_;
  }
  mutable std::optional<IpAddress> address_;
  mutable bool address_parsed_ = false;
};

void Evaluator::classify(const sql::Statement& s, std::uint8_t access, TagSet& tags, Sensitivity& max,
                         std::vector<std::string>* where) const {
  std::string column;
  for (const auto& r : s.relations) {
    if (access && !(r.access & access)) continue;
    for (std::size_t e = 0; e < classes_.size(); ++e) {
      const auto& entry = classes_[e];
      for (const auto& p : entry.columns) {
        if (!column_matches(p, r, s.unresolved_columns, where ? &column : nullptr, Unqualified::AnySchema)) continue;
        tags |= class_tags_[e];
        max = std::max(max, entry.sensitivity);
        if (where)
          for (const auto& t : entry.tags) where->push_back(t + " on " + column);
        break;
      }
    }
  }
}

bool Evaluator::identity_matches(const Conditions& c, std::vector<std::string>* why) const {
  const identity::Identity* id = req_.identity;
  if (!c.subjects.empty()) {
    if (!id || !any_matches(c.subjects, id->subject)) return false;
    if (why) why->push_back("subject: " + id->subject);
  }
  if (!c.emails.empty()) {
    if (!id || !any_matches(c.emails, id->email)) return false;
    if (why) why->push_back("email: " + id->email);
  }
  if (!c.groups.empty()) {
    const std::string* hit = nullptr;
    if (id)
      for (const auto& g : id->groups)
        if (any_matches(c.groups, g)) {
          hit = &g;
          break;
        }
    if (!hit) return false;
    if (why) why->push_back("groups: " + *hit);
  }
  if (!c.not_groups.empty()) {
    if (id)
      for (const auto& g : id->groups)
        if (any_matches(c.not_groups, g)) return false;
    if (why) {
      std::vector<std::string> pats;
      for (const auto& g : c.not_groups) pats.push_back(g.pattern());
      why->push_back("not_groups: not in " + join(pats));
    }
  }
  if (c.identity_kind) {
    if (!id || id->kind != *c.identity_kind) return false;
    if (why) why->push_back(std::string("identity_kind: ") + (id->kind == identity::Kind::Agent ? "agent" : "human"));
  }
  return true;
}

bool Evaluator::where_matches(const Conditions& c, std::vector<std::string>* why) const {
  if (!c.targets.empty()) {
    if (!any_matches(c.targets, req_.target)) return false;
    if (why) why->push_back("target: " + std::string(req_.target));
  }
  if (!c.environments.empty()) {
    if (!any_matches(c.environments, environment_)) return false;
    if (why) why->push_back("environment: " + std::string(environment_));
  }
  if (!c.databases.empty()) {
    if (!any_matches(c.databases, req_.database)) return false;
    if (why) why->push_back("database: " + std::string(req_.database));
  }
  if (!c.client_addresses.empty()) {
    const Cidr* hit = nullptr;
    if (const auto& ip = address())
      for (const auto& b : c.client_addresses)
        if (b.contains(*ip)) {
          hit = &b;
          break;
        }
    if (!hit) return false;
    if (why) why->push_back("client_address: " + std::string(req_.client_address) + " in " + hit->text());
  }
  if (!c.not_client_addresses.empty()) {
    if (const auto& ip = address())
      for (const auto& b : c.not_client_addresses)
        if (b.contains(*ip)) return false;
    if (why)
      why->push_back("not_client_address: " +
                     (req_.client_address.empty() ? std::string("unknown address") : std::string(req_.client_address)));
  }
  if (!c.time.empty()) {
    const TimeWindow* hit = nullptr;
    for (const auto& w : c.time)
      if (w.contains(req_.now)) {
        hit = &w;
        break;
      }
    if (!hit) return false;
    if (why) why->push_back("time: " + hit->describe());
  }
  if (!c.not_time.empty()) {
    for (const auto& w : c.not_time)
      if (w.contains(req_.now)) return false;
    if (why) why->push_back("not_time: outside the given windows");
  }
  return true;
}

bool Evaluator::matches(const Conditions& c, const sql::Statement& s, std::vector<std::string>* why,
                        bool any_schema) const {
  // Cheapest and most selective first.
  if (!c.statements.empty()) {
    sql::StatementKind hit{};
    bool found = false;
    for (auto k : s.kinds)
      if (c.statements.contains(k)) {
        hit = k;
        found = true;
        break;
      }
    if (!found) return false;
    if (why) why->push_back("statements: " + std::string(sql::kind_name(hit)));
  }
  std::string what;
  for (const auto& f : c.features) {
    if (feature_holds(f.feature, s, a_, why ? &what : nullptr) != f.expected) return false;
    if (why) why->push_back(std::string(feature_name(f.feature)) + ": " + (f.expected ? what : "false"));
  }
  if (!identity_matches(c, why) || !where_matches(c, why)) return false;

  const auto access_ok = [&](const sql::Relation& r) { return c.access == 0 || (r.access & c.access); };
  // An allow rule names what it opens: with schemas, tables or columns it matches only when every
  // relation (and column) of the statement is among them, so a rule for orders does not also open
  // secrets joined to it (found by adversarial testing). Restricting rules match when any one is.
  if (!any_schema && (!c.schemas.empty() || !c.tables.empty() || !c.columns.empty())) {
    const auto u = unqualified(false);
    auto schema_ok = [&](const sql::Relation& r) {
      return r.schema.empty() ? taken_for_public(r, u) && any_matches(c.schemas, "public") : any_matches(c.schemas, r.schema);
    };
    auto table_ok = [&](const sql::Relation& r) {
      for (const auto& p : c.tables)
        if (table_matches(p, r, u)) return true;
      return false;
    };
    auto column_ok = [&](const sql::Relation& r, const std::string& col) {
      for (const auto& p : c.columns)
        if (column_pattern_names(p, r, u) && p.last().matches(col)) return true;
      return false;
    };
    bool any = false, any_column = false;
    for (const auto& r : s.relations) {
      if (!access_ok(r)) continue;
      any = true;
      if (!c.schemas.empty() && !schema_ok(r)) return false;
      if (!c.tables.empty() && !table_ok(r)) return false;
      if (!c.columns.empty()) {
        if (r.all_columns) return false;  // every column, named or not
        for (const auto* cols : {&r.columns_read, &r.columns_written})
          for (const auto& col : *cols) {
            if (!column_ok(r, col)) return false;
            any_column = true;
          }
      }
    }
    if (!c.columns.empty()) {
      // A column not tied to one relation must be an allowed column of one of them.
      for (const auto& col : s.unresolved_columns) {
        bool ok = false;
        for (const auto& r : s.relations)
          if (access_ok(r) && column_ok(r, col)) ok = true;
        if (!ok) return false;
        any_column = true;
      }
      if (!any_column) return false;
    }
    if (!any) return false;
    if (why) {
      std::vector<std::string> names;
      for (const auto& r : s.relations)
        if (access_ok(r)) names.push_back(relation_name(r));
      why->push_back((c.columns.empty() ? "tables: " : "columns of: ") + join(names));
    }
  } else if (!c.schemas.empty()) {
    const sql::Relation* hit = nullptr;
    for (const auto& r : s.relations)
      if (access_ok(r) && (r.schema.empty() ? unqualified(any_schema) == Unqualified::AnySchema ||
                                                  (taken_for_public(r, unqualified(any_schema)) &&
                                                   any_matches(c.schemas, "public"))
                                            : any_matches(c.schemas, r.schema))) {
        hit = &r;
        break;
      }
    if (!hit) return false;
    // The schema that matched, and the table; an unqualified name says how it was taken (it read
    // "schemas: audit_log" for a rule on schemas [hr]: found by a security team's trial).
    if (why)
      why->push_back(!hit->schema.empty() ? "schemas: " + hit->schema + " (" + relation_name(*hit) + ")"
                     : unqualified(any_schema) == Unqualified::AnySchema
                         ? "schemas: " + relation_name(*hit) + " (not schema-qualified: it may be in any schema)"
                         : "schemas: public (" + relation_name(*hit) + ", not schema-qualified)");
  }
  if (any_schema && !c.tables.empty()) {
    const sql::Relation* hit = nullptr;
    for (const auto& r : s.relations) {
      if (!access_ok(r)) continue;
      for (const auto& p : c.tables)
        if (table_matches(p, r, unqualified(any_schema))) {
          hit = &r;
          break;
        }
      if (hit) break;
    }
    if (!hit) return false;
    if (why) why->push_back("tables: " + relation_name(*hit));
  }
  if (any_schema && !c.columns.empty()) {
    bool found = false;
    for (const auto& r : s.relations) {
      if (!access_ok(r)) continue;
      for (const auto& p : c.columns)
        if (column_matches(p, r, s.unresolved_columns, why ? &what : nullptr, unqualified(any_schema))) {
          found = true;
          break;
        }
      if (found) break;
    }
    if (!found) return false;
    if (why) why->push_back("columns: " + what);
  }
  if (c.tag_bits.any() || c.min_sensitivity != Sensitivity::None) {
    TagSet tags;
    Sensitivity max = Sensitivity::None;
    std::vector<std::string> where;
    classify(s, c.access, tags, max, why ? &where : nullptr);
    if (c.tag_bits.any() && (tags & c.tag_bits).none()) return false;
    if (max < c.min_sensitivity) return false;
    if (why) {
      if (c.tag_bits.any()) {
        std::vector<std::string> hits;
        for (const auto& w : where)
          for (const auto& t : c.tags)
            if (w.rfind(t + " on ", 0) == 0) hits.push_back(w);
        why->push_back("tags: " + join(hits));
      }
      if (c.min_sensitivity != Sensitivity::None)
        why->push_back("min_sensitivity: " + std::string(sensitivity_name(max)));
    }
  }
  if (!c.functions.empty()) {
    const std::string* hit = nullptr;
    for (const auto& fn : s.functions) {
      // A fast-path call of a function the proxy cannot name ("oid:N") may be any function: a
      // restricting rule matches it, an allowing one does not (found by adversarial testing:
      // pg_read_file called by OID got past a functions: deny rule).
      if (any_schema && fn.rfind("oid:", 0) == 0) {
        hit = &fn;
        break;
      }
      for (const auto& p : c.functions)
        if (function_matches(p, fn)) {
          hit = &fn;
          break;
        }
      if (hit) break;
    }
    if (!hit) return false;
    if (why) why->push_back("functions: " + *hit);
  }
  if (!c.settings.empty()) {
    const std::string* hit = nullptr;
    for (const auto& name : s.settings)
      if (any_matches(c.settings, name)) {
        hit = &name;
        break;
      }
    if (!hit) return false;
    if (why) why->push_back("settings: " + *hit);
  }
  return true;
}

template <class T, class Key>
bool contains_by(const std::vector<T>& v, const Key& key, std::string T::*member) {
  for (const auto& x : v)
    if (x.*member == key) return true;
  return false;
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

// Who decided a statement's action.
struct Source {
  enum Kind : std::uint8_t { Default, Unknown, UserRule, Guardrail } kind = Default;
  std::size_t index = 0;  // rule or guardrail index
};

struct Outcome {
  Action action = Action::Allow;
  Source source;
  int statement = -1;
};

std::string statement_label(const sql::Analysis& a, std::size_t i) {
  const std::string what = describe_statement(a.statements[i]);
  return a.statements.size() > 1 ? "statement " + std::to_string(i + 1) + " (" + what + ")" : what;
}

}  // namespace

// The classification of every column `a` touches: its tags, and with `where` the "<tag> on <column>" lines.
TagSet Policy::classify_all(const sql::Analysis& a, std::vector<std::string>* where) const {
  Request req;
  req.analysis = &a;
  Evaluator ev(req, a, {}, classification_, classification_tags_, tag_names_);
  TagSet tags;
  Sensitivity max{};
  for (const auto& s : a.statements) ev.classify(s, 0, tags, max, where);
  return tags;
}

std::vector<std::string> Policy::touched_tags(const sql::Analysis& a) const {
  if (classification_.empty()) return {};
  const TagSet tags = classify_all(a, nullptr);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < tag_names_.size(); ++i)
    if (tags.test(i)) names.push_back(tag_names_[i]);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> Policy::touched_columns(const sql::Analysis& a) const {
  if (classification_.empty()) return {};
  std::vector<std::string> where;
  (void)classify_all(a, &where);
  std::sort(where.begin(), where.end());
  where.erase(std::unique(where.begin(), where.end()), where.end());
  return where;
}

Decision Policy::evaluate(const Request& req) const {
  Decision d = evaluate_rules(req);
  if (d.action == Action::Deny || req.login_user.empty() || !req.analysis) return d;
  // The target's login is the proxy's own account: a client that changes its password, renames,
  // drops or reconfigures it (psql's \password asks for the login's name) locks every user of the
  // target out, or changes what the analyzer assumes about every later session (found by
  // adversarial testing).
  const auto& statements = req.analysis->statements;
  for (std::size_t i = 0; i < statements.size(); ++i)
    for (const auto& role : statements[i].roles_altered) {
      if (!role.empty() && role != req.login_user) continue;
      const std::string login(req.login_user), target(req.target);
      Decision r;
      r.action = Action::Deny;
      r.rule = "gatehouse.login_role";
      r.statement = int(i);
      r.reason = "changes the role \"" + login + "\" the proxy logs in to target \"" + target + "\" as";
      r.message = "Denied: this statement would change the role \"" + login + "\", which Gatehouse logs in as for "
                  "target \"" + target + "\" (your session runs as it; it is not yours to change) "
                  "(gatehouse.login_role)";
      r.hint = "Its password and settings are managed with Gatehouse's configuration (targets[].login): ask the "
               "operator, who changes them in the database and in the configuration together.";
      return r;
    }
  return d;
}

Decision Policy::evaluate_rules(const Request& req) const {
  Decision d;
  const TargetSettings* ts = target(req.target);
  const std::string_view environment = !req.environment.empty() ? req.environment
                                       : ts                     ? std::string_view(ts->environment)
                                                                : std::string_view();
  const std::string target_label = "target \"" + std::string(req.target) + "\"";
  const auto unknown = [&](std::string reason, const std::string& what) {
    d.action = settings_.unknown_action;
    d.rule = "policy.unknown_action";
    d.reason = std::move(reason);
    d.message = std::string(verb(d.action)) + ": Gatehouse could not understand this SQL (" + what +
                "), and statements it cannot understand are " +
                (d.action == Action::Deny ? "refused" : "held for review") + " (policy.unknown_action).";
    d.hint = d.action == Action::Deny
                 ? "Check the SQL syntax. If it is valid SQL that Gatehouse does not know yet, ask a policy owner to "
                   "set policy.unknown_action: review."
                 : review_hint(d.reviewers);
    return d;
  };
  if (!req.analysis) return unknown("no analysis of the statement was available", "it was not analysed");
  const sql::Analysis& a = *req.analysis;
  if (a.error) {
    std::string what = a.error->message;
    if (a.error->cursor > 0) what += " at character " + std::to_string(a.error->cursor);
    unknown("parse error: " + what, what);
    if (d.action == Action::Deny) {
      // As PostgreSQL says it (clients show the position with a caret, and drivers' and their test
      // suites' checks of the message keep working); the rule and Gatehouse are named in DETAIL and HINT.
      d.sqlstate = !a.error->sqlstate.empty()                              ? a.error->sqlstate
                   : a.error->message.rfind("invalid byte sequence", 0) == 0 ? "22021"
                                                                             : "42601";
      d.message = a.error->message;
      d.position = a.error->cursor;
      d.hint = "Gatehouse refuses SQL it cannot parse (policy.unknown_action). " + d.hint;
    }
    return d;
  }
  if (a.statements.empty()) {
    d.action = Action::Allow;
    d.reason = "empty query";
    d.message = "Allowed: the query is empty.";
    return d;
  }

  Evaluator ev(req, a, environment, classification_, classification_tags_, tag_names_);
  const auto& pack = guardrails();
  const std::uint32_t on = guardrail_mask(req.target, environment);
  const Action default_act = default_action(req.target);
  Outcome best;
  bool have = false;
  const auto consider = [&](const Outcome& o) {
    if (!have || o.action > best.action) best = o;
    have = true;
  };

  for (std::size_t si = 0; si < a.statements.size(); ++si) {
    const auto& s = a.statements[si];
    if (s.kinds.empty() || has_kind(s, sql::StatementKind::Unknown))
      consider({settings_.unknown_action, {Source::Unknown, 0}, int(si)});
    Outcome sb{default_act, {Source::Default, 0}, int(si)};
    bool matched = false;
    for (std::size_t ri = 0; ri < rules_.size(); ++ri) {
      const Rule& r = rules_[ri];
      if (!r.requires_grant.empty() && req.grants &&
          std::find(req.grants->begin(), req.grants->end(), r.requires_grant) != req.grants->end())
        continue;  // the identity holds the grant this rule asks for
      if (!ev.matches(r.when, s, nullptr, r.action != Action::Allow)) continue;
      if (r.audit_only) {
        if (!contains_by(d.would_have, r.name, &DryRun::rule)) {
          std::vector<std::string> why;
          ev.matches(r.when, s, &why, r.action != Action::Allow);
          d.would_have.push_back(
              {r.name, r.action, statement_label(a, si) + (why.empty() ? "" : ": " + join(why, "; "))});
        }
        continue;
      }
      add_unique(d.matched_rules, r.name);
      if (r.action == Action::Mask && !contains_by(d.masks, r.name, &MaskInstruction::rule)) {
        std::vector<std::string> tags = !r.mask.tags.empty() ? r.mask.tags : r.when.tags;
        if (tags.empty()) {
          TagSet touched;
          Sensitivity max = Sensitivity::None;
          ev.classify(s, r.when.access, touched, max, nullptr);
          tags = ev.tag_names(touched);
        }
        d.masks.push_back({r.name, std::move(tags), r.mask.strategy});
      }
      if (!matched || r.action > sb.action) sb = {r.action, {Source::UserRule, ri}, int(si)};
      matched = true;
    }
    for (std::size_t gi = 0; gi < pack.size(); ++gi) {
      if (!(on & (1u << gi)) || !pack[gi].check(s, nullptr)) continue;
      add_unique(d.matched_rules, std::string(pack[gi].name));
      if (!matched || Action::Deny > sb.action) sb = {Action::Deny, {Source::Guardrail, gi}, int(si)};
      matched = true;
    }
    consider(sb);
  }

  d.action = best.action;
  d.statement = best.statement;
  const auto& s = a.statements[std::size_t(best.statement)];
  const std::string label = statement_label(a, std::size_t(best.statement));
  switch (best.source.kind) {
    case Source::Unknown:
      d.rule = "policy.unknown_action";
      d.reason = label + ": the statement could not be classified";
      d.message = std::string(verb(d.action)) + ": Gatehouse could not classify " + label +
                  ", and statements it cannot understand are " +
                  (d.action == Action::Deny ? "refused" : "held for review") + " (policy.unknown_action).";
      d.hint = d.action == Action::Deny ? "Rewrite the statement with plain SQL, or ask a policy owner to set "
                                          "policy.unknown_action: review."
                                        : review_hint(d.reviewers);
      break;
    case Source::Default:
      d.rule.clear();
      d.reason = label + ": no rule matched; the default action of " + target_label + " is " +
                 std::string(action_name(d.action));
      switch (d.action) {
        case Action::Allow:
          d.message = "Allowed: no rule matched, and the default action of " + target_label + " is allow.";
          break;
        case Action::Deny:
          d.message = "Denied: no rule allows " + label + " on " + target_label + ", whose default action is deny.";
          d.hint = "Ask a policy owner for a rule that allows this statement.";
          break;
        case Action::Review:
          d.message = "Held for review: no rule allows " + label + " on " + target_label +
                      " directly, and its default action is review.";
          d.hint = review_hint(d.reviewers);
          break;
        case Action::Mask:
          d.message = "Allowed with masking: no rule matched, and the default action of " + target_label + " is mask.";
          d.hint = "Sensitive values are masked in the result.";
          break;
      }
      break;
    case Source::Guardrail: {
      const Guardrail& g = pack[best.source.index];
      std::string what;
      g.check(s, &what);
      d.rule = std::string(g.name);
      d.reason = a.statements.size() > 1 ? "statement " + std::to_string(best.statement + 1) + ": " + what : what;
      d.message = "Denied by rule \"" + d.rule + "\": " + what + " is not allowed" +
                  (g.always_on ? std::string() : " on " + target_label +
                                                     (environment.empty() ? "" : " (" + std::string(environment) + ")")) +
                  ": " + std::string(g.why) + ".";
      d.hint = std::string(g.hint);
      break;
    }
    case Source::UserRule: {
      const Rule& r = rules_[best.source.index];
      std::vector<std::string> why;
      ev.matches(r.when, s, &why, r.action != Action::Allow);
      d.rule = r.name;
      d.reason = label + (why.empty() ? ": matched (the rule has no conditions)" : ": " + join(why, "; "));
      const std::string body = !r.message.empty() ? r.message
                               : why.empty()      ? label + " matches this rule"
                                                  : label + " matches this rule (" + join(why, "; ") + ")";
      d.message = std::string(verb(d.action)) + " by rule \"" + r.name + "\": " + sentence(body);
      if (d.action == Action::Review) d.reviewers = r.reviewers;
      if (!r.requires_grant.empty()) {
        d.message += " It needs an active access grant of role \"" + r.requires_grant + "\" on " + target_label + ".";
        d.reason += "; no active grant of role " + r.requires_grant;
      }
      if (!r.hint.empty()) {
        d.hint = r.hint;
      } else if (!r.requires_grant.empty()) {
        d.hint = "Request one: gatehouse request-access --target " + std::string(req.target) + " --role " +
                 r.requires_grant + " --for 1h --reason \"...\" (or POST /api/v1/access-requests).";
      } else if (d.action == Action::Deny) {
        d.hint = "If you need this, ask a policy owner to change rule \"" + r.name + "\".";
      } else if (d.action == Action::Review) {
        d.hint = review_hint(d.reviewers);
      }
      break;
    }
  }
  if (d.action == Action::Mask || d.action == Action::Review) {
    for (const auto& m : d.masks)
      for (const auto& t : m.tags) add_unique(d.mask_tags, t);
    if (d.action == Action::Mask && d.hint.empty())
      d.hint = d.mask_tags.empty() ? "Sensitive values are masked in the result."
                                    : "Values tagged " + join(d.mask_tags) +
                                          " are masked in the result; ask for access if you need the real values.";
  } else {
    d.masks.clear();
  }
  return d;
}

std::vector<std::size_t> Policy::mask_rules_for(const Request& req) const {
  std::vector<std::size_t> out;
  const sql::Analysis none;
  std::string_view environment = req.environment;
  if (environment.empty())
    if (const auto* t = target(req.target)) environment = t->environment;
  Evaluator ev(req, none, environment, classification_, classification_tags_, tag_names_);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const Rule& r = rules_[i];
    if (r.action != Action::Mask || r.audit_only) continue;
    if (!r.requires_grant.empty() && req.grants &&
        std::find(req.grants->begin(), req.grants->end(), r.requires_grant) != req.grants->end())
      continue;
    if (ev.context_matches(r.when)) out.push_back(i);
  }
  return out;
}

const Rule* Policy::column_mask(const std::vector<std::size_t>& rules, std::string_view schema, std::string_view table,
                                std::string_view column) const {
  if (rules.empty()) return nullptr;
  const auto pattern_names = [&](const NamePattern& p) {
    if (!p.last().matches(column)) return false;
    if (p.size() == 3) return p.part(0).matches(schema) && p.part(1).matches(table);
    if (p.size() == 2) return p.part(0).matches(table);
    return true;
  };
  TagSet tags;
  Sensitivity sensitivity = Sensitivity::None;
  for (std::size_t e = 0; e < classification_.size(); ++e)
    for (const auto& p : classification_[e].columns)
      if (pattern_names(p)) {
        tags |= classification_tags_[e];
        sensitivity = std::max(sensitivity, classification_[e].sensitivity);
        break;
      }
  for (const std::size_t i : rules) {
    const Rule& r = rules_[i];
    const Conditions& c = r.when;
    if (!c.schemas.empty() && !any_matches(c.schemas, schema)) continue;
    if (!c.tables.empty()) {
      bool hit = false;
      for (const auto& p : c.tables)
        hit = hit || (p.size() == 1 ? p.part(0).matches(table) : p.part(0).matches(schema) && p.part(1).matches(table));
      if (!hit) continue;
    }
    bool named = false;
    if (!c.columns.empty()) {
      for (const auto& p : c.columns) named = named || pattern_names(p);
      if (!named) continue;
    }
    if (c.min_sensitivity != Sensitivity::None && sensitivity < c.min_sensitivity) continue;
    TagSet want;
    const auto& names = !r.mask.tags.empty() ? r.mask.tags : c.tags;
    // A rule that only detects content covers no column by its classification.
    if (names.empty() && !named && !r.mask.detect.empty()) continue;
    for (const auto& n : names)
      for (std::size_t t = 0; t < tag_names_.size(); ++t)
        if (tag_names_[t] == n) want.set(t);
    if (names.empty() ? (tags.any() || named) : (tags & want).any()) return &r;
  }
  return nullptr;
}

}  // namespace gh::policy
