// Column lineage (lineage.h). One Engine per call walks libpg_query's tree (tree.h) with a
// scope model of its own: unlike the analyzer's Walker it knows every relation's columns (the
// Catalog), so `*`, whole-row references and unqualified names resolve to exact column sets.
//
// The rule everywhere: a value's sources are the union of every column reference inside the
// expression that computes it. Only nodes whose meaning differs are handled by name (column
// references, `*`, sublinks, FROM items, statements); any other node is walked generically, so a
// node type this file has never heard of still contributes all of its columns. When something
// cannot be resolved (an unknown relation or column, a `*` over a function whose columns are not
// known, EXECUTE, FETCH, ...) the result is undecided and says why: the caller fails closed.
//
// Not seen, by design: what functions read by themselves (a function's output derives from its
// arguments only; a SQL or PL/pgSQL function that selects from a table is invisible here, which
// is what the content detectors are for), rules and triggers.
#include "sql/lineage.h"

#include <pg_query.h>
#include <pthread.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <unordered_map>

#include "sql/analyzer.h"
#include "sql/tree.h"

namespace gh::sql {

namespace {

using detail::JType;
using detail::JValue;

using Set = std::vector<SourceColumn>;  // sorted, unique

// Returns whether `into` grew.
bool add(Set& into, const Set& from) {
  if (from.empty()) return false;
  if (into.empty()) {
    into = from;
    return true;
  }
  Set merged;
  merged.reserve(into.size() + from.size());
  std::set_union(into.begin(), into.end(), from.begin(), from.end(), std::back_inserter(merged));
  if (merged.size() == into.size()) return false;
  into.swap(merged);
  return true;
}

void add(Set& into, SourceColumn c) {
  auto it = std::lower_bound(into.begin(), into.end(), c);
  if (it == into.end() || *it != c) into.insert(it, c);
}

std::string_view string_node(const JValue& v) {
  const JValue* b = v.node_body();
  return b && v.node_name() == "String" ? b->get_str("sval") : std::string_view{};
}

bool non_empty_array(const JValue* v) { return v && v->is_array() && v->count > 0; }

std::string_view alias_name(const JValue& body) {
  const JValue* a = body.get("alias");
  return a ? a->get_str("aliasname") : std::string_view{};
}

const JValue* alias_colnames(const JValue& body) {
  const JValue* a = body.get("alias");
  return a ? a->get("colnames") : nullptr;
}

bool is_star_ref(const JValue& v) {
  if (v.node_name() != "ColumnRef") return false;
  const JValue* fields = v.node_body()->get("fields");
  return non_empty_array(fields) && fields->items[fields->count - 1].node_name() == "A_Star";
}

// The per-call work bound: recursion through expressions, queries and views together.
constexpr int kMaxDepth = 1500;
constexpr int kMaxViewDepth = 16;
constexpr std::size_t kMaxViewDefinition = 64 * 1024;  // passed the server's own stack checks
constexpr std::size_t kInlineLimit = 16 * 1024;        // as analyzer.cpp: larger texts get a big stack
constexpr int kMaxRecursionPasses = 64;

struct Col {
  std::string_view name;
  Set src;
};
using Cols = std::vector<Col>;

// A FROM entry as the query sees it.
struct Item {
  std::string_view name;    // how it is referenced; "" for an unaliased join or subquery
  std::string_view schema;  // an unaliased relation's schema (matches s.t.col)
  Cols cols;
  // A function whose result columns are not known: any name may be one of them, derived from
  // `open_src` (its arguments).
  bool open = false;
  Set open_src;
  std::string_view open_what;  // the function's name, for `why`
  bool scalar_function = false;  // one column, also reachable by the entry's name
  bool top = true;    // in the namespace of unqualified columns and `*` (false inside a join)
  bool named = true;  // in the namespace of qualified references (false inside an aliased join)
};

struct Level {
  std::vector<Item> items;
  bool hidden = false;  // while a non-LATERAL subquery in its FROM list is analysed
  Set windows;          // the sources of every named window (WINDOW w AS ...)
};

struct Cte {
  enum class State : std::uint8_t { Known, Pending, Provisional };
  std::string_view name;
  Cols cols;
  State state = State::Known;
};

struct ViewInfo {
  bool busy = true;
  bool ok = false;
  std::vector<std::string> names;
  std::vector<Set> srcs;
  Set filtered;
};

// One libpg_query parse held for as long as its tree is used (the tree views into its JSON).
struct Parsed {
  PgQueryParseResult result{};
  detail::Arena arena;
  const JValue* root = nullptr;
  std::string error;

  Parsed() = default;
  Parsed(const Parsed&) = delete;
  Parsed& operator=(const Parsed&) = delete;
  ~Parsed() { pg_query_free_parse_result(result); }

  bool parse(const std::string& text) {
    result = pg_query_parse(text.c_str());
    if (result.error) {
      error = result.error->message ? result.error->message : "syntax error";
      return false;
    }
    if (!result.parse_tree) {
      error = "parser returned no tree";
      return false;
    }
    detail::JsonParseError json_error;
    root = detail::parse_json(result.parse_tree, arena, &json_error);
    if (!root) {
      error = std::string(json_error.message);
      return false;
    }
    return true;
  }
};

// PostgreSQL's FigureColname for the shapes that occur in practice; "?column?" otherwise.
std::string_view figure_colname(const JValue& expr, int depth = 0) {
  std::string_view name = expr.node_name();
  const JValue* b = expr.node_body();
  if (!b || depth > 32) return "?column?";
  if (name == "ColumnRef") {
    const JValue* fields = b->get("fields");
    if (!non_empty_array(fields)) return "?column?";
    const JValue& last = fields->items[fields->count - 1];
    if (last.node_name() == "A_Star") return "?column?";
    return string_node(last);
  }
  if (name == "FuncCall") {
    const JValue* fn = b->get("funcname");
    if (non_empty_array(fn)) return string_node(fn->items[fn->count - 1]);
    return "?column?";
  }
  if (name == "TypeCast") {
    if (const JValue* arg = b->get("arg")) {
      std::string_view inner = figure_colname(*arg, depth + 1);
      if (inner != "?column?") return inner;
    }
    const JValue* type = b->get("typeName");
    const JValue* names = type ? type->get("names") : nullptr;
    if (non_empty_array(names)) return string_node(names->items[names->count - 1]);
    return "?column?";
  }
  if (name == "CollateClause") {
    const JValue* arg = b->get("arg");
    return arg ? figure_colname(*arg, depth + 1) : std::string_view("?column?");
  }
  if (name == "A_Indirection") {
    const JValue* ind = b->get("indirection");
    if (non_empty_array(ind) && ind->items[ind->count - 1].node_name() == "String")
      return string_node(ind->items[ind->count - 1]);
    const JValue* arg = b->get("arg");
    return arg ? figure_colname(*arg, depth + 1) : std::string_view("?column?");
  }
  if (name == "A_Expr" && b->get_str("kind") == "AEXPR_NULLIF") return "nullif";
  if (name == "CaseExpr") {
    if (const JValue* def = b->get("defresult")) {
      std::string_view inner = figure_colname(*def, depth + 1);
      if (inner != "?column?") return inner;
    }
    return "case";
  }
  if (name == "A_ArrayExpr") return "array";
  if (name == "RowExpr") return "row";
  if (name == "CoalesceExpr") return "coalesce";
  if (name == "MinMaxExpr") return b->get_str("op") == "IS_GREATEST" ? "greatest" : "least";
  if (name == "GroupingFunc") return "grouping";
  if (name == "XmlSerialize") return "xmlserialize";
  if (name == "SQLValueFunction") {
    std::string_view op = b->get_str("op");
    if (op == "SVFOP_CURRENT_DATE") return "current_date";
    if (op == "SVFOP_CURRENT_TIME" || op == "SVFOP_CURRENT_TIME_N") return "current_time";
    if (op == "SVFOP_CURRENT_TIMESTAMP" || op == "SVFOP_CURRENT_TIMESTAMP_N") return "current_timestamp";
    if (op == "SVFOP_LOCALTIME" || op == "SVFOP_LOCALTIME_N") return "localtime";
    if (op == "SVFOP_LOCALTIMESTAMP" || op == "SVFOP_LOCALTIMESTAMP_N") return "localtimestamp";
    if (op == "SVFOP_CURRENT_ROLE") return "current_role";
    if (op == "SVFOP_CURRENT_USER") return "current_user";
    if (op == "SVFOP_USER") return "user";
    if (op == "SVFOP_SESSION_USER") return "session_user";
    if (op == "SVFOP_CURRENT_CATALOG") return "current_catalog";
    if (op == "SVFOP_CURRENT_SCHEMA") return "current_schema";
  }
  if (name == "SubLink") {
    std::string_view type = b->get_str("subLinkType");
    if (type == "EXISTS_SUBLINK") return "exists";
    if (type == "ARRAY_SUBLINK") return "array";
    if (type == "EXPR_SUBLINK") {
      const JValue* sub = b->get("subselect");
      const JValue* sb = sub ? sub->node_body() : nullptr;
      const JValue* tl = sb ? sb->get("targetList") : nullptr;
      if (non_empty_array(tl)) {
        if (const JValue* rt = tl->items[0].node_body()) {
          if (std::string_view n = rt->get_str("name"); !n.empty()) return n;
          if (const JValue* val = rt->get("val")) return figure_colname(*val, depth + 1);
        }
      }
    }
  }
  return "?column?";
}

// Set-returning functions whose result columns are known without a catalog of functions.
// Anything else in FROM without a column definition list has unknown columns (Item::open).
struct KnownFunction {
  std::string_view name;
  std::string_view columns[2];  // "" = the entry's name (a scalar function's column)
};
constexpr KnownFunction kKnownFunctions[] = {
    {"generate_series", {""}},          {"generate_subscripts", {""}},
    {"regexp_matches", {""}},           {"regexp_split_to_table", {""}},
    {"string_to_table", {""}},          {"json_array_elements", {"value"}},
    {"jsonb_array_elements", {"value"}}, {"json_array_elements_text", {"value"}},
    {"jsonb_array_elements_text", {"value"}}, {"json_object_keys", {""}},
    {"jsonb_object_keys", {""}},        {"jsonb_path_query", {""}},
    {"json_each", {"key", "value"}},    {"jsonb_each", {"key", "value"}},
    {"json_each_text", {"key", "value"}}, {"jsonb_each_text", {"key", "value"}},
};

class Engine {
 public:
  explicit Engine(const Catalog& catalog) : catalog_(catalog) {}

