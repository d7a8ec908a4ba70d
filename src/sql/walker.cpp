// Scopes, expressions, FROM items and the trivially-true WHERE evaluation.
//
// The analyzer's shape cache (analyzer.cpp, ADR 0007) shares one result among texts that differ
// only in numeric literals when shape_independent() says the result cannot depend on their
// values. Reading a constant's value anywhere new here must be excluded in shape_independent().
#include <algorithm>
#include <charconv>

#include "sql/walker.h"

namespace gh::sql::detail {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool looks_like_range_var(const JValue& v) { return v.get("relname") && v.get("relpersistence"); }

std::string_view alias_name(const JValue& body) {
  const JValue* a = body.get("alias");
  return a ? a->get_str("aliasname") : std::string_view{};
}

// The sval of a {"String": {"sval": ...}} node.
std::string_view string_node(const JValue& v) {
  const JValue* b = v.node_body();
  return b && v.node_name() == "String" ? b->get_str("sval") : std::string_view{};
}

// Functions that read or write files on the database server.
constexpr std::string_view kFileFunctions[] = {
    "pg_read_file",   "pg_read_binary_file", "pg_ls_dir",      "pg_stat_file",     "pg_ls_logdir",
    "pg_ls_waldir",   "pg_ls_tmpdir",        "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir",
    "pg_ls_logicalmapdir", "pg_ls_replslotdir", "lo_import",    "lo_export",        "pg_file_write",
    "pg_file_rename", "pg_file_unlink",      "pg_file_sync",   "pg_logdir_ls",     "pg_file_read",
    "pg_file_length",
    // The configuration files, as the views over them (found by an attack round).
    "pg_show_all_file_settings", "pg_hba_file_rules", "pg_ident_file_mappings",
};

// Built-in functions of one argument that take a whole row (record, "any", anyelement, ...) and
// return its values, so that t.f, PostgreSQL's attribute notation for f(t), reads every column of
// t (found by adversarial testing: p.row_to_json read a classified column past a tag rule).
// Functions a user defines over a table's row type are not known here (docs/policy.md).
constexpr std::string_view kRowFunctions[] = {
    "any_out", "anycompatible_out", "anyelement_out", "anynonarray_out", "array_agg", "concat", "hstore",
    "json_agg", "json_build_array", "jsonb_agg", "jsonb_build_array", "quote_literal", "quote_nullable",
    "record_out", "record_send", "row_to_json", "to_json", "to_jsonb",
};

// Functions that run a query given as text (or read a table named by a value): the analyzer
// cannot see what they touch.
constexpr std::string_view kDynamicSqlFunctions[] = {
    "query_to_xml",   "query_to_xmlschema",  "query_to_xml_and_xmlschema", "table_to_xml",
    "table_to_xmlschema", "table_to_xml_and_xmlschema", "cursor_to_xml",  "cursor_to_xmlschema",
    "schema_to_xml",  "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml",
    "database_to_xmlschema", "database_to_xml_and_xmlschema", "ts_stat", "ts_rewrite",
    // Extensions that run SQL given as text (found by an attack round: tablefunc's crosstab read a
    // denied table; xml2's xpath_table reads a table named by a value), or run it later/elsewhere.
    "crosstab", "crosstab2", "crosstab3", "crosstab4", "connectby", "xpath_table", "schedule",
    "schedule_in_database", "pg_background_launch",
    // pageinspect and pg_surgery: raw pages of a relation named by a value, read or changed below
    // SQL (found by adversarial testing: heap_page_items(get_raw_page('secrets', 0)) read the table,
    // heap_force_kill deleted rows with no DELETE).
    "get_raw_page", "heap_page_items", "heap_page_item_attrs", "tuple_data_split", "heap_tuple_infomask_flags",
    "page_header", "page_checksum", "fsm_page_contents", "bt_metap", "bt_page_stats", "bt_multi_page_stats",
    "bt_page_items", "brin_page_type", "brin_metapage_info", "brin_revmap_data", "brin_page_items",
    "gin_metapage_info", "gin_page_opaque_info", "gin_leafpage_items", "gist_page_opaque_info", "gist_page_items",
    "gist_page_items_bytea", "hash_page_type", "hash_page_stats", "hash_page_items", "hash_bitmap_info",
    "hash_metapage_info", "heap_force_kill", "heap_force_freeze", "pg_truncate_visibility_map",
};

template <std::size_t N>
bool one_of(std::string_view s, const std::string_view (&list)[N]) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

bool is_bool_type(const JValue& type_name) {
  const JValue* names = type_name.get("names");
  if (!names || !names->is_array() || names->count == 0) return false;
  std::string_view last = string_node(names->items[names->count - 1]);
  return last == "bool" || last == "boolean";
}

Truth negate(Truth t) {
  return t == Truth::True ? Truth::False : t == Truth::False ? Truth::True : Truth::Unknown;
}

}  // namespace

// PostgreSQL's boolin: accepts unique prefixes of true/false/yes/no, on/off, 1/0.
Truth parse_bool_text(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  std::string l = lower(s);
  if (l.empty()) return Truth::Unknown;
  auto prefix_of = [&](std::string_view word) { return word.substr(0, l.size()) == l; };
  if (prefix_of("true") || prefix_of("yes") || l == "on" || l == "1") return Truth::True;
  if (prefix_of("false") || (prefix_of("no") && l.size() >= 1) || l == "off" || l == "of" || l == "0") {
    return Truth::False;
  }
  return Truth::Unknown;
}

void Walker::walk(const JValue& v) {
  if (v.type == JType::Array) {
    for (const JValue& item : v) walk(item);
    return;
  }
  if (v.type != JType::Object) return;
  if (v.is_node()) {
    node(v.members[0].key, v.members[0].value);
    return;
  }
  if (looks_like_range_var(v)) {
    generic_range_var(v);
    return;
  }
  for (std::uint32_t i = 0; i < v.count; ++i) walk(v.members[i].value);
}

void Walker::walk_member(const JValue& body, std::string_view key) {
  if (const JValue* v = body.get(key)) walk(*v);
}

