#pragma once
// Short human phrases for statements and relations, shared by the evaluator and guardrails.
#include <string>

#include "sql/statement_info.h"

namespace gh::policy {

std::string relation_name(const sql::Relation& r);  // "public.orders", or "orders" when unqualified
std::string kind_label(sql::StatementKind kind);     // "COPY FROM", "DELETE"
// "DELETE on public.orders", "SELECT on a, b, c and 2 more", "BEGIN".
std::string describe_statement(const sql::Statement& s);
// Relations with any of the access bits, joined: "public.orders, public.items"; "" when none.
std::string relations_with(const sql::Statement& s, std::uint8_t access);

}  // namespace gh::policy