  void run(const JValue& stmts);
  Lineage finish();

 private:
  struct DepthGuard {
    Engine& e;
    bool ok;
    explicit DepthGuard(Engine& engine) : e(engine), ok(++engine.depth_ <= kMaxDepth) {
      if (!ok) e.fail("statement nested too deeply for lineage");
    }
    ~DepthGuard() { --e.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
  };
  struct LevelGuard {
    Engine& e;
    LevelGuard(Engine& engine, Level& level) : e(engine) { engine.scope_.push_back(&level); }
    ~LevelGuard() { e.scope_.pop_back(); }
    LevelGuard(const LevelGuard&) = delete;
    LevelGuard& operator=(const LevelGuard&) = delete;
  };
  struct CteGuard {
    Engine& e;
    std::size_t size;
    explicit CteGuard(Engine& engine) : e(engine), size(engine.ctes_.size()) {}
    ~CteGuard() { e.ctes_.resize(size); }
    CteGuard(const CteGuard&) = delete;
    CteGuard& operator=(const CteGuard&) = delete;
  };

  bool failed() const { return !why_.empty(); }
  void fail(std::string why) {
    if (why_.empty()) why_ = std::move(why);
  }
  void filter(const Set& s) {
    add(filtered_, s);
    add(read_, s);
  }

  // Statements.
  void top(std::string_view name, const JValue& body);
  Cols query(std::string_view name, const JValue& body, bool* returns = nullptr);
  Cols select(const JValue& b);
  Cols values(const JValue& b);
  void after_result(const JValue& b, const Cols& result);  // ORDER BY/LIMIT of a set operation or VALUES
  Cols insert(const JValue& b, bool& returns);
  Cols update(const JValue& b, bool& returns);
  Cols del(const JValue& b, bool& returns);
  void merge(const JValue& b);
  void copy(const JValue& b);
  void alter_table(const JValue& b);
  void with_clause(const JValue* with);
  Cols cte_query(const JValue& cte);
  Cols targets(const JValue* list, Level& level);
  Set sort_item(const JValue& e, const Cols& outputs);
  void sort_items(const JValue* list, const Cols& outputs);

  // FROM.
  void from_item(const JValue& item, Level& level);
  bool relation_item(const JValue& rv, Item& out, std::string_view what);
  bool relation_cols(const CatalogRelation& rel, Cols& out);
  void range_function(const JValue& b, Level& level);
  const ViewInfo* view(const CatalogRelation& rel);

  // Expressions.
  Set expr(const JValue& v);
  Set sublink(const JValue& b);
  Set func_call(const JValue& b);
  Set window_def(const JValue& w);

  // Names.
  struct Resolved {
    Set src;
    const Item* whole_row = nullptr;  // the item, when the reference is a whole-row reference
  };
  std::optional<Resolved> column_ref(const JValue& body);
  std::optional<Set> unqualified(std::string_view col);
  const Item* find_item(std::string_view name, std::string_view schema, std::vector<const Item*>* all = nullptr) const;
  static std::optional<Set> item_column(const Item& item, std::string_view col);
  static Set whole_row(const Item& item);
  bool expand_star(const Item& item, Cols& out);

  const Catalog& catalog_;
  std::vector<Level*> scope_;
  std::vector<Cte> ctes_;
  std::unordered_map<std::uint32_t, ViewInfo> views_;
  int depth_ = 0;
  int view_depth_ = 0;
  bool quiet_ = false;  // unknown column names are ignored (DDL expressions)
  std::string why_;
  Set read_, stored_, filtered_;
  CopyOut copy_;
  bool returns_rows_ = false;
  bool runs_another_ = false;
  Cols columns_;
};

// ---------------------------------------------------------------------------------------------
// Names

Set Engine::whole_row(const Item& item) {
  Set s = item.open_src;
  for (const Col& c : item.cols) add(s, c.src);
  return s;
}

std::optional<Set> Engine::item_column(const Item& item, std::string_view col) {
  std::optional<Set> out;
  for (const Col& c : item.cols) {
    if (c.name != col) continue;
    if (!out) out.emplace();
    add(*out, c.src);
  }
  if (out) return out;
  if (item.scalar_function && item.cols.size() == 1 && col == item.name) return item.cols[0].src;
  if (item.open) return whole_row(item);
  return std::nullopt;
}

const Item* Engine::find_item(std::string_view name, std::string_view schema, std::vector<const Item*>* all) const {
  for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
    if ((*it)->hidden) continue;
    const Item* first = nullptr;
    for (const Item& item : (*it)->items) {
      if (!item.named || item.name.empty() || item.name != name) continue;
      if (!schema.empty() && item.schema != schema) continue;
      if (!first) first = &item;
      if (all) all->push_back(&item);
    }
    if (first) return first;
  }
  return nullptr;
}

std::optional<Set> Engine::unqualified(std::string_view col) {
  // PostgreSQL binds a name in the innermost level that has it as a column. Several matches in
  // one level (an error for the server) give their union; a function with unknown columns may
  // or may not have it, so the search goes on outward after such a match.
  std::optional<Set> out;
  for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
    if ((*it)->hidden) continue;
    bool definite = false;
    for (const Item& item : (*it)->items) {
      if (!item.top) continue;
      std::optional<Set> s = item_column(item, col);
      if (!s) continue;
      if (!out) out.emplace();
      add(*out, *s);
      bool has_name = std::any_of(item.cols.begin(), item.cols.end(), [&](const Col& c) { return c.name == col; });
      if (has_name || !item.open) definite = true;
    }
    if (definite) return out;
  }
  return out;
}

std::optional<Engine::Resolved> Engine::column_ref(const JValue& body) {
  const JValue* fields = body.get("fields");
  if (!non_empty_array(fields)) return std::nullopt;
  const std::uint32_t n = fields->count;
  const bool star = fields->items[n - 1].node_name() == "A_Star";
  const std::uint32_t named = star ? n - 1 : n;
  std::vector<std::string_view> names;
  names.reserve(named);
  for (std::uint32_t i = 0; i < named; ++i) names.push_back(string_node(fields->items[i]));

  auto whole = [&](const Item* item) -> std::optional<Resolved> {
    std::vector<const Item*> all;
    find_item(item->name, item->schema, &all);
    Resolved r;
    r.whole_row = item;
    for (const Item* i : all) add(r.src, whole_row(*i));
    if (all.empty()) r.src = whole_row(*item);
    return r;
  };
  auto column_of = [&](const Item* item, std::string_view col) -> std::optional<Resolved> {
    if (auto s = item_column(*item, col)) return Resolved{std::move(*s), nullptr};
    // t.f where t has no column f: the server reads it as f(t), a function of the whole row.
    return whole(item);
  };
  auto plain = [&](std::string_view col) -> std::optional<Resolved> {
    if (auto s = unqualified(col)) return Resolved{std::move(*s), nullptr};
    if (const Item* item = find_item(col, {})) return whole(item);  // SELECT c FROM customers c
    return std::nullopt;
  };

  if (star) {
    if (named == 0) {
      // `*` inside an expression: every column of the current FROM list.
      Resolved r;
      for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
        if ((*it)->hidden || (*it)->items.empty()) continue;
        for (const Item& item : (*it)->items)
          if (item.top) add(r.src, whole_row(item));
        break;
      }
      return r;
    }
    const Item* item = nullptr;
    if (named >= 2) item = find_item(names[named - 1], names[named - 2]);
    if (!item) item = find_item(names[named - 1], {});
    if (!item) return std::nullopt;
    return whole(item);
  }
  switch (named) {
    case 1:
      return plain(names[0]);
    case 2:
      if (const Item* item = find_item(names[0], {})) return column_of(item, names[1]);
      return plain(names[0]);  // composite column's field: col.field
    case 3:
      if (const Item* item = find_item(names[1], names[0])) return column_of(item, names[2]);
      if (const Item* item = find_item(names[0], {})) return column_of(item, names[1]);
      return plain(names[0]);
    default:
      if (const Item* item = find_item(names[2], names[1])) return column_of(item, names[3]);
      if (const Item* item = find_item(names[1], names[0])) return column_of(item, names[2]);
      if (const Item* item = find_item(names[0], {})) return column_of(item, names[1]);
      return plain(names[0]);
  }
}