void Walker::node(std::string_view name, const JValue& body) {
  if (name == "ColumnRef") return column_ref(body);
  if (name == "A_Const" || name == "String" || name == "Integer" || name == "Float" || name == "Boolean" ||
      name == "BitString" || name == "ParamRef" || name == "A_Star" || name == "TypeName" ||
      name == "RoleSpec" || name == "SQLValueFunction") {
    return;
  }
  if (name == "FuncCall") return func_call(body);
  if (name == "SubLink") {
    walk_member(body, "testexpr");
    if (const JValue* sub = body.get("subselect")) {
      if (const JValue* sb = sub->node_body()) statement(sub->node_name(), *sb, Mode::Nested);
    }
    return;
  }
  if (name == "RangeVar") return generic_range_var(body);
  if (name == "TableLikeClause") {
    // CREATE TABLE x (LIKE src): src's definition is read (SELECT privilege), not changed.
    if (const JValue* rv = body.get("relation")) add_access(rel(rv->get_str("schemaname"), rv->get_str("relname")), kRead);
    return;
  }
  if (name == "DefElem") return def_elem(body);
  if ((name == "Constraint" || name == "IndexElem") && in_ddl_ && !plan_only_) {
    // Columns a constraint or index names as plain names: the key of a UNIQUE, PRIMARY KEY,
    // FOREIGN KEY or index is read (a violation's DETAIL shows its value; found by adversarial
    // testing: ADD FOREIGN KEY (ssn) REFERENCES t printed every ssn), and a FOREIGN KEY reads
    // the referenced table's columns.
    auto ddl_columns = [&](const char* key) {
      if (const JValue* cols = body.get(key); cols && cols->is_array())
        for (const JValue& c : *cols) read_ddl_column(string_node(c));
    };
    if (name == "IndexElem") {
      read_ddl_column(body.get_str("name"));
    } else {
      ddl_columns("keys");
      ddl_columns("fk_attrs");
      ddl_columns("including");
      if (const JValue* pk = body.get("pktable")) {
        const int r = rel(pk->get_str("schemaname"), pk->get_str("relname"));
        add_access(r, kRead);
        const JValue* cols = body.get("pk_attrs");
        if (non_empty_array(cols)) {
          for (const JValue& c : *cols) add_read(r, string_node(c));
        } else {
          rels_[static_cast<std::size_t>(r)].all = true;  // its primary key, whichever columns
        }
      }
    }
    for (std::uint32_t i = 0; i < body.count; ++i) {
      const std::string_view k = body.members[i].key;
      if (k != "pktable") walk(body.members[i].value);
    }
    return;
  }
  if (name == "A_Indirection") {
    // (x).f: a field of x, or the call f(x) (attribute notation): counted as both.
    if (const JValue* ind = body.get("indirection"); ind && ind->is_array())
      for (const JValue& item : *ind)
        if (item.node_name() == "String") attribute_call(string_node(item));
  }
  if (name == "A_Expr" || name == "ResTarget" || name == "TypeCast" || name == "BoolExpr" || name == "List" ||
      name == "NullTest" || name == "SortBy" || name == "CaseExpr" || name == "CaseWhen" ||
      name == "A_Indirection" || name == "A_ArrayExpr" || name == "CoalesceExpr" || name == "RowExpr") {
    for (std::uint32_t i = 0; i < body.count; ++i) walk(body.members[i].value);
    return;
  }
  if (statement(name, body, Mode::Wrapped)) return;
  for (std::uint32_t i = 0; i < body.count; ++i) walk(body.members[i].value);
}

void Walker::add_kind(StatementKind kind) {
  if (plan_only_) return;
  if (std::find(out_.kinds.begin(), out_.kinds.end(), kind) == out_.kinds.end()) out_.kinds.push_back(kind);
}

void Walker::add_setting(std::string_view name) {
  if (plan_only_) return;
  std::string l = lower(name);
  // Settings whose value is a shell command the server runs, or libraries it loads from disk.
  if (l == "archive_command" || l == "restore_command" || l == "archive_cleanup_command" ||
      l == "recovery_end_command" || l == "ssl_passphrase_command") {
    out_.server_program = true;
  }
  if (l == "shared_preload_libraries" || l == "session_preload_libraries" || l == "local_preload_libraries" ||
      l == "dynamic_library_path") {
    out_.server_file_access = true;
  }
  if (std::find(out_.settings.begin(), out_.settings.end(), l) == out_.settings.end()) {
    out_.settings.push_back(std::move(l));
  }
}

int Walker::rel(std::string_view schema, std::string_view name) {
  for (std::size_t i = 0; i < rels_.size(); ++i) {
    if (rels_[i].name == name && rels_[i].schema == schema) return static_cast<int>(i);
  }
  // Catalog views that show the server's configuration files (postgresql.conf, pg_hba.conf,
  // pg_ident.conf) line by line: server file access, like pg_read_file (found by adversarial testing).
  if ((schema.empty() || schema == "pg_catalog") &&
      (name == "pg_file_settings" || name == "pg_hba_file_rules" || name == "pg_ident_file_mappings"))
    out_.server_file_access = true;
  rels_.push_back(RelAcc{schema, name, 0, false, {}, {}});
  return static_cast<int>(rels_.size() - 1);
}

void Walker::add_access(int r, std::uint8_t bits) {
  if (r < 0) return;
  if (plan_only_ && bits != 0) bits = kRead;
  rels_[static_cast<std::size_t>(r)].access |= bits;
}

void Walker::read_ddl_column(std::string_view column) {
  if (column.empty()) return;
  for (std::size_t r = 0; r < rels_.size(); ++r)
    if (rels_[r].access & kDdl) add_read(static_cast<int>(r), column);
}

void Walker::add_read(int r, std::string_view column) {
  if (r < 0) return;
  rels_[static_cast<std::size_t>(r)].read.push_back(column);
  add_access(r, kRead);
}

void Walker::add_written(int r, std::string_view column) {
  if (r < 0 || column.empty()) return;
  rels_[static_cast<std::size_t>(r)].written.push_back(column);
}

void Walker::add_write(StatementKind kind, int r, const JValue* where) {
  if (plan_only_ || r < 0) return;
  WriteFilter w;
  w.kind = kind;
  const RelAcc& ra = rels_[static_cast<std::size_t>(r)];
  w.relation = ra.schema.empty() ? std::string(ra.name) : std::string(ra.schema) + "." + std::string(ra.name);
  w.has_where = where != nullptr;
  w.where_trivially_true = where != nullptr && may_select_all(*where, target_name(r));
  out_.writes.push_back(std::move(w));
}

