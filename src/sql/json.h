#pragma once
// A stable, deterministic JSON rendering of an Analysis, used by golden files
// (tests/data/sql), `gatehouse explain` and audit details. Empty and false fields are omitted.
//
// {
//   "statements": [
//     {
//       "kinds": ["select", "delete"],
//       "text": "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
//       "location": 0,                        (omitted when 0)
//       "object_name": "p",                   (PREPARE/EXECUTE/DEALLOCATE name)
//       "normalized": "...",
//       "fingerprint": "0123456789abcdef",     (16 hex digits, pg_query's fingerprint)
//       "relations": [{"schema": "s", "name": "t", "access": ["read", "delete"],
//                      "columns_read": [...], "columns_written": [...], "all_columns": true}],
//       "functions": [...], "writes": [{"kind": "delete", "relation": "t", "has_where": true,
//                                       "where_trivially_true": true}],
//       "settings": [...], "unresolved_columns": [...],
//       "returning": true, "whole_row": true, "opaque_code": true, "server_file_access": true,
//       "server_program": true, "remote_access": true, "role_change": true,
//       "transaction_control": true, "destructive_alter": true
//     }
//   ]
// }
// or, for text that does not parse: {"error": {"message": "...", "cursor": 8}}
#include <cstdint>
#include <string>

#include "sql/statement_info.h"

namespace gh::sql {

std::string to_json(const Analysis& analysis);

// The access bits as names in a fixed order: "read", "insert", "update", "delete",
// "truncate", "ddl".
std::string access_names(std::uint8_t access);  // comma-separated, e.g. "read,delete"

}  // namespace gh::sql
