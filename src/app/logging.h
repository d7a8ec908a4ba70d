#pragma once
#include <string>

#include "config/config.h"

namespace gh::app {
// Structured logs on stderr: human text, or one JSON object per line for log shippers.
void setup_logging(const config::Log& log);
void set_level(const std::string& level);
}  // namespace gh::app
