#pragma once
// What the proxy knows of one database's catalog: relations, their columns and the definitions
// of views, enough to trace result columns to the table columns they come from (lineage.h).
// Filled by the proxy from a catalog query; plain data, no I/O.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace gh::sql {

struct CatalogColumn {
  std::int16_t attnum = 0;  // pg_attribute.attnum (> 0; dropped columns are left out, so gaps occur)
  std::string name;
  std::uint32_t type_oid = 0;
};

struct CatalogRelation {
  std::uint32_t oid = 0;
  std::string schema;  // pg_namespace.nspname
  std::string name;    // pg_class.relname
  char kind = 'r';     // pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign, ...
  std::vector<CatalogColumn> columns;  // in attnum order
  std::string definition;  // v and m: pg_get_viewdef(oid) (a SELECT); "" otherwise

  const CatalogColumn* column(std::string_view name) const;   // nullptr when absent
  const CatalogColumn* column_at(std::int16_t attnum) const;  // nullptr when absent
};

class Catalog {
 public:
  void add(CatalogRelation relation);
  // The session's effective search path, as current_schemas(true) gives it (pg_temp_N and
  // pg_catalog included where PostgreSQL searches them).
  void set_search_path(std::vector<std::string> schemas) { search_path_ = std::move(schemas); }
  const std::vector<std::string>& search_path() const { return search_path_; }

  // `schema` "" resolves through the search path, as PostgreSQL resolves a relation name.
  const CatalogRelation* find(std::string_view schema, std::string_view name) const;
  const CatalogRelation* by_oid(std::uint32_t oid) const;
  // The relations of that name: in the search path's schemas, or (all_schemas) in any schema.
  std::vector<const CatalogRelation*> named(std::string_view name, bool all_schemas) const;
  std::size_t size() const { return relations_.size(); }

  // Functions outside the system schemas (user code the proxy cannot see into), by name and by
  // schema.name, lower case as the analyzer lists calls.
  void add_function(std::string_view schema, std::string_view name);
  bool user_function(std::string_view called) const;  // "name" or "schema.name"

 private:
  std::unordered_set<std::string> functions_;
  std::vector<CatalogRelation> relations_;
  std::unordered_map<std::uint32_t, std::size_t> by_oid_;
  std::unordered_map<std::string, std::size_t> by_name_;  // "schema\0name"
  std::unordered_multimap<std::string, std::size_t> by_relname_;  // name
  std::vector<std::string> search_path_;
};

}  // namespace gh::sql
