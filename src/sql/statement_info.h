#pragma once
// StatementInfo: what one SQL text does, in our own types. Produced by sql::Analyzer from
// libpg_query's tree; consumed by policy, audit, masking and approvals. Nothing outside the
// `sql` module sees a libpg_query node.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gh::sql {

// What a statement is. One text holds one or more statements; one statement may have several
// kinds (EXPLAIN ANALYZE DELETE is Explain + Delete; WITH d AS (DELETE ...) SELECT is Select +
// Delete). Names (kind_name) are the words policy rules use.
enum class StatementKind : std::uint8_t {
  Select,
  Insert,
  Update,
  Delete,
  Merge,
  Truncate,
  CopyFrom,     // COPY ... FROM (data into a table)
  CopyTo,       // COPY ... TO (data out of a table or query)
  Create,       // CREATE TABLE/INDEX/VIEW/SCHEMA/SEQUENCE/TYPE/EXTENSION/TABLE AS/...
  Alter,        // ALTER TABLE/INDEX/VIEW/SCHEMA/SEQUENCE/TYPE/..., RENAME
  Drop,         // DROP anything except roles (DropRole is RoleChange)
  CreateDatabase,
  DropDatabase,
  AlterSystem,
  Grant,
  Revoke,
  RoleChange,     // CREATE/ALTER/DROP ROLE|USER|GROUP, GRANT role TO role, ALTER DEFAULT PRIVILEGES
  SetRole,        // SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE
  Set,            // SET/RESET of settings other than role; set_config() calls
  Show,
  Begin,          // BEGIN, START TRANSACTION
  Commit,         // COMMIT, END, COMMIT PREPARED, PREPARE TRANSACTION
  Rollback,       // ROLLBACK, ABORT, ROLLBACK PREPARED, ROLLBACK TO SAVEPOINT
  Savepoint,      // SAVEPOINT, RELEASE
  Prepare,        // PREPARE name AS ...
  Execute,        // EXECUTE name
  Deallocate,
  DeclareCursor,
  Fetch,          // FETCH, MOVE
  CloseCursor,
  Explain,
  Call,
  Do,             // DO block (opaque code)
  CreateFunction, // CREATE FUNCTION/PROCEDURE (body is opaque code)
  Listen,
  Notify,
  Unlisten,
  Lock,
  Vacuum,
  Analyze,
  Discard,
  Maintenance,  // REINDEX, CLUSTER, CHECKPOINT, REFRESH MATERIALIZED VIEW, LOAD
  Comment,      // COMMENT ON, SECURITY LABEL
  FunctionCall, // protocol FunctionCall message (fast path); filled by the proxy, not the parser
  Other,        // parsed but none of the above
  Unknown,      // could not be parsed: see Analysis::error
};

std::string_view kind_name(StatementKind kind);             // "select", "copy_from", ...
std::optional<StatementKind> kind_from_name(std::string_view name);

// How a relation is touched. A bit set: a relation may be read and updated by one statement.
enum AccessBits : std::uint8_t {
  kRead = 1 << 0,
  kInsert = 1 << 1,
  kUpdate = 1 << 2,
  kDelete = 1 << 3,
  kTruncate = 1 << 4,
  kDdl = 1 << 5,  // created, altered, dropped, renamed, commented, granted on
};

struct Relation {
  std::string schema;  // as written, case-folded like PostgreSQL does; empty when unqualified
  std::string name;
  std::uint8_t access = 0;  // AccessBits
  std::vector<std::string> columns_read;     // sorted, unique; where the tree names them
  std::vector<std::string> columns_written;  // INSERT column list, UPDATE SET targets
  bool all_columns = false;  // `*`, `t.*`, a whole-row reference or INSERT without column list
};

// One UPDATE or DELETE (also inside CTEs and rules of one statement).
struct WriteFilter {
  StatementKind kind = StatementKind::Update;  // Update or Delete
  std::string relation;                         // "schema.name" or "name"
  bool has_where = false;
  bool where_trivially_true = false;  // WHERE true, 1=1, id = id, x OR true, NOT false, ...
};

