#pragma once
// `gatehouse audit verify|search|tail|report|keygen`: the read side of the audit trail.
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace gh::config {
struct Config;
}

namespace gh::app {

// Adds the `audit` subcommand tree to `app` (call before parsing).
void add_audit_commands(CLI::App& app);
// After parsing: the exit code when an `audit` subcommand was chosen, nullopt otherwise.
std::optional<int> run_audit_command();
// The store the admin API searches: the first SQLite or JSON-lines file sink ("" when none).
std::string audit_store_path(const config::Config& cfg);

}  // namespace gh::app
