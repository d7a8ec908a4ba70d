#pragma once
// The token `gatehouse login` / `gatehouse token` save, shared by the commands that use it
// (psql, whoami, the approvals commands).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace gh::app {

// $GATEHOUSE_TOKEN_FILE, else $XDG_CONFIG_HOME/gatehouse/token.json, else ~/.config/gatehouse/token.json.
std::string default_token_file();
// The saved token response (JSON object); the error says how to get one.
Result<nlohmann::json> load_saved_token(const std::string& path);
// The token a login or an API call uses: the access token when it is a JWT, else the ID token.
std::string login_token(const nlohmann::json& saved);
// The payload of a JWT, not verified ({} when it is not one).
nlohmann::json unverified_claims(const std::string& token);
// Seconds since the epoch -> "2024-05-01 12:00:00 UTC".
std::string utc(std::int64_t t);

}  // namespace gh::app
