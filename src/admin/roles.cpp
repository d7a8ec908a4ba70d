#include "admin/roles.h"

#include <algorithm>

namespace gh::admin {

namespace {

bool member(const identity::Identity& who, const std::vector<std::string>& groups) {
  for (const auto& g : groups) {
    if (g == "*") return true;
    if (std::find(who.groups.begin(), who.groups.end(), g) != who.groups.end()) return true;
  }
  return false;
}

}  // namespace

Roles roles_of(const identity::Identity& who, const config::Admin& admin) {
  Roles out;
  if (who.subject.empty()) return out;  // not authenticated: no role, not even "*"
  if (member(who, admin.admin_groups)) out.emplace(kRoleAdmin);
  if (member(who, admin.reviewer_groups)) out.emplace(kRoleReviewer);
  if (member(who, admin.auditor_groups)) out.emplace(kRoleAuditor);
  if (member(who, admin.requester_groups)) out.emplace(kRoleRequester);
  return out;
}

bool allows(const Roles& r, Permission p) {
  auto has = [&r](std::string_view role) { return r.find(role) != r.end(); };
  switch (p) {
    case Permission::ReadAll:
      return has(kRoleAdmin) || has(kRoleReviewer) || has(kRoleAuditor);
    case Permission::ReadOwn:
      return !r.empty();
    case Permission::Decide:
      return has(kRoleAdmin) || has(kRoleReviewer);
    case Permission::RequestAccess:
      return has(kRoleRequester) || has(kRoleAdmin);
    case Permission::RevokeAny:
      return has(kRoleAdmin);
    case Permission::ReadAudit:
      return has(kRoleAdmin) || has(kRoleAuditor);
    case Permission::ReadSessions:
      return has(kRoleAdmin) || has(kRoleReviewer) || has(kRoleAuditor);
    case Permission::EndSession:
      return has(kRoleAdmin);
  }
  return false;
}

std::string_view permission_name(Permission p) {
  switch (p) {
    case Permission::ReadAll:
      return "read all requests (roles reviewer, auditor or admin)";
    case Permission::ReadOwn:
      return "use the approvals API (any role)";
    case Permission::Decide:
      return "approve or reject requests (roles reviewer or admin)";
    case Permission::RequestAccess:
      return "request access (roles requester or admin)";
    case Permission::RevokeAny:
      return "revoke other people's grants (role admin)";
    case Permission::ReadAudit:
      return "read the audit trail (roles auditor or admin)";
    case Permission::ReadSessions:
      return "see live sessions (roles reviewer, auditor or admin)";
    case Permission::EndSession:
      return "end sessions (role admin)";
  }
  return "?";
}

}  // namespace gh::admin
