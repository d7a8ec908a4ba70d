#include "config/config.h"

#include <gtest/gtest.h>

#include "identity/scram.h"

namespace gh::config {
namespace {

std::string verifier() { return identity::ScramVerifier::make_with_salt("pw", "0123456789abcdef", 4096).to_string(); }

std::string minimal(const std::string& extra = "") {
  return "targets:\n"
         "  - name: app\n"
         "    backend: {host: 127.0.0.1, port: 5432, database: app}\n"
         "    login: {user: app, password: secret}\n" +
         extra;
}

TEST(Config, MinimalUsesDefaults) {
  auto c = parse(minimal(), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->listen.port, 6432);
  EXPECT_EQ(c->limits.max_connections, 10000u);
  EXPECT_EQ(c->limits.handshake_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c->tls.mode, ClientTlsMode::Disable);
  ASSERT_EQ(c->targets.size(), 1u);
  EXPECT_EQ(c->targets[0].logins.at(0).password, "secret");
  EXPECT_EQ(c->targets[0].backend_database("whatever"), "app");
}

TEST(Config, DuplicateKeysAreRefused) {
  // yaml-cpp would keep one silently; an ignored second `rules:` block must be an error.
  auto c = parse(minimal("rules: []\nrules:\n  - {name: a, when: {statements: [drop]}, action: deny}\n"), "t.yaml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "t.yaml:6: rules: given twice; keep one");
  auto nested = parse("targets:\n  - name: app\n    name: other\n    backend: {host: h, port: 1}\n"
                      "    login: {user: u, password: p}\n",
                      "t.yaml");
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message.find("t.yaml:3: targets[0].name: given twice"), std::string::npos)
      << nested.error().message;
}

TEST(Config, FullExample) {
  const std::string text = "listen: {address: 0.0.0.0, port: 7000}\n"
                           "threads: 4\n"
                           "admin: {port: 0}\n"
                           "limits:\n"
                           "  max_connections: 50\n"
                           "  max_message_size: 1MiB\n"
                           "  handshake_timeout: 500ms\n"
                           "  idle_timeout: 5m\n"
                           "  shutdown_timeout: 1h\n"
                           "log: {level: debug, format: json}\n"
                           "users:\n"
                           "  - name: alice\n"
                           "    password: \"" + verifier() + "\"\n"
                           "    groups: [dba, dev]\n" +
                           minimal() +
                           "  - name: \"*\"\n"
                           "    backend: {host: db, database: \"*\", tls: require}\n"
                           "    login: {user: app, password: x}\n";
  auto c = parse(text, "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->listen.address, "0.0.0.0");
  EXPECT_EQ(c->threads, 4u);
  EXPECT_EQ(c->admin.port, 0);
  EXPECT_EQ(c->limits.max_message_size, 1u << 20);
  EXPECT_EQ(c->limits.handshake_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c->limits.idle_timeout, std::chrono::minutes(5));
  EXPECT_EQ(c->limits.shutdown_timeout, std::chrono::hours(1));
  ASSERT_EQ(c->users.size(), 1u);
  EXPECT_EQ(c->users[0].groups, (std::vector<std::string>{"dba", "dev"}));
  EXPECT_EQ(c->find_target("app")->name, "app");
  ASSERT_NE(c->find_target("other"), nullptr);
  EXPECT_EQ(c->find_target("other")->name, "*");
  EXPECT_EQ(c->find_target("other")->backend_database("other"), "other");
  EXPECT_EQ(c->find_target("other")->backend.tls, BackendTlsMode::Require);
}

struct BadCase {
  const char* name;
  std::string text;
  std::string expect_in_message;
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NamesTheKeyAndLine) {
  auto c = parse(GetParam().text, "bad.yaml");
  ASSERT_FALSE(c) << "should have been rejected";
  EXPECT_NE(c.error().message.find(GetParam().expect_in_message), std::string::npos) << c.error().message;
  EXPECT_EQ(c.error().message.rfind("bad.yaml", 0), 0u) << c.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        BadCase{"unknown_top", "listne: {port: 1}\n" + minimal(), "bad.yaml:1: listne: unknown key"},
        BadCase{"unknown_nested", minimal("    bakcend: {}\n"), "targets[0].bakcend: unknown key"},
        BadCase{"bad_port", "listen: {port: abc}\n" + minimal(), "bad.yaml:1: listen.port: expected a port number"},
        BadCase{"port_range", "listen: {port: 70000}\n" + minimal(), "listen.port"},
        BadCase{"bad_duration", "limits: {idle_timeout: 5 minutes}\n" + minimal(), "limits.idle_timeout: expected a duration"},
        BadCase{"bad_size", "limits: {max_message_size: lots}\n" + minimal(), "limits.max_message_size"},
        BadCase{"tiny_size", "limits: {max_message_size: 10}\n" + minimal(), "limits.max_message_size: must be between"},
        BadCase{"wrapping_size", "limits: {max_message_size: 18014398509482048KiB}\n" + minimal(),
                "limits.max_message_size: \"18014398509482048KiB\" is too large"},
        BadCase{"bad_tls_mode", "tls: {mode: maybe}\n" + minimal(), "tls.mode: expected one of: disable, allow, require"},
        BadCase{"tls_without_cert", "tls: {mode: require}\n" + minimal(), "tls.cert_file: required"},
        BadCase{"no_targets", "threads: 1\n", "targets: at least one target"},
        BadCase{"empty", "", "the file is empty"},
        BadCase{"bad_yaml", "targets: [\n", "invalid YAML"},
        // yaml-cpp 0.7 reads an unclosed quote to the end of the file: tls below it vanished.
        BadCase{"unclosed_double_quote",
                "targets:\n  - name: a\n    backend: {host: h}\n    login:\n      user: u\n"
                "      password: \"p   # no closing quote\ntls: {mode: require, cert_file: /x, key_file: /y}\n",
                "bad.yaml:6: invalid YAML: a double-quoted string starts here and is never closed"},
        BadCase{"unclosed_single_quote",
                "targets:\n  - name: a\n    backend: {host: h}\n    login:\n      user: u\n      password: 'p\n"
                "tls:\n  mode: require\n",
                "bad.yaml:6: invalid YAML: a single-quoted string starts here and is never closed"},
        BadCase{"missing_login", "targets:\n  - name: a\n    backend: {host: h}\n", "targets[0].login: missing"},
        BadCase{"bad_verifier", "users:\n  - name: a\n    password: hunter2\n" + minimal(),
                "bad.yaml:3: users[0].password: not a SCRAM-SHA-256 verifier"},
        BadCase{"duplicate_target", minimal() + "  - name: app\n    backend: {host: h}\n    login: {user: u, password: p}\n",
                "duplicate target"},
        BadCase{"verify_full_needs_ca",
                "targets:\n  - name: a\n    backend: {host: h, tls: verify-full}\n    login: {user: u, password: p}\n",
                "targets[0].backend.ca_file: required"},
        BadCase{"missing_env",
                "targets:\n  - name: a\n    backend: {host: h}\n    login: {user: u, password_env: GH_TEST_SURELY_UNSET}\n",
                "environment variable GH_TEST_SURELY_UNSET is not set"},
        // An empty value on the last line was reported one line past the end of the file.
        BadCase{"empty_value_on_last_line", minimal() + "limits:\n  max_connections:\n",
                "bad.yaml:6: limits.max_connections: expected a value"},
        BadCase{"empty_value_on_last_line_crlf", minimal() + "limits:\r\n  max_connections:\r\n\r\n",
                "bad.yaml:6: limits.max_connections: expected a value"},
        BadCase{"two_password_sources",
                "targets:\n  - name: a\n    backend: {host: h}\n    login: {user: u, password: a, password_file: /x}\n",
                "give only one of"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Config, QuotedStringsWithQuotesAndNewlinesInsideStillLoad) {
  auto c = parse("targets:\n  - name: a\n    backend: {host: h}\n"
                 "    login: {user: 'it''s', password: \"a\\\"b # not a comment\n      c\"}\n", "t");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->targets[0].logins.at(0).user, "it's");
  EXPECT_EQ(c->targets[0].logins.at(0).password, "a\"b # not a comment c");
}

TEST(Config, PasswordFromEnvAndFile) {
  ::setenv("GH_TEST_PW", "from-env", 1);
  auto c = parse("targets:\n  - name: a\n    backend: {host: h}\n    login: {user: u, password_env: GH_TEST_PW}\n", "t");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->targets[0].logins.at(0).password, "from-env");
  const std::string path = ::testing::TempDir() + "/gh_pw";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("from-file\n", f);
  std::fclose(f);
  c = parse("targets:\n  - name: a\n    backend: {host: h}\n    login: {user: u, password_file: " + path + "}\n", "t");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->targets[0].logins.at(0).password, "from-file");
}

TEST(Config, Durations) {
  EXPECT_EQ(*parse_duration("0"), Duration::zero());
  EXPECT_EQ(*parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(*parse_duration("2h"), std::chrono::hours(2));
  EXPECT_FALSE(parse_duration("10"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_EQ(*parse_size("64KiB"), 65536u);
  EXPECT_EQ(*parse_size("3"), 3u);
  EXPECT_FALSE(parse_size("3 MiB"));
}


// Found by adversarial testing: each passed `check` and then failed at serve, or ran weaker
// than the file said (an empty webhook secret sent webhooks unsigned).
TEST(Config, EmptySecretsDirectoriesAndMissingDirectoriesAreRefusedWithTheirKey) {
  const std::string dir = ::testing::TempDir();
  const std::string empty = dir + "/gh_empty_secret";
  std::fclose(std::fopen(empty.c_str(), "w"));
  auto error_of = [](const std::string& text) {
    auto c = parse(text, "t.yaml");
    return c ? std::string("accepted") : c.error().message;
  };
  const std::string hook = "approvals:\n  webhooks:\n    - url: http://127.0.0.1:9/hook\n      ";
  EXPECT_NE(error_of(minimal(hook + "secret_file: " + empty + "\n")).find("approvals.webhooks[0].secret_file: " + empty + " is empty"),
            std::string::npos);
  EXPECT_NE(error_of(minimal(hook + "secret_file: /tmp\n")).find("secret_file: /tmp is not a file"), std::string::npos);
  ::setenv("GH_TEST_EMPTY_SECRET", "", 1);
  EXPECT_NE(error_of(minimal(hook + "secret_env: GH_TEST_EMPTY_SECRET\n")).find("environment variable GH_TEST_EMPTY_SECRET is empty"),
            std::string::npos);
  const std::string login = "targets:\n  - name: app\n    backend: {host: h, port: 1}\n    login: {user: u, password_file: ";
  EXPECT_NE(error_of(login + "/tmp}\n").find("t.yaml:4: targets[0].login.password_file: /tmp is not a file"),
            std::string::npos)
      << error_of(login + "/tmp}\n");
  EXPECT_NE(error_of(minimal("audit:\n  sinks: [{type: sqlite, path: /tmp}]\n")).find("audit.sinks[0].path: /tmp is a directory"),
            std::string::npos);
  EXPECT_NE(error_of(minimal("audit:\n  sinks: [{type: jsonl, path: /nonexistent/dir/a.jsonl}]\n"))
                .find("audit.sinks[0].path: the directory of /nonexistent/dir/a.jsonl does not exist"),
            std::string::npos);
  EXPECT_NE(error_of(minimal("audit:\n  spool: {dir: /etc/hostname}\n")).find("audit.spool.dir: /etc/hostname is not a directory"),
            std::string::npos);
  EXPECT_NE(error_of(minimal("approvals:\n  store: /nonexistent/dir/a.db\n")).find("approvals.store: the directory of"),
            std::string::npos);
  std::remove(empty.c_str());
}

TEST(Config, JsonLinesRotationSettings) {
  auto c = parse(minimal("audit:\n  sinks: [{type: jsonl, path: a.jsonl, max_size: 0}]\n"), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;  // the documented default, written out
  EXPECT_EQ(c->audit.sinks.at(0).max_size, 0u);
  c = parse(minimal("audit:\n  sinks: [{type: jsonl, path: a.jsonl, max_size: 1MiB, keep: 3}]\n"), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->audit.sinks.at(0).max_size, 1u << 20);
  EXPECT_EQ(c->audit.sinks.at(0).keep, 3u);
  EXPECT_FALSE(parse(minimal("audit:\n  sinks: [{type: jsonl, path: a.jsonl, max_size: 1KiB}]\n"), "t.yaml"));
  EXPECT_FALSE(parse(minimal("audit:\n  sinks: [{type: sqlite, path: a.db, max_size: 1MiB}]\n"), "t.yaml"));
}

TEST(Config, RelativeFilesAreBesideTheConfigAndIpv6AdminUrlsHaveBrackets) {
  const std::string dir = ::testing::TempDir();
  for (const char* f : {"/gh_rel_server.crt", "/gh_rel_server.key"}) std::fclose(std::fopen((dir + f).c_str(), "w"));
  auto c = parse(minimal("tls: {mode: disable, cert_file: gh_rel_server.crt, key_file: gh_rel_server.key}\n"
                         "admin: {address: \"::1\", port: 9}\n"),
                 dir + "/gatehouse.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->tls.cert_file, dir + "/gh_rel_server.crt");
  EXPECT_EQ(c->tls.key_file, dir + "/gh_rel_server.key");
  EXPECT_EQ(c->admin.public_url, "http://[::1]:9");
  c = parse(minimal("admin: {address: \"::\", port: 9}\n"), "t.yaml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->admin.public_url, "http://[::1]:9");
}

}  // namespace
}  // namespace gh::config
