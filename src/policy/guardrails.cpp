#include "policy/guardrails.h"

#include <algorithm>
#include <cctype>

#include "policy/describe.h"

namespace gh::policy {

namespace {

using sql::StatementKind;

bool has_kind(const sql::Statement& s, StatementKind k) {
  return std::find(s.kinds.begin(), s.kinds.end(), k) != s.kinds.end();
}

// "<KIND> of <relations with access>" or just "<KIND>".
void kind_of(std::string* what, StatementKind k, const sql::Statement& s, std::uint8_t access) {
  if (!what) return;
  *what = kind_label(k);
  const auto rels = relations_with(s, access);
  if (!rels.empty()) *what += " of " + rels;
}

bool drop(const sql::Statement& s, std::string* what) {
  if (!has_kind(s, StatementKind::Drop)) return false;
  kind_of(what, StatementKind::Drop, s, sql::kDdl);
  return true;
}

bool drop_database(const sql::Statement& s, std::string* what) {
  if (!has_kind(s, StatementKind::DropDatabase)) return false;
  if (what) *what = "DROP DATABASE";
  return true;
}

bool truncate(const sql::Statement& s, std::string* what) {
  if (!has_kind(s, StatementKind::Truncate)) return false;
  kind_of(what, StatementKind::Truncate, s, sql::kTruncate);
  return true;
}

bool unbounded_write(const sql::Statement& s, std::string* what) {
  for (const auto& w : s.writes) {
    if (w.has_where && !w.where_trivially_true) continue;
    if (what) {
      *what = kind_label(w.kind);
      if (!w.relation.empty()) *what += " on " + w.relation;
      *what += w.has_where ? " with a WHERE clause that is always true" : " without a WHERE clause";
    }
    return true;
  }
  return false;
}

bool alter_destructive(const sql::Statement& s, std::string* what) {
  if (!s.destructive_alter) return false;
  if (what) {
    const auto rels = relations_with(s, sql::kDdl);
    *what = "ALTER TABLE " + (rels.empty() ? std::string() : rels + " ") + "dropping a column or changing a column's type";
  }
  return true;
}

bool privileges(const sql::Statement& s, std::string* what) {
  for (auto k : {StatementKind::Grant, StatementKind::Revoke, StatementKind::RoleChange, StatementKind::SetRole}) {
    if (has_kind(s, k)) {
      if (what)
        *what = k == StatementKind::RoleChange ? std::string("a change to roles or role memberships") : kind_label(k);
      return true;
    }
  }
  if (!s.role_change) return false;
  if (what) *what = describe_statement(s) + " (changes the session's role)";
  return true;
}

bool server_access(const sql::Statement& s, std::string* what) {
  if (!s.server_program && !s.server_file_access) return false;
  if (what)
    *what = s.server_program ? std::string("COPY ... PROGRAM")
                             : describe_statement(s) + " that reads or writes files on the database server";
  return true;
}

bool remote_access(const sql::Statement& s, std::string* what) {
  if (!s.remote_access) return false;
  if (what) {
    bool calls = false;
    for (const auto& f : s.functions) calls |= f.rfind("dblink", 0) == 0 || f.find(".dblink") != std::string::npos;
    *what = calls ? std::string("a dblink call") : describe_statement(s) + " (a link to another database server)";
  }
  return true;
}

bool extensions(const sql::Statement& s, std::string* what) {
  if (!s.extension) return false;
  if (what) *what = describe_statement(s) + " (installs or changes code that runs inside the database server)";
  return true;
}

bool alter_system(const sql::Statement& s, std::string* what) {
  if (!has_kind(s, StatementKind::AlterSystem)) return false;
  if (what) *what = "ALTER SYSTEM";
  return true;
}

bool opaque_code(const sql::Statement& s, std::string* what) {
  if (!s.opaque_code) return false;
  if (what)
    *what = has_kind(s, StatementKind::Do)               ? std::string("a DO block")
            : has_kind(s, StatementKind::CreateFunction) ? std::string("CREATE FUNCTION/PROCEDURE with a code body")
                                                         : describe_statement(s) + " running dynamic SQL";
  return true;
}

// gatehouse.identity* carry the identity the proxy vouches for (the analyzer lowers setting names, as
// PostgreSQL compares them without case). "*" is a set_config whose setting name is computed
// when it runs (a cast, a function, a parameter): it could be gatehouse.identity. Code the proxy
// cannot see into that names gatehouse.identity is refused on every target too; code that builds
// that name out of pieces is opaque_code's (see docs/policy.md).
bool identity_settings(const sql::Statement& s, std::string* what) {
  for (const auto& name : s.settings) {
    if (name == "*") {
      if (what) *what = "set_config with a setting name the proxy cannot read (it could be gatehouse.identity)";
      return true;
    }
    if (name.rfind("gatehouse.identity", 0) != 0) continue;  // gatehouse.wait etc. are the proxy's own
    if (what) *what = "changing " + name;
    return true;
  }
  if (s.opaque_code && contains_nocase(s.text, "gatehouse.identity")) {
    if (what) *what = "code the proxy cannot see into that may change gatehouse.identity settings";
    return true;
  }
  return false;
}

}  // namespace

const std::vector<Guardrail>& guardrails() {
  static const std::vector<Guardrail> kAll = {
      {"guardrail.drop", "DROP of any object (table, view, index, schema, function, ...)",
       "it destroys objects and their data, which cannot be undone",
       "Run schema changes through your reviewed migration process; if this one is intended, ask a policy owner "
       "to allow it with a rule named guardrail.drop.",
       drop},
      {"guardrail.drop_database", "DROP DATABASE", "it destroys a whole database",
       "Dropping a production database is not done through the proxy; ask a policy owner if this is really needed.",
       drop_database},
      {"guardrail.truncate", "TRUNCATE", "it removes every row of the table at once",
       "Delete the rows you mean with DELETE ... WHERE, or ask a policy owner to allow it with a rule named "
       "guardrail.truncate.",
       truncate},
      {"guardrail.unbounded_write", "UPDATE or DELETE without a WHERE clause, or with one that is always true",
       "it changes every row of the table",
       "Add a WHERE clause that selects only the rows you mean to change; to change every row on purpose, ask for "
       "an exception to guardrail.unbounded_write.",
       unbounded_write},
      {"guardrail.alter_destructive", "ALTER TABLE ... DROP COLUMN or ALTER COLUMN ... TYPE",
       "it destroys column data or rewrites the table under lock",
       "Use an expand-and-contract migration reviewed by the table's owners, or ask a policy owner to allow it with "
       "a rule named guardrail.alter_destructive.",
       alter_destructive},
      {"guardrail.privileges", "GRANT, REVOKE, CREATE/ALTER/DROP ROLE, SET ROLE, SET SESSION AUTHORIZATION",
       "privileges are managed outside ad-hoc sessions",
       "Request access through Gatehouse (a time-bound grant) or change roles through your access-management "
       "process.",
       privileges},
      {"guardrail.server_access", "COPY ... PROGRAM and server-side file access (COPY to/from a file, pg_read_file, lo_import, ...)",
       "it runs programs or touches files on the database server",
       "Use COPY ... FROM STDIN / TO STDOUT (psql's \\copy) to move data through your own client instead.",
       server_access},
      {"guardrail.remote_access",
       "dblink calls and links to other servers (CREATE/ALTER SERVER, USER MAPPING, SUBSCRIPTION, IMPORT FOREIGN "
       "SCHEMA, CREATE EXTENSION dblink / postgres_fdw)",
       "it runs SQL on another database server (or brings another server's data in) where the proxy cannot check it",
       "Connect to the other database through its own Gatehouse target; if a link is intended, ask a policy owner to "
       "allow it with a rule named guardrail.remote_access.",
       remote_access},
      {"guardrail.extensions", "CREATE EXTENSION and ALTER EXTENSION",
       "an extension installs code that runs inside the database server with its privileges",
       "Install and update extensions through your reviewed migration process, or ask a policy owner to allow it "
       "with a rule named guardrail.extensions.",
       extensions},
      {"guardrail.alter_system", "ALTER SYSTEM", "it changes the server's configuration for everyone",
       "Change server settings through configuration management, not a SQL session.", alter_system},
      {"guardrail.opaque_code", "DO blocks, CREATE FUNCTION/PROCEDURE bodies, dynamic SQL",
       "the proxy cannot see what the code does, so it cannot apply policy to it",
       "Run the statements directly so each one can be checked, or deploy functions through a reviewed migration.",
       opaque_code},
      {"guardrail.identity_settings", "SET / set_config of gatehouse.identity*, or of a setting named at run time (every target)",
       "these settings carry the identity Gatehouse vouches for and cannot be changed from a session",
       "Gatehouse sets gatehouse.identity for you; read it with current_setting('gatehouse.identity').",
       identity_settings, true},
  };
  return kAll;
}

const Guardrail* find_guardrail(std::string_view name) {
  for (const auto& g : guardrails()) {
    if (g.name == name) return &g;
    if (name.find('.') == std::string_view::npos && g.name.substr(g.name.find('.') + 1) == name) return &g;
  }
  return nullptr;
}

bool contains_nocase(std::string_view text, std::string_view word) {
  const auto it = std::search(text.begin(), text.end(), word.begin(), word.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != text.end();
}

bool is_production(std::string_view environment) {
  constexpr std::string_view kProduction = "production";
  return environment.size() == kProduction.size() && contains_nocase(environment, kProduction);
}

}  // namespace gh::policy
