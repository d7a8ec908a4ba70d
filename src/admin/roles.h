#pragma once
// Who may do what in the admin API: roles come from an identity's groups through the
// configuration's admin.roles lists ("*" in a list: every authenticated identity).
#include <set>
#include <string>
#include <string_view>

#include "config/config.h"
#include "identity/identity.h"

namespace gh::admin {

inline constexpr std::string_view kRoleAdmin = "admin";
inline constexpr std::string_view kRoleReviewer = "reviewer";
inline constexpr std::string_view kRoleAuditor = "auditor";
inline constexpr std::string_view kRoleRequester = "requester";

using Roles = std::set<std::string, std::less<>>;

// The roles `who` holds under `admin` (admin_groups -> "admin", reviewer_groups -> "reviewer", ...).
Roles roles_of(const identity::Identity& who, const config::Admin& admin);

enum class Permission {
  ReadAll,        // every approval, access request and grant (not only one's own)
  ReadOwn,        // one's own requests and grants
  Decide,         // approve or reject (the service adds: not one's own, the rule's reviewer groups)
  RequestAccess,  // ask for a time-bound grant
  RevokeAny,      // end anyone's grant (one's own grant can always be given up)
  ReadAudit,      // search the audit trail (GET /api/v1/audit)
  ReadSessions,   // see the proxy's live sessions and what they run (GET /api/v1/sessions)
  EndSession,     // end someone's proxy session (POST /api/v1/sessions/{id}/end)
};
bool allows(const Roles& roles, Permission p);
std::string_view permission_name(Permission p);  // for 403 messages: "approve or reject requests", ...

}  // namespace gh::admin
