#include "admin/roles.h"

#include <gtest/gtest.h>

namespace gh::admin {
namespace {

identity::Identity person(std::string sub, std::vector<std::string> groups) {
  identity::Identity id;
  id.subject = std::move(sub);
  id.groups = std::move(groups);
  return id;
}

config::Admin roles_config() {
  config::Admin a;
  a.admin_groups = {"secops"};
  a.reviewer_groups = {"dba", "leads"};
  a.auditor_groups = {"compliance"};
  a.requester_groups = {"*"};
  return a;
}

TEST(AdminRoles, GroupsMapToRolesAndStarMeansEveryAuthenticatedIdentity) {
  const auto cfg = roles_config();
  EXPECT_EQ(roles_of(person("bob", {"dba"}), cfg), (Roles{"reviewer", "requester"}));
  EXPECT_EQ(roles_of(person("carol", {"leads", "compliance"}), cfg), (Roles{"reviewer", "auditor", "requester"}));
  EXPECT_EQ(roles_of(person("sam", {"secops"}), cfg), (Roles{"admin", "requester"}));
  EXPECT_EQ(roles_of(person("alice", {}), cfg), (Roles{"requester"}));
  // not authenticated: nothing, not even "*"
  EXPECT_TRUE(roles_of(person("", {"secops"}), cfg).empty());
}

TEST(AdminRoles, DefaultsGiveOnlyTheRequesterRole) {
  config::Admin defaults;
  EXPECT_EQ(roles_of(person("x", {"dba", "admins"}), defaults), (Roles{"requester"}));
  defaults.requester_groups.clear();
  EXPECT_TRUE(roles_of(person("x", {"dba"}), defaults).empty());
}

TEST(AdminRoles, GroupNamesMatchExactly) {
  auto cfg = roles_config();
  cfg.requester_groups = {"analysts"};
  EXPECT_TRUE(roles_of(person("x", {"DBA", "dba-ro", "analyst"}), cfg).empty());
}

struct PermissionCase {
  Roles roles;
  bool read_all, read_own, decide, request, revoke_any, read_sessions, end_session;
};

TEST(AdminRoles, PermissionTable) {
  const PermissionCase cases[] = {
      {{"admin"}, true, true, true, true, true, true, true},
      {{"reviewer"}, true, true, true, false, false, true, false},
      {{"auditor"}, true, true, false, false, false, true, false},
      {{"requester"}, false, true, false, true, false, false, false},
      {{"reviewer", "requester"}, true, true, true, true, false, true, false},
      {{}, false, false, false, false, false, false, false},
  };
  for (const auto& c : cases) {
    std::string name;
    for (const auto& r : c.roles) name += r + " ";
    SCOPED_TRACE(name);
    EXPECT_EQ(allows(c.roles, Permission::ReadAll), c.read_all);
    EXPECT_EQ(allows(c.roles, Permission::ReadOwn), c.read_own);
    EXPECT_EQ(allows(c.roles, Permission::Decide), c.decide);
    EXPECT_EQ(allows(c.roles, Permission::RequestAccess), c.request);
    EXPECT_EQ(allows(c.roles, Permission::RevokeAny), c.revoke_any);
    EXPECT_EQ(allows(c.roles, Permission::ReadSessions), c.read_sessions);
    EXPECT_EQ(allows(c.roles, Permission::EndSession), c.end_session);
  }
}

}  // namespace
}  // namespace gh::admin