std::string_view Walker::target_name(int r) const {
  if (levels_.empty()) return {};
  for (const RangeEntry& e : levels_.back().entries)
    if (e.rel == r && e.kind == EntryKind::Relation) return e.name;
  return {};
}

bool Walker::row_dependent(const JValue& expr, std::string_view target) const {
  if (expr.is_array()) {
    for (const JValue& item : expr)
      if (row_dependent(item, target)) return true;
    return false;
  }
  if (!expr.is_object()) return false;
  const std::string_view name = expr.node_name();
  if (name == "CurrentOfExpr") return true;
  if (name == "ColumnRef") {
    const JValue* b = expr.node_body();
    const JValue* fields = b ? b->get("fields") : nullptr;
    if (!fields || !fields->is_array() || fields->count < 2) return true;  // unqualified: may be the target's
    // table.column, schema.table.column, db.schema.table.column; table.* is the whole row.
    return target.empty() || string_node(fields->items[fields->count - 2]) == target;
  }
  for (std::uint32_t i = 0; i < expr.count; ++i)
    if (row_dependent(expr.members[i].value, target)) return true;
  return false;
}

bool Walker::may_select_all(const JValue& expr, std::string_view target) const {
  const Truth t = eval(expr);
  if (t != Truth::Unknown) return t == Truth::True;
  if (expr.node_name() == "BoolExpr") {
    const JValue* b = expr.node_body();
    const std::string_view op = b->get_str("boolop");
    const JValue* args = b->get("args");
    if (args && args->is_array() && args->count > 0 && (op == "OR_EXPR" || op == "AND_EXPR")) {
      const bool any = op == "OR_EXPR";
      for (const JValue& a : *args)
        if (may_select_all(a, target) == any) return any;
      return !any;
    }
  }
  return !row_dependent(expr, target);
}

void Walker::add_function(const JValue& funcname) {
  if (!funcname.is_array() || funcname.count == 0) return;
  std::string full;
  for (const JValue& part : funcname) {
    if (!full.empty()) full += '.';
    full += lower(string_node(part));
  }
  add_function_name(std::move(full));
}

bool Walker::named_column(const RangeEntry& e, std::string_view column) {
  return std::find(e.columns.names.begin(), e.columns.names.end(), column) != e.columns.names.end();
}

void Walker::attribute_call(std::string_view field) {
  // PostgreSQL reads x.f as f(x) when x has no field f, for any function of one argument (found
  // by an attack round: ('/etc/passwd'::text).pg_read_file read the file on a production target,
  // and (x::bigint).pg_advisory_lock took a lock). A field of that name is read instead: counting
  // the call as well is the safe side.
  std::string name = lower(field);
  if (one_of(name, kFileFunctions)) out_.server_file_access = true;
  if (name.rfind("dblink", 0) == 0) out_.remote_access = true;
  if (one_of(name, kDynamicSqlFunctions)) out_.opaque_code = true;
  add_function_name(std::move(name));
}

void Walker::add_function_name(std::string name) {
  if (std::find(out_.functions.begin(), out_.functions.end(), name) == out_.functions.end())
    out_.functions.push_back(std::move(name));
}

Walker::RangeEntry& Walker::add_entry(std::string_view name, std::string_view schema, int r, bool aliased,
                                      EntryKind kind) {
  if (levels_.empty()) levels_.emplace_back();
  RangeEntry e;
  e.name = name;
  e.schema = schema;
  e.rel = r;
  e.aliased = aliased;
  e.kind = kind;
  levels_.back().entries.push_back(std::move(e));
  return levels_.back().entries.back();
}

void Walker::add_target_entry(const JValue& rv, int r) {
  std::string_view alias = alias_name(rv);
  if (!alias.empty()) {
    add_entry(alias, {}, r, true);
  } else {
    add_entry(rv.get_str("relname"), rv.get_str("schemaname"), r, false);
  }
}

const Walker::RangeEntry* Walker::find_entry(std::string_view qualifier, std::string_view schema) const {
  for (auto level = levels_.rbegin(); level != levels_.rend(); ++level) {
    if (level->hidden) continue;
    for (const RangeEntry& e : level->entries) {
      if (e.name != qualifier) continue;
      if (schema.empty()) return &e;
      if (!e.aliased && (e.schema == schema || e.schema.empty())) return &e;
    }
  }
  return nullptr;
}

const Walker::Level* Walker::innermost_with_entries() const {
  for (auto level = levels_.rbegin(); level != levels_.rend(); ++level) {
    if (level->hidden) continue;
    if (!level->entries.empty()) return &*level;
  }
  return nullptr;
}

const Walker::Cte* Walker::cte_visible(std::string_view name) const {
  for (auto it = ctes_.rbegin(); it != ctes_.rend(); ++it) {
    if (it->name == name) return &*it;
  }
  return nullptr;
}

namespace {

constexpr std::string_view kValuesColumns[] = {"column1",  "column2",  "column3",  "column4",
                                               "column5",  "column6",  "column7",  "column8",
                                               "column9",  "column10", "column11", "column12",
                                               "column13", "column14", "column15", "column16"};

}  // namespace

// PostgreSQL's FigureColname, for the shapes that matter: the output name of a select-list
// expression without an alias. "" for `*` (not one name).
std::string_view Walker::figure_colname(const JValue& expr) {
  std::string_view name = expr.node_name();
  const JValue* b = expr.node_body();
  if (!b) return "?column?";
  if (name == "ColumnRef") {
    const JValue* fields = b->get("fields");
    if (!fields || !fields->is_array() || fields->count == 0) return "?column?";
    const JValue& last = fields->items[fields->count - 1];
    if (last.node_name() == "A_Star") return {};
    return string_node(last);
  }
  if (name == "FuncCall") {
    const JValue* fn = b->get("funcname");
    if (fn && fn->is_array() && fn->count > 0) return string_node(fn->items[fn->count - 1]);
    return "?column?";
  }
  if (name == "TypeCast") {
    if (const JValue* arg = b->get("arg")) {
      std::string_view inner = figure_colname(*arg);
      if (inner != "?column?") return inner;
    }
    const JValue* type = b->get("typeName");
    const JValue* names = type ? type->get("names") : nullptr;
    if (names && names->is_array() && names->count > 0) return string_node(names->items[names->count - 1]);
    return "?column?";
  }
  if (name == "A_Indirection") {
    const JValue* ind = b->get("indirection");
    if (ind && ind->is_array() && ind->count > 0 && ind->items[ind->count - 1].node_name() == "String") {
      return string_node(ind->items[ind->count - 1]);
    }
    const JValue* arg = b->get("arg");
    return arg ? figure_colname(*arg) : std::string_view("?column?");
  }
  if (name == "CaseExpr") return "case";
  if (name == "A_ArrayExpr") return "array";
  if (name == "RowExpr") return "row";
  if (name == "CoalesceExpr") return "coalesce";
  if (name == "SubLink") {
    std::string_view type = b->get_str("subLinkType");
    if (type == "EXISTS_SUBLINK") return "exists";
    if (type == "ARRAY_SUBLINK") return "array";
  }
  return "?column?";
}

