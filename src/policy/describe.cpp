#include "policy/describe.h"

namespace gh::policy {

std::string relation_name(const sql::Relation& r) { return r.schema.empty() ? r.name : r.schema + "." + r.name; }

std::string kind_label(sql::StatementKind kind) {
  std::string out(sql::kind_name(kind));
  for (auto& c : out) c = (c == '_') ? ' ' : (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
  return out;
}

namespace {

std::string join_relations(const sql::Statement& s, std::uint8_t access) {
  constexpr std::size_t kShown = 3;
  std::string out;
  std::size_t n = 0;
  for (const auto& r : s.relations) {
    if (access && !(r.access & access)) continue;
    if (n++ < kShown) out += (out.empty() ? "" : ", ") + relation_name(r);
  }
  if (n > kShown) out += " and " + std::to_string(n - kShown) + " more";
  return out;
}

}  // namespace

std::string describe_statement(const sql::Statement& s) {
  std::string out = s.kinds.empty() ? std::string("statement") : kind_label(s.kinds.front());
  const auto rels = join_relations(s, 0);
  if (!rels.empty()) out += " on " + rels;
  return out;
}

std::string relations_with(const sql::Statement& s, std::uint8_t access) { return join_relations(s, access); }

}  // namespace gh::policy
