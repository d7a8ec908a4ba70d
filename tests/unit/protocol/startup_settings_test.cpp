#include "protocol/startup_settings.h"

#include <gtest/gtest.h>

using namespace gh::protocol;

TEST(StartupSettings, SplitsOptionsAsPostgresDoes) {
  EXPECT_EQ(split_startup_options("  -c a=b   --x-y=z "), (std::vector<std::string>{"-c", "a=b", "--x-y=z"}));
  EXPECT_EQ(split_startup_options("-c search_path=a\\ b\\\\c"), (std::vector<std::string>{"-c", "search_path=a b\\c"}));
  EXPECT_TRUE(split_startup_options(" \t ").empty());
}

TEST(StartupSettings, NamesEverySettingInEveryForm) {
  auto r = startup_option_settings("-c statement_timeout=5s -cGEQO=off --Search-Path=x --gatehouse.identity=bob");
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.names, (std::vector<std::string>{"statement_timeout", "geqo", "search_path", "gatehouse.identity"}));
  EXPECT_NE(startup_option_settings("-c").error, "");  // a -c without its name=value
  // Other server switches (-O allow_system_table_mods, -d debug level, ...) are refused, not guessed at.
  EXPECT_NE(startup_option_settings("-O").error, "");
  EXPECT_NE(startup_option_settings("-c a=b -d 5").error, "");
  EXPECT_NE(startup_option_settings("plain").error, "");
}

TEST(StartupSettings, IdentityAndRoleCannotBeChosenInAnyCase) {
  for (const char* name : {"gatehouse.identity", "GATEHOUSE.IDENTITY", "Gatehouse.Identity_Groups", "gatehouse.other",
                           "role", "ROLE", "session_authorization", "Session_Authorization",
                           "session-authorization"})  // PostgreSQL reads - as _ in option names
    EXPECT_TRUE(forbidden_startup_setting(name).has_value()) << name;
  for (const char* name : {"application_name", "search_path", "TimeZone", "gatehouse", "roles", "client_encoding"})
    EXPECT_FALSE(forbidden_startup_setting(name).has_value()) << name;
}
