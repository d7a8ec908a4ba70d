#pragma once
// The built-in guardrail pack: named deny rules on for production targets. A user rule with
// the same name replaces one; `guardrails: false` or an off list on a target turns them off.
#include <string>
#include <string_view>
#include <vector>

#include "sql/statement_info.h"

namespace gh::policy {

// True when the statement trips the guardrail; `what` (when not null) gets a short phrase
// naming what was found, e.g. "DELETE on public.orders without a WHERE clause".
using GuardrailCheck = bool (*)(const sql::Statement& statement, std::string* what);

struct Guardrail {
  std::string_view name;     // "guardrail.drop"
  std::string_view summary;  // one line for docs and `check` output
  std::string_view why;      // completes "<what> is not allowed on production targets: <why>."
  std::string_view hint;     // what the person can do instead
  GuardrailCheck check;
  bool always_on = false;  // on for every target; cannot be turned off or overridden
};

// At most 32 entries (Policy keeps one bit per guardrail and target).
const std::vector<Guardrail>& guardrails();
// Accepts the full name or the short one ("drop"); nullptr when there is no such guardrail.
const Guardrail* find_guardrail(std::string_view name);

// The environment the built-in guardrails are on for: "production", in any case.
bool is_production(std::string_view environment);
// Whether `text` contains `word`, ASCII case folded.
bool contains_nocase(std::string_view text, std::string_view word);

}  // namespace gh::policy
