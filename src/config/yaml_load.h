#pragma once
// YAML::Load with the checks yaml-cpp 0.7 leaves out. It accepts a quoted string that is never
// closed and reads the rest of the file into it: a missing closing quote after a password
// silently dropped every key below it, `tls:` included, and `gatehouse check` said ok (found by
// adversarial testing). Errors are YAML::ParserException with the position, as yaml-cpp's own.
#include <string_view>

#include <yaml-cpp/yaml.h>

namespace gh::config {

YAML::Node load_yaml(std::string_view text);

}  // namespace gh::config