// The output column names of a statement used as a FROM item or a CTE.
Walker::Columns Walker::output_columns(const JValue& b, std::string_view node_name) {
  Columns c;
  const JValue* list = nullptr;
  if (node_name == "SelectStmt") {
    std::string_view op = b.get_str("op");
    if (!op.empty() && op != "SETOP_NONE") {
      const JValue* l = b.get("larg");
      return l ? output_columns(*l, "SelectStmt") : c;
    }
    if (const JValue* values = b.get("valuesLists"); values && values->is_array() && values->count > 0) {
      const JValue* row = values->items[0].node_body();
      const JValue* items = row ? row->get("items") : nullptr;
      if (!items || !items->is_array() || items->count > std::size(kValuesColumns)) return c;
      for (std::uint32_t i = 0; i < items->count; ++i) c.names.push_back(kValuesColumns[i]);
      c.known = true;
      return c;
    }
    list = b.get("targetList");
  } else if (node_name == "InsertStmt" || node_name == "UpdateStmt" || node_name == "DeleteStmt") {
    list = b.get("returningList");
    if (!list) {
      c.known = true;  // no RETURNING: no columns
      return c;
    }
  } else {
    return c;
  }
  if (!list || !list->is_array()) return c;
  for (const JValue& t : *list) {
    const JValue* rt = t.node_body();
    if (!rt) return c;
    std::string_view n = rt->get_str("name");
    if (n.empty()) {
      const JValue* val = rt->get("val");
      if (!val) return c;
      n = figure_colname(*val);
      if (n.empty()) return c;  // `*`: the names are not known
    }
    c.names.push_back(n);
  }
  c.known = true;
  return c;
}

void Walker::apply_alias_columns(Columns& c, const JValue* colnames) {
  if (!colnames || !colnames->is_array()) return;
  for (std::uint32_t i = 0; i < colnames->count; ++i) {
    std::string_view n = string_node(colnames->items[i]);
    if (i < c.names.size()) {
      c.names[i] = n;
    } else if (c.known) {
      c.names.push_back(n);
    }
  }
}

void Walker::with_clause(const JValue* with) {
  if (!with) return;
  const JValue* ctes = with->get("ctes");
  if (!ctes || !ctes->is_array()) return;
  bool recursive = with->get_bool("recursive");
  auto declare = [this](const JValue& cte) {
    const JValue* b = cte.node_body();
    if (!b) return;
    Cte c;
    c.name = b->get_str("ctename");
    if (const JValue* q = b->get("ctequery"); q && q->node_body()) {
      c.columns = output_columns(*q->node_body(), q->node_name());
    }
    apply_alias_columns(c.columns, b->get("aliascolnames"));
    ctes_.push_back(std::move(c));
  };
  if (recursive) {
    for (const JValue& cte : *ctes) declare(cte);
  }
  for (const JValue& cte : *ctes) {
    const JValue* b = cte.node_body();
    if (!b) continue;
    if (const JValue* q = b->get("ctequery")) {
      if (const JValue* qb = q->node_body()) {
        if (!statement(q->node_name(), *qb, Mode::Nested)) walk(*q);
      }
    }
    if (!recursive) declare(cte);
  }
}

// An unqualified column: PostgreSQL binds it in the innermost query level whose FROM list
// can have it. Without a catalog, a table can have any column; a subquery or CTE with known
// output names has only those.
void Walker::unqualified_column(std::string_view col) {
  auto could_have = [&](const RangeEntry& e) {
    if (!e.columns.known) return true;
    return std::find(e.columns.names.begin(), e.columns.names.end(), col) != e.columns.names.end();
  };
  // A bare name that is a FROM entry's name is a whole-row reference (SELECT t FROM t), unless
  // the entry is a function (its column takes the alias) or has a column of that name.
  if (const RangeEntry* e = find_entry(col, {})) {
    if (e->kind == EntryKind::Function) return;
    bool is_column = e->columns.known && could_have(*e);
    if (!is_column) {
      if (e->rel >= 0) {
        rels_[static_cast<std::size_t>(e->rel)].all = true;
        add_access(e->rel, kRead);
      }
      for (int r : e->join_rels) {
        rels_[static_cast<std::size_t>(r)].all = true;
        add_access(r, kRead);
      }
      out_.whole_row = true;
      return;
    }
  }
  const RangeEntry* bound = nullptr;
  std::size_t bound_level = 0;
  for (std::size_t i = levels_.size(); i-- > 0;) {
    const Level& level = levels_[i];
    if (level.hidden) continue;
    const RangeEntry* candidate = nullptr;
    const RangeEntry* definite = nullptr;  // known to have it: in a valid statement no other can
    int candidates = 0;
    int definites = 0;
    for (const RangeEntry& e : level.entries) {
      if (!could_have(e)) continue;
      candidate = &e;
      ++candidates;
      if (e.columns.known) {
        definite = &e;
        ++definites;
      }
    }
    if (candidates == 0) continue;
    if (definites == 1) {
      candidate = definite;
    } else if (candidates > 1) {
      unresolved_.push_back(col);
      return;
    }
    bound = candidate;
    bound_level = i;
    break;
  }
  if (!bound) {
    // In DDL (a generated column, a check, a default, an index or statistics expression) a column
    // is one of the relation the statement names: it reads it, now or whenever the server
    // evaluates it (found by adversarial testing: GENERATED ALWAYS AS (email) copied a classified
    // column into an unclassified one).
    if (in_ddl_ && !plan_only_) read_ddl_column(col);
    return;
  }
  add_read(bound->rel, col);
  const auto& names = bound->columns.names;
  if (std::find(names.begin(), names.end(), col) != names.end()) return;  // surely its column
  // The innermost candidate may not have the column after all, and then an enclosing query's
  // relation does (a correlated reference): say so unless it could only be the same relation.
  for (std::size_t i = bound_level; i-- > 0;) {
    const Level& level = levels_[i];
    if (level.hidden) continue;
    for (const RangeEntry& e : level.entries) {
      if (e.rel >= 0 && e.rel != bound->rel && could_have(e)) {
        unresolved_.push_back(col);
        return;
      }
    }
  }
}

