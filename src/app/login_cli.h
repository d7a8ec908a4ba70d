#pragma once
// `gatehouse login | token | whoami | psql`: getting OIDC tokens from the company IdP and
// using them as database logins.
#include <optional>

namespace CLI {
class App;
}

namespace gh::app {

void add_login_commands(CLI::App& app);
// After parsing: the exit code when one of these commands was chosen, nullopt otherwise.
std::optional<int> run_login_command();

}  // namespace gh::app
