#pragma once
// Policy: a pure function from (identity, target, statements, client address, time) to a
// Decision that says what to do and why. No I/O, no clock reads, no logging; safe to call from
// any thread on a shared const Policy.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/identity.h"
#include "policy/rule.h"
#include "sql/statement_info.h"

namespace gh::policy {

struct Request {
  const identity::Identity* identity = nullptr;  // nullptr: nobody (identity conditions do not match)
  std::string_view target;                       // target name as configured
  std::string_view environment;                  // "": the target's configured environment
  std::string_view database;                     // the real database name on the backend
  std::string_view client_address;               // IP address text; "" when unknown
  const sql::Analysis* analysis = nullptr;       // nullptr: not analysed -> the unknown action
  std::chrono::system_clock::time_point now{};   // rule time windows carry their own UTC offset
  const std::vector<std::string>* grants = nullptr;  // roles the identity holds on the target now (access grants)
  // The session set its search_path (startup option, SET, set_config): an unqualified name is then
  // not taken for one in public by allow rules.
  bool search_path_changed = false;
  // The role the proxy logs in to the target as (targets[].login.user); "" when not known. A
  // statement that alters, renames or drops it is refused whatever the rules say.
  std::string_view login_user;
};

// An audit_only rule that matched: what it would have done.
struct DryRun {
  std::string rule;
  Action action = Action::Allow;
  std::string reason;
};

// What to mask when the statement runs (after a mask decision, or after approval of a review).
struct MaskInstruction {
  std::string rule;
  std::vector<std::string> tags;
  std::string strategy;
};

struct Decision {
  Action action = Action::Deny;
  std::string rule;     // deciding rule; "" = the target's default action; "policy.unknown_action"
  std::string reason;   // for audit: which statement, which conditions matched
  std::string message;  // for the client: a sentence naming the rule
  std::string hint;     // for the client: what to do about it
  int statement = -1;   // index of the deciding statement in the analysis; -1 when none
  Reviewers reviewers;  // for review: the deciding rule's reviewers
  std::vector<std::string> mask_tags;  // union of masks[].tags
  std::vector<MaskInstruction> masks;
  std::vector<DryRun> would_have;          // audit_only rules that matched, in rule order
  std::vector<std::string> matched_rules;  // every enforcing rule that matched any statement, in rule order
  std::string approval;  // set by the proxy: the approval request a review decision led to
  // SQLSTATE of a refusal when it is not 42501 (insufficient_privilege): 42601 for text the
  // parser rejects, so a client sees a syntax error as PostgreSQL would have reported it.
  std::string sqlstate;
  int position = 0;  // a parse error's 1-based character in the statement text (ErrorResponse 'P')
};

// The SQLSTATE a refusal by `d` carries: d.sqlstate, else 42501.
inline std::string_view refusal_sqlstate(const Decision& d) {
  return d.sqlstate.empty() ? std::string_view("42501") : std::string_view(d.sqlstate);
}

class Policy {
 public:
  // Validates references (unique rule names, known guardrail names, tags defined by the
  // classification) and interns tags. The config loader checks the same with file:line first.
  [[nodiscard]] static Result<Policy> build(PolicySpec spec);
  Policy();  // no rules: allow what parses, the unknown action for what does not, guardrails on production

  // The rules' decision, then the built-in refusal of statements that change the login role.
  Decision evaluate(const Request& request) const;
  // Masking. The mask rules (indices into rules()) whose who/where/when conditions hold for
  // `request` (identity, target, environment, database, client address, time, grants; the
  // statement is not looked at): they apply to every result column derived from a column they
  // cover, whatever statement returns it, so a view, a cursor or a function call over a masked
  // column does not dodge them. audit_only rules are not among them.
  std::vector<std::size_t> mask_rules_for(const Request& request) const;
  // The first of `rules` (in file order) that covers table column schema.table.column: the
  // column's classification has one of the rule's mask tags (mask.tags, else its tags condition;
  // with neither, any tag), and the rule's schemas/tables/columns/min_sensitivity conditions, when
  // given, hold for it. A rule with columns conditions and no tags covers the columns it names
  // even when they are not classified. nullptr: the column is not masked.
  const Rule* column_mask(const std::vector<std::size_t>& rules, std::string_view schema, std::string_view table,
                          std::string_view column) const;
  // Classification tags of every column the analysis touches (any access), sorted by name.
  std::vector<std::string> touched_tags(const sql::Analysis& analysis) const;
  // The classified columns it touches, as "<tag> on <column>" ("pii on public.customers.email"), sorted, unique.
  std::vector<std::string> touched_columns(const sql::Analysis& analysis) const;

  const std::vector<Rule>& rules() const { return rules_; }
  // True when some rule has requires_grant: only then do callers need to look grants up.
  bool uses_grants() const { return uses_grants_; }
  // True when some rule has a time window (time / not_time): a decision then depends on the clock.
  bool uses_time() const { return uses_time_; }
  // False when no decision can be review (no review rule, no review default or unknown action):
  // then the proxy need not look for statements to hold.
  bool may_review() const { return may_review_; }
  const std::vector<ClassificationEntry>& classification() const { return classification_; }
  const Settings& settings() const { return settings_; }
  const std::vector<TargetSettings>& targets() const { return targets_; }
  const TargetSettings* target(std::string_view name) const;  // nullptr when not configured
  Action default_action(std::string_view target) const;
  std::optional<RowLimit> row_limit(std::string_view target) const;
  // environment: used when the target is not configured ("production" turns the pack on).
  bool guardrail_enabled(std::string_view guardrail, std::string_view target, std::string_view environment = {}) const;

 private:
  Decision evaluate_rules(const Request& request) const;
  TagSet classify_all(const sql::Analysis& analysis, std::vector<std::string>* where) const;
  std::uint32_t guardrail_mask(std::string_view target, std::string_view environment) const;

  std::vector<Rule> rules_;  // the user's rules, in file order
  bool uses_grants_ = false;
  bool uses_time_ = false;
  bool may_review_ = false;
  std::vector<ClassificationEntry> classification_;
  std::vector<TagSet> classification_tags_;  // interned tags per classification entry
  std::vector<std::string> tag_names_;       // interned tag -> name
  Settings settings_;
  std::vector<TargetSettings> targets_;
  std::vector<std::uint32_t> target_guardrails_;  // per target: bit i = guardrails()[i] is on
  std::uint32_t overridden_ = 0;                  // bit i: a user rule named like guardrails()[i]
};

}  // namespace gh::policy