void Walker::column_ref(const JValue& body) {
  const JValue* fields = body.get("fields");
  if (!fields || !fields->is_array() || fields->count == 0) return;
  std::uint32_t n = fields->count;
  bool star = fields->items[n - 1].node_name() == "A_Star";
  std::string_view names[4];
  std::uint32_t named = star ? n - 1 : n;
  if (named > 4) named = 4;
  for (std::uint32_t i = 0; i < named; ++i) names[i] = string_node(fields->items[i]);

  auto whole_row = [&](const RangeEntry* e) {
    if (e->rel >= 0) {
      rels_[static_cast<std::size_t>(e->rel)].all = true;
      add_access(e->rel, kRead);
    }
    for (int r : e->join_rels) {  // j.* of a JOIN's alias: every relation inside it
      rels_[static_cast<std::size_t>(r)].all = true;
      add_access(r, kRead);
    }
    out_.whole_row = true;
  };
  // A column through a JOIN's alias (j.email): which relation inside has it is not known without
  // the catalog, so it counts as read from each of them (found by adversarial testing: it was
  // recorded as read from none, and classified columns were read past a tag rule).
  auto read_via = [&](const RangeEntry* e, std::string_view col) {
    if (e->join_rels.empty()) return add_read(e->rel, col);
    for (int r : e->join_rels) add_read(r, col);
  };
  auto unqualified = [&](std::string_view col) { unqualified_column(col); };

  if (star) {
    if (named == 0) {
      if (const Level* level = innermost_with_entries()) {
        for (const RangeEntry& e : level->entries) {
          if (e.rel < 0) continue;
          rels_[static_cast<std::size_t>(e.rel)].all = true;
          add_access(e.rel, kRead);
        }
      }
      return;
    }
    const RangeEntry* e = nullptr;
    if (named >= 2) e = find_entry(names[named - 1], names[named - 2]);
    if (!e) e = find_entry(names[named - 1], {});
    if (e) whole_row(e);
    return;
  }
  // t.f where f is a row function: f(t), a read of the whole row and a call of f. (A column of
  // that name would be read instead; counting both is the safe side.)
  auto row_function = [&](const RangeEntry* e, std::string_view f) {
    if (!one_of(f, kRowFunctions)) return false;
    whole_row(e);
    add_function_name(std::string(f));
    return true;
  };
  switch (named) {
    case 1:
      return unqualified(names[0]);
    case 2:
      if (const RangeEntry* e = find_entry(names[0], {})) {
        if (row_function(e, names[1])) return;
        // f.x where f is a function in FROM returning one value: x(that value) (found by an attack
        // round: SELECT f.pg_read_file FROM lower('/etc/hostname') f read the file).
        if (e->kind == EntryKind::Function && !named_column(*e, names[1])) attribute_call(names[1]);
        return read_via(e, names[1]);
      }
      attribute_call(names[1]);  // col.f: a field of col, or f(col)
      return unqualified(names[0]);
    case 3:
      if (const RangeEntry* e = find_entry(names[1], names[0])) {
        if (row_function(e, names[2])) return;
        return add_read(e->rel, names[2]);
      }
      attribute_call(names[2]);
      if (const RangeEntry* e = find_entry(names[0], {})) {
        if (e->kind == EntryKind::Function && !named_column(*e, names[1])) attribute_call(names[1]);
        return add_read(e->rel, names[1]);
      }
      attribute_call(names[1]);
      return unqualified(names[0]);
    default:
      if (const RangeEntry* e = find_entry(names[2], names[1])) {
        if (row_function(e, names[3])) return;
        return add_read(e->rel, names[3]);
      }
      attribute_call(names[named - 1]);
      if (const RangeEntry* e = find_entry(names[0], {})) return add_read(e->rel, names[1]);
      return unqualified(names[0]);
  }
}

void Walker::function_named(const JValue& funcname) {
  // A function a DDL statement names for the server to call later, whenever the aggregate,
  // operator, cast, type or handler it defines is used: checked as a call with unknown arguments
  // (set_config: any setting), and the statement runs code the proxy will not see being called.
  if (!funcname.is_array() || funcname.count == 0) return;
  add_function(funcname);
  out_.opaque_code = true;
  std::string name = lower(string_node(funcname.items[funcname.count - 1]));
  if (one_of(name, kFileFunctions)) out_.server_file_access = true;
  if (name.rfind("dblink", 0) == 0) out_.remote_access = true;
  if (name == "set_config" && !plan_only_) {
    add_setting("*");
    add_kind(StatementKind::Set);
  }
}

