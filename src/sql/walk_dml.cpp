// SELECT, INSERT, UPDATE, DELETE, MERGE: scopes, targets, CTEs, RETURNING, writes.
#include <algorithm>

#include "sql/walker.h"

namespace gh::sql::detail {

namespace {

// Restores the visible CTE names when the statement that declared them ends.
template <class Ctes>
class CteScope {
 public:
  explicit CteScope(Ctes& ctes) : ctes_(ctes), size_(ctes.size()) {}
  ~CteScope() { ctes_.resize(size_); }
  CteScope(const CteScope&) = delete;
  CteScope& operator=(const CteScope&) = delete;

 private:
  Ctes& ctes_;
  std::size_t size_;
};

}  // namespace

namespace {
std::string_view sval_of(const JValue* v) {
  if (!v || v->node_name() == "") return {};
  if (v->node_name() == "String") return v->node_body()->get_str("sval");
  if (v->node_name() == "A_Const") {
    const JValue* sval = v->node_body()->get("sval");
    return sval ? sval->get_str("sval") : std::string_view{};
  }
  return {};
}

}  // namespace

bool Walker::name_column(const JValue* v) {
  // `name` or `pg_settings.name`: a column of that name qualified by anything else may be another
  // FROM entry's or an outer query's (found by an attack round: set_config(o.name, ...) FROM
  // pg_settings WHERE name = 'search_path', with o.name = 'gatehouse.identity' from outside).
  if (!v || v->node_name() != "ColumnRef") return false;
  const JValue* fields = v->node_body()->get("fields");
  if (!fields || !fields->is_array() || fields->count < 1 || fields->count > 2 ||
      sval_of(&fields->items[fields->count - 1]) != "name")
    return false;
  return fields->count == 1 || sval_of(&fields->items[0]) == pg_settings_qualifier_;
}

// WHERE exactly name = '<literal>' (either side): the literal; empty otherwise.
std::string_view Walker::name_equals_literal(const JValue* where) {
  if (!where || where->node_name() != "A_Expr") return {};
  const JValue* e = where->node_body();
  const JValue* op = e->get("name");
  if (e->get_str("kind") != "AEXPR_OP" || !op || !op->is_array() || op->count != 1 || sval_of(&op->items[0]) != "=")
    return {};
  const JValue* l = e->get("lexpr");
  const JValue* r = e->get("rexpr");
  if (name_column(l) && r && r->node_name() == "A_Const") return sval_of(r);
  if (name_column(r) && l && l->node_name() == "A_Const") return sval_of(l);
  return {};
}

std::string_view Walker::pg_settings_row(const JValue& b) {
  // FROM exactly pg_settings (or pg_catalog.pg_settings), WHERE exactly name = '<literal>'.
  const JValue* from = b.get("fromClause");
  if (!from || !from->is_array() || from->count != 1 || from->items[0].node_name() != "RangeVar") return {};
  const JValue* rv = from->items[0].node_body();
  const auto schema = rv->get_str("schemaname");
  if (rv->get_str("relname") != "pg_settings" || !(schema.empty() || schema == "pg_catalog")) return {};
  const JValue* alias = rv->get("alias");
  const std::string_view aliasname = alias ? alias->get_str("aliasname") : std::string_view();
  pg_settings_qualifier_ = aliasname.empty() ? std::string_view("pg_settings") : aliasname;
  return name_equals_literal(b.get("whereClause"));
}

std::string_view Walker::pg_settings_update_name(const JValue& b) {
  // UPDATE pg_settings ... WHERE exactly name = '<literal>' (no FROM).
  const JValue* from = b.get("fromClause");
  if (from && from->is_array() && from->count > 0) return {};
  return name_equals_literal(b.get("whereClause"));
}

void Walker::select_stmt(const JValue& b, Mode mode) {
  if (mode != Mode::Nested) add_kind(StatementKind::Select);
  CteScope cte_scope(ctes_);
  with_clause(b.get("withClause"));
  if (const JValue* into = b.get("intoClause")) {
    // SELECT ... INTO t creates and fills t.
    add_kind(StatementKind::Create);
    if (const JValue* r = into->get("rel")) {
      add_access(rel(r->get_str("schemaname"), r->get_str("relname")), kDdl | kInsert);
    }
  }
  std::string_view op = b.get_str("op");
  if (!op.empty() && op != "SETOP_NONE") {
    // Branches are embedded SelectStmt structs (no node wrapper).
    if (const JValue* l = b.get("larg")) select_stmt(*l, Mode::Nested);
    if (const JValue* r = b.get("rarg")) select_stmt(*r, Mode::Nested);
    push_level();  // ORDER BY / LIMIT of a set operation see only its output columns
    walk_member(b, "sortClause");
    walk_member(b, "limitOffset");
    walk_member(b, "limitCount");
    pop_level();
    return;
  }
  push_level();
  walk_member(b, "valuesLists");
  if (const JValue* from = b.get("fromClause"); from && from->is_array()) {
    for (const JValue& item : *from) from_item(item);
  }
  const auto outer_settings_name = pg_settings_name_;
  const auto outer_settings_qualifier = pg_settings_qualifier_;
  pg_settings_name_ = pg_settings_row(b);
  walk_member(b, "targetList");
  pg_settings_name_ = outer_settings_name;
  pg_settings_qualifier_ = outer_settings_qualifier;
  walk_member(b, "whereClause");
  walk_member(b, "groupClause");
  walk_member(b, "havingClause");
  walk_member(b, "windowClause");
  walk_member(b, "distinctClause");
  order_by(b);
  walk_member(b, "limitOffset");
  walk_member(b, "limitCount");
  // lockingClause names FROM entries (FOR UPDATE OF t): nothing new to record.
  pop_level();
}

// RETURNING is walked in the statement's own scope (the target, and FROM/USING items).
// ORDER BY resolves a bare name against the select list's output names first: such a name
// reads nothing new (what it names was walked with the select list).
void Walker::order_by(const JValue& b) {
  const JValue* sort = b.get("sortClause");
  if (!sort || !sort->is_array()) return;
  std::vector<std::string_view> outputs;
  if (const JValue* tl = b.get("targetList"); tl && tl->is_array()) {
    for (const JValue& t : *tl) {
      const JValue* rt = t.node_body();
      if (!rt) continue;
      std::string_view n = rt->get_str("name");
      if (n.empty()) {
        if (const JValue* val = rt->get("val")) n = figure_colname(*val);
      }
      if (!n.empty()) outputs.push_back(n);
    }
  }
  for (const JValue& item : *sort) {
    const JValue* sb = item.node_body();
    const JValue* expr = sb ? sb->get("node") : nullptr;
    const JValue* cb = expr && expr->node_name() == "ColumnRef" ? expr->node_body() : nullptr;
    const JValue* fields = cb ? cb->get("fields") : nullptr;
    if (fields && fields->is_array() && fields->count == 1 && fields->items[0].node_name() == "String") {
      std::string_view n = fields->items[0].node_body()->get_str("sval");
      if (std::find(outputs.begin(), outputs.end(), n) != outputs.end()) continue;
    }
    walk(item);
  }
}

void Walker::returning(const JValue& b) {
  const JValue* list = b.get("returningList");
  if (!non_empty_array(list)) return;
  out_.returning = true;
  walk(*list);
}

void Walker::insert_stmt(const JValue& b) {
  add_kind(StatementKind::Insert);
  CteScope cte_scope(ctes_);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  if (!rv) return;
  int target = rel(rv->get_str("schemaname"), rv->get_str("relname"));
  add_access(target, kInsert);
  const JValue* cols = b.get("cols");
  if (non_empty_array(cols)) {
    for (const JValue& c : *cols) {
      if (const JValue* rt = c.node_body()) add_written(target, rt->get_str("name"));
    }
  } else {
    rels_[static_cast<std::size_t>(target)].all = true;
  }
  if (const JValue* src = b.get("selectStmt")) {
    // The source cannot see the target table.
    if (const JValue* sb = src->node_body()) {
      if (!statement(src->node_name(), *sb, Mode::Nested)) walk(*src);
    }
  }
  if (const JValue* oc = b.get("onConflictClause")) {
    push_level();
    add_target_entry(*rv, target);
    add_entry("excluded", {}, -1, true, EntryKind::Pseudo).columns.known = true;  // qualified use only
    if (const JValue* infer = oc->get("infer")) walk_member(*infer, "whereClause");
    if (oc->get_str("action") == "ONCONFLICT_UPDATE") {
      add_kind(StatementKind::Update);
      add_access(target, kUpdate);
      if (const JValue* tl = oc->get("targetList"); tl && tl->is_array()) {
        for (const JValue& t : *tl) {
          const JValue* rt = t.node_body();
          if (!rt) continue;
          add_written(target, rt->get_str("name"));
          walk_member(*rt, "val");
        }
      }
      walk_member(*oc, "whereClause");
    }
    pop_level();
  }
  push_level();
  add_target_entry(*rv, target);
  returning(b);
  pop_level();
}

void Walker::update_stmt(const JValue& b) {
  add_kind(StatementKind::Update);
  CteScope cte_scope(ctes_);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  if (!rv) return;
  int target = rel(rv->get_str("schemaname"), rv->get_str("relname"));
  add_access(target, kUpdate);
  if (const auto schema = rv->get_str("schemaname");
      rv->get_str("relname") == "pg_settings" && (schema.empty() || schema == "pg_catalog") &&
      !plan_only_) {
    // UPDATE pg_settings is set_config for each row it updates (a rule of the view): the setting
    // is the one WHERE name = '<literal>' names, any setting otherwise.
    const std::string_view one = pg_settings_update_name(b);
    add_kind(StatementKind::Set);
    if (one.empty()) {
      add_setting("*");
      out_.opaque_code = true;
      out_.role_change = true;  // any setting: the role, or replica mode among them (fail closed)
    } else {
      std::string l(one);
      for (char& c : l)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
      add_setting(l);
      if (l == "role" || l == "session_authorization") {
        add_kind(StatementKind::SetRole);
        out_.role_change = true;
      } else if (l == "session_replication_role") {
        out_.role_change = true;  // replica mode turns off triggers and foreign keys, as SET does
      }
    }
  }
  push_level();
  add_target_entry(*rv, target);
  if (const JValue* from = b.get("fromClause"); from && from->is_array()) {
    for (const JValue& item : *from) from_item(item);
  }
  if (const JValue* tl = b.get("targetList"); tl && tl->is_array()) {
    for (const JValue& t : *tl) {
      const JValue* rt = t.node_body();
      if (!rt) continue;
      add_written(target, rt->get_str("name"));
      walk_member(*rt, "indirection");
      walk_member(*rt, "val");
    }
  }
  const JValue* where = b.get("whereClause");
  if (where) walk(*where);
  add_write(StatementKind::Update, target, where);
  returning(b);
  pop_level();
}

void Walker::delete_stmt(const JValue& b) {
  add_kind(StatementKind::Delete);
  CteScope cte_scope(ctes_);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  if (!rv) return;
  int target = rel(rv->get_str("schemaname"), rv->get_str("relname"));
  add_access(target, kDelete);
  push_level();
  add_target_entry(*rv, target);
  if (const JValue* from = b.get("usingClause"); from && from->is_array()) {
    for (const JValue& item : *from) from_item(item);
  }
  const JValue* where = b.get("whereClause");
  if (where) walk(*where);
  add_write(StatementKind::Delete, target, where);
  returning(b);
  pop_level();
}

void Walker::merge_stmt(const JValue& b) {
  add_kind(StatementKind::Merge);
  CteScope cte_scope(ctes_);
  with_clause(b.get("withClause"));
  const JValue* rv = b.get("relation");
  if (!rv) return;
  int target = rel(rv->get_str("schemaname"), rv->get_str("relname"));
  push_level();
  if (const JValue* src = b.get("sourceRelation")) from_item(*src);
  add_target_entry(*rv, target);
  const JValue* on = b.get("joinCondition");
  if (on) walk(*on);
  // An ON condition that does not tell the target's rows apart matches all of them (or none).
  const std::string_view target_as = target_name(target);
  bool on_true = on && may_select_all(*on, target_as);
  if (const JValue* whens = b.get("mergeWhenClauses"); whens && whens->is_array()) {
    for (const JValue& w : *whens) {
      const JValue* mw = w.node_body();
      if (!mw) continue;
      const JValue* cond = mw->get("condition");
      if (cond) walk(*cond);
      std::string_view cmd = mw->get_str("commandType");
      const JValue* tl = mw->get("targetList");
      if (cmd == "CMD_UPDATE") {
        add_kind(StatementKind::Update);
        add_access(target, kUpdate);
        if (tl && tl->is_array()) {
          for (const JValue& t : *tl) {
            const JValue* rt = t.node_body();
            if (!rt) continue;
            add_written(target, rt->get_str("name"));
            walk_member(*rt, "val");
          }
        }
      } else if (cmd == "CMD_DELETE") {
        add_kind(StatementKind::Delete);
        add_access(target, kDelete);
      } else if (cmd == "CMD_INSERT") {
        add_kind(StatementKind::Insert);
        add_access(target, kInsert);
        if (non_empty_array(tl)) {
          for (const JValue& t : *tl) {
            if (const JValue* rt = t.node_body()) add_written(target, rt->get_str("name"));
          }
        } else {
          rels_[static_cast<std::size_t>(target)].all = true;
        }
        walk_member(*mw, "values");
      }
      if (cmd == "CMD_UPDATE" || cmd == "CMD_DELETE") {
        // The join condition (and the WHEN condition) bound the rows touched.
        StatementKind k = cmd == "CMD_UPDATE" ? StatementKind::Update : StatementKind::Delete;
        if (!plan_only_) {
          WriteFilter wf;
          wf.kind = k;
          const RelAcc& ra = rels_[static_cast<std::size_t>(target)];
          wf.relation =
              ra.schema.empty() ? std::string(ra.name) : std::string(ra.schema) + "." + std::string(ra.name);
          wf.has_where = true;
          wf.where_trivially_true = on_true && (!cond || may_select_all(*cond, target_as));
          out_.writes.push_back(std::move(wf));
        }
      }
    }
  }
  pop_level();
}

}  // namespace gh::sql::detail