struct Statement {
  std::vector<StatementKind> kinds;  // first = the top-level kind
  std::vector<Relation> relations;   // unique by (schema, name); CTE names are not relations
  std::vector<std::string> functions;  // lower case, "schema.name" when qualified
  std::vector<WriteFilter> writes;     // every UPDATE and DELETE
  std::vector<std::string> settings;   // settings changed: SET x / RESET x / set_config('x') /
                                       // "all" for RESET ALL and DISCARD ALL; "role",
                                       // "session_authorization", "search_path"
  // The text holds a password (CREATE/ALTER ROLE ... PASSWORD '...'): records keep the normalized
  // text of this statement, whose literals are $n, instead of the text as sent.
  bool secret = false;
  // SET of a setting that changes how the server reads SQL (standard_conforming_strings,
  // client_encoding) to a constant: the setting and its value (the boolean as "on"/"off").
  std::vector<std::pair<std::string, std::string>> setting_values;
  std::vector<std::string> unresolved_columns;  // columns named where several relations were in
                                                // scope, so no relation could be told: sorted,
                                                // unique (a column rule should treat them as
                                                // possibly its column)
  bool returning = false;          // INSERT/UPDATE/DELETE ... RETURNING
  bool whole_row = false;          // a whole-row reference: SELECT t FROM t, row_to_json(t), t.*
  bool opaque_code = false;        // DO, CREATE FUNCTION/PROCEDURE body, EXECUTE of a string,
                                   // PREPARE/EXECUTE whose target cannot be seen
  bool server_file_access = false; // COPY to/from a server file, pg_read_file, lo_import/export,
                                   // pg_ls_dir, adminpack, file_fdw, ...
  bool server_program = false;     // COPY ... PROGRAM
  bool remote_access = false;      // dblink*, postgres_fdw foreign servers
  bool extension = false;          // CREATE/ALTER EXTENSION: installs or changes code the server runs
  bool role_change = false;        // SET ROLE, SET SESSION AUTHORIZATION, role DDL
  std::vector<std::string> roles_altered;  // roles ALTER/DROP/RENAME ROLE and ALTER ROLE ... SET
                                           // change, as the server reads their names; "" for the
                                           // session's own role (CURRENT_USER, ...) and ALTER ROLE ALL
  bool transaction_control = false;
  // What the statement does to a transaction block: +1 one is open after it (BEGIN, START
  // TRANSACTION, COMMIT/ROLLBACK AND CHAIN); -1 it ends the block (COMMIT, END, ROLLBACK, ABORT,
  // PREPARE TRANSACTION); 0 neither (savepoints, COMMIT/ROLLBACK PREPARED, everything else).
  std::int8_t transaction_block = 0;
  bool opaque_args = false;  // EXECUTE: its own argument expressions hold opaque code
  std::string text;        // this statement's own text (a slice of the input)
  std::string normalized;  // literals replaced by $n (pg_query_normalize)
  std::uint64_t fingerprint = 0;  // pg_query_fingerprint: same shape, same value
  int location = 0;  // byte offset of the statement in the input
  bool destructive_alter = false;  // ALTER TABLE ... DROP COLUMN / ALTER COLUMN ... TYPE (data loss or rewrite)
  std::string object_name;  // PREPARE/EXECUTE/DEALLOCATE: the prepared statement's name ("" for DEALLOCATE ALL);
                            // DECLARE/FETCH/MOVE/CLOSE: the cursor's name ("" for CLOSE ALL)
  bool cursor_with_hold = false;  // DECLARE ... WITH HOLD: the cursor outlives its transaction
};

struct ParseError {
  std::string message;  // the parser's own message
  int cursor = 0;       // 1-based character position in the input, 0 when unknown
  // The SQLSTATE a refusal for it carries when it is not the parser's verdict on the text: 54000
  // for a text longer than the proxy analyses, 54001 for one nested too deeply; "" for what the
  // parser said (42601, or 22021 for invalid UTF-8).
  std::string sqlstate = {};
  bool parser = false;  // libpg_query rejected the text (not a limit or a NUL byte of the proxy's)
};

struct Analysis {
  std::vector<Statement> statements;   // empty input gives no statements
  std::optional<ParseError> error;     // set: the text could not be parsed; statements is empty
  // Set by Analyzer for a result it caches: every result served from that entry (also the same
  // statement with other numbers) carries the same id, and differs from it in statement text only.
  // 0: not from the cache. Code that builds or changes an Analysis leaves it 0.
  std::uint64_t cache_id = 0;
  bool multi_statement() const { return statements.size() > 1; }
};

}  // namespace gh::sql