void Walker::func_call(const JValue& body) {
  const JValue* funcname = body.get("funcname");
  if (funcname && funcname->is_array() && funcname->count > 0) {
    add_function(*funcname);
    std::string name = lower(string_node(funcname->items[funcname->count - 1]));
    if (one_of(name, kFileFunctions)) out_.server_file_access = true;
    if (name.rfind("dblink", 0) == 0) out_.remote_access = true;
    if (one_of(name, kDynamicSqlFunctions)) out_.opaque_code = true;
    // pg_notify() is NOTIFY: a rule on the statement kind covers it (found by adversarial testing).
    if (name == "pg_notify" && !plan_only_) add_kind(StatementKind::Notify);
    if (name == "set_config" && !plan_only_) {
      // Inside DDL (a view, a default, a check, a generated column) it runs later, in other
      // statements that never name it (found by adversarial testing: a view changed the
      // search_path of whoever read it).
      for (auto k : out_.kinds)
        if (k == StatementKind::Create || k == StatementKind::Alter) out_.opaque_code = true;
      const JValue* args = body.get("args");
      std::string_view setting;
      bool literal = false;
      if (args && args->is_array() && args->count > 0 && args->items[0].node_name() == "A_Const") {
        const JValue* sval = args->items[0].node_body()->get("sval");
        if (sval) {
          setting = sval->get_str("sval");
          literal = true;
        }
      } else if (args && args->is_array() && args->count > 0 && !pg_settings_name_.empty() &&
                 name_column(&args->items[0])) {
        // set_config(name, ...) FROM pg_settings WHERE name = 'x': sets x (pg_dump does this).
        setting = pg_settings_name_;
        literal = true;
      }
      if (!literal) {
        add_setting("*");
        out_.opaque_code = true;
        out_.role_change = true;  // any setting: the role, or replica mode among them (fail closed)
        add_kind(StatementKind::Set);
      } else {
        std::string l = lower(setting);
        add_setting(l);
        if (l == "role" || l == "session_authorization") {
          add_kind(StatementKind::SetRole);
          out_.role_change = true;
        } else {
          add_kind(StatementKind::Set);
          // Replica mode turns off triggers (audit triggers among them) and foreign keys, as SET
          // does (found by adversarial testing: set_config got past guardrail.privileges).
          if (l == "session_replication_role") out_.role_change = true;
        }
      }
    }
  }
  walk_member(body, "args");
  walk_member(body, "agg_order");
  walk_member(body, "agg_filter");
  walk_member(body, "over");
}

void Walker::def_elem(const JValue& body) {
  if (in_ddl_) {
    std::string_view name = body.get_str("defname");
    if (name == "program") out_.server_program = true;
    if (name == "filename") out_.server_file_access = true;
  }
  walk_member(body, "arg");
}

void Walker::generic_range_var(const JValue& rv) {
  add_access(rel(rv.get_str("schemaname"), rv.get_str("relname")), generic_access_);
}

void Walker::range_var_from(const JValue& rv) {
  std::string_view schema = rv.get_str("schemaname");
  std::string_view name = rv.get_str("relname");
  std::string_view alias = alias_name(rv);
  if (const Cte* cte = schema.empty() ? cte_visible(name) : nullptr) {
    Columns columns = cte->columns;
    if (const JValue* a = rv.get("alias")) apply_alias_columns(columns, a->get("colnames"));
    add_entry(alias.empty() ? name : alias, {}, -1, !alias.empty(), EntryKind::Cte).columns = std::move(columns);
    return;
  }
  int r = rel(schema, name);
  add_access(r, kRead);
  if (const JValue* a = rv.get("alias"); a && non_empty_array(a->get("colnames"))) {
    // `t AS c(x, y)` renames the table's columns by position, which only the catalog knows: any
    // column may be read under another name (found by adversarial testing).
    rels_[static_cast<std::size_t>(r)].all = true;
  }
  if (alias.empty()) {
    add_entry(name, schema, r, false);
  } else {
    add_entry(alias, {}, r, true);
  }
}

void Walker::from_item(const JValue& item) {
  const JValue* body = item.node_body();
  if (!body) {
    if (looks_like_range_var(item)) range_var_from(item);
    return;
  }
  std::string_view name = item.node_name();
  if (name == "RangeVar") return range_var_from(*body);
  if (name == "JoinExpr") {
    if (levels_.empty()) levels_.emplace_back();
    std::size_t before = levels_.back().entries.size();
    if (const JValue* l = body->get("larg")) from_item(*l);
    std::size_t mid = levels_.back().entries.size();
    if (const JValue* r = body->get("rarg")) from_item(*r);
    std::size_t after = levels_.back().entries.size();
    if (body->get_bool("isNatural")) {
      // NATURAL JOIN compares every column the two sides share, which only the catalog knows:
      // all columns of both are read (found by adversarial testing: it tested guessed values of a
      // classified column that WHERE would have been refused for).
      for (std::size_t i = before; i < after; ++i) {
        const RangeEntry& e = levels_.back().entries[i];
        if (e.rel >= 0) rels_[static_cast<std::size_t>(e.rel)].all = true;
        for (int jr : e.join_rels) rels_[static_cast<std::size_t>(jr)].all = true;
      }
    }
    if (const JValue* using_cols = body->get("usingClause"); using_cols && using_cols->is_array()) {
      for (const JValue& c : *using_cols) {
        std::string_view col = string_node(c);
        for (auto [from, to] : {std::pair{before, mid}, std::pair{mid, after}}) {
          if (to - from == 1) {
            add_read(levels_.back().entries[from].rel, col);
          } else if (to - from > 1) {
            unresolved_.push_back(col);
          }
        }
      }
    }
    walk_member(*body, "quals");
    std::string_view alias = alias_name(*body);
    if (!alias.empty()) {
      std::vector<int> inside;
      for (std::size_t i = before; i < after; ++i) {
        const RangeEntry& e = levels_.back().entries[i];
        if (e.rel >= 0) inside.push_back(e.rel);
        inside.insert(inside.end(), e.join_rels.begin(), e.join_rels.end());
      }
      add_entry(alias, {}, -1, true, EntryKind::Join).join_rels = std::move(inside);
      if (const JValue* a = body->get("alias"); a && non_empty_array(a->get("colnames")))
        for (int r : levels_.back().entries.back().join_rels) rels_[static_cast<std::size_t>(r)].all = true;
    }
    return;
  }
  if (name == "RangeSubselect") {
    if (levels_.empty()) levels_.emplace_back();
    bool lateral = body->get_bool("lateral");
    std::size_t level = levels_.size() - 1;
    bool was_hidden = levels_[level].hidden;
    if (!lateral) levels_[level].hidden = true;
    Columns columns;
    if (const JValue* sub = body->get("subquery")) {
      if (const JValue* sb = sub->node_body()) {
        if (!statement(sub->node_name(), *sb, Mode::Nested)) walk(*sub);
        columns = output_columns(*sb, sub->node_name());
      }
    }
    levels_[level].hidden = was_hidden;
    if (const JValue* a = body->get("alias")) apply_alias_columns(columns, a->get("colnames"));
    add_entry(alias_name(*body), {}, -1, true, EntryKind::Subquery).columns = std::move(columns);
    return;
  }
  if (name == "RangeFunction") {
    walk_member(*body, "functions");
    std::string_view alias = alias_name(*body);
    // The first function's name (an unaliased entry's name) and its column definition list.
    std::string_view fn_name;
    const JValue* coldefs = body->get("coldeflist");
    if (const JValue* fns = body->get("functions"); fns && fns->is_array() && fns->count > 0) {
      const JValue* list = fns->items[0].node_body();
      const JValue* items = list ? list->get("items") : nullptr;
      if (items && items->is_array() && items->count > 0) {
        const JValue* fc = items->items[0].node_body();
        const JValue* fname = fc ? fc->get("funcname") : nullptr;
        if (fname && fname->is_array() && fname->count > 0) fn_name = string_node(fname->items[fname->count - 1]);
        if (!coldefs && items->count > 1 && items->items[1].is_array()) coldefs = &items->items[1];
      }
    }
    // A scalar function's one column takes the entry's name; `AS t(a, b)` names the first
    // columns; a column definition list names all of them.
    Columns columns;
    columns.names.push_back(alias.empty() ? fn_name : alias);
    if (const JValue* a = body->get("alias")) {
      apply_alias_columns(columns, a->get("colnames"));
      // Every name of the alias list is a column (WITH ORDINALITY AS a(relid, depth): depth too).
      if (const JValue* cn = a->get("colnames"); cn && cn->is_array())
        for (std::uint32_t i = std::uint32_t(columns.names.size()); i < cn->count; ++i)
          columns.names.push_back(string_node(cn->items[i]));
    }
    if (coldefs && coldefs->is_array() && coldefs->count > 0) {
      columns.names.clear();
      for (const JValue& cd : *coldefs) {
        if (const JValue* cb = cd.node_body()) columns.names.push_back(cb->get_str("colname"));
      }
      columns.known = true;
    }
    add_entry(alias.empty() ? fn_name : alias, {}, -1, true, EntryKind::Function).columns = std::move(columns);
    return;
  }
  if (name == "RangeTableSample") {
    if (const JValue* r = body->get("relation")) from_item(*r);
    walk_member(*body, "args");
    walk_member(*body, "repeatable");
    return;
  }
  if (name == "RangeTableFunc") {
    walk_member(*body, "docexpr");
    walk_member(*body, "rowexpr");
    walk_member(*body, "columns");
    add_entry(alias_name(*body), {}, -1, true, EntryKind::Function);
    return;
  }
  walk(item);
}

