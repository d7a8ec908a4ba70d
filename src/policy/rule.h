#pragma once
// The compiled policy language: rules, their conditions, classification and per-target
// settings. Built by the config loader (which validates every value and names file:line on
// error) or by hand in tests; evaluated by Policy (policy.h).
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/identity.h"
#include "policy/address.h"
#include "policy/glob.h"
#include "policy/time_window.h"
#include "sql/statement_info.h"

namespace gh::policy {

// In order of restrictiveness: the most restrictive matching action wins.
enum class Action : std::uint8_t { Allow, Mask, Review, Deny };
std::string_view action_name(Action action);  // "allow", "mask", "review", "deny"
std::optional<Action> action_from_name(std::string_view name);

enum class Sensitivity : std::uint8_t { None, Low, Medium, High, Critical };
std::string_view sensitivity_name(Sensitivity s);  // "none", "low", ...
std::optional<Sensitivity> sensitivity_from_name(std::string_view name);  // low|medium|high|critical

// Statement kinds named in `statements:`; kind names (sql::kind_name) and the aliases
// ddl, write, read, transaction, role, all.
class KindSet {
 public:
  [[nodiscard]] Result<void> add(std::string_view name);
  void add(sql::StatementKind kind) { bits_ |= bit(kind); }
  bool contains(sql::StatementKind kind) const { return bits_ & bit(kind); }
  bool empty() const { return bits_ == 0; }
  static std::vector<std::string_view> aliases();

