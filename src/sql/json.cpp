#include "sql/json.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace gh::sql {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::pair<std::uint8_t, const char*> kAccessNames[] = {
    {kRead, "read"}, {kInsert, "insert"}, {kUpdate, "update"},
    {kDelete, "delete"}, {kTruncate, "truncate"}, {kDdl, "ddl"},
};

Json access_array(std::uint8_t access) {
  Json out = Json::array();
  for (auto [bit, name] : kAccessNames) {
    if (access & bit) out.push_back(name);
  }
  return out;
}

void put_strings(Json& obj, const char* key, const std::vector<std::string>& v) {
  if (!v.empty()) obj[key] = v;
}

void put_flag(Json& obj, const char* key, bool v) {
  if (v) obj[key] = true;
}

Json statement_json(const Statement& s) {
  Json j = Json::object();
  Json kinds = Json::array();
  for (StatementKind k : s.kinds) kinds.push_back(std::string(kind_name(k)));
  j["kinds"] = std::move(kinds);
  j["text"] = s.text;
  if (s.location != 0) j["location"] = s.location;
  if (!s.object_name.empty()) j["object_name"] = s.object_name;
  if (s.cursor_with_hold) j["cursor_with_hold"] = true;
  if (s.transaction_block != 0) j["transaction_block"] = int(s.transaction_block);
  if (!s.normalized.empty()) j["normalized"] = s.normalized;
  if (s.fingerprint != 0) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(s.fingerprint));
    j["fingerprint"] = hex;
  }
  if (!s.relations.empty()) {
    Json rels = Json::array();
    for (const Relation& r : s.relations) {
      Json o = Json::object();
      if (!r.schema.empty()) o["schema"] = r.schema;
      o["name"] = r.name;
      if (r.access != 0) o["access"] = access_array(r.access);
      put_strings(o, "columns_read", r.columns_read);
      put_strings(o, "columns_written", r.columns_written);
      put_flag(o, "all_columns", r.all_columns);
      rels.push_back(std::move(o));
    }
    j["relations"] = std::move(rels);
  }
  put_strings(j, "functions", s.functions);
  if (!s.writes.empty()) {
    Json writes = Json::array();
    for (const WriteFilter& w : s.writes) {
      Json o = Json::object();
      o["kind"] = std::string(kind_name(w.kind));
      o["relation"] = w.relation;
      put_flag(o, "has_where", w.has_where);
      put_flag(o, "where_trivially_true", w.where_trivially_true);
      writes.push_back(std::move(o));
    }
    j["writes"] = std::move(writes);
  }
  put_strings(j, "settings", s.settings);
  put_strings(j, "unresolved_columns", s.unresolved_columns);
  put_flag(j, "returning", s.returning);
  put_flag(j, "whole_row", s.whole_row);
  put_flag(j, "opaque_code", s.opaque_code);
  put_flag(j, "server_file_access", s.server_file_access);
  put_flag(j, "server_program", s.server_program);
  put_flag(j, "remote_access", s.remote_access);
  put_flag(j, "extension", s.extension);
  put_flag(j, "role_change", s.role_change);
  put_flag(j, "transaction_control", s.transaction_control);
  put_flag(j, "destructive_alter", s.destructive_alter);
  return j;
}

// Pretty-printed with two-space indents, except that an array of scalars stays on one line
// (["read", "delete"]): goldens stay short and diffs stay line-per-fact.
void write(const Json& j, int indent, std::string& out) {
  auto scalar = [&](const Json& v) { out += v.dump(-1, ' ', false, Json::error_handler_t::replace); };
  if (j.is_object()) {
    if (j.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += ",\n";
      first = false;
      out.append(static_cast<std::size_t>(indent + 2), ' ');
      scalar(Json(it.key()));
      out += ": ";
      write(it.value(), indent + 2, out);
    }
    out += "\n";
    out.append(static_cast<std::size_t>(indent), ' ');
    out += "}";
    return;
  }
  if (j.is_array()) {
    bool flat = true;
    for (const Json& v : j) flat = flat && !v.is_structured();
    if (flat) {
      out += "[";
      bool first = true;
      for (const Json& v : j) {
        if (!first) out += ", ";
        first = false;
        scalar(v);
      }
      out += "]";
      return;
    }
    out += "[\n";
    bool first = true;
    for (const Json& v : j) {
      if (!first) out += ",\n";
      first = false;
      out.append(static_cast<std::size_t>(indent + 2), ' ');
      write(v, indent + 2, out);
    }
    out += "\n";
    out.append(static_cast<std::size_t>(indent), ' ');
    out += "]";
    return;
  }
  scalar(j);
}

}  // namespace

std::string to_json(const Analysis& analysis) {
  Json j = Json::object();
  if (analysis.error) {
    Json e = Json::object();
    e["message"] = analysis.error->message;
    if (analysis.error->cursor != 0) e["cursor"] = analysis.error->cursor;
    j["error"] = std::move(e);
  } else {
    Json stmts = Json::array();
    for (const Statement& s : analysis.statements) stmts.push_back(statement_json(s));
    j["statements"] = std::move(stmts);
  }
  // Invalid UTF-8 in statement text is replaced (U+FFFD) rather than thrown on: goldens and
  // audit must render any input.
  std::string out;
  write(j, 0, out);
  out += "\n";
  return out;
}

std::string access_names(std::uint8_t access) {
  std::string out;
  for (auto [bit, name] : kAccessNames) {
    if (!(access & bit)) continue;
    if (!out.empty()) out += ',';
    out += name;
  }
  return out;
}

}  // namespace gh::sql