std::optional<std::int64_t> Walker::source_int(const JValue& a_const) const {
  // libpg_query 15-4.0 writes a negative integer constant as "ival":{} (as if it were 0), so
  // the value is read back from the statement text at the constant's location.
  auto loc = a_const.get_int("location");
  if (!loc || *loc < 0 || static_cast<std::size_t>(*loc) >= input_.size()) return std::nullopt;
  std::string_view s = input_.substr(static_cast<std::size_t>(*loc));
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    negative = true;
    s.remove_prefix(1);
    while (!s.empty() && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r')) s.remove_prefix(1);
  }
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  if (digits == 0 || digits > 18) return std::nullopt;
  if (digits < s.size()) {
    char next = s[digits];
    if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || next == '_' || next == '.') {
      return std::nullopt;
    }
  }
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + digits, v);
  return negative ? -v : v;
}

namespace {

struct Const {
  enum Kind : std::uint8_t { Int, Num, Str, Bits, Bool } kind = Int;
  std::int64_t i = 0;
  std::string_view s;
  bool b = false;
};

}  // namespace

// True when l and r are constants (possibly cast) with the same value; `known` is false when
// either side is not a constant the analyzer can compare.
bool Walker::constant_equal(const JValue& l, const JValue& r, bool& known) const {
  known = false;
  std::string_view ln = l.node_name();
  std::string_view rn = r.node_name();
  if (ln != rn) return false;
  const JValue* lb = l.node_body();
  const JValue* rb = r.node_body();
  if (!lb || !rb) return false;
  if (ln == "TypeCast") {
    const JValue* lt = lb->get("typeName");
    const JValue* rt = rb->get("typeName");
    const JValue* la = lb->get("arg");
    const JValue* ra = rb->get("arg");
    if (!lt || !rt || !la || !ra) return false;
    bool inner_known = false;
    bool eq = constant_equal(*la, *ra, inner_known);
    if (!inner_known) return false;
    if (!same_tree(*lt, *rt)) return false;  // different casts: not compared
    known = true;
    return eq;
  }
  if (ln != "A_Const") return false;
  auto value = [this](const JValue& body) -> std::optional<Const> {
    if (body.get_bool("isnull")) return std::nullopt;
    if (const JValue* v = body.get("ival")) {
      if (auto i = v->get_int("ival")) return Const{Const::Int, *i, {}, false};
      if (auto i = source_int(body)) return Const{Const::Int, *i, {}, false};
      return std::nullopt;
    }
    if (const JValue* v = body.get("fval")) return Const{Const::Num, 0, v->get_str("fval"), false};
    if (const JValue* v = body.get("sval")) return Const{Const::Str, 0, v->get_str("sval"), false};
    if (const JValue* v = body.get("bsval")) return Const{Const::Bits, 0, v->get_str("bsval"), false};
    if (const JValue* v = body.get("boolval")) return Const{Const::Bool, 0, {}, v->get_bool("boolval")};
    return std::nullopt;
  };
  auto a = value(*lb);
  auto b = value(*rb);
  if (!a || !b || a->kind != b->kind) return false;
  switch (a->kind) {
    case Const::Int:
      known = true;
      return a->i == b->i;
    case Const::Bool:
      known = true;
      return a->b == b->b;
    case Const::Str:
    case Const::Bits:
      known = true;
      return a->s == b->s;
    case Const::Num:
      // 1.0 and 1.00 are equal numerics: only identical spellings are known.
      if (a->s != b->s) return false;
      known = true;
      return true;
  }
  return false;
}

