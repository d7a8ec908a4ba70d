// Statement dispatch and every statement that is not SELECT/INSERT/UPDATE/DELETE/MERGE.
#include <algorithm>
#include <unordered_map>

#include "sql/walker.h"

namespace gh::sql::detail {

namespace {

using K = StatementKind;

// How a statement handled by the table is walked.
enum class How : std::uint8_t {
  Ddl,       // RangeVars anywhere inside are relations with kDdl; options are DDL options
  Remote,    // as Ddl, and the statement reaches another server
  Role,      // role DDL: role_change
  NoAccess,  // RangeVars are relations named without reading or writing them (LOCK, REINDEX)
  NoWalk,    // nothing inside is of interest
};

struct Info {
  K kind;
  How how;
};

const std::unordered_map<std::string_view, Info>& table() {
  static const std::unordered_map<std::string_view, Info> t = {
      {"CreateStmt", {K::Create, How::Ddl}},
      {"IndexStmt", {K::Create, How::Ddl}},
      {"CreateSchemaStmt", {K::Create, How::Ddl}},
      {"CreateSeqStmt", {K::Create, How::Ddl}},
      {"CompositeTypeStmt", {K::Create, How::Ddl}},
      {"CreateEnumStmt", {K::Create, How::Ddl}},
      {"CreateRangeStmt", {K::Create, How::Ddl}},
      {"CreateDomainStmt", {K::Create, How::Ddl}},
      {"DefineStmt", {K::Create, How::Ddl}},
      {"RuleStmt", {K::Create, How::Ddl}},
      {"CreatePolicyStmt", {K::Create, How::Ddl}},
      {"CreatePublicationStmt", {K::Create, How::Ddl}},
      {"CreateStatsStmt", {K::Create, How::Ddl}},
      {"CreateCastStmt", {K::Create, How::Ddl}},
      {"CreateConversionStmt", {K::Create, How::Ddl}},
      {"CreateOpClassStmt", {K::Create, How::Ddl}},
      {"CreateOpFamilyStmt", {K::Create, How::Ddl}},
      {"CreatePLangStmt", {K::Create, How::Ddl}},
      {"CreateTransformStmt", {K::Create, How::Ddl}},
      {"CreateAmStmt", {K::Create, How::Ddl}},
      {"CreateFdwStmt", {K::Create, How::Ddl}},
      {"CreateForeignTableStmt", {K::Create, How::Ddl}},
      {"CreateSubscriptionStmt", {K::Create, How::Remote}},
      {"CreateUserMappingStmt", {K::Create, How::Remote}},
      {"ImportForeignSchemaStmt", {K::Create, How::Remote}},
      {"AlterDomainStmt", {K::Alter, How::Ddl}},
      {"AlterEnumStmt", {K::Alter, How::Ddl}},
      {"AlterExtensionStmt", {K::Alter, How::Ddl}},
      {"AlterExtensionContentsStmt", {K::Alter, How::Ddl}},
      {"AlterFdwStmt", {K::Alter, How::Ddl}},
      {"AlterFunctionStmt", {K::Alter, How::Ddl}},
      {"AlterObjectDependsStmt", {K::Alter, How::Ddl}},
      {"AlterObjectSchemaStmt", {K::Alter, How::Ddl}},
      {"AlterOwnerStmt", {K::Alter, How::Ddl}},
      {"AlterOperatorStmt", {K::Alter, How::Ddl}},
      {"AlterTypeStmt", {K::Alter, How::Ddl}},
      {"AlterPolicyStmt", {K::Alter, How::Ddl}},
      {"AlterPublicationStmt", {K::Alter, How::Ddl}},
      {"AlterSeqStmt", {K::Alter, How::Ddl}},
      {"AlterStatsStmt", {K::Alter, How::Ddl}},
      {"AlterTableSpaceOptionsStmt", {K::Alter, How::Ddl}},
      {"AlterTableMoveAllStmt", {K::Alter, How::Ddl}},
      {"AlterTSDictionaryStmt", {K::Alter, How::Ddl}},
      {"AlterTSConfigurationStmt", {K::Alter, How::Ddl}},
      {"AlterCollationStmt", {K::Alter, How::Ddl}},
      {"AlterEventTrigStmt", {K::Alter, How::Ddl}},
      {"AlterOpFamilyStmt", {K::Alter, How::Ddl}},
      {"RenameStmt", {K::Alter, How::Ddl}},
      {"AlterDatabaseStmt", {K::Alter, How::Ddl}},
      {"AlterDatabaseRefreshCollStmt", {K::Alter, How::Ddl}},
      {"AlterForeignServerStmt", {K::Alter, How::Remote}},
      {"AlterUserMappingStmt", {K::Alter, How::Remote}},
      {"AlterSubscriptionStmt", {K::Alter, How::Remote}},
      {"DropTableSpaceStmt", {K::Drop, How::Ddl}},
      {"DropSubscriptionStmt", {K::Drop, How::Ddl}},
      {"DropUserMappingStmt", {K::Drop, How::Ddl}},
      {"DropOwnedStmt", {K::Drop, How::Ddl}},
      {"DropdbStmt", {K::DropDatabase, How::Ddl}},
      {"CreatedbStmt", {K::CreateDatabase, How::Ddl}},
      {"CreateRoleStmt", {K::RoleChange, How::Role}},
      {"AlterRoleStmt", {K::RoleChange, How::Role}},
      {"DropRoleStmt", {K::RoleChange, How::Role}},
      {"GrantRoleStmt", {K::RoleChange, How::Role}},
      {"AlterDefaultPrivilegesStmt", {K::RoleChange, How::Role}},
      {"ReassignOwnedStmt", {K::RoleChange, How::Role}},
      {"VariableShowStmt", {K::Show, How::NoWalk}},
      {"FetchStmt", {K::Fetch, How::NoWalk}},
      {"ClosePortalStmt", {K::CloseCursor, How::NoWalk}},
      {"ListenStmt", {K::Listen, How::NoWalk}},
      {"NotifyStmt", {K::Notify, How::NoWalk}},
      {"UnlistenStmt", {K::Unlisten, How::NoWalk}},
      {"LockStmt", {K::Lock, How::NoAccess}},
      {"ReindexStmt", {K::Maintenance, How::NoAccess}},
      {"ClusterStmt", {K::Maintenance, How::NoAccess}},
      {"CheckPointStmt", {K::Maintenance, How::NoWalk}},
      {"RefreshMatViewStmt", {K::Maintenance, How::NoAccess}},
      {"ConstraintsSetStmt", {K::Other, How::NoWalk}},
  };
  return t;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view string_node(const JValue& v) {
  const JValue* b = v.node_body();
  return b && v.node_name() == "String" ? b->get_str("sval") : std::string_view{};
}

bool relation_object(std::string_view objtype) {
  return objtype == "OBJECT_TABLE" || objtype == "OBJECT_VIEW" || objtype == "OBJECT_MATVIEW" ||
         objtype == "OBJECT_INDEX" || objtype == "OBJECT_SEQUENCE" || objtype == "OBJECT_FOREIGN_TABLE";
}

// The name a VariableSetStmt changes: lower case, "all" for RESET ALL.
std::string setting_of(const JValue& set) {
  if (set.get_str("kind") == "VAR_RESET_ALL") return "all";
  return lower(set.get_str("name"));
}

// A DefElem's argument as a boolean: no argument means true (EXPLAIN (ANALYZE)).
bool def_elem_true(const JValue& def) {
  const JValue* arg = def.get("arg");
  if (!arg) return true;
  std::string_view n = arg->node_name();
  const JValue* b = arg->node_body();
  if (!b) return true;
  if (n == "Boolean") return b->get_bool("boolval");
  if (n == "Integer") return b->get_int("ival").value_or(0) != 0;
  std::string s;
  if (n == "String") {
    s = lower(b->get_str("sval"));
  } else if (n == "TypeName") {  // a bare word in reloptions (`security_barrier = off`)
    const JValue* names = b->get("names");
    if (names && names->is_array() && names->count == 1) s = lower(string_node(names->items[0]));
  } else {
    return true;
  }
  return !(s == "false" || s == "off" || s == "0" || s == "no" || s == "f" || s == "n" || s == "of");
}

// Restores the walking context when a nested statement ends.
struct Context {
  std::uint8_t& access;
  bool& ddl;
  std::uint8_t saved_access;
  bool saved_ddl;
  Context(std::uint8_t& a, bool& d) : access(a), ddl(d), saved_access(a), saved_ddl(d) {}
  ~Context() {
    access = saved_access;
    ddl = saved_ddl;
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

}  // namespace

void Walker::run(const JValue& stmt) {
  const JValue* body = stmt.node_body();
  levels_.clear();
  ctes_.clear();
  if (body && !statement(stmt.node_name(), *body, Mode::Top)) {
    add_kind(K::Other);
    in_ddl_ = true;
    walk(*body);
  }
  if (out_.kinds.empty()) out_.kinds.push_back(K::Other);
  finish();
}

bool Walker::statement(std::string_view name, const JValue& body, Mode mode) {
  if (name == "SelectStmt") {
    select_stmt(body, mode);
    return true;
  }
  if (name == "InsertStmt") {
    insert_stmt(body);
    return true;
  }
  if (name == "UpdateStmt") {
    update_stmt(body);
    return true;
  }
  if (name == "DeleteStmt") {
    delete_stmt(body);
    return true;
  }
  if (name == "MergeStmt") {
    merge_stmt(body);
    return true;
  }
  return utility(name, body, mode);
}

void Walker::qualified_name_relation(const JValue& list, std::uint8_t access, bool drop_last) {
  const JValue* b = list.node_body();
  const JValue* items = b ? b->get("items") : nullptr;
  if (!items || !items->is_array()) return;
  std::uint32_t n = items->count;
  if (drop_last) {
    if (n < 2) return;
    --n;
  }
  if (n == 0) return;
  std::string_view name = string_node(items->items[n - 1]);
  std::string_view schema = n >= 2 ? string_node(items->items[n - 2]) : std::string_view{};
  add_access(rel(schema, name), access);
}

void Walker::variable_set(const JValue& b, bool) {
  if (b.get_str("kind") == "VAR_SET_MULTI") {
    // SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...: the grammar's
    // pseudo-name stands for the parameters its options set.
    std::string_view multi = b.get_str("name");
    std::string prefix = multi == "SESSION CHARACTERISTICS" ? "default_" : "";
    add_kind(K::Set);
    bool any = false;
    if (const JValue* args = b.get("args"); args && args->is_array()) {
      for (const JValue& a : *args) {
        const JValue* d = a.node_body();
        if (a.node_name() != "DefElem" || !d) continue;
        add_setting(prefix + std::string(d->get_str("defname")));
        any = true;
      }
    }
    if (!any) add_setting(lower(multi));
    return;
  }
  std::string name = setting_of(b);
  if (name == "role" || name == "session_authorization") {
    add_kind(K::SetRole);
    out_.role_change = true;
  } else {
    add_kind(K::Set);
    // Replica mode turns off triggers (audit triggers among them) and foreign keys.
    if (name == "session_replication_role") out_.role_change = true;
  }
  add_setting(name);
  if ((name == "standard_conforming_strings" || name == "client_encoding") && b.get_str("kind") == "VAR_SET_VALUE") {
    const JValue* args = b.get("args");
    const JValue* v = args && args->is_array() && args->count == 1 ? args->items[0].node_body() : nullptr;
    if (!v || args->items[0].node_name() != "A_Const") return;
    std::string value;
    if (const JValue* sv = v->get("sval"))
      value = std::string(sv->get_str("sval"));
    else if (const JValue* iv = v->get("ival"))
      value = std::to_string(iv->get_int("ival").value_or(0));
    else
      return;
    if (name == "standard_conforming_strings") {
      const Truth t = parse_bool_text(value);
      if (t != Truth::Unknown) value = t == Truth::True ? "on" : "off";
    }
    out_.setting_values.emplace_back(name, std::move(value));
  }
}

void Walker::copy_stmt(const JValue& b) {
  bool from = b.get_bool("is_from");
  add_kind(from ? K::CopyFrom : K::CopyTo);
  if (b.get("filename")) {
    if (b.get_bool("is_program")) {
      out_.server_program = true;
    } else {
      out_.server_file_access = true;
    }
  }
  if (const JValue* rv = b.get("relation")) {
    int r = rel(rv->get_str("schemaname"), rv->get_str("relname"));
    add_access(r, from ? kInsert : kRead);
    const JValue* cols = b.get("attlist");
    if (cols && cols->is_array() && cols->count > 0) {
      for (const JValue& c : *cols) {
        if (from) {
          add_written(r, string_node(c));
        } else {
          add_read(r, string_node(c));
        }
      }
    } else {
      rels_[static_cast<std::size_t>(r)].all = true;
    }
    if (const JValue* where = b.get("whereClause")) {
      push_level();
      add_target_entry(*rv, r);
      walk(*where);
      pop_level();
    }
  }
  if (const JValue* q = b.get("query")) {
    if (const JValue* qb = q->node_body()) statement(q->node_name(), *qb, Mode::Wrapped);
  }
}

void Walker::explain_stmt(const JValue& b) {
  add_kind(K::Explain);
  bool analyze = false;
  if (const JValue* opts = b.get("options"); opts && opts->is_array()) {
    for (const JValue& o : *opts) {
      const JValue* d = o.node_body();
      if (d && d->get_str("defname") == "analyze") analyze = def_elem_true(*d);
    }
  }
  const JValue* q = b.get("query");
  const JValue* qb = q ? q->node_body() : nullptr;
  if (!qb) return;
  // Without ANALYZE the statement is planned, not run: its relations show as read, and its
  // kinds, writes and settings are not reported.
  bool saved = plan_only_;
  if (!analyze) plan_only_ = true;
  statement(q->node_name(), *qb, Mode::Wrapped);
  plan_only_ = saved;
}

namespace {

// DDL statements that name functions for the server to call later, and the options that do:
// CREATE AGGREGATE (sfunc ...), CREATE OPERATOR (function ...), CREATE TYPE (input ...), ALTER
// OPERATOR/TYPE SET (...), CREATE CAST ... WITH FUNCTION, CREATE CONVERSION ... FROM f, CREATE
// TRANSFORM, CREATE OPERATOR CLASS/FAMILY ... FUNCTION, CREATE LANGUAGE ... HANDLER,
// CREATE/ALTER FOREIGN DATA WRAPPER ... HANDLER/VALIDATOR, CREATE ACCESS METHOD ... HANDLER.
bool names_functions(std::string_view stmt) {
  static constexpr std::string_view kinds[] = {
      "DefineStmt",          "AlterOperatorStmt",   "AlterTypeStmt",   "CreateCastStmt",   "CreateRangeStmt",
      "CreateConversionStmt", "CreateTransformStmt", "CreateOpClassStmt", "AlterOpFamilyStmt",
      "CreatePLangStmt",     "CreateFdwStmt",       "AlterFdwStmt",    "CreateAmStmt",
  };
  return std::find(std::begin(kinds), std::end(kinds), stmt) != std::end(kinds);
}

bool function_option(std::string_view defname) {
  static constexpr std::string_view names[] = {
      "sfunc", "finalfunc", "combinefunc", "serialfunc", "deserialfunc", "msfunc", "minvfunc", "mfinalfunc",
      "function", "procedure", "restrict", "join", "input", "output", "receive", "send", "typmod_in",
      "typmod_out", "analyze", "subscript", "handler", "validator",
      // range types; text search templates and parsers
      "subtype_diff", "canonical", "init", "lexize", "start", "gettoken", "end", "lextypes", "headline",
  };
  return std::find(std::begin(names), std::end(names), lower(defname)) != std::end(names);
}

}  // namespace

void Walker::functions_named_in(const JValue& v) {
  if (v.is_array()) {
    for (const JValue& item : v) functions_named_in(item);
    return;
  }
  const JValue* b = v.node_body();
  if (!b) {
    // An embedded struct (no node wrapper): an ObjectWithArgs (CREATE CAST ... WITH FUNCTION,
    // CREATE TRANSFORM) names a function; otherwise its members.
    if (!v.is_object()) return;
    if (const JValue* names = v.get("objname")) {
      function_named(*names);
      return;
    }
    for (const char* key : {"func_name", "plhandler", "plinline", "plvalidator", "handler_name"})
      if (const JValue* names = v.get(key)) function_named(*names);
    for (std::uint32_t i = 0; i < v.count; ++i) functions_named_in(v.members[i].value);
    return;
  }
  const std::string_view n = v.node_name();
  if (n == "ObjectWithArgs") {
    if (const JValue* names = b->get("objname")) function_named(*names);
    return;
  }
  if (n == "DefElem" && function_option(b->get_str("defname"))) {
    if (const JValue* arg = b->get("arg")) {
      const JValue* ab = arg->node_body();
      if (arg->is_array()) {
        function_named(*arg);
      } else if (ab && arg->node_name() == "TypeName") {
        if (const JValue* names = ab->get("names")) function_named(*names);
      } else if (ab && arg->node_name() == "List") {
        if (const JValue* items = ab->get("items")) function_named(*items);
      } else if (ab) {
        functions_named_in(*arg);
      }
    }
    return;
  }
  for (const char* key : {"func_name", "plhandler", "plinline", "plvalidator", "handler_name"})
    if (const JValue* names = b->get(key)) function_named(*names);
  for (std::uint32_t i = 0; i < b->count; ++i) functions_named_in(b->members[i].value);
}

bool Walker::utility(std::string_view name, const JValue& b, Mode mode) {
  Context context(generic_access_, in_ddl_);
  auto nested = [&](std::string_view key) {
    const JValue* q = b.get(key);
    const JValue* qb = q ? q->node_body() : nullptr;
    if (qb && !statement(q->node_name(), *qb, Mode::Wrapped)) walk(*q);
  };
  auto ddl_walk = [&](std::uint8_t access) {
    generic_access_ = access;
    in_ddl_ = true;
    for (std::uint32_t i = 0; i < b.count; ++i) walk(b.members[i].value);
  };
  auto into_rel = [&](const JValue* rv, std::uint8_t access) {
    if (rv) add_access(rel(rv->get_str("schemaname"), rv->get_str("relname")), access);
  };
  // The roles a role statement changes or drops: as the server reads their names; "" for the
  // session's own role (CURRENT_USER, SESSION_USER, CURRENT_ROLE) and for ALTER ROLE ALL.
  auto role_altered = [&](const JValue* spec) {
    if (spec && spec->node_body() && spec->node_name() == "RoleSpec") spec = spec->node_body();
    const std::string_view type = spec ? spec->get_str("roletype") : std::string_view{};
    if (type == "ROLESPEC_PUBLIC") return;
    out_.roles_altered.push_back(type == "ROLESPEC_CSTRING" ? std::string(spec->get_str("rolename")) : std::string());
  };
  if (name == "CreateRoleStmt" || name == "AlterRoleStmt") {
    if (const JValue* options = b.get("options"); options && options->is_array())
      for (const JValue& o : *options)
        if (const JValue* d = o.node_body(); d && o.node_name() == "DefElem" && d->get_str("defname") == "password")
          out_.secret = true;
  }
  if (name == "AlterRoleStmt" || name == "AlterRoleSetStmt") {
    role_altered(b.get("role"));
  } else if (name == "DropRoleStmt") {
    if (const JValue* roles = b.get("roles"); roles && roles->is_array())
      for (const JValue& r : *roles) role_altered(&r);
  } else if (name == "RenameStmt" && b.get_str("renameType") == "OBJECT_ROLE") {
    out_.roles_altered.push_back(std::string(b.get_str("subname")));
  }

  if (names_functions(name) && !plan_only_) functions_named_in(b);
  // Any cast (WITH INOUT or WITHOUT FUNCTION too) changes what later expressions over a type do,
  // in statements that never name it: a cast of a table's row type to text-like types makes t.type
  // (attribute notation) read every column (found by adversarial testing). Opaque code, like a
  // cast WITH FUNCTION.
  if (name == "CreateCastStmt" && !plan_only_) out_.opaque_code = true;
  bool privilege_change = false;
  if (!plan_only_) {
    // Changes of who owns an object or of row-level security weaken what privileges and policies
    // (which can trust gatehouse.identity) protect: privilege changes, as GRANT is (found by
    // adversarial testing).
    bool privileges = name == "AlterOwnerStmt" || name == "CreatePolicyStmt" || name == "AlterPolicyStmt" ||
                      (name == "CreateSchemaStmt" && b.get("authrole")) ||
                      (name == "DropStmt" && b.get_str("removeType") == "OBJECT_POLICY");
    // A reloption that turns off a view's row-level security protections, in any statement.
    // reset: the options are being RESET (to off), whatever their values.
    const auto weakening_reloption = [](const JValue* options, bool reset) {
      if (options && options->node_name() == "List") options = options->node_body()->get("items");
      if (!options || !options->is_array()) return false;
      for (const JValue& o : *options) {
        const JValue* d = o.node_body();
        if (!d || o.node_name() != "DefElem") continue;
        const std::string_view n = d->get_str("defname");
        if ((n == "security_invoker" || n == "security_barrier") && (reset || !def_elem_true(*d))) return true;
      }
      return false;
    };
    if (name == "AlterTableStmt")
      if (const JValue* cmds = b.get("cmds"); cmds && cmds->is_array())
        for (const JValue& c : *cmds) {
          const JValue* cb = c.node_body();
          const std::string_view sub = cb ? cb->get_str("subtype") : std::string_view{};
          // Also (found by adversarial testing): a trigger or rule fired only in replica mode (that
          // is, never) or disabled; a child or partition attached to a parent the rules do not
          // name (rows then read and changed through the parent); a foreign key whose ON DELETE /
          // ON UPDATE action changes this table's rows when another table's change.
          if (sub == "AT_ChangeOwner" || sub == "AT_DisableRowSecurity" || sub == "AT_NoForceRowSecurity" ||
              sub == "AT_DisableTrig" || sub == "AT_DisableTrigAll" || sub == "AT_DisableTrigUser" ||
              sub == "AT_EnableReplicaTrig" || sub == "AT_DisableRule" || sub == "AT_EnableReplicaRule" ||
              ((sub == "AT_AddInherit" || sub == "AT_AttachPartition") && b.get_str("objtype") != "OBJECT_INDEX"))
            privileges = true;
          if ((sub == "AT_SetRelOptions" || sub == "AT_ResetRelOptions") && cb &&
              weakening_reloption(cb->get("def"), sub == "AT_ResetRelOptions"))
            privileges = true;
          if (sub == "AT_AddConstraint" && cb)
            if (const JValue* con = cb->get("def"); con && con->node_name() == "Constraint")
              if (const JValue* cn = con->node_body()) {
                const std::string_view upd = cn->get_str("fk_upd_action"), del = cn->get_str("fk_del_action");
                auto changes_rows = [](std::string_view a) { return a == "c" || a == "n" || a == "d"; };
                if (cn->get_str("contype") == "CONSTR_FOREIGN" && (changes_rows(upd) || changes_rows(del)))
                  privileges = true;
              }
        }
    if (name == "ViewStmt") {
      // CREATE OR REPLACE VIEW without security_invoker = true drops the option a replaced view had.
      const JValue* options = b.get("options");
      bool invoker = false;
      if (options && options->is_array())
        for (const JValue& o : *options)
          if (const JValue* d = o.node_body(); d && d->get_str("defname") == "security_invoker" && def_elem_true(*d))
            invoker = true;
      if (weakening_reloption(options, false) || (b.get_bool("replace") && !invoker)) privileges = true;
    }
    // Moving a table to another schema, or renaming a schema, moves its tables out of what
    // schema-qualified rules and classifications name.
    if (name == "AlterObjectSchemaStmt" ||
        (name == "RenameStmt" && b.get_str("renameType") == "OBJECT_SCHEMA"))
      privileges = true;
    if (name == "AlterFunctionStmt")
      if (const JValue* actions = b.get("actions"); actions && actions->is_array())
        for (const JValue& a : *actions)
          if (const JValue* d = a.node_body(); d && d->get_str("defname") == "security" && def_elem_true(*d))
            privileges = true;  // SECURITY DEFINER: runs as the function's owner (the target's login)
    privilege_change = privileges;
  }

  if (name == "RenameStmt" && !plan_only_) {
    // Renaming a column or a table moves it out of what name-based rules and classifications
    // name: it touches what it renames as a read and a write would, so that rules scoped to
    // either see it (found by adversarial testing: twice, reads and then writes).
    const std::string_view type = b.get_str("renameType");
    if (const JValue* rv = b.get("relation")) {
      const int r = rel(rv->get_str("schemaname"), rv->get_str("relname"));
      add_access(r, kDdl);
      if (type == "OBJECT_COLUMN") {
        add_read(r, b.get_str("subname"));
        add_written(r, b.get_str("subname"));
        add_access(r, kInsert | kUpdate);
      } else if (relation_object(type)) {
        rels_[static_cast<std::size_t>(r)].all = true;
        add_access(r, kRead | kInsert | kUpdate | kDelete | kTruncate);
      }
    }
  }

  if (name == "CreateStatsStmt" && !plan_only_) {
    // Extended statistics keep values of their columns (most common values) in pg_stats_ext.
    std::vector<int> rs;
    if (const JValue* rels = b.get("relations"); rels && rels->is_array())
      for (const JValue& item : *rels)
        if (const JValue* rv = item.node_body(); rv && item.node_name() == "RangeVar")
          rs.push_back(rel(rv->get_str("schemaname"), rv->get_str("relname")));
    if (const JValue* exprs = b.get("exprs"); exprs && exprs->is_array())
      for (const JValue& e : *exprs)
        if (const JValue* eb = e.node_body(); eb && e.node_name() == "StatsElem" && !eb->get_str("name").empty())
          for (int r : rs) add_read(r, eb->get_str("name"));
  }

  if (name == "CopyStmt") {
    copy_stmt(b);
  } else if (name == "ExplainStmt") {
    explain_stmt(b);
  } else if (name == "PrepareStmt") {
    add_kind(K::Prepare);
    out_.object_name = std::string(b.get_str("name"));
    nested("query");
  } else if (name == "ExecuteStmt") {
    // A statement prepared by another text is not visible here (the proxy maps names itself);
    // one prepared earlier in this text is.
    add_kind(K::Execute);
    out_.object_name = std::string(b.get_str("name"));
    executes_ = nullptr;
    if (prepared_) {
      for (auto it = prepared_->rbegin(); it != prepared_->rend(); ++it) {
        if (it->first == out_.object_name) {
          executes_ = &it->second;
          break;
        }
      }
    }
    // Its own arguments are judged as any expression (found by adversarial testing: their opaque
    // code was dropped when the proxy matched the name to a statement it had seen prepared).
    walk_member(b, "params");
    out_.opaque_args = out_.opaque_code;
    if (!executes_) out_.opaque_code = true;
  } else if (name == "DeallocateStmt") {
    add_kind(K::Deallocate);
    out_.object_name = std::string(b.get_str("name"));  // "" for DEALLOCATE ALL
  } else if (name == "DeclareCursorStmt") {
    add_kind(K::DeclareCursor);
    out_.object_name = std::string(b.get_str("portalname"));
    constexpr std::int64_t kCursorOptHold = 0x0020;  // CURSOR_OPT_HOLD (parsenodes.h): WITH HOLD
    if (auto o = b.get_int("options"); o && (*o & kCursorOptHold)) out_.cursor_with_hold = true;
    nested("query");
  } else if (name == "ClosePortalStmt") {
    add_kind(K::CloseCursor);
    out_.object_name = std::string(b.get_str("portalname"));  // "" for CLOSE ALL
  } else if (name == "CreateTableAsStmt") {
    add_kind(K::Create);
    const JValue* into = b.get("into");
    // WITH NO DATA creates the relation without filling it.
    into_rel(into ? into->get("rel") : nullptr, into && into->get_bool("skipData") ? kDdl : kDdl | kInsert);
    nested("query");
  } else if (name == "ViewStmt") {
    add_kind(K::Create);
    into_rel(b.get("view"), kDdl);
    nested("query");
  } else if (name == "CreateFunctionStmt") {
    add_kind(K::CreateFunction);
    out_.opaque_code = true;
    if (const JValue* opts = b.get("options"); opts && opts->is_array()) {
      for (const JValue& o : *opts) {
        const JValue* d = o.node_body();
        if (!d || d->get_str("defname") != "language") continue;
        const JValue* arg = d->get("arg");
        std::string lang = arg ? lower(string_node(*arg)) : std::string();
        if (lang == "c" || lang == "internal") out_.server_file_access = true;  // loads a server file
      }
    }
  } else if (name == "FetchStmt") {
    // FETCH and MOVE: the cursor (or extended-protocol portal) read, for the proxy to check.
    add_kind(K::Fetch);
    out_.object_name = std::string(b.get_str("portalname"));
  } else if (name == "DoStmt") {
    add_kind(K::Do);
    out_.opaque_code = true;
  } else if (name == "CallStmt") {
    add_kind(K::Call);
    if (const JValue* fc = b.get("funccall")) func_call(*fc);
  } else if (name == "VariableSetStmt") {
    variable_set(b, false);
  } else if (name == "AlterSystemStmt") {
    add_kind(K::AlterSystem);
    if (const JValue* s = b.get("setstmt")) add_setting(setting_of(*s));
  } else if (name == "AlterRoleSetStmt") {
    add_kind(K::RoleChange);
    out_.role_change = true;
    if (const JValue* s = b.get("setstmt")) add_setting(setting_of(*s));
  } else if (name == "AlterDatabaseSetStmt") {
    add_kind(K::Alter);
    if (const JValue* s = b.get("setstmt")) {
      const std::string setting = setting_of(*s);
      add_setting(setting);
      // A default for every later session on the database: as ALTER ROLE ... SET when it decides
      // who they run as, where unqualified names resolve or how their SQL is read.
      if (setting == "role" || setting == "session_authorization" || setting == "search_path" ||
          setting == "standard_conforming_strings" || setting == "client_encoding" || setting == "all" ||
          setting == "row_security" || setting == "session_replication_role") {
        add_kind(K::RoleChange);
        out_.role_change = true;
      }
    }
  } else if (name == "DiscardStmt") {
    add_kind(K::Discard);
    if (b.get_str("target") == "DISCARD_ALL") add_setting("all");
  } else if (name == "TransactionStmt") {
    std::string_view k = b.get_str("kind");
    out_.transaction_control = true;
    if (k == "TRANS_STMT_BEGIN" || k == "TRANS_STMT_START")
      out_.transaction_block = 1;
    else if (k == "TRANS_STMT_COMMIT" || k == "TRANS_STMT_ROLLBACK" || k == "TRANS_STMT_PREPARE")
      out_.transaction_block = b.get_bool("chain") && k != "TRANS_STMT_PREPARE" ? 1 : -1;
    if (k == "TRANS_STMT_BEGIN" || k == "TRANS_STMT_START") {
      add_kind(K::Begin);
    } else if (k == "TRANS_STMT_COMMIT" || k == "TRANS_STMT_COMMIT_PREPARED" || k == "TRANS_STMT_PREPARE") {
      add_kind(K::Commit);
    } else if (k == "TRANS_STMT_ROLLBACK" || k == "TRANS_STMT_ROLLBACK_PREPARED" || k == "TRANS_STMT_ROLLBACK_TO") {
      add_kind(K::Rollback);
    } else if (k == "TRANS_STMT_SAVEPOINT" || k == "TRANS_STMT_RELEASE") {
      add_kind(K::Savepoint);
    } else {
      add_kind(K::Other);
    }
  } else if (name == "TruncateStmt") {
    add_kind(K::Truncate);
    ddl_walk(kTruncate);
  } else if (name == "DropStmt") {
    add_kind(K::Drop);
    std::string_view type = b.get_str("removeType");
    // DROP POLICY/TRIGGER/RULE name ON t: [schema,] t, name — t loses a protection.
    bool on_table = type == "OBJECT_POLICY" || type == "OBJECT_TRIGGER" || type == "OBJECT_RULE";
    if (relation_object(type) || on_table) {
      if (const JValue* objs = b.get("objects"); objs && objs->is_array()) {
        for (const JValue& o : *objs) qualified_name_relation(o, kDdl, on_table);
      }
    }
  } else if (name == "CommentStmt" || name == "SecLabelStmt") {
    add_kind(K::Comment);
    std::string_view objtype = b.get_str("objtype");
    if (const JValue* obj = b.get("object")) {
      if (relation_object(objtype)) qualified_name_relation(*obj, kDdl, false);
      if (objtype == "OBJECT_COLUMN") qualified_name_relation(*obj, kDdl, true);
    }
  } else if (name == "GrantStmt") {
    add_kind(b.get_bool("is_grant") ? K::Grant : K::Revoke);
    if (b.get_str("targtype") == "ACL_TARGET_OBJECT") {
      std::string_view objtype = b.get_str("objtype");
      if (relation_object(objtype)) {
        generic_access_ = kDdl;
        walk_member(b, "objects");  // RangeVars
      }
    }
  } else if (name == "CreateExtensionStmt") {
    add_kind(K::Create);
    out_.extension = true;
    std::string ext = lower(b.get_str("extname"));
    if (ext == "file_fdw" || ext == "adminpack") out_.server_file_access = true;
    if (ext == "dblink" || ext == "postgres_fdw") out_.remote_access = true;
  } else if (name == "CreateForeignServerStmt") {
    add_kind(K::Create);
    if (lower(b.get_str("fdwname")) == "file_fdw") {
      out_.server_file_access = true;
    } else {
      out_.remote_access = true;
    }
    ddl_walk(kDdl);
  } else if (name == "CreateTrigStmt" || name == "CreateEventTrigStmt") {
    // The trigger's function runs later, on other people's statements: code we cannot see.
    add_kind(K::Create);
    out_.opaque_code = true;
    if (const JValue* fn = b.get("funcname")) add_function(*fn);
    ddl_walk(kDdl);
  } else if (name == "VacuumStmt") {
    add_kind(b.get_bool("is_vacuumcmd") ? K::Vacuum : K::Analyze);
    generic_access_ = 0;
    walk_member(b, "rels");
  } else if (name == "AlterTableStmt") {
    add_kind(K::Alter);
    if (const JValue* cmds = b.get("cmds"); cmds && cmds->is_array()) {
      for (const JValue& c : *cmds) {
        const JValue* cb = c.node_body();
        std::string_view sub = cb ? cb->get_str("subtype") : std::string_view{};
        if (sub == "AT_DropColumn" || sub == "AT_AlterColumnType") out_.destructive_alter = true;
      }
    }
    ddl_walk(kDdl);
  } else if (name == "LoadStmt") {
    add_kind(K::Maintenance);
    out_.server_file_access = true;
  } else if (name == "CreateTableSpaceStmt") {
    add_kind(K::Create);
    out_.server_file_access = true;
  } else {
    const auto& t = table();
    auto it = t.find(name);
    if (it == t.end()) {
      // A statement type this module does not know (newer grammar): Other, walked as DDL.
      bool is_statement = mode == Mode::Top ||
                          (name.size() > 4 && name.substr(name.size() - 4) == "Stmt");
      if (!is_statement) return false;
      add_kind(K::Other);
      ddl_walk(kDdl);
      return true;
    }
    add_kind(it->second.kind);
    if (name == "AlterExtensionStmt" || name == "AlterExtensionContentsStmt") out_.extension = true;
    switch (it->second.how) {
      case How::Ddl:
        ddl_walk(kDdl);
        break;
      case How::Remote:
        out_.remote_access = true;
        ddl_walk(kDdl);
        break;
      case How::Role:
        out_.role_change = true;
        ddl_walk(kDdl);
        break;
      case How::NoAccess:
        generic_access_ = 0;
        for (std::uint32_t i = 0; i < b.count; ++i) walk(b.members[i].value);
        break;
      case How::NoWalk:
        break;
    }
  }
  if (privilege_change) {  // after the statement's own kind
    out_.role_change = true;
    add_kind(K::RoleChange);
  }
  return true;
}

void Walker::finish() {
  auto sorted_unique = [](std::vector<std::string_view>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    std::vector<std::string> out;
    out.reserve(v.size());
    for (std::string_view s : v) {
      if (!s.empty()) out.emplace_back(s);
    }
    return out;
  };
  out_.relations.reserve(rels_.size());
  for (RelAcc& r : rels_) {
    Relation rel;
    rel.schema = std::string(r.schema);
    rel.name = std::string(r.name);
    rel.access = r.access;
    rel.all_columns = r.all;
    rel.columns_read = sorted_unique(r.read);
    rel.columns_written = sorted_unique(r.written);
    out_.relations.push_back(std::move(rel));
  }
  out_.unresolved_columns = sorted_unique(unresolved_);
  if (executes_) merge_executed(out_, *executes_);
}

void merge_executed(Statement& into, const Statement& from) {
  auto add_unique = [](std::vector<std::string>& to, const std::vector<std::string>& more) {
    for (const std::string& s : more) {
      if (std::find(to.begin(), to.end(), s) == to.end()) to.push_back(s);
    }
  };
  auto add_sorted = [](std::vector<std::string>& to, const std::vector<std::string>& more) {
    to.insert(to.end(), more.begin(), more.end());
    std::sort(to.begin(), to.end());
    to.erase(std::unique(to.begin(), to.end()), to.end());
  };
  for (StatementKind k : from.kinds) {
    if (k != K::Prepare && std::find(into.kinds.begin(), into.kinds.end(), k) == into.kinds.end()) {
      into.kinds.push_back(k);
    }
  }
  for (const Relation& r : from.relations) {
    auto it = std::find_if(into.relations.begin(), into.relations.end(),
                           [&](const Relation& x) { return x.schema == r.schema && x.name == r.name; });
    if (it == into.relations.end()) {
      into.relations.push_back(r);
      continue;
    }
    it->access |= r.access;
    it->all_columns = it->all_columns || r.all_columns;
    add_sorted(it->columns_read, r.columns_read);
    add_sorted(it->columns_written, r.columns_written);
  }
  add_unique(into.functions, from.functions);
  add_unique(into.settings, from.settings);
  add_sorted(into.unresolved_columns, from.unresolved_columns);
  into.writes.insert(into.writes.end(), from.writes.begin(), from.writes.end());
  into.returning = into.returning || from.returning;
  into.whole_row = into.whole_row || from.whole_row;
  into.opaque_code = into.opaque_code || from.opaque_code;
  into.server_file_access = into.server_file_access || from.server_file_access;
  into.server_program = into.server_program || from.server_program;
  into.remote_access = into.remote_access || from.remote_access;
  into.extension = into.extension || from.extension;
  into.role_change = into.role_change || from.role_change;
  into.transaction_control = into.transaction_control || from.transaction_control;
  into.destructive_alter = into.destructive_alter || from.destructive_alter;
}

}  // namespace gh::sql::detail
