#include "sql/statement_info.h"

#include <array>

namespace gh::sql {

namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(StatementKind::Unknown) + 1> kKindNames = {
    "select",         "insert",       "update",      "delete",        "merge",       "truncate",
    "copy_from",      "copy_to",      "create",      "alter",         "drop",        "create_database",
    "drop_database",  "alter_system", "grant",       "revoke",        "role_change", "set_role",
    "set",            "show",         "begin",       "commit",        "rollback",    "savepoint",
    "prepare",        "execute",      "deallocate",  "declare_cursor", "fetch",      "close_cursor",
    "explain",        "call",         "do",          "create_function", "listen",    "notify",
    "unlisten",       "lock",         "vacuum",      "analyze",       "discard",     "maintenance",
    "comment",        "function_call", "other",      "unknown",
};

}  // namespace

std::string_view kind_name(StatementKind kind) {
  auto i = static_cast<std::size_t>(kind);
  return i < kKindNames.size() ? kKindNames[i] : std::string_view("unknown");
}

std::optional<StatementKind> kind_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kKindNames.size(); ++i) {
    if (kKindNames[i] == name) return static_cast<StatementKind>(i);
  }
  return std::nullopt;
}

}  // namespace gh::sql