bool Engine::expand_star(const Item& item, Cols& out) {
  if (item.open) {
    fail("the columns of " + std::string(item.open_what) + "() in FROM are not known (give a column definition list)");
    return false;
  }
  for (const Col& c : item.cols) {
    add(read_, c.src);
    out.push_back(c);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Expressions

// Set-returning functions of PostgreSQL's catalog that are called in target lists.
constexpr std::string_view kSetReturningFunctions[] = {
    "generate_series", "generate_subscripts", "unnest", "regexp_matches", "regexp_split_to_table", "string_to_table",
    "json_array_elements", "json_array_elements_text", "jsonb_array_elements", "jsonb_array_elements_text",
    "json_each", "json_each_text", "jsonb_each", "jsonb_each_text", "json_object_keys", "jsonb_object_keys",
    "jsonb_path_query", "json_populate_recordset", "jsonb_populate_recordset", "json_to_recordset",
    "jsonb_to_recordset", "ts_debug", "ts_parse", "ts_token_type", "unnest",
};

// Functions that read data named by a value (SQL text, a table name, a file, a remote server):
// their output derives from what their arguments name, not from their arguments' columns.
constexpr std::string_view kDataByNameFunctions[] = {
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "table_to_xml", "table_to_xmlschema",
    "table_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema", "schema_to_xml", "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
    "ts_stat", "ts_rewrite", "get_raw_page", "heap_page_items", "heap_page_item_attrs", "tuple_data_split",
    "pg_read_file", "pg_read_binary_file", "crosstab", "crosstab2", "crosstab3", "crosstab4", "connectby",
    "xpath_table", "pg_show_all_file_settings", "pg_hba_file_rules", "pg_ident_file_mappings",
};

// Also those whose arguments other sessions can observe: advisory lock keys show in pg_locks
// (found by an attack round: one lock per character read a masked e-mail back).
constexpr std::string_view kStoringFunctions[] = {
    "pg_notify", "set_config", "setval", "lo_from_bytea", "lo_put", "lowrite", "lo_create", "lo_import",
    "lo_export", "pg_logical_emit_message", "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock",
    "pg_advisory_unlock_shared", "pg_replication_origin_create", "pg_create_restore_point", "pg_file_write",
    "pg_stat_statements_reset", "txid_current_if_assigned",
    // Replication slots and backups keep their names and labels where other sessions read them
    // (pg_replication_slots, pg_backup_stop's label file: found by an attack round).
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_backup_start", "pg_start_backup", "pg_replication_origin_session_setup",
    "pg_replication_origin_xact_setup", "pg_replication_origin_advance",
};

Set Engine::expr(const JValue& v) {
  if (failed()) return {};
  if (v.type == JType::Array) {
    Set s;
    for (const JValue& item : v) add(s, expr(item));
    return s;
  }
  if (v.type != JType::Object) return {};
  DepthGuard guard(*this);
  if (!guard.ok) return {};
  if (!v.is_node()) {  // an embedded struct (WindowDef of OVER, ...): every member
    Set s;
    for (std::uint32_t i = 0; i < v.count; ++i) add(s, expr(v.members[i].value));
    return s;
  }
  const std::string_view name = v.node_name();
  const JValue& b = *v.node_body();
  if (name == "A_Const" || name == "ParamRef" || name == "String" || name == "Integer" || name == "TypeName") return {};
  if (name == "ColumnRef") {
    auto r = column_ref(b);
    if (!r) {
      if (!quiet_) {
        std::string text;
        if (const JValue* fields = b.get("fields"); fields && fields->is_array())
          for (const JValue& f : *fields) {
            if (!text.empty()) text += '.';
            text += f.node_name() == "A_Star" ? std::string_view("*") : string_node(f);
          }
        fail("column \"" + text + "\" is not known");
      }
      return {};
    }
    add(read_, r->src);
    // col.f: a field of col, or the call f(col) (attribute notation), as for (x).f below.
    if (const JValue* fields = b.get("fields"); fields && fields->is_array() && fields->count >= 2 &&
                                                 fields->items[fields->count - 1].node_name() == "String") {
      const std::string_view f = string_node(fields->items[fields->count - 1]);
      if (f.substr(0, 6) == "dblink" || std::find(std::begin(kDataByNameFunctions), std::end(kDataByNameFunctions),
                                                  f) != std::end(kDataByNameFunctions))
        fail("function " + std::string(f) + "() reads data that lineage does not see");
      if (std::find(std::begin(kStoringFunctions), std::end(kStoringFunctions), f) != std::end(kStoringFunctions))
        add(stored_, r->src);
    }
    return std::move(r->src);
  }
  if (name == "SubLink") return sublink(b);
  if (name == "FuncCall") return func_call(b);
  if (name == "A_Indirection") {
    // (c).email, (c.*).email: field selection from a whole-row reference is that column only.
    const JValue* arg = b.get("arg");
    const JValue* ind = b.get("indirection");
    // (x).f is also the call f(x) (attribute notation, any one-argument function): as a call of
    // f over x (found by an attack round: (ssn-as-bigint).pg_advisory_lock showed in pg_locks).
    if (arg && non_empty_array(ind))
      for (const JValue& item : *ind)
        if (item.node_name() == "String") {
          const std::string_view f = string_node(item);
          if (f.substr(0, 6) == "dblink" || std::find(std::begin(kDataByNameFunctions), std::end(kDataByNameFunctions),
                                                      f) != std::end(kDataByNameFunctions))
            fail("function " + std::string(f) + "() reads data that lineage does not see");
          if (std::find(std::begin(kStoringFunctions), std::end(kStoringFunctions), f) != std::end(kStoringFunctions)) {
            const bool was = quiet_;
            quiet_ = true;  // (the argument is walked again below; here only its sources)
            add(stored_, expr(*arg));
            quiet_ = was;
          }
        }
    if (arg && arg->node_name() == "ColumnRef" && non_empty_array(ind) && ind->items[0].node_name() == "String") {
      auto r = column_ref(*arg->node_body());
      if (r && r->whole_row) {
        if (auto col = item_column(*r->whole_row, string_node(ind->items[0]))) {
          Set s = std::move(*col);
          add(read_, s);
          for (std::uint32_t i = 1; i < ind->count; ++i) add(s, expr(ind->items[i]));
          return s;
        }
      }
    }
  }
  Set s;
  for (std::uint32_t i = 0; i < b.count; ++i) add(s, expr(b.members[i].value));
  return s;
}

Set Engine::sublink(const JValue& b) {
  Set s;
  if (const JValue* test = b.get("testexpr")) s = expr(*test);
  const JValue* sub = b.get("subselect");
  const JValue* sb = sub ? sub->node_body() : nullptr;
  if (!sb) return s;
  Cols cols = query(sub->node_name(), *sb);
  // EXISTS gives no value of the subquery (its columns are read and filtered inside).
  if (b.get_str("subLinkType") != "EXISTS_SUBLINK")
    for (const Col& c : cols) add(s, c.src);
  return s;
}

Set Engine::window_def(const JValue& w) {
  Set s;
  const JValue* body = w.is_node() ? w.node_body() : &w;
  if (!body) return s;
  for (std::uint32_t i = 0; i < body->count; ++i) add(s, expr(body->members[i].value));
  // A reference to a named window (OVER w, OVER (w ORDER BY ...)): every named window of the
  // query level, which is at least the one it names.
  if ((!body->get_str("name").empty() || !body->get_str("refname").empty()) && !scope_.empty())
    add(s, scope_.back()->windows);
  filter(s);
  return s;
}


Set Engine::func_call(const JValue& b) {
  if (const JValue* fn = b.get("funcname"); non_empty_array(fn)) {
    const std::string_view f = string_node(fn->items[fn->count - 1]);
    if (f.substr(0, 6) == "dblink" ||
        std::find(std::begin(kDataByNameFunctions), std::end(kDataByNameFunctions), f) != std::end(kDataByNameFunctions))
      fail("function " + std::string(f) + "() reads data that lineage does not see");
  }
  // A function's value derives from its arguments; aggregates also from what orders and filters
  // their input, window functions from their window (conservative: those change the value).
  Set s;
  if (const JValue* args = b.get("args")) add(s, expr(*args));
  if (const JValue* fn = b.get("funcname"); non_empty_array(fn)) {
    // Functions that keep their arguments somewhere other sessions (or later statements) read.
    const std::string_view f = string_node(fn->items[fn->count - 1]);
    if (std::find(std::begin(kStoringFunctions), std::end(kStoringFunctions), f) != std::end(kStoringFunctions))
      add(stored_, s);
    // A set-returning function in a target list multiplies the rows by what its arguments say.
    if (std::find(std::begin(kSetReturningFunctions), std::end(kSetReturningFunctions), f) !=
        std::end(kSetReturningFunctions))
      filter(s);
  }
  if (const JValue* order = b.get("agg_order")) {
    Set o = expr(*order);
    filter(o);
    add(s, o);
  }
  if (const JValue* f = b.get("agg_filter")) {
    Set o = expr(*f);
    filter(o);
    add(s, o);
  }
  if (const JValue* over = b.get("over")) add(s, window_def(*over));
  return s;
}

// ---------------------------------------------------------------------------------------------
// FROM

bool Engine::relation_cols(const CatalogRelation& rel, Cols& out) {
  if (rel.kind == 'v' || (rel.kind == 'm' && !rel.definition.empty())) {
    const ViewInfo* info = view(rel);
    if (!info) return false;
    for (std::size_t i = 0; i < info->names.size(); ++i) out.push_back(Col{info->names[i], info->srcs[i]});
    return true;
  }
  for (const CatalogColumn& c : rel.columns) out.push_back(Col{c.name, Set{SourceColumn{rel.oid, c.attnum}}});
  return true;
}

bool Engine::relation_item(const JValue& rv, Item& out, std::string_view what) {
  const std::string_view schema = rv.get_str("schemaname");
  const std::string_view name = rv.get_str("relname");
  const CatalogRelation* rel = catalog_.find(schema, name);
  if (!rel) {
    fail("relation \"" + (schema.empty() ? std::string() : std::string(schema) + ".") + std::string(name) +
         "\" is not in the catalog" + (what.empty() ? std::string() : " (" + std::string(what) + ")"));
    return false;
  }
  if (!relation_cols(*rel, out.cols)) return false;
  const std::string_view alias = alias_name(rv);
  if (alias.empty()) {
    out.name = rel->name;
    out.schema = rel->schema;
  } else {
    out.name = alias;
  }
  if (const JValue* names = alias_colnames(rv); names && names->is_array())
    for (std::uint32_t i = 0; i < names->count && i < out.cols.size(); ++i) out.cols[i].name = string_node(names->items[i]);
  return true;
}

const ViewInfo* Engine::view(const CatalogRelation& rel) {
  auto [it, inserted] = views_.try_emplace(rel.oid);
  ViewInfo* info = &it->second;  // element addresses survive rehashing
  const std::string qualified = rel.schema + "." + rel.name;
  if (!inserted) {
    if (info->busy) fail("view " + qualified + " refers to itself");
    return info->ok ? info : nullptr;
  }
  if (view_depth_ >= kMaxViewDepth) {
    fail("views nested too deeply (" + qualified + ")");
    return nullptr;
  }
  if (rel.definition.size() > kMaxViewDefinition) {
    fail("definition of view " + qualified + " too large for lineage");
    return nullptr;
  }
  Parsed parsed;
  if (!parsed.parse(rel.definition)) {
    fail("definition of view " + qualified + " cannot be parsed: " + parsed.error);
    return nullptr;
  }
  const JValue* stmts = parsed.root->get("stmts");
  const JValue* stmt = non_empty_array(stmts) && stmts->count == 1 ? stmts->items[0].get("stmt") : nullptr;
  if (!stmt || stmt->node_name() != "SelectStmt") {
    fail("definition of view " + qualified + " is not one SELECT");
    return nullptr;
  }
  // The definition is its own query: the referencing statement's scopes and CTEs are not visible
  // in it, and only what it filters on counts for the referencing statement.
  std::vector<Level*> saved_scope;
  std::vector<Cte> saved_ctes;
  saved_scope.swap(scope_);
  saved_ctes.swap(ctes_);
  Set saved_read, saved_filtered;
  saved_read.swap(read_);
  saved_filtered.swap(filtered_);
  ++view_depth_;
  Cols cols = select(*stmt->node_body());
  --view_depth_;
  info->filtered.swap(filtered_);
  read_.swap(saved_read);
  filtered_.swap(saved_filtered);
  scope_.swap(saved_scope);
  ctes_.swap(saved_ctes);
  if (failed()) return nullptr;
  filter(info->filtered);

  if (!rel.columns.empty() && rel.columns.size() != cols.size()) {
    fail("definition of view " + qualified + " does not match its columns");
    return nullptr;
  }
  for (std::size_t i = 0; i < cols.size(); ++i) {
    info->names.emplace_back(rel.columns.empty() ? cols[i].name : std::string_view(rel.columns[i].name));
    Set s = std::move(cols[i].src);
    // A materialized view holds its own copy: its columns count as well as where they came from.
    if (rel.kind == 'm' && !rel.columns.empty()) add(s, SourceColumn{rel.oid, rel.columns[i].attnum});
    info->srcs.push_back(std::move(s));
  }
  info->busy = false;
  info->ok = true;
  return info;
}

void Engine::range_function(const JValue& b, Level& level) {
  // Function arguments see the FROM items before them (functions in FROM are implicitly LATERAL).
  Item item;
  const std::string_view alias = alias_name(b);
  const JValue* fns = b.get("functions");
  const JValue* coldefs = b.get("coldeflist");
  std::string_view first_name;
  bool open = false;
  Cols cols;
  Set all;
  if (fns && fns->is_array()) {
    for (const JValue& f : *fns) {
      const JValue* list = f.node_body();
      const JValue* items = list ? list->get("items") : nullptr;
      if (!non_empty_array(items)) continue;
      const JValue& call = items->items[0];
      Set s = expr(call);
      add(all, s);
      // Its arguments decide how many rows it yields, which a count or the row count tells (found
      // by an attack round: count(*) over generate_series(1, ascii(substr(email, i, 1))) spelled
      // the e-mail): they count as a predicate (mask.deny_predicates).
      filter(s);
      std::string_view fname;
      std::uint32_t nargs = 0;
      if (const JValue* fc = call.node_body(); fc && call.node_name() == "FuncCall") {
        const JValue* fn = fc->get("funcname");
        if (non_empty_array(fn)) fname = string_node(fn->items[fn->count - 1]);
        if (const JValue* args = fc->get("args"); args && args->is_array()) nargs = args->count;
      } else {
        fname = figure_colname(call);
      }
      if (first_name.empty()) first_name = fname;
      // ROWS FROM (f(...) AS (a int, ...)): this function's column definition list.
      const JValue* defs = items->count > 1 && non_empty_array(&items->items[1]) ? &items->items[1] : nullptr;
      if (!defs && fns->count == 1 && non_empty_array(coldefs)) defs = coldefs;
      if (defs) {
        for (const JValue& cd : *defs)
          if (const JValue* cb = cd.node_body()) cols.push_back(Col{cb->get_str("colname"), s});
        continue;
      }
      const KnownFunction* known = nullptr;
      for (const KnownFunction& k : kKnownFunctions)
        if (k.name == fname) known = &k;
      if (fname == "unnest") {
        // unnest(a, b, ...) in FROM: one column per array (of a scalar element type).
        for (std::uint32_t i = 0; i < std::max<std::uint32_t>(nargs, 1); ++i)
          cols.push_back(Col{alias.empty() ? fname : alias, s});
        item.scalar_function = nargs <= 1;
      } else if (known) {
        for (std::size_t i = 0; i < std::size(known->columns); ++i) {
          const std::string_view c = known->columns[i];
          if (c.empty() && i > 0) break;
          cols.push_back(Col{c.empty() ? (alias.empty() ? fname : alias) : c, s});
        }
        item.scalar_function = known->columns[0].empty();
      } else {
        // Unknown: a scalar (one column named after the entry) or a row of any columns.
        open = true;
        item.open_what = fname;
        cols.push_back(Col{alias.empty() ? fname : alias, s});
      }
    }
  }
  if (fns && fns->count > 1) item.scalar_function = false;
  if (b.get_bool("ordinality")) cols.push_back(Col{"ordinality", {}});
  if (open) {
    item.open = true;
    item.open_src = all;
  }
  if (const JValue* names = alias_colnames(b); names && names->is_array()) {
    for (std::uint32_t i = 0; i < names->count; ++i) {
      if (i < cols.size()) {
        cols[i].name = string_node(names->items[i]);
      } else if (open) {
        cols.push_back(Col{string_node(names->items[i]), all});
      }
    }
  }
  item.cols = std::move(cols);
  item.name = alias.empty() ? first_name : alias;
  level.items.push_back(std::move(item));
}

void Engine::from_item(const JValue& item, Level& level) {
  DepthGuard guard(*this);
  if (!guard.ok || failed()) return;
  const JValue* b = item.node_body();
  if (!b) return fail("unsupported FROM item");
  const std::string_view name = item.node_name();
  if (name == "RangeVar") {
    Item it;
    const std::string_view schema = b->get_str("schemaname");
    const std::string_view rel = b->get_str("relname");
    if (schema.empty()) {
      for (auto c = ctes_.rbegin(); c != ctes_.rend(); ++c) {
        if (c->name != rel) continue;
        if (c->state == Cte::State::Pending) return fail("WITH RECURSIVE item \"" + std::string(rel) + "\" used before it is defined");
        it.cols = c->cols;
        if (c->state == Cte::State::Provisional) {
          // A recursive CTE's first pass: its columns are not known yet.
          it.open = true;
          it.open_what = c->name;
        }
        const std::string_view alias = alias_name(*b);
        it.name = alias.empty() ? rel : alias;
        if (const JValue* names = alias_colnames(*b); names && names->is_array())
          for (std::uint32_t i = 0; i < names->count && i < it.cols.size(); ++i) it.cols[i].name = string_node(names->items[i]);
        level.items.push_back(std::move(it));
        return;
      }
    }
    if (relation_item(*b, it, {})) level.items.push_back(std::move(it));
    return;
  }
  if (name == "JoinExpr") {
    const std::size_t l0 = level.items.size();
    if (const JValue* l = b->get("larg")) from_item(*l, level);
    const std::size_t l1 = level.items.size();
    if (const JValue* r = b->get("rarg")) from_item(*r, level);
    const std::size_t l2 = level.items.size();
    if (failed()) return;
    Item join;
    Cols left, right;
    for (std::size_t i = l0; i < l2; ++i) {
      const Item& it = level.items[i];
      if (!it.top) continue;
      Cols& side = i < l1 ? left : right;
      side.insert(side.end(), it.cols.begin(), it.cols.end());
      if (it.open) {
        join.open = true;
        add(join.open_src, it.open_src);
        join.open_what = it.open_what;
      }
    }
    std::vector<std::string_view> using_names;
    if (const JValue* u = b->get("usingClause"); u && u->is_array()) {
      for (const JValue& c : *u) using_names.push_back(string_node(c));
    } else if (b->get_bool("isNatural")) {
      for (const Col& c : left)
        if (std::any_of(right.begin(), right.end(), [&](const Col& r) { return r.name == c.name; }) &&
            std::find(using_names.begin(), using_names.end(), c.name) == using_names.end())
          using_names.push_back(c.name);
    }
    // USING/NATURAL columns once, first, from both sides; then the rest of each side.
    Set using_src;
    for (std::string_view u : using_names) {
      Col merged{u, {}};
      for (const Col& c : left)
        if (c.name == u) add(merged.src, c.src);
      for (const Col& c : right)
        if (c.name == u) add(merged.src, c.src);
      const bool in_left = std::any_of(left.begin(), left.end(), [&](const Col& c) { return c.name == u; });
      const bool in_right = std::any_of(right.begin(), right.end(), [&](const Col& c) { return c.name == u; });
      if ((!in_left || !in_right) && !join.open) return fail("JOIN USING column \"" + std::string(u) + "\" is not known");
      if (join.open) add(merged.src, join.open_src);
      filter(merged.src);
      join.cols.push_back(std::move(merged));
    }
    auto is_using = [&](const Col& c) { return std::find(using_names.begin(), using_names.end(), c.name) != using_names.end(); };
    for (const Col& c : left)
      if (!is_using(c)) join.cols.push_back(c);
    for (const Col& c : right)
      if (!is_using(c)) join.cols.push_back(c);
    const std::string_view alias = alias_name(*b);
    for (std::size_t i = l0; i < l2; ++i) {
      level.items[i].top = false;
      if (!alias.empty()) level.items[i].named = false;
    }
    join.name = alias;
    join.named = !alias.empty();
    if (const JValue* names = alias_colnames(*b); names && names->is_array())
      for (std::uint32_t i = 0; i < names->count && i < join.cols.size(); ++i) join.cols[i].name = string_node(names->items[i]);
    // ON sees both sides (an alias hides them only from what follows the join); unqualified names
    // in it resolve among the join's columns, so the join is in scope meanwhile.
    if (const JValue* quals = b->get("quals")) {
      std::vector<bool> named(l2 - l0);
      for (std::size_t i = l0; i < l2; ++i) {
        named[i - l0] = level.items[i].named;
        level.items[i].named = true;
      }
      level.items.push_back(join);
      filter(expr(*quals));
      level.items.pop_back();
      for (std::size_t i = l0; i < l2; ++i) level.items[i].named = named[i - l0];
    }
    level.items.push_back(std::move(join));
    return;
  }
  if (name == "RangeSubselect") {
    const bool lateral = b->get_bool("lateral");
    const bool was_hidden = level.hidden;
    if (!lateral) level.hidden = true;
    Cols cols;
    if (const JValue* sub = b->get("subquery"); sub && sub->node_body()) cols = query(sub->node_name(), *sub->node_body());
    level.hidden = was_hidden;
    Item it;
    it.name = alias_name(*b);
    it.cols = std::move(cols);
    if (const JValue* names = alias_colnames(*b); names && names->is_array())
      for (std::uint32_t i = 0; i < names->count && i < it.cols.size(); ++i) it.cols[i].name = string_node(names->items[i]);
    level.items.push_back(std::move(it));
    return;
  }
  if (name == "RangeFunction") return range_function(*b, level);
  if (name == "RangeTableSample") {
    if (const JValue* r = b->get("relation")) from_item(*r, level);
    if (const JValue* a = b->get("args")) add(read_, expr(*a));
    if (const JValue* r = b->get("repeatable")) add(read_, expr(*r));
    return;
  }
  if (name == "RangeTableFunc") {
    // XMLTABLE: every column derives from the document, the row expression and its own path.
    Set all;
    if (const JValue* d = b->get("docexpr")) add(all, expr(*d));
    if (const JValue* r = b->get("rowexpr")) add(all, expr(*r));
    if (const JValue* c = b->get("columns")) add(all, expr(*c));
    if (const JValue* ns = b->get("namespaces")) add(all, expr(*ns));
    Item it;
    it.name = alias_name(*b);
    if (const JValue* c = b->get("columns"); c && c->is_array())
      for (const JValue& col : *c)
        if (const JValue* cb = col.node_body()) it.cols.push_back(Col{cb->get_str("colname"), all});
    if (const JValue* names = alias_colnames(*b); names && names->is_array())
      for (std::uint32_t i = 0; i < names->count && i < it.cols.size(); ++i) it.cols[i].name = string_node(names->items[i]);
    level.items.push_back(std::move(it));
    return;
  }
  fail("unsupported FROM item " + std::string(name));
}

// ---------------------------------------------------------------------------------------------
// Queries

Cols Engine::targets(const JValue* list, Level& level) {
  Cols out;
  if (!list || !list->is_array()) return out;
  for (const JValue& t : *list) {
    if (failed()) break;
    const JValue* rt = t.node_body();
    const JValue* val = rt ? rt->get("val") : nullptr;
    if (!val) continue;
    if (is_star_ref(*val)) {
      const JValue* fields = val->node_body()->get("fields");
      if (fields->count == 1) {
        bool any = false;
        for (const Item& item : level.items) {
          if (!item.top) continue;
          any = true;
          if (!expand_star(item, out)) break;
        }
        if (!any) fail("SELECT * with no FROM items");
        continue;
      }
      const std::uint32_t named = fields->count - 1;
      const std::string_view rel = string_node(fields->items[named - 1]);
      const Item* item = named >= 2 ? find_item(rel, string_node(fields->items[named - 2])) : nullptr;
      if (!item) item = find_item(rel, {});
      if (!item) {
        fail("\"" + std::string(rel) + ".*\": no such FROM item");
        continue;
      }
      std::vector<const Item*> all;
      find_item(item->name, item->schema, &all);
      for (const Item* i : all)
        if (!expand_star(*i, out)) break;
      continue;
    }
    if (val->node_name() == "A_Indirection") {
      // (c).* expands like c.*; (composite_value).* has columns only its type knows.
      const JValue* ib = val->node_body();
      const JValue* ind = ib->get("indirection");
      if (non_empty_array(ind) && ind->items[ind->count - 1].node_name() == "A_Star") {
        const JValue* arg = ib->get("arg");
        std::optional<Resolved> r;
        if (arg && arg->node_name() == "ColumnRef" && ind->count == 1) r = column_ref(*arg->node_body());
        if (!r || !r->whole_row) {
          fail("(...).*: the columns of a composite value are not known");
          continue;
        }
        expand_star(*r->whole_row, out);
        continue;
      }
    }
    Col c;
    c.name = rt->get_str("name");
    if (c.name.empty()) c.name = figure_colname(*val);
    c.src = expr(*val);
    out.push_back(std::move(c));
  }
  return out;
}

Set Engine::sort_item(const JValue& e, const Cols& outputs) {
  const JValue* b = e.node_body();
  if (!b) return {};
  const std::string_view name = e.node_name();
  if (name == "SortBy") {
    Set s;
    if (const JValue* n = b->get("node")) s = sort_item(*n, outputs);
    if (const JValue* u = b->get("useOp")) add(s, expr(*u));
    return s;
  }
  if (name == "A_Const") {
    // ORDER BY 2: the second output column.
    if (const JValue* iv = b->get("ival")) {
      auto k = iv->get_int("ival");
      if (k && *k >= 1 && static_cast<std::size_t>(*k) <= outputs.size()) return outputs[static_cast<std::size_t>(*k) - 1].src;
    }
    return {};
  }
  if (name == "ColumnRef") {
    const JValue* fields = b->get("fields");
    if (non_empty_array(fields) && fields->count == 1 && fields->items[0].node_name() == "String") {
      // A bare name may be an output column (ORDER BY) or an input column (GROUP BY first):
      // both, when both exist.
      const std::string_view col = string_node(fields->items[0]);
      std::optional<Set> out;
      for (const Col& c : outputs)
        if (c.name == col) {
          if (!out) out.emplace();
          add(*out, c.src);
        }
      auto in = column_ref(*b);
      if (!out && !in) {
        fail("column \"" + std::string(col) + "\" is not known");
        return {};
      }
      Set s = out ? std::move(*out) : Set{};
      if (in) add(s, in->src);
      return s;
    }
  }
  return expr(e);
}

void Engine::sort_items(const JValue* list, const Cols& outputs) {
  if (!list || !list->is_array()) return;
  for (const JValue& item : *list) filter(sort_item(item, outputs));
}

void Engine::after_result(const JValue& b, const Cols& result) {
  Level level;
  Item it;
  it.cols = result;
  level.items.push_back(std::move(it));
  LevelGuard lg(*this, level);
  sort_items(b.get("sortClause"), result);
  if (const JValue* v = b.get("limitOffset")) filter(expr(*v));
  if (const JValue* v = b.get("limitCount")) filter(expr(*v));
}

Cols Engine::values(const JValue& b) {
  Cols cols;
  Level level;  // VALUES sees outer levels only (LATERAL, correlated), no FROM of its own
  LevelGuard lg(*this, level);
  for (const JValue& row : *b.get("valuesLists")) {
    const JValue* list = row.node_body();
    const JValue* items = list ? list->get("items") : nullptr;
    if (!items || !items->is_array()) continue;
    if (cols.empty()) {
      for (std::uint32_t i = 0; i < items->count; ++i) cols.push_back(Col{{}, {}});
    } else if (cols.size() != items->count) {
      fail("VALUES lists of different lengths");
      return cols;
    }
    for (std::uint32_t i = 0; i < items->count; ++i) add(cols[i].src, expr(items->items[i]));
  }
  static constexpr std::string_view kNames[] = {"column1", "column2", "column3", "column4", "column5",
                                                "column6", "column7", "column8", "column9", "column10"};
  for (std::size_t i = 0; i < cols.size(); ++i) cols[i].name = i < std::size(kNames) ? kNames[i] : "?column?";
  return cols;
}

Cols Engine::select(const JValue& b) {
  DepthGuard guard(*this);
  if (!guard.ok || failed()) return {};
  CteGuard cte_guard(*this);
  with_clause(b.get("withClause"));
  const std::string_view op = b.get_str("op");
  if (!op.empty() && op != "SETOP_NONE") {
    const JValue* l = b.get("larg");
    const JValue* r = b.get("rarg");
    if (!l || !r) {
      fail("set operation without two branches");
      return {};
    }
    Cols left = select(*l);
    Cols right = select(*r);
    if (failed()) return {};
    if (left.size() != right.size()) {
      fail("set operation branches with different numbers of columns");
      return {};
    }
    for (std::size_t i = 0; i < left.size(); ++i) add(left[i].src, right[i].src);
    after_result(b, left);
    return left;
  }
  if (non_empty_array(b.get("valuesLists"))) {
    Cols cols = values(b);
    after_result(b, cols);
    return cols;
  }
  Level level;
  LevelGuard lg(*this, level);
  if (const JValue* from = b.get("fromClause"); from && from->is_array())
    for (const JValue& item : *from) from_item(item, level);
  if (failed()) return {};
  if (const JValue* windows = b.get("windowClause"); windows && windows->is_array()) {
    for (const JValue& w : *windows) {
      const JValue* wb = w.node_body();
      if (!wb) continue;
      Set s;
      for (std::uint32_t i = 0; i < wb->count; ++i) add(s, expr(wb->members[i].value));
      add(level.windows, s);
    }
    filter(level.windows);
  }
  Cols out = targets(b.get("targetList"), level);
  if (const JValue* w = b.get("whereClause")) filter(expr(*w));
  if (const JValue* g = b.get("groupClause"); g && g->is_array()) {
    for (const JValue& item : *g) {
      if (item.node_name() == "GroupingSet") {
        filter(expr(item));
      } else {
        filter(sort_item(item, out));
      }
    }
  }
  if (const JValue* h = b.get("havingClause")) filter(expr(*h));
  if (const JValue* d = b.get("distinctClause"); d && d->is_array()) {
    for (const JValue& item : *d)
      if (item.is_node()) filter(sort_item(item, out));  // plain DISTINCT is [{}]
  }
  sort_items(b.get("sortClause"), out);
  if (const JValue* v = b.get("limitOffset")) filter(expr(*v));
  if (const JValue* v = b.get("limitCount")) filter(expr(*v));
  return out;
}

Cols Engine::cte_query(const JValue& cte) {
  const JValue* q = cte.get("ctequery");
  const JValue* qb = q ? q->node_body() : nullptr;
  if (!qb) return {};
  Cols cols = query(q->node_name(), *qb);
  if (const JValue* names = cte.get("aliascolnames"); names && names->is_array())
    for (std::uint32_t i = 0; i < names->count && i < cols.size(); ++i) cols[i].name = string_node(names->items[i]);
  return cols;
}

void Engine::with_clause(const JValue* with) {
  if (!with) return;
  const JValue* ctes = with->get("ctes");
  if (!ctes || !ctes->is_array()) return;
  if (!with->get_bool("recursive")) {
    for (const JValue& c : *ctes) {
      const JValue* b = c.node_body();
      if (!b || failed()) continue;
      Cols cols = cte_query(*b);
      ctes_.push_back(Cte{b->get_str("ctename"), std::move(cols), Cte::State::Known});
    }
    return;
  }
  // WITH RECURSIVE: every name is visible in every body. Each CTE in turn: a first pass where a
  // reference to itself has unknown columns and no sources, then passes with its columns as
  // computed so far until their sources stop growing. A reference to a later CTE fails.
  const std::size_t base = ctes_.size();
  for (const JValue& c : *ctes)
    if (const JValue* b = c.node_body()) ctes_.push_back(Cte{b->get_str("ctename"), {}, Cte::State::Pending});
  std::size_t index = base;
  for (const JValue& c : *ctes) {
    const JValue* b = c.node_body();
    if (!b || failed()) continue;
    Cte* self = &ctes_[index++];
    self->state = Cte::State::Provisional;
    // The first pass: the non-recursive branch of `base UNION [ALL] recursive` when it has that
    // shape (its columns are the CTE's), else the whole query with the CTE's columns unknown.
    Cols cols;
    const JValue* q = b->get("ctequery");
    const JValue* qb = q ? q->node_body() : nullptr;
    if (qb && q->node_name() == "SelectStmt" && qb->get_str("op") == "SETOP_UNION" && !qb->get("withClause") &&
        qb->get("larg")) {
      cols = select(*qb->get("larg"));
      if (const JValue* names = b->get("aliascolnames"); names && names->is_array())
        for (std::uint32_t i = 0; i < names->count && i < cols.size(); ++i) cols[i].name = string_node(names->items[i]);
    } else {
      cols = cte_query(*b);
    }
    self = &ctes_[index - 1];
    self->cols = std::move(cols);
    self->state = Cte::State::Known;
    bool converged = false;
    for (int pass = 0; pass < kMaxRecursionPasses && !failed(); ++pass) {
      Cols next = cte_query(*b);
      self = &ctes_[index - 1];
      if (failed()) break;
      if (next.size() != self->cols.size()) {
        fail("recursive query \"" + std::string(self->name) + "\" changes its number of columns");
        break;
      }
      bool grew = false;
      for (std::size_t i = 0; i < next.size(); ++i) grew |= add(self->cols[i].src, next[i].src);
      if (!grew) {
        converged = true;
        break;
      }
    }
    if (!converged && !failed()) fail("recursive query \"" + std::string(self->name) + "\" did not converge");
    // SEARCH ... SET col and CYCLE ... SET mark USING path add columns made of the listed ones.
    auto listed = [&](const JValue* list) {
      Set s;
      if (!list || !list->is_array()) return s;
      for (const JValue& n : *list)
        for (const Col& col : self->cols)
          if (col.name == string_node(n)) add(s, col.src);
      return s;
    };
    if (const JValue* sc = b->get("search_clause")) {
      Set s = listed(sc->get("search_col_list"));
      self->cols.push_back(Col{sc->get_str("search_seq_column"), s});
    }
    if (const JValue* cc = b->get("cycle_clause")) {
      Set s = listed(cc->get("cycle_col_list"));
      self->cols.push_back(Col{cc->get_str("cycle_mark_column"), s});
      self->cols.push_back(Col{cc->get_str("cycle_path_column"), s});
    }
  }
}

// A statement used as a query (subquery, CTE body, COPY's query, ...): its result columns.
Cols Engine::query(std::string_view name, const JValue& body, bool* returns) {
  DepthGuard guard(*this);
  if (!guard.ok || failed()) return {};
  bool r = true;
  Cols cols;
  if (name == "SelectStmt") {
    if (body.get("intoClause")) {
      r = false;
      cols = select(body);
      for (const Col& c : cols) add(stored_, c.src);
    } else {
      cols = select(body);
    }
  } else if (name == "InsertStmt") {
    cols = insert(body, r);
  } else if (name == "UpdateStmt") {
    cols = update(body, r);
  } else if (name == "DeleteStmt") {
    cols = del(body, r);
  } else if (name == "MergeStmt") {
    merge(body);
    r = false;
  } else {
    fail("unsupported query " + std::string(name));
    r = false;
  }
  if (returns) *returns = r;
  return cols;
}

Cols Engine::insert(const JValue& b, bool& returns) {
  CteGuard cte_guard(*this);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  Item target;
  if (!rv || !relation_item(*rv, target, "INSERT target")) return {};
  // Which target column each source column fills.
  std::vector<std::size_t> slots;
  Set indirection;
  if (const JValue* cols = b.get("cols"); non_empty_array(cols)) {
    for (const JValue& c : *cols) {
      const JValue* rt = c.node_body();
      const std::string_view n = rt ? rt->get_str("name") : std::string_view{};
      auto it = std::find_if(target.cols.begin(), target.cols.end(), [&](const Col& col) { return col.name == n; });
      if (it == target.cols.end()) {
        fail("INSERT into unknown column \"" + std::string(n) + "\"");
        return {};
      }
      slots.push_back(static_cast<std::size_t>(it - target.cols.begin()));
      if (const JValue* ind = rt->get("indirection")) add(indirection, expr(*ind));
    }
  } else {
    for (std::size_t i = 0; i < target.cols.size(); ++i) slots.push_back(i);
  }
  if (const JValue* src = b.get("selectStmt"); src && src->node_body()) {
    Cols in = query(src->node_name(), *src->node_body());
    if (failed()) return {};
    if (in.size() > slots.size()) {
      fail("INSERT has more expressions than target columns");
      return {};
    }
    for (std::size_t i = 0; i < in.size(); ++i) {
      add(in[i].src, indirection);
      add(stored_, in[i].src);
      add(target.cols[slots[i]].src, in[i].src);  // RETURNING shows what was inserted
    }
  }
  if (const JValue* oc = b.get("onConflictClause")) {
    Level level;
    level.items.push_back(target);
    Item excluded = target;  // the row proposed for insertion
    excluded.name = "excluded";
    excluded.schema = {};
    excluded.top = false;
    level.items.push_back(std::move(excluded));
    LevelGuard lg(*this, level);
    if (const JValue* infer = oc->get("infer")) filter(expr(*infer));
    std::vector<std::pair<std::size_t, Set>> assigned;
    if (const JValue* tl = oc->get("targetList"); tl && tl->is_array()) {
      for (const JValue& t : *tl) {
        const JValue* rt = t.node_body();
        if (!rt) continue;
        Set s;
        if (const JValue* v = rt->get("val")) s = expr(*v);
        if (const JValue* ind = rt->get("indirection")) add(s, expr(*ind));
        add(stored_, s);
        const std::string_view n = rt->get_str("name");
        for (std::size_t i = 0; i < target.cols.size(); ++i)
          if (target.cols[i].name == n) assigned.emplace_back(i, s);
      }
    }
    if (const JValue* w = oc->get("whereClause")) filter(expr(*w));
    for (auto& [i, s] : assigned) add(target.cols[i].src, s);
  }
  const JValue* ret = b.get("returningList");
  returns = non_empty_array(ret);
  if (!returns) return {};
  Level level;
  level.items.push_back(std::move(target));
  LevelGuard lg(*this, level);
  return targets(ret, level);
}

Cols Engine::update(const JValue& b, bool& returns) {
  CteGuard cte_guard(*this);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  Level level;
  Item target;
  if (!rv || !relation_item(*rv, target, "UPDATE target")) return {};
  level.items.push_back(std::move(target));
  LevelGuard lg(*this, level);
  if (const JValue* from = b.get("fromClause"); from && from->is_array())
    for (const JValue& item : *from) from_item(item, level);
  std::vector<std::pair<std::size_t, Set>> assigned;
  if (const JValue* tl = b.get("targetList"); tl && tl->is_array()) {
    for (const JValue& t : *tl) {
      const JValue* rt = t.node_body();
      if (!rt) continue;
      // SET (a, b) = (SELECT ...): each column gets the whole source (conservative).
      Set s;
      if (const JValue* v = rt->get("val")) s = expr(*v);
      if (const JValue* ind = rt->get("indirection")) add(s, expr(*ind));
      add(stored_, s);
      const std::string_view n = rt->get_str("name");
      const Cols& cols = level.items[0].cols;
      bool found = false;
      for (std::size_t i = 0; i < cols.size(); ++i)
        if (cols[i].name == n) {
          assigned.emplace_back(i, s);
          found = true;
        }
      if (!found) fail("UPDATE of unknown column \"" + std::string(n) + "\"");
    }
  }
  if (const JValue* w = b.get("whereClause")) filter(expr(*w));
  // New values show in RETURNING (and only after every SET expression saw the old ones).
  for (auto& [i, s] : assigned) add(level.items[0].cols[i].src, s);
  const JValue* ret = b.get("returningList");
  returns = non_empty_array(ret);
  return returns ? targets(ret, level) : Cols{};
}

Cols Engine::del(const JValue& b, bool& returns) {
  CteGuard cte_guard(*this);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  Level level;
  Item target;
  if (!rv || !relation_item(*rv, target, "DELETE target")) return {};
  level.items.push_back(std::move(target));
  LevelGuard lg(*this, level);
  if (const JValue* from = b.get("usingClause"); from && from->is_array())
    for (const JValue& item : *from) from_item(item, level);
  if (const JValue* w = b.get("whereClause")) filter(expr(*w));
  const JValue* ret = b.get("returningList");
  returns = non_empty_array(ret);
  return returns ? targets(ret, level) : Cols{};
}

void Engine::merge(const JValue& b) {
  CteGuard cte_guard(*this);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  Level level;
  LevelGuard lg(*this, level);
  if (const JValue* src = b.get("sourceRelation")) from_item(*src, level);
  Item target;
  if (!rv || !relation_item(*rv, target, "MERGE target")) return;
  level.items.push_back(std::move(target));
  if (const JValue* on = b.get("joinCondition")) filter(expr(*on));
  const JValue* whens = b.get("mergeWhenClauses");
  if (!whens || !whens->is_array()) return;
  for (const JValue& w : *whens) {
    const JValue* mw = w.node_body();
    if (!mw) continue;
    if (const JValue* c = mw->get("condition")) filter(expr(*c));
    if (const JValue* tl = mw->get("targetList"); tl && tl->is_array())
      for (const JValue& t : *tl)
        if (const JValue* rt = t.node_body()) {
          if (const JValue* v = rt->get("val")) add(stored_, expr(*v));
          if (const JValue* ind = rt->get("indirection")) add(stored_, expr(*ind));
        }
    if (const JValue* v = mw->get("values")) add(stored_, expr(*v));
  }
}

void Engine::copy(const JValue& b) {
  if (b.get_bool("is_from")) return;  // COPY ... FROM: rows come from the client or a file
  Cols cols;
  if (const JValue* rv = b.get("relation")) {
    Item it;
    if (!relation_item(*rv, it, "COPY")) return;
    if (const JValue* att = b.get("attlist"); non_empty_array(att)) {
      for (const JValue& a : *att) {
        const std::string_view n = string_node(a);
        auto c = std::find_if(it.cols.begin(), it.cols.end(), [&](const Col& col) { return col.name == n; });
        if (c == it.cols.end()) return fail("COPY of unknown column \"" + std::string(n) + "\"");
        cols.push_back(*c);
      }
    } else {
      cols = it.cols;
    }
    for (const Col& c : cols) add(read_, c.src);
  } else if (const JValue* q = b.get("query"); q && q->node_body()) {
    cols = query(q->node_name(), *q->node_body());
  }
  if (b.get_str("filename").empty() && !b.get_bool("is_program")) {
    returns_rows_ = true;
    columns_ = std::move(cols);
    copy_.present = true;
    copy_.relation = b.get("relation") != nullptr;
    if (const JValue* opts = b.get("options"); non_empty_array(opts))
      for (const JValue& o : *opts) {
        const JValue* d = o.node_body();
        if (!d || o.node_name() != "DefElem") continue;
        const std::string_view name = d->get_str("defname");
        const JValue* arg = d->get("arg");
        std::optional<std::string> text;
        bool truth = true;
        if (arg && arg->node_body()) {
          const std::string_view kind = arg->node_name();
          if (kind == "String") text = std::string(arg->node_body()->get_str("sval"));
          else if (kind == "Boolean") truth = arg->node_body()->get_bool("boolval");
          else if (kind == "Integer") truth = arg->node_body()->get_int("ival").value_or(0) != 0;
          else copy_.other_options = true;
          if (text && (name == "header")) truth = *text == "true" || *text == "on" || *text == "1";
        }
        if (name == "format" && text) copy_.format = *text;
        else if (name == "delimiter") copy_.delimiter = text;
        else if (name == "quote") copy_.quote = text;
        else if (name == "escape") copy_.escape = text;
        else if (name == "null") copy_.null = text;
        else if (name == "header") copy_.header = truth;
        else copy_.other_options = true;
      }
  } else {
    for (const Col& c : cols) add(stored_, c.src);
  }
}

void Engine::alter_table(const JValue& b) {
  // GENERATED ... AS (expr) and ALTER COLUMN ... TYPE ... USING expr copy existing columns' values
  // into a column: stored. Other expressions (CHECK, DEFAULT) count too (conservative).
  const JValue* rv = b.get("relation");
  const JValue* cmds = b.get("cmds");
  if (!rv || !cmds) return;
  // Only when there is an expression with a column in it: most ALTER TABLEs have none.
  struct Finder {
    static bool has_ref(const JValue& v, int depth) {
      if (depth > 200) return true;
      if (v.type == JType::Array) {
        for (const JValue& i : v)
          if (has_ref(i, depth + 1)) return true;
        return false;
      }
      if (v.type != JType::Object) return false;
      if (v.node_name() == "ColumnRef") return true;
      for (std::uint32_t i = 0; i < v.count; ++i)
        if (has_ref(v.members[i].value, depth + 1)) return true;
      return false;
    }
  };
  if (!Finder::has_ref(*cmds, 0)) return;
  Level level;
  Item target;
  if (!relation_item(*rv, target, "ALTER TABLE")) return;
  level.items.push_back(std::move(target));
  LevelGuard lg(*this, level);
  quiet_ = true;  // a CHECK may name a column the same statement adds
  add(stored_, expr(*cmds));
  quiet_ = false;
}

// ---------------------------------------------------------------------------------------------
// Top level

void Engine::top(std::string_view name, const JValue& body) {
  DepthGuard guard(*this);
  if (!guard.ok) return;
  auto inner = [&](const char* key) {
    const JValue* q = body.get(key);
    if (q && q->node_body()) top(q->node_name(), *q->node_body());
  };
  if (name == "SelectStmt" || name == "InsertStmt" || name == "UpdateStmt" || name == "DeleteStmt" ||
      name == "MergeStmt") {
    bool returns = false;
    Cols cols = query(name, body, &returns);
    returns_rows_ = returns;
    columns_ = returns ? std::move(cols) : Cols{};
  } else if (name == "ExplainStmt") {
    // A plan, not data; what an EXPLAIN ANALYZE runs still stores what it stores.
    inner("query");
    returns_rows_ = false;
    columns_.clear();
  } else if (name == "DeclareCursorStmt" || name == "PrepareStmt") {
    inner("query");  // FETCH / EXECUTE return these rows later
    returns_rows_ = false;
  } else if (name == "CreateTableAsStmt") {
    const JValue* q = body.get("query");
    if (q && q->node_body()) {
      if (q->node_name() == "ExecuteStmt") return fail("CREATE TABLE AS EXECUTE: the prepared statement is not known here");
      for (const Col& c : query(q->node_name(), *q->node_body())) add(stored_, c.src);
    }
    returns_rows_ = false;
    columns_.clear();
  } else if (name == "ViewStmt") {
    // The view shows its sources under a new name: they are stored (and checked) as if copied.
    const JValue* q = body.get("query");
    if (q && q->node_body())
      for (const Col& c : query(q->node_name(), *q->node_body())) add(stored_, c.src);
  } else if (name == "RefreshMatViewStmt") {
    if (const JValue* rv = body.get("relation")) {
      Item it;
      if (relation_item(*rv, it, "REFRESH"))
        for (const Col& c : it.cols) add(stored_, c.src);
    }
  } else if (name == "CreateSchemaStmt") {
    if (const JValue* elts = body.get("schemaElts"); elts && elts->is_array())
      for (const JValue& e : *elts)
        if (e.node_body()) top(e.node_name(), *e.node_body());
    returns_rows_ = false;
    columns_.clear();
  } else if (name == "CopyStmt") {
    copy(body);
  } else if (name == "AlterTableStmt") {
    alter_table(body);
  } else if (name == "VariableShowStmt") {
    returns_rows_ = true;
    const std::string_view setting = body.get_str("name");
    if (setting == "all") {
      columns_ = {Col{"name", {}}, Col{"setting", {}}, Col{"description", {}}};
    } else {
      columns_ = {Col{setting, {}}};
    }
  } else if (name == "FetchStmt") {
    if (body.get_bool("ismove")) return;
    returns_rows_ = true;
    runs_another_ = true;
    fail("FETCH returns the rows of cursor \"" + std::string(body.get_str("portalname")) +
         "\": their lineage is its DECLARE's");
  } else if (name == "ExecuteStmt") {
    returns_rows_ = true;
    runs_another_ = true;
    fail("EXECUTE runs prepared statement \"" + std::string(body.get_str("name")) +
         "\": its lineage is its PREPARE's");
  } else if (name == "CallStmt") {
    returns_rows_ = true;
    fail("CALL may return a procedure's output parameters, which are not known here");
  } else if (name == "DoStmt") {
    fail("DO runs code that lineage does not see");
  } else if (name == "RuleStmt") {
    fail("CREATE RULE: its actions run later, in other statements");
  }
  // Anything else neither returns rows nor moves table data (SET, BEGIN, DDL, ...).
}

void Engine::run(const JValue& stmts) {
  if (!stmts.is_array() || stmts.count == 0) return;  // empty text or only comments
  if (stmts.count > 1) return fail("several statements");
  const JValue* stmt = stmts.items[0].get("stmt");
  if (!stmt || !stmt->node_body()) return fail("unsupported statement");
  top(stmt->node_name(), *stmt->node_body());
}

Lineage Engine::finish() {
  Lineage out;
  out.decided = why_.empty();
  out.why = std::move(why_);
  out.returns_rows = returns_rows_;
  out.runs_another = runs_another_;
  out.columns.reserve(columns_.size());
  for (Col& c : columns_) out.columns.push_back(OutputColumn{std::string(c.name), std::move(c.src)});
  out.read = std::move(read_);
  out.stored = std::move(stored_);
  out.filtered = std::move(filtered_);
  out.copy = std::move(copy_);
  return out;
}

Lineage lineage_here(std::string_view statement, const Catalog& catalog) {
  Lineage out;
  if (statement.find('\0') != std::string_view::npos) {
    out.why = "statement text contains a NUL byte";
    return out;
  }
  Parsed parsed;
  if (!parsed.parse(std::string(statement))) {
    out.why = "statement cannot be parsed: " + parsed.error;
    return out;
  }
  const JValue* stmts = parsed.root->get("stmts");
  Engine engine(catalog);
  if (stmts) engine.run(*stmts);
  return engine.finish();
}

struct BigStackJob {
  std::string_view statement;
  const Catalog* catalog;
  Lineage result;
};

void* big_stack_main(void* arg) {
  auto* job = static_cast<BigStackJob*>(arg);
  try {
    job->result = lineage_here(job->statement, *job->catalog);
  } catch (const std::bad_alloc&) {
    job->result = Lineage{};
    job->result.why = "out of memory while tracing the statement";
  }
  return nullptr;
}

}  // namespace

Lineage lineage_of(std::string_view statement, const Catalog& catalog) {
  if (statement.size() <= kInlineLimit) return lineage_here(statement, catalog);
  // libpg_query recurses once per tree level while it writes its tree (analyzer.cpp): a large
  // text is first checked by the analyzer (which refuses pathological nesting before parsing
  // it), then traced on a thread whose stack grows with the text.
  Analysis checked = analyze_uncached(statement);
  if (checked.error) {
    Lineage out;
    out.why = "statement cannot be analysed: " + checked.error->message;
    return out;
  }
  BigStackJob job{statement, &catalog, {}};
  pthread_attr_t attr;
  pthread_t thread;
  const std::size_t stack = std::max<std::size_t>(statement.size() * 256 + (std::size_t{8} << 20), std::size_t{16} << 20);
  bool ok = pthread_attr_init(&attr) == 0;
  ok = ok && pthread_attr_setstacksize(&attr, stack) == 0;
  ok = ok && pthread_create(&thread, &attr, big_stack_main, &job) == 0;
  pthread_attr_destroy(&attr);
  if (!ok) {
    Lineage out;
    out.why = "statement too large to trace";
    return out;
  }
  pthread_join(thread, nullptr);
  return std::move(job.result);
}

}  // namespace gh::sql
