#pragma once
// Internal to the sql module: fills one Statement from one libpg_query statement tree.
// Split by phase: walker.cpp (scopes, expressions, FROM items, trivially-true WHERE),
// walk_dml.cpp (SELECT/INSERT/UPDATE/DELETE/MERGE), walk_utility.cpp (everything else).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sql/statement_info.h"
#include "sql/tree.h"

namespace gh::sql::detail {

inline bool non_empty_array(const JValue* v) { return v && v->is_array() && v->count > 0; }

enum class Truth : std::uint8_t { Unknown, True, False };

// PostgreSQL's boolin: unique prefixes of true/false/yes/no, on/off, 1/0; Unknown otherwise.
Truth parse_bool_text(std::string_view s);

// Adds what `from` (a PREPARE's analysis) does to `into` (an EXECUTE of it): kinds other than
// prepare, relations, functions, writes, settings and flags.
void merge_executed(Statement& into, const Statement& from);

class Walker {
 public:
  // `input` is the whole text given to the parser: tree locations are offsets into it.
  // Statements prepared earlier in the same text, by name: an EXECUTE of one of them is
  // analysed as what it runs instead of being opaque.
  using Prepared = std::vector<std::pair<std::string, Statement>>;

  Walker(std::string_view input, Statement& out, const Prepared* prepared = nullptr)
      : input_(input), out_(out), prepared_(prepared) {}

  // `stmt` is a RawStmt's "stmt" member: {"SelectStmt": {...}} etc.
  void run(const JValue& stmt);

  // Exposed for tests of the WHERE evaluation through the public API only; kept public so
  // the DML phase can use it without friendship.
  Truth eval(const JValue& expr) const;

 private:
  // How a nested statement contributes its kind: wrappers (EXPLAIN ANALYZE, PREPARE, COPY
  // (query), DECLARE, CREATE TABLE AS/VIEW, rules) add every kind, SELECT included; a
  // subquery, a set-operation branch or INSERT's source adds no Select (its reads show in
  // relations), while data-modifying statements always add theirs.
  enum class Mode : std::uint8_t { Top, Wrapped, Nested };

  struct RelAcc {
    std::string_view schema;
    std::string_view name;
    std::uint8_t access = 0;
    bool all = false;
    std::vector<std::string_view> read;
    std::vector<std::string_view> written;
  };
  enum class EntryKind : std::uint8_t { Relation, Subquery, Cte, Function, Join, Pseudo };
  // What is known of the columns of a FROM entry that is not a table: the output names of a
  // subquery/CTE (or its alias list). Open when a `*` (or anything unnamed) makes it unknown.
  struct Columns {
    std::vector<std::string_view> names;
    bool known = false;
  };
  struct RangeEntry {
    std::string_view name;    // alias, or the relation/function name when there is none
    std::string_view schema;  // the relation's schema when referenced without alias
    int rel = -1;             // index into rels_; -1 for subqueries, functions, CTEs, joins
    bool aliased = false;
    EntryKind kind = EntryKind::Relation;
    Columns columns;  // for tables: unknown (no catalog)
    std::vector<int> join_rels;  // a JOIN's alias: the relations inside it (indexes into rels_)
  };
  struct Level {
    std::vector<RangeEntry> entries;
    bool hidden = false;  // a non-LATERAL subquery in FROM cannot see its siblings
  };
  struct Cte {
    std::string_view name;
    Columns columns;
  };

