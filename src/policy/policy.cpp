// Names of the policy language and Policy::build (validation, tag interning, guardrail scope).
#include "policy/policy.h"

#include <array>
#include <map>
#include <set>

#include "policy/guardrails.h"

namespace gh::policy {

namespace {

constexpr std::array<std::string_view, 4> kActions = {"allow", "mask", "review", "deny"};
constexpr std::array<std::string_view, 5> kSensitivities = {"none", "low", "medium", "high", "critical"};
constexpr std::array<std::string_view, kFeatureCount> kFeatures = {
    "without_where", "trivial_where", "multi_statement", "opaque_code",      "server_file_access", "server_program",
    "remote_access", "role_change",   "destructive_alter", "returning", "whole_row", "transaction_control"};
constexpr std::array<std::string_view, 7> kStrategies = {"redact", "partial", "hash", "keep_domain", "null", "fixed", "digits"};

using K = sql::StatementKind;
struct Alias {
  std::string_view name;
  std::vector<K> kinds;
};

const std::vector<Alias>& alias_table() {
  static const std::vector<Alias> kAliases = {
      {"ddl", {K::Create, K::Alter, K::Drop, K::CreateDatabase, K::DropDatabase, K::Comment}},
      {"write", {K::Insert, K::Update, K::Delete, K::Merge, K::Truncate, K::CopyFrom}},
      {"read", {K::Select, K::CopyTo, K::Fetch}},
      {"transaction", {K::Begin, K::Commit, K::Rollback, K::Savepoint}},
      {"role", {K::RoleChange, K::SetRole, K::Grant, K::Revoke}},
  };
  return kAliases;
}

}  // namespace

std::string_view action_name(Action a) { return kActions[std::size_t(a)]; }

std::optional<Action> action_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kActions.size(); ++i)
    if (kActions[i] == name) return Action(i);
  return std::nullopt;
}

std::string_view sensitivity_name(Sensitivity s) { return kSensitivities[std::size_t(s)]; }

std::optional<Sensitivity> sensitivity_from_name(std::string_view name) {
  for (std::size_t i = 1; i < kSensitivities.size(); ++i)
    if (kSensitivities[i] == name) return Sensitivity(i);
  return std::nullopt;
}

std::string_view feature_name(Feature f) { return kFeatures[std::size_t(f)]; }

std::optional<Feature> feature_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kFeatures.size(); ++i)
    if (kFeatures[i] == name) return Feature(i);
  return std::nullopt;
}

bool is_mask_strategy(std::string_view name) {
  for (auto s : kStrategies)
    if (s == name) return true;
  return false;
}

Result<void> KindSet::add(std::string_view name) {
  if (name == "all") {
    bits_ = ~std::uint64_t(0);
    return {};
  }
  for (const auto& a : alias_table()) {
    if (a.name != name) continue;
    for (auto k : a.kinds) add(k);
    return {};
  }
  if (auto k = sql::kind_from_name(name); k) {
    add(*k);
    return {};
  }
  return fail("", "unknown statement kind \"" + std::string(name) +
                      "\" (a kind such as select, insert, update, delete, drop, copy_from; or an alias: ddl, write, "
                      "read, transaction, role, all)");
}

std::vector<std::string_view> KindSet::aliases() {
  std::vector<std::string_view> out;
  for (const auto& a : alias_table()) out.push_back(a.name);
  out.push_back("all");
  return out;
}

Policy::Policy() = default;

