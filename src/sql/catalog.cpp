#include "sql/catalog.h"

#include <algorithm>

namespace gh::sql {

namespace {

std::string name_key(std::string_view schema, std::string_view name) {
  std::string key;
  key.reserve(schema.size() + name.size() + 1);
  key.append(schema);
  key.push_back('\0');
  key.append(name);
  return key;
}

}  // namespace

const CatalogColumn* CatalogRelation::column(std::string_view column_name) const {
  for (const CatalogColumn& c : columns)
    if (c.name == column_name) return &c;
  return nullptr;
}

const CatalogColumn* CatalogRelation::column_at(std::int16_t attnum) const {
  // Usually columns[attnum - 1]; dropped columns leave gaps, so fall back to a search.
  if (attnum > 0 && static_cast<std::size_t>(attnum) <= columns.size() &&
      columns[static_cast<std::size_t>(attnum) - 1].attnum == attnum)
    return &columns[static_cast<std::size_t>(attnum) - 1];
  for (const CatalogColumn& c : columns)
    if (c.attnum == attnum) return &c;
  return nullptr;
}

void Catalog::add(CatalogRelation relation) {
  // A relation added again (same OID) replaces the earlier one, in place; a different relation
  // under an existing name takes the name over (the later catalog read wins).
  std::string key = name_key(relation.schema, relation.name);
  std::size_t index = relations_.size();
  if (auto it = by_oid_.find(relation.oid); it != by_oid_.end()) {
    index = it->second;
    const CatalogRelation& old = relations_[index];
    auto old_name = by_name_.find(name_key(old.schema, old.name));
    if (old_name != by_name_.end() && old_name->second == index) by_name_.erase(old_name);
    for (auto [b, e] = by_relname_.equal_range(old.name); b != e; ++b)
      if (b->second == index) {
        by_relname_.erase(b);
        break;
      }
    relations_[index] = std::move(relation);
  } else {
    relations_.push_back(std::move(relation));
    by_oid_.emplace(relations_.back().oid, index);
  }
  by_relname_.emplace(relations_[index].name, index);
  by_name_[std::move(key)] = index;
}

std::vector<const CatalogRelation*> Catalog::named(std::string_view name, bool all_schemas) const {
  std::vector<const CatalogRelation*> out;
  for (auto [b, e] = by_relname_.equal_range(std::string(name)); b != e; ++b) {
    const CatalogRelation& r = relations_[b->second];
    // Still the relation under that name (not taken over by a later one of the same schema).
    const auto it = by_name_.find(name_key(r.schema, r.name));
    if (it == by_name_.end() || it->second != b->second) continue;
    if (all_schemas || std::find(search_path_.begin(), search_path_.end(), r.schema) != search_path_.end())
      out.push_back(&r);
  }
  return out;
}

const CatalogRelation* Catalog::find(std::string_view schema, std::string_view name) const {
  if (!schema.empty()) {
    auto it = by_name_.find(name_key(schema, name));
    return it == by_name_.end() ? nullptr : &relations_[it->second];
  }
  for (const std::string& s : search_path_) {
    auto it = by_name_.find(name_key(s, name));
    if (it != by_name_.end()) return &relations_[it->second];
  }
  return nullptr;
}

const CatalogRelation* Catalog::by_oid(std::uint32_t oid) const {
  auto it = by_oid_.find(oid);
  return it == by_oid_.end() ? nullptr : &relations_[it->second];
}

void Catalog::add_function(std::string_view schema, std::string_view name) {
  functions_.insert(std::string(name));
  functions_.insert(std::string(schema) + "." + std::string(name));
}

bool Catalog::user_function(std::string_view called) const { return functions_.count(std::string(called)) > 0; }

}  // namespace gh::sql
