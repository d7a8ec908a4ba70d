#pragma once
// What a client's StartupMessage may set in the backend session. PostgreSQL applies the client's
// ordinary startup parameters after `options`, and compares setting names without case, so a
// parameter "GATEHOUSE.IDENTITY" would override the proxy's own -c gatehouse.identity=...; the
// proxy therefore checks every name the client sends, in any case and in both places.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gh::protocol {

// `options` split as PostgreSQL splits it (pg_split_opts): whitespace separates arguments, a
// backslash makes the next character literal.
std::vector<std::string> split_startup_options(std::string_view options);

// The setting names `options` sets (-c name=value, -cname=value, --name=value; for the last,
// '-' in the name reads as '_', as PostgreSQL reads it), lower case. Error (a message for the
// client): any other switch, which would change server settings the proxy does not see.
struct OptionSettings {
  std::vector<std::string> names;
  std::string error;
};
OptionSettings startup_option_settings(std::string_view options);

// Why a client may not set `name` at startup, or nullopt: gatehouse.* carry the identity the
// proxy vouches for; role and session_authorization are the target login's (and SET ROLE is
// guardrail.privileges').
std::optional<std::string> forbidden_startup_setting(std::string_view name);

// A setting's name as PostgreSQL reads a startup option's: lower case, '-' as '_'.
std::string startup_setting_name(std::string_view name);

}  // namespace gh::protocol
