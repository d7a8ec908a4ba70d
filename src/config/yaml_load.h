#pragma once
// YAML::Load with the checks yaml-cpp 0.7 leaves out. It accepts a quoted string that is never
// closed and reads the rest of the file into it: a missing closing quote after a password
// silently dropped every key below it, `tls:` included, and `gatehouse check` said ok (found by
// adversarial testing). Errors are YAML::ParserException with the position, as yaml-cpp's own.
// A second document (after a `---` or `...` line) is an error too: yaml-cpp's Load reads the
// first and drops the rest, so a deny rule below such a line vanished while `check` said ok
// (found by adversarial testing).
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

namespace gh::config {

YAML::Node load_yaml(std::string_view text);

// The first key given twice in one mapping, depth first (yaml-cpp keeps one of them silently):
// the second one's key node (for its position) and its path, "targets[0].name".
struct DuplicateKey {
  YAML::Node key;
  std::string path;
};
std::optional<DuplicateKey> find_duplicate_key(const YAML::Node& n, const std::string& path = {});

}  // namespace gh::config
