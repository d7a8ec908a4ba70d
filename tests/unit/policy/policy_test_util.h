#pragma once
// Builders for hand-made analyses, so policy tests do not depend on the SQL analyzer.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "config/policy_config.h"
#include "policy/policy.h"

namespace gh::policy::test {

using K = sql::StatementKind;

class Stmt {
 public:
  explicit Stmt(K kind) { s_.kinds.push_back(kind); }
  Stmt& also(K kind) {
    s_.kinds.push_back(kind);
    return *this;
  }
  // "schema.name" or "name"; columns read unless `written`.
  Stmt& rel(const std::string& qualified, std::uint8_t access, std::vector<std::string> columns = {},
            bool all_columns = false, bool written = false) {
    sql::Relation r;
    const auto dot = qualified.find('.');
    if (dot != std::string::npos) {
      r.schema = qualified.substr(0, dot);
      r.name = qualified.substr(dot + 1);
    } else {
      r.name = qualified;
    }
    r.access = access;
    (written ? r.columns_written : r.columns_read) = std::move(columns);
    r.all_columns = all_columns;
    s_.relations.push_back(std::move(r));
    return *this;
  }
  Stmt& write(K kind, const std::string& relation, bool has_where, bool trivially_true = false) {
    s_.writes.push_back({kind, relation, has_where, trivially_true});
    return *this;
  }
  Stmt& fn(const std::string& name) {
    s_.functions.push_back(name);
    return *this;
  }
  Stmt& text(const std::string& t) {
    s_.text = t;
    return *this;
  }
  Stmt& setting(const std::string& name) {
    s_.settings.push_back(name);
    return *this;
  }
  Stmt& unresolved(const std::string& column) {
    s_.unresolved_columns.push_back(column);
    return *this;
  }
  Stmt& flag(bool sql::Statement::*member) {
    s_.*member = true;
    return *this;
  }
  operator sql::Statement() const { return s_; }

 private:
  sql::Statement s_;
};

inline sql::Analysis analysis(std::vector<sql::Statement> statements) {
  sql::Analysis a;
  a.statements = std::move(statements);
  return a;
}

inline sql::Analysis parse_error(std::string message, int cursor) {
  sql::Analysis a;
  a.error = sql::ParseError{std::move(message), cursor};
  return a;
}

inline std::shared_ptr<const Policy> load(const std::string& yaml) {
  auto p = config::parse_policy(yaml, "test.yaml");
  EXPECT_TRUE(p) << p.error().message;
  return p ? *p : std::make_shared<const Policy>();
}

inline identity::Identity person(std::string subject = "alice", std::vector<std::string> groups = {"dev"},
                                 identity::Kind kind = identity::Kind::Human) {
  identity::Identity id;
  id.subject = subject;
  id.email = subject + "@example.com";
  id.groups = std::move(groups);
  id.kind = kind;
  return id;
}

// One request against target `target` with sensible defaults; tweak the fields as needed.
struct Ask {
  identity::Identity who = person();
  std::string target = "app";
  std::string environment;
  std::string database = "app";
  std::string client_address = "10.1.2.3";
  std::chrono::system_clock::time_point now{};
  std::optional<std::vector<std::string>> grants;  // access grants held (nullopt: not looked up)
  bool search_path_changed = false;
  std::string login_user;  // the target's login role ("": not known)

  Decision operator()(const Policy& p, const sql::Analysis& a) const {
    Request r;
    r.identity = &who;
    r.target = target;
    r.environment = environment;
    r.database = database;
    r.client_address = client_address;
    r.analysis = &a;
    r.now = now;
    if (grants) r.grants = &*grants;
    r.search_path_changed = search_path_changed;
    r.login_user = login_user;
    return p.evaluate(r);
  }
  Decision operator()(const Policy& p, const sql::Statement& s) const {
    const auto a = analysis({s});
    return (*this)(p, a);
  }
};

}  // namespace gh::policy::test