Result<Policy> Policy::build(PolicySpec spec) {
  static_assert(kFeatures.size() == kFeatureCount);
  Policy p;
  const auto& pack = guardrails();
  if (pack.size() > 32) return fail("", "internal: too many guardrails");
  // Tags, interned in order of first definition.
  std::map<std::string, std::size_t, std::less<>> tag_index;
  for (std::size_t i = 0; i < spec.classification.size(); ++i) {
    TagSet bits;
    for (const auto& t : spec.classification[i].tags) {
      auto [it, fresh] = tag_index.try_emplace(t, p.tag_names_.size());
      if (fresh) {
        if (p.tag_names_.size() == kMaxTags)
          return fail("", "classification[" + std::to_string(i) + "]: more than " + std::to_string(kMaxTags) +
                              " distinct tags");
        p.tag_names_.push_back(t);
      }
      bits.set(it->second);
    }
    p.classification_tags_.push_back(bits);
  }
  std::set<std::string, std::less<>> names;
  for (std::size_t i = 0; i < spec.rules.size(); ++i) {
    auto& r = spec.rules[i];
    const std::string path = "rules[" + std::to_string(i) + "]";
    if (r.name.empty()) return fail("", path + ".name: missing");
    if (!names.insert(r.name).second) return fail("", path + ".name: duplicate rule name \"" + r.name + "\"");
    if (r.name.rfind("guardrail.", 0) == 0) {
      const auto* g = find_guardrail(r.name);
      if (!g || g->name != r.name)
        return fail("", path + ".name: no built-in guardrail is named \"" + r.name + "\"");
      if (g->always_on) return fail("", path + ".name: " + r.name + " cannot be overridden");
      p.overridden_ |= 1u << unsigned(g - pack.data());
    }
    r.when.tag_bits.reset();
    for (const auto& t : r.when.tags) {
      auto it = tag_index.find(t);
      if (it == tag_index.end())
        return fail("", path + ".when.tags: tag \"" + t + "\" is not given to any column by classification");
      r.when.tag_bits.set(it->second);
    }
    for (const auto& t : r.mask.tags)
      if (!tag_index.count(t))
        return fail("", path + ".mask.tags: tag \"" + t + "\" is not given to any column by classification");
    if (r.action == Action::Mask && !is_mask_strategy(r.mask.strategy))
      return fail("", path + ".mask.strategy: unknown strategy \"" + r.mask.strategy + "\"");
    if (r.reviewers.approvals < 1) return fail("", path + ".reviewers.approvals: must be at least 1");
  }
  if (spec.settings.unknown_action != Action::Deny && spec.settings.unknown_action != Action::Review)
    return fail("", "policy.unknown_action: must be deny or review");
  const auto check_limit = [](const std::optional<RowLimit>& l, const std::string& path) -> Result<void> {
    if (l && l->over_limit_action != Action::Deny && l->over_limit_action != Action::Review)
      return fail("", path + ".over_limit_action: must be review or deny");
    return {};
  };
  if (auto ok = check_limit(spec.settings.row_limit, "policy"); !ok) return tl::unexpected(ok.error());
  std::set<std::string, std::less<>> target_names;
  for (std::size_t i = 0; i < spec.targets.size(); ++i) {
    auto& t = spec.targets[i];
    const std::string path = "targets[" + std::to_string(i) + "]";
    if (!target_names.insert(t.name).second) return fail("", path + ".name: duplicate target \"" + t.name + "\"");
    if (auto ok = check_limit(t.row_limit, path + ".policy"); !ok) return tl::unexpected(ok.error());
    const bool on = t.guardrails.value_or(is_production(t.environment));
    std::uint32_t mask = 0;
    for (std::size_t g = 0; g < pack.size(); ++g)
      if (on || pack[g].always_on) mask |= 1u << g;
    for (auto& off : t.guardrails_off) {
      const auto* g = find_guardrail(off);
      if (!g) return fail("", path + ".guardrails.off: no built-in guardrail is named \"" + off + "\"");
      if (g->always_on) return fail("", path + ".guardrails.off: " + std::string(g->name) + " cannot be turned off");
      off = std::string(g->name);
      mask &= ~(1u << unsigned(g - pack.data()));
    }
    p.target_guardrails_.push_back(mask);
  }
  p.rules_ = std::move(spec.rules);
  for (const auto& r : p.rules_) {
    p.uses_grants_ = p.uses_grants_ || !r.requires_grant.empty();
    p.uses_time_ = p.uses_time_ || !r.when.time.empty() || !r.when.not_time.empty();
    p.may_review_ = p.may_review_ || (r.action == Action::Review && !r.audit_only);
  }
  p.classification_ = std::move(spec.classification);
  p.settings_ = spec.settings;
  p.targets_ = std::move(spec.targets);
  p.may_review_ = p.may_review_ || p.settings_.unknown_action == Action::Review ||
                  p.settings_.default_action == Action::Review;
  for (const auto& t : p.targets_) p.may_review_ = p.may_review_ || t.default_action == Action::Review;
  return p;
}

const TargetSettings* Policy::target(std::string_view name) const {
  for (const auto& t : targets_)
    if (t.name == name) return &t;
  return nullptr;
}

Action Policy::default_action(std::string_view name) const {
  const auto* t = target(name);
  return t && t->default_action ? *t->default_action : settings_.default_action;
}

std::optional<RowLimit> Policy::row_limit(std::string_view name) const {
  const auto* t = target(name);
  return t && t->row_limit ? t->row_limit : settings_.row_limit;
}

std::uint32_t Policy::guardrail_mask(std::string_view name, std::string_view environment) const {
  const auto& pack = guardrails();
  for (std::size_t i = 0; i < targets_.size(); ++i)
    if (targets_[i].name == name) return target_guardrails_[i] & ~overridden_;
  std::uint32_t mask = 0;
  for (std::size_t g = 0; g < pack.size(); ++g)
    if (is_production(environment) || pack[g].always_on) mask |= 1u << g;
  return mask & ~overridden_;
}

bool Policy::guardrail_enabled(std::string_view guardrail, std::string_view target, std::string_view environment) const {
  const auto* g = find_guardrail(guardrail);
  if (!g) return false;
  return guardrail_mask(target, environment) & (1u << unsigned(g - guardrails().data()));
}

}  // namespace gh::policy