Truth Walker::const_compare(const JValue& l, const JValue& r, std::string_view op) const {
  if (op == "=" || op == "<>" || op == "!=") {
    bool known = false;
    bool eq = constant_equal(l, r, known);
    if (known) return (eq == (op == "=")) ? Truth::True : Truth::False;
    // The same column (or the same reference) on both sides: x = x.
    if (op == "=" && l.node_name() == "ColumnRef" && same_tree(l, r)) return Truth::True;
    return Truth::Unknown;
  }
  // Ordering comparisons only between two integer constants.
  if (l.node_name() != "A_Const" || r.node_name() != "A_Const") return Truth::Unknown;
  auto int_of = [this](const JValue& n) -> std::optional<std::int64_t> {
    const JValue* b = n.node_body();
    const JValue* v = b->get("ival");
    if (!v) return std::nullopt;
    if (auto i = v->get_int("ival")) return i;
    return source_int(*b);
  };
  auto a = int_of(l);
  auto b = int_of(r);
  if (!a || !b) return Truth::Unknown;
  bool result = false;
  if (op == "<") {
    result = *a < *b;
  } else if (op == "<=") {
    result = *a <= *b;
  } else if (op == ">") {
    result = *a > *b;
  } else if (op == ">=") {
    result = *a >= *b;
  } else {
    return Truth::Unknown;
  }
  return result ? Truth::True : Truth::False;
}

Truth Walker::eval(const JValue& expr) const {
  std::string_view name = expr.node_name();
  const JValue* b = expr.node_body();
  if (!b) return Truth::Unknown;
  if (name == "A_Const") {
    if (const JValue* v = b->get("boolval")) return v->get_bool("boolval") ? Truth::True : Truth::False;
    return Truth::Unknown;
  }
  if (name == "TypeCast") {
    const JValue* type = b->get("typeName");
    const JValue* arg = b->get("arg");
    if (!type || !arg || !is_bool_type(*type)) return Truth::Unknown;
    const JValue* ab = arg->node_body();
    if (arg->node_name() == "A_Const" && ab) {
      if (const JValue* s = ab->get("sval")) return parse_bool_text(s->get_str("sval"));
      if (const JValue* i = ab->get("ival")) {
        auto v = i->get_int("ival");
        if (!v) v = source_int(*ab);
        if (!v) return Truth::Unknown;
        return *v != 0 ? Truth::True : Truth::False;
      }
    }
    return eval(*arg);
  }
  if (name == "BoolExpr") {
    std::string_view op = b->get_str("boolop");
    const JValue* args = b->get("args");
    if (!args || !args->is_array() || args->count == 0) return Truth::Unknown;
    if (op == "NOT_EXPR") return negate(eval(args->items[0]));
    bool is_and = op == "AND_EXPR";
    if (!is_and && op != "OR_EXPR") return Truth::Unknown;
    bool all_decisive = true;  // AND: all true; OR: all false
    for (const JValue& a : *args) {
      Truth t = eval(a);
      if (is_and && t == Truth::False) return Truth::False;
      if (!is_and && t == Truth::True) return Truth::True;
      if (t != (is_and ? Truth::True : Truth::False)) all_decisive = false;
    }
    if (!is_and) {
      // x IS NULL OR x IS NOT NULL
      for (const JValue& a : *args) {
        const JValue* na = a.node_body();
        if (a.node_name() != "NullTest" || na->get_str("nulltesttype") != "IS_NULL") continue;
        for (const JValue& c : *args) {
          const JValue* nc = c.node_body();
          if (c.node_name() != "NullTest" || nc->get_str("nulltesttype") != "IS_NOT_NULL") continue;
          const JValue* x = na->get("arg");
          const JValue* y = nc->get("arg");
          if (x && y && same_tree(*x, *y)) return Truth::True;
        }
      }
    }
    if (all_decisive) return is_and ? Truth::True : Truth::False;
    return Truth::Unknown;
  }
  if (name == "A_Expr") {
    std::string_view kind = b->get_str("kind");
    const JValue* l = b->get("lexpr");
    const JValue* r = b->get("rexpr");
    const JValue* opname = b->get("name");
    if (!l || !r || !opname || !opname->is_array() || opname->count != 1) return Truth::Unknown;
    std::string_view op = string_node(opname->items[0]);
    if (kind == "AEXPR_OP") return const_compare(*l, *r, op);
    if (kind == "AEXPR_NOT_DISTINCT" || kind == "AEXPR_DISTINCT") {
      bool known = false;
      bool eq = constant_equal(*l, *r, known);
      if (!known) eq = l->node_name() == "ColumnRef" && same_tree(*l, *r);
      if (!known && !eq) return Truth::Unknown;
      bool not_distinct = kind == "AEXPR_NOT_DISTINCT";
      return (eq == not_distinct) ? Truth::True : Truth::False;
    }
    return Truth::Unknown;
  }
  if (name == "NullTest") {
    const JValue* arg = b->get("arg");
    const JValue* ab = arg ? arg->node_body() : nullptr;
    if (!ab || arg->node_name() != "A_Const") return Truth::Unknown;
    bool is_null = ab->get_bool("isnull");
    bool test_null = b->get_str("nulltesttype") == "IS_NULL";
    return is_null == test_null ? Truth::True : Truth::False;
  }
  if (name == "BooleanTest") {
    const JValue* arg = b->get("arg");
    if (!arg) return Truth::Unknown;
    Truth v = eval(*arg);
    if (v == Truth::Unknown) return Truth::Unknown;
    std::string_view t = b->get_str("booltesttype");
    bool val = v == Truth::True;
    if (t == "IS_TRUE" || t == "IS_NOT_FALSE") return val ? Truth::True : Truth::False;
    if (t == "IS_FALSE" || t == "IS_NOT_TRUE") return val ? Truth::False : Truth::True;
    return Truth::Unknown;
  }
  if (name == "SubLink") {
    // EXISTS (SELECT <anything>) with no FROM, WHERE, HAVING, LIMIT or set operation.
    if (b->get_str("subLinkType") != "EXISTS_SUBLINK") return Truth::Unknown;
    const JValue* sub = b->get("subselect");
    const JValue* s = sub ? sub->node_body() : nullptr;
    if (!s) return Truth::Unknown;
    std::string_view op = s->get_str("op");
    if ((!op.empty() && op != "SETOP_NONE") || s->get("fromClause") || s->get("whereClause") ||
        s->get("havingClause") || s->get("limitCount") || s->get("limitOffset") || s->get("valuesLists") ||
        s->get("groupClause")) {
      return Truth::Unknown;
    }
    return Truth::True;
  }
  return Truth::Unknown;
}

}  // namespace gh::sql::detail
