// approvals.store (SQLite file) versus approvals.store_dsn (PostgreSQL shared by several nodes).
#include <cstdlib>

#include <gtest/gtest.h>

#include "config/config.h"

namespace gh::config {
namespace {

std::string with_approvals(const std::string& approvals) {
  return "approvals:\n" + approvals +
         "targets:\n"
         "  - name: app\n"
         "    backend: {host: 127.0.0.1, port: 5432, database: app}\n"
         "    login: {user: app, password: secret}\n";
}

TEST(ApprovalsStoreConfig, SqliteByDefaultPostgresWithADsn) {
  auto c = parse(with_approvals("  timeout: 1m\n"), "/etc/gh/t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->approvals.store, "/etc/gh/gatehouse-approvals.db");
  EXPECT_EQ(c->approvals.store_dsn, "");

  c = parse(with_approvals("  store_dsn: host=db dbname=gh\n"), "/etc/gh/t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->approvals.store_dsn, "host=db dbname=gh");

  ::setenv("GH_TEST_APPROVALS_DSN", "host=env dbname=gh", 1);
  c = parse(with_approvals("  store_dsn_env: GH_TEST_APPROVALS_DSN\n"), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->approvals.store_dsn, "host=env dbname=gh");
}

TEST(ApprovalsStoreConfig, RefusesTwoStoresAndEmptyDsn) {
  auto c = parse(with_approvals("  store: a.db\n  store_dsn: host=db\n"), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("approvals.store: give either store (SQLite) or store_dsn (PostgreSQL)"),
            std::string::npos)
      << c.error().message;
  c = parse(with_approvals("  store_dsn: host=db\n  store_dsn_env: X\n"), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("give only one of store_dsn, store_dsn_env, store_dsn_file"), std::string::npos)
      << c.error().message;
  c = parse(with_approvals("  store_dsn: ''\n"), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("approvals.store_dsn: must not be empty"), std::string::npos) << c.error().message;
  c = parse(with_approvals("  store_dsn_env: GH_TEST_SURELY_UNSET_DSN\n"), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("environment variable GH_TEST_SURELY_UNSET_DSN is not set"), std::string::npos);
}

}  // namespace
}  // namespace gh::config