 private:
  static std::uint64_t bit(sql::StatementKind k) { return std::uint64_t(1) << unsigned(k); }
  std::uint64_t bits_ = 0;
};

// Yes/no facts about a statement that rules can test with `key: true` or `key: false`.
enum class Feature : std::uint8_t {
  WithoutWhere,       // an UPDATE/DELETE without WHERE or with an always-true one
  TrivialWhere,       // an UPDATE/DELETE whose WHERE is always true
  MultiStatement,     // the query text holds more than one statement
  OpaqueCode,         // DO, function bodies, dynamic SQL
  ServerFileAccess,   // server-side file reads/writes
  ServerProgram,      // COPY ... PROGRAM
  RemoteAccess,       // dblink, foreign servers
  RoleChange,         // SET ROLE, SET SESSION AUTHORIZATION, role DDL
  DestructiveAlter,   // ALTER TABLE DROP COLUMN / ALTER COLUMN TYPE
  Returning,          // ... RETURNING
  WholeRow,           // whole-row reference
  TransactionControl, // BEGIN/COMMIT/ROLLBACK/SAVEPOINT
};
inline constexpr std::size_t kFeatureCount = 12;
std::string_view feature_name(Feature f);  // the condition key, e.g. "without_where"
std::optional<Feature> feature_from_name(std::string_view name);

struct FeatureTest {
  Feature feature;
  bool expected;  // `without_where: false` matches statements without that property
};

// Tags are interned to small numbers at load so that a rule's tag test is a bit test.
inline constexpr std::size_t kMaxTags = 256;
using TagSet = std::bitset<kMaxTags>;

// All optional; every given key must hold (AND); a list within a key matches if any entry does (OR).
struct Conditions {
  // who
  std::vector<Glob> subjects;
  std::vector<Glob> emails;      // case-insensitive
  std::vector<Glob> groups;      // the identity is in at least one matching group
  std::vector<Glob> not_groups;  // the identity is in none of the matching groups
  std::optional<identity::Kind> identity_kind;
  // where and when
  std::vector<Glob> targets;
  std::vector<Glob> environments;
  std::vector<Glob> databases;
  std::vector<Cidr> client_addresses;      // client address in one of these blocks
  std::vector<Cidr> not_client_addresses;  // client address in none of these blocks (an unknown address is in none)
  std::vector<TimeWindow> time;            // now is inside one of these windows
  std::vector<TimeWindow> not_time;        // now is inside none of these windows
  // what
  KindSet statements;
  std::uint8_t access = 0;  // sql::AccessBits; restricts schemas/tables/columns/tags/min_sensitivity; 0 = any access
  std::vector<Glob> schemas;
  std::vector<NamePattern> tables;     // schema.table or table (any schema)
  std::vector<NamePattern> columns;    // schema.table.column, table.column or column
  std::vector<std::string> tags;       // names, for messages
  TagSet tag_bits;                     // the same, interned (Policy fills it)
  Sensitivity min_sensitivity = Sensitivity::None;
  std::vector<NamePattern> functions;  // schema.name or name
  std::vector<Glob> settings;
  std::vector<FeatureTest> features;
};

struct Reviewers {
  std::vector<std::string> groups;  // empty: any reviewer
  int approvals = 1;
};

struct MaskSpec {
  std::vector<std::string> tags;  // empty: the rule's `tags` condition, else every tag the statement touches
  std::string strategy = "redact";
  int keep_first = 0;  // partial
  int keep_last = 4;   // partial
  std::string value;   // fixed
  // Refuse statements that filter, join, group or order by a column this rule masks (`WHERE ssn
  // LIKE '123%'` tells the masked value one question at a time).
  bool deny_predicates = false;
  // Content detectors (masking/detect.h names, or "all"): every text value returned in a column
  // this rule does not otherwise mask is scanned, and what they find is masked in place.
  std::vector<std::string> detect;
  // Refuse instead of masking (each off by default: the value is masked, or NULL):
  // `binary: deny`: a Bind that asks for a column this rule masks in binary format when the
  // column's type is not text (whose binary value is its text, masked in place);
  bool deny_binary = false;
  // `undecided: deny`: a statement that involves masked columns and whose result columns' origin
  // the proxy cannot trace (masked as unknown otherwise);
  bool deny_undecided = false;
  // `copy: deny`: COPY ... TO STDOUT of a column this rule masks.
  bool deny_copy = false;
};
// redact, partial, hash, keep_domain, null, fixed, digits
bool is_mask_strategy(std::string_view name);

struct Rule {
  std::string name;  // unique; "guardrail.<x>" replaces that built-in guardrail
  std::string description;
  Conditions when;
  Action action = Action::Deny;
  std::string message;  // shown to the client; empty: generated from the matched conditions
  std::string hint;     // what to do about it; empty: generated from the action
  bool audit_only = false;  // reported in Decision::would_have, never changes the outcome
  Reviewers reviewers;      // action review
  MaskSpec mask;            // action mask
  // Just-in-time access: the rule applies only to identities WITHOUT an active grant of this
  // role on the target ("deny writes unless granted read_write"). Empty: always applies.
  std::string requires_grant;
};

struct ClassificationEntry {
  std::vector<NamePattern> columns;  // schema.table.column, table.column or column
  std::vector<std::string> tags;
  Sensitivity sensitivity = Sensitivity::None;
};

// Row-estimate guardrail (the proxy runs EXPLAIN for writes when set).
struct RowLimit {
  std::uint64_t max_rows_affected = 0;
  Action over_limit_action = Action::Review;  // review or deny
};

struct TargetSettings {
  std::string name;
  std::string environment = "development";
  std::optional<Action> default_action;  // unset: the policy-wide default
  std::optional<bool> guardrails;        // unset: on when environment is "production"
  std::vector<std::string> guardrails_off;  // full names, "guardrail.truncate"
  std::optional<RowLimit> row_limit;     // unset: the policy-wide limit
};

struct Settings {
  Action unknown_action = Action::Deny;  // deny or review
  Action default_action = Action::Allow;
  std::optional<RowLimit> row_limit;
};

struct PolicySpec {
  std::vector<Rule> rules;
  std::vector<ClassificationEntry> classification;
  Settings settings;
  std::vector<TargetSettings> targets;
};

}  // namespace gh::policy
