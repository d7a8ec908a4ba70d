#pragma once
// Column lineage: for each column a statement returns to the client, the table columns its
// values derive from, traced through expressions, casts, function calls, aggregates, whole-row
// references, `*`, subqueries, CTEs (recursive too), set operations, VALUES, joins, views (by
// parsing their definitions from the catalog) and RETURNING. Used by masking: a result column
// derived from a sensitive column is masked even when it is wrapped.
//
// Conservative by construction: where the tree does not say exactly which columns flow into a
// value (a whole-row reference, a scalar subquery, a function over several columns), every
// column that could flow in is a source. What cannot be analysed at all is reported (`decided`
// false, with why) so that the caller fails closed.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sql/catalog.h"

namespace gh::sql {

// A column of a base relation (a table, materialized view or foreign table; never a view: a
// view's columns are traced to the columns its definition reads).
struct SourceColumn {
  std::uint32_t relation = 0;  // CatalogRelation::oid
  std::int16_t attnum = 0;
  friend bool operator==(const SourceColumn&, const SourceColumn&) = default;
  friend auto operator<=>(const SourceColumn&, const SourceColumn&) = default;
};

struct OutputColumn {
  std::string name;                   // the result column's name as PostgreSQL would give it, when known
  std::vector<SourceColumn> sources;  // sorted, unique; empty for constants and the like
};

// How COPY ... TO STDOUT writes its rows (its options), for rewriting them.
struct CopyOut {
  bool present = false;         // the statement is a COPY TO STDOUT
  bool relation = false;        // COPY table TO (not COPY (query) TO): each column is the table's column
  std::string format = "text";  // text, csv or binary
  std::optional<std::string> delimiter, quote, escape, null;
  bool header = false;
  bool other_options = false;  // ENCODING, FORCE_QUOTE and the like: the caller may refuse to rewrite
};

struct Lineage {
  bool decided = false;  // false: see `why`; the caller must treat every column as possibly sensitive
  std::string why;       // e.g. "relation \"x\" is not in the catalog", "unsupported: ..."
  bool returns_rows = false;           // the statement sends rows to the client (SELECT, RETURNING, VALUES, FETCH...)
  bool runs_another = false;           // EXECUTE / FETCH: the rows are those of a PREPAREd / DECLAREd statement
  std::vector<OutputColumn> columns;   // the rows' columns, in order (empty when returns_rows is false, except for
                                       // DECLARE and PREPARE: the columns FETCH / EXECUTE return later). A caller
                                       // whose RowDescription has another number of fields must fail closed.
  std::vector<SourceColumn> read;      // every base column the statement reads anywhere (targets, WHERE, JOIN, ORDER BY...)
  std::vector<SourceColumn> stored;    // base columns whose values the statement writes somewhere other than to the
                                       // client: INSERT ... SELECT, UPDATE ... SET x = <expr>, CREATE TABLE AS,
                                       // SELECT INTO, COPY (query) TO a file or program, MERGE
  CopyOut copy;                        // COPY TO STDOUT: its options
  std::vector<SourceColumn> filtered;  // base columns in predicates and orderings (WHERE, JOIN ON, HAVING, ORDER BY,
                                       // GROUP BY, DISTINCT ON, window PARTITION/ORDER): what inference rules test
};

// Lineage of one SQL statement (the text of sql::Statement::text). Cursors: DECLARE c CURSOR FOR
// <query> gives the query's lineage with returns_rows false (FETCH returns those rows later);
// PREPARE p AS <query> likewise. EXPLAIN returns a plan, not data: returns_rows false, no
// columns (EXPLAIN ANALYZE of a write still has its `stored`).
//
// Not seen: what a function reads by itself (a function's value derives from its arguments only;
// content detectors cover functions that select from tables), rules and triggers; EXECUTE, FETCH,
// CALL and DO are undecided. Views are traced through `CatalogRelation::definition`, whose
// unqualified names resolve through the catalog's search path: the proxy should read definitions
// with search_path = pg_catalog so that pg_get_viewdef qualifies every other name.
// Texts over 16 KiB are checked by analyze_uncached first and traced on a helper thread.
Lineage lineage_of(std::string_view statement, const Catalog& catalog);

}  // namespace gh::sql