  // walker.cpp
  void walk(const JValue& v);
  void walk_member(const JValue& body, std::string_view key);
  void node(std::string_view name, const JValue& body);
  bool statement(std::string_view name, const JValue& body, Mode mode);  // false: not a statement
  void column_ref(const JValue& body);
  void func_call(const JValue& body);
  void function_named(const JValue& funcname);    // named by DDL, called by the server later
  void functions_named_in(const JValue& v);       // every such name inside a DDL statement
  void def_elem(const JValue& body);
  void from_item(const JValue& item);
  void range_var_from(const JValue& rv);
  void generic_range_var(const JValue& rv);
  int rel(std::string_view schema, std::string_view name);
  void add_access(int rel, std::uint8_t bits);
  void add_read(int rel, std::string_view column);
  // A column a DDL statement names without a relation: one of the relation(s) the statement
  // defines or alters, read (now, or whenever the server evaluates it).
  void read_ddl_column(std::string_view column);
  void add_written(int rel, std::string_view column);
  void add_kind(StatementKind kind);
  void add_setting(std::string_view name);
  void add_function(const JValue& funcname);
  void add_function_name(std::string name);
  void attribute_call(std::string_view field);  // x.f: maybe f(x)
  static bool named_column(const RangeEntry& e, std::string_view column);  // among the entry's known names  // "schema.name" or "name", lower case; once
  void add_write(StatementKind kind, int rel, const JValue* where);
  // The name the statement's target relation `rel` goes by in the current level (its alias, or
  // its name when it has none); "" when it has no entry there.
  std::string_view target_name(int rel) const;
  // Whether `expr` can tell one row of the target (named `target`) from another: it references a
  // column of it (qualified by its name, or unqualified, which may be its), or is WHERE CURRENT
  // OF. A condition that cannot is the same for every row: it selects all of them or none.
  bool row_dependent(const JValue& expr, std::string_view target) const;
  // A condition that may select every row of the target: provably true (eval), independent of
  // the row and not provably false, an OR with such a branch, or an AND of only such parts.
  bool may_select_all(const JValue& expr, std::string_view target) const;
  void push_level() { levels_.emplace_back(); }
  void pop_level() { levels_.pop_back(); }
  RangeEntry& add_entry(std::string_view name, std::string_view schema, int rel, bool aliased,
                        EntryKind kind = EntryKind::Relation);
  void add_target_entry(const JValue& rv, int rel);
  const RangeEntry* find_entry(std::string_view qualifier, std::string_view schema) const;
  const Level* innermost_with_entries() const;
  const Cte* cte_visible(std::string_view name) const;
  void unqualified_column(std::string_view col);
  Columns output_columns(const JValue& stmt_name_body, std::string_view node_name);
  std::string_view figure_colname(const JValue& expr);
  static void apply_alias_columns(Columns& c, const JValue* colnames);
  void with_clause(const JValue* with);
  Truth const_compare(const JValue& l, const JValue& r, std::string_view op) const;
  bool constant_equal(const JValue& l, const JValue& r, bool& known) const;
  std::optional<std::int64_t> source_int(const JValue& a_const) const;

  // walk_dml.cpp
  void select_stmt(const JValue& b, Mode mode);
  void insert_stmt(const JValue& b);
  void update_stmt(const JValue& b);
  void delete_stmt(const JValue& b);
  void merge_stmt(const JValue& b);
  void returning(const JValue& b);
  void order_by(const JValue& b);

  // walk_utility.cpp
  bool utility(std::string_view name, const JValue& body, Mode mode);
  void variable_set(const JValue& b, bool alter_system);
  void copy_stmt(const JValue& b);
  void explain_stmt(const JValue& b);
  void qualified_name_relation(const JValue& list, std::uint8_t access, bool drop_last);

  void finish();

  std::string_view input_;
  Statement& out_;
  const Prepared* prepared_ = nullptr;
  const Statement* executes_ = nullptr;  // the prepared statement an EXECUTE runs, when known
  std::vector<RelAcc> rels_;
  std::vector<Level> levels_;
  std::vector<Cte> ctes_;
  std::vector<std::string_view> unresolved_;
  std::uint8_t generic_access_ = kDdl;  // access for a RangeVar met outside FROM and DML targets
  bool plan_only_ = false;              // inside EXPLAIN without ANALYZE: nothing runs
  // In a SELECT ... FROM pg_settings WHERE name = '<x>' (pg_dump's way to set a setting only
  // where the server has it): x, which set_config(name, ...) in its target list then sets.
  std::string_view pg_settings_name_;
  // What `name` may be qualified with in that pg_settings row: the view's name or its alias.
  std::string_view pg_settings_qualifier_ = "pg_settings";
  std::string_view pg_settings_row(const JValue& select_body);
  std::string_view pg_settings_update_name(const JValue& update_body);
  std::string_view name_equals_literal(const JValue* where);
  bool name_column(const JValue* v);  // `name`, or `q.name` with q the pg_settings row's qualifier
  bool in_ddl_ = false;                 // DefElem options mean file_fdw/foreign options here
};

}  // namespace gh::sql::detail
