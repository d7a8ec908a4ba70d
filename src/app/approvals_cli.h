#pragma once
// `gatehouse approvals list|show|approve|reject`, `gatehouse request-access`,
// `gatehouse grants list|revoke`: the admin API v1 (docs/api.md) from the command line, with the
// token `gatehouse login` saved (or --token).
#include <optional>

namespace CLI {
class App;
}

namespace gh::app {

void add_approvals_commands(CLI::App& app);
// After parsing: the exit code when one of these commands was chosen, nullopt otherwise.
std::optional<int> run_approvals_command();

}  // namespace gh::app
