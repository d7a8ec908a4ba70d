#pragma once
// The JSON shapes of the admin API v1 (docs/openapi.yaml): approval requests, access requests,
// identities, errors; and the few inputs it parses. Pure: no I/O, the clock is a parameter.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "admin/roles.h"
#include "approvals/approvals.h"
#include "base/result.h"
#include "identity/identity.h"

namespace gh::admin {

// "2024-05-01T12:00:00.250Z" (milliseconds, UTC); 0 -> "".
std::string rfc3339(approvals::TimeUs t);

// "1h", "90m", "45s", "2d" (whole seconds) or a number of seconds -> seconds; error for anything
// else, zero or negative.
Result<std::int64_t> parse_grant_duration(const nlohmann::json& v);
// 3600 -> "1h", 5400 -> "1h30m", 45 -> "45s".
std::string format_duration(std::int64_t seconds);

nlohmann::json person_json(const approvals::Person& p);
nlohmann::json identity_json(const identity::Identity& who, const Roles& roles);

// `console_url` is public_url + "/approvals/" + id. `now_us` decides whether a grant is active.
nlohmann::json request_json(const approvals::Request& r, const std::string& public_url);
nlohmann::json access_json(const approvals::AccessRequest& a, const std::string& public_url,
                           approvals::TimeUs now_us);

// "created" + "created_us" (RFC 3339 and microseconds), both null for 0.
void put_time(nlohmann::json& j, const std::string& name, approvals::TimeUs t);
// The grant is in force at `now_us`: approved, not expired, not revoked.
bool grant_active(const approvals::AccessRequest& a, approvals::TimeUs now_us);
// `who` asked for it: same subject, or same email (case-insensitive), as the service's
// self-approval rule.
bool is_own(const approvals::Person& requester, const identity::Identity& who);

}  // namespace gh::admin
