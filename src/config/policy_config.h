#pragma once
// The policy part of the configuration: top-level `rules`, `classification`, `policy`,
// `policy_file`, and per target `environment`, `guardrails`, `policy`. Parsed into a
// policy::Policy; errors name file:line: key and the reason. See docs/policy.md.
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "policy/policy.h"

namespace YAML {
class Node;
}

namespace gh::config {

// From a whole configuration document whose other keys config.cpp checks. A relative
// `policy_file` is read from the directory of `source`.
[[nodiscard]] Result<std::shared_ptr<const policy::Policy>> read_policy(const YAML::Node& root,
                                                                        const std::string& source);

// A policy document on its own (policy test files, tools): the keys rules, classification,
// policy, policy_file, and `targets` whose entries hold only name, environment, guardrails, policy.
[[nodiscard]] Result<std::shared_ptr<const policy::Policy>> parse_policy(std::string_view yaml_text,
                                                                         std::string_view source_name);

}  // namespace gh::config
