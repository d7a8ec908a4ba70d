// Result masking in a session (docs/policy.md#masking): which mask rules apply to it, the
// catalog the masker traces columns with (read on the session's own backend connection while
// it is idle: the session's search_path, temporary tables and privileges are the ones that
// matter), and what the masker is told about each message forwarded.
#include <openssl/rand.h>

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/bytes.h"
#include "proxy/server.h"
#include "proxy/session.h"

namespace gh::proxy {

namespace {

// One row, one column: the search path, every relation with its columns (view definitions only
// outside the system schemas: their columns are not classified and hold no table data the masking
// rules name), and the functions of user code (outside the system schemas and not part of an
// extension: citext's upper() is no user code that may read tables).
constexpr const char* kCatalogQuery =
    "SELECT json_build_object('path', current_schemas(true), 'rels', (SELECT coalesce(json_agg(json_build_array("
    "c.oid::int8, n.nspname, c.relname, c.relkind, CASE WHEN c.relkind IN ('v','m') AND n.nspname NOT IN "
    "('pg_catalog','information_schema') THEN pg_get_viewdef(c.oid) END, (SELECT coalesce(json_agg("
    "json_build_array(a.attnum, a.attname, a.atttypid::int8) ORDER BY a.attnum), '[]') FROM pg_catalog.pg_attribute a "
    "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))), '[]') FROM pg_catalog.pg_class c JOIN "
    "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f')), 'funcs', (SELECT "
    "coalesce(json_agg(DISTINCT json_build_array(n.nspname, p.proname)::text), '[]') FROM pg_catalog.pg_proc p JOIN "
    "pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND "
    "d.objid = p.oid AND d.deptype = 'e')))::text";

const std::string& process_key() {
  static const std::string key = [] {
    std::string k(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(k.data()), int(k.size())) != 1) std::abort();
    return k;
  }();
  return key;
}

std::shared_ptr<sql::Catalog> parse_catalog(const std::string& text, std::string& why) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = "the catalog query returned something other than JSON";
    return nullptr;
  }
  auto cat = std::make_shared<sql::Catalog>();
  try {
    std::vector<std::string> path;
    for (const auto& s : doc.at("path")) path.push_back(s.get<std::string>());
    cat->set_search_path(std::move(path));
    for (const auto& r : doc.at("rels")) {
      sql::CatalogRelation rel;
      rel.oid = r.at(0).get<std::uint32_t>();
      rel.schema = r.at(1).get<std::string>();
      rel.name = r.at(2).get<std::string>();
      const auto kind = r.at(3).get<std::string>();
      rel.kind = kind.empty() ? 'r' : kind[0];
      if (r.at(4).is_string()) rel.definition = r.at(4).get<std::string>();
      for (const auto& c : r.at(5)) {
        sql::CatalogColumn col;
        col.attnum = c.at(0).get<std::int16_t>();
        col.name = c.at(1).get<std::string>();
        col.type_oid = c.at(2).get<std::uint32_t>();
        rel.columns.push_back(std::move(col));
      }
      cat->add(std::move(rel));
    }
    if (auto f = doc.find("funcs"); f != doc.end() && f->is_array())
      for (const auto& e : *f) {
        auto pair = nlohmann::json::parse(e.get<std::string>(), nullptr, false);
        if (pair.is_array() && pair.size() == 2)
          cat->add_function(pair[0].get<std::string>(), pair[1].get<std::string>());
      }
  } catch (const std::exception& e) {
    why = std::string("the catalog query's answer could not be read: ") + e.what();
    return nullptr;
  }
  return cat;
}

bool changes_catalog(const sql::Statement& st) {
  for (const auto k : st.kinds)
    switch (k) {
      case sql::StatementKind::Create:
      case sql::StatementKind::Alter:
      case sql::StatementKind::Drop:
      case sql::StatementKind::Do:
      case sql::StatementKind::Call:
      case sql::StatementKind::CreateFunction:
      case sql::StatementKind::Maintenance:
      case sql::StatementKind::Rollback:  // undoes DDL of the transaction
      case sql::StatementKind::Discard:   // DISCARD TEMP / ALL drop temporary tables
      case sql::StatementKind::Other:
      case sql::StatementKind::Unknown:
        return true;
      default:
        break;
    }
  return st.opaque_code;
}

}  // namespace

bool Session::mask_changes_catalog(const sql::Statement& st) { return changes_catalog(st); }

void Session::mask_catalog_changed() {
  // Until the catalog is read again (at the next idle moment), names may mean other tables than
  // the catalog says, and what was described before may describe tables that are gone: lineage
  // is not trusted, and kept Describe answers are dropped (found by an attack round: DROP TABLE
  // of a shadowing table, then in the same batch a SELECT of expressions over the masked table,
  // traced through the dropped one, or a Bind of a statement described before the DROP).
  catalog_stale_ = true;
  masker_->set_path_uncertain(true);
  masker_->forget_described();
}

void Session::mask_rules_refresh() {
  const auto& policy = live_policy();
  const bool generation_changed = mask_generation_ != policy_generation_;
  if (!generation_changed && !policy.uses_time() && !policy.uses_grants()) return;
  mask_generation_ = policy_generation_;
  std::vector<std::string> grants;
  const policy::Request req = policy_request(std::chrono::system_clock::now(), grants);
  auto rules = policy.mask_rules_for(req);
  std::shared_ptr<const policy::Policy> shared(policy_rt_, policy_rt_->config->policy.get());
  if (!masker_) {
    // The masker must see every statement whose answers it follows: it starts with the backend idle.
    if (rules.empty()) return;
    if (inflight_ > 0 || batch_open_ || copy_in_) {
      mask_generation_ = ~std::uint64_t{0};  // again at the next batch; until then mask decisions are refused
      return;
    }
    const auto& key = rt_->config->masking.hash_key;
    masker_ = std::make_unique<ResultMasker>(std::move(shared), std::move(rules), key.empty() ? process_key() : key);
    masker_->collect_masked(auditing());  // each statement's record says which columns were masked
    spdlog::info("session {}: results are masked for {} ({} mask rule{})", id_, identity_.subject,
                 masker_->rules().size(), masker_->rules().size() == 1 ? "" : "s");
    return;
  }
  if (generation_changed || rules != masker_->rules()) masker_->set_rules(std::move(shared), std::move(rules));
}

bool Session::mask_catalog_due() const {
  if (!masking()) return false;
  if (catalog_stale_ || !masker_->catalog()) return true;
  return Clock::now() - catalog_at_ > rt_->config->masking.catalog_ttl;
}

asio::awaitable<std::optional<End>> Session::mask_catalog_refresh() {
  catalog_stale_ = false;
  catalog_at_ = Clock::now();
  if (auto stop = co_await capture_query(kCatalogQuery)) co_return std::move(*stop);
  std::string why;
  std::shared_ptr<sql::Catalog> cat;
  if (explain_.error)
    why = "the catalog query failed";
  else if (explain_.json.size() > rt_->config->masking.max_catalog_bytes)
    why = "the catalog is larger than masking.max_catalog_size";
  else
    cat = parse_catalog(explain_.json, why);
  explain_ = ExplainCapture{};
  if (!cat) {
    // Fail closed: without a catalog every column of a statement that reads a relation is masked
    // and statements that move data are refused; the next idle moment tries again.
    catalog_stale_ = true;
    spdlog::warn("session {}: masking works without the database's catalog ({}): results are masked wholesale", id_,
                 why);
    co_return std::nullopt;
  }
  spdlog::debug("session {}: catalog read for masking: {} relations", id_, cat->size());
  masker_->set_catalog(std::move(cat));
  masker_->set_path_uncertain(false);
  co_return std::nullopt;
}

std::shared_ptr<const sql::Analysis> Session::mask_resolved(std::shared_ptr<const sql::Analysis> a) const {
  // FETCH and EXECUTE return the rows of a cursor's or a prepared statement's query: traced as that
  // query when the name stands for exactly one (found by a client trial: psycopg's and psycopg2's
  // named cursors came back with every computed column masked). Otherwise they stay as they are,
  // and their columns of unknown origin are masked.
  if (!a || a->error) return a;
  std::shared_ptr<sql::Analysis> out;
  for (std::size_t i = 0; i < a->statements.size(); ++i) {
    const sql::Statement& st = a->statements[i];
    const auto* versions = cursor_versions(st);
    sql::StatementKind defining = sql::StatementKind::DeclareCursor;
    if (!versions) {
      versions = prepared_versions(st);
      defining = sql::StatementKind::Prepare;
    }
    if (!versions || versions->size() != 1 || !versions->front()) continue;
    if (defining == sql::StatementKind::DeclareCursor && mask_untraced_portals_.count(st.object_name)) continue;
    const sql::Statement* found = nullptr;
    for (const auto& v : versions->front()->statements) {
      const bool named = v.object_name == st.object_name;
      if (named && std::find(v.kinds.begin(), v.kinds.end(), defining) != v.kinds.end()) found = &v;
      // A protocol portal's statement (FETCH of a portal): its query itself.
      if (!found && versions->front()->statements.size() == 1 && defining == sql::StatementKind::DeclareCursor &&
          !cursors_.count(st.object_name))
        found = &v;
    }
    if (!found) continue;
    if (!out) out = std::make_shared<sql::Analysis>(*a);
    out->statements[i] = *found;
  }
  return out ? out : a;
}

bool Session::mask_unknown_relations(char type, std::string_view body) {
  if (!masking() || !masker_->catalog()) return false;
  std::size_t pos = 0;
  bool ok = true;
  if (type == 'P') protocol::c_string_at(body, pos, ok);
  const std::string_view text = protocol::c_string_at(body, pos, ok);
  if (!ok) return false;
  const auto a = worker_.analyzer.analyze(text);
  if (!a) return false;
  bool any = false;
  for (const auto& st : a->statements)
    for (const auto& r : st.relations) {
      if (r.access == sql::kDdl || masker_->catalog()->find(r.schema, r.name)) continue;
      if (unknown_relations_.size() > 1000) unknown_relations_.clear();
      if (unknown_relations_.insert(r.schema + "." + r.name).second) any = true;
    }
  return any;
}

void Session::mask_forwarded(char type, std::string_view body, bool substituted) {
  if (!masker_) return;
  std::size_t pos = 0;
  bool ok = true;
  switch (type) {
    case 'Q': {
      if (substituted) {
        masker_->on_query(nullptr);
        break;
      }
      const std::string_view text = protocol::c_string_at(body, pos, ok);
      // EXECUTE and FETCH as what they run: an EXECUTE is opaque code to the analyzer, which would
      // take it for a possible change of search_path.
      auto a = ok ? mask_resolved(worker_.analyzer.analyze(text)) : nullptr;
      if (a)
        for (const auto& st : a->statements) {
          if (changes_catalog(st) || changes_search_path(st)) mask_catalog_changed();
          masker_->note_forwarded(st);
        }
      masker_->on_query(std::move(a));
      break;
    }
    case 'F':
      masker_->on_query(nullptr);
      break;
    case 'P': {
      if (substituted) {
        masker_->on_ext();
        break;
      }
      const auto name = server_name(protocol::c_string_at(body, pos, ok));
      if (ok) {
        const std::string_view text = protocol::c_string_at(body, pos, ok);
        if (ok)
          if (auto a = worker_.analyzer.analyze(text))
            for (const auto& st : a->statements) {
              if (changes_catalog(st) || changes_search_path(st)) mask_catalog_changed();
              masker_->note_forwarded(st);
            }
      }
      masker_->on_parse(name);
      break;
    }
    case 'B': {
      if (substituted) {
        masker_->on_ext();
        break;
      }
      const auto portal = server_name(protocol::c_string_at(body, pos, ok));
      const auto statement = server_name(protocol::c_string_at(body, pos, ok));
      std::shared_ptr<const sql::Analysis> a;
      // A name SQL PREPARE used too may hold another text by the time the server binds it (a
      // DEALLOCATE and PREPARE pipelined ahead of the Bind: found by an attack round, the old
      // statement's lineage masked the new one's columns): traced as unknown (fail closed).
      const bool sql_named = sql_prepared_overflow_ ||
                             (!sql_prepared_names_.empty() && sql_prepared_names_.count(std::string(statement)) > 0);
      if (auto it = statements_.find(statement); ok && !sql_named && it != statements_.end())
        a = mask_resolved(it->second.analysis);
      if (sql_named) {
        masker_->forget_described();
        // A FETCH of the portal is not traced as the statement the proxy knows under that name either.
        if (mask_untraced_portals_.size() >= 1000) mask_untraced_portals_.clear();
        mask_untraced_portals_.insert(std::string(portal));
      } else if (!mask_untraced_portals_.empty()) {
        mask_untraced_portals_.erase(std::string(portal));
      }
      masker_->on_bind(portal, statement, body, std::move(a));
      break;
    }
    case 'D': {
      const char what = body.empty() ? 'S' : body[0];
      pos = 1;
      const auto name = server_name(protocol::c_string_at(body, pos, ok));
      masker_->on_describe(what, name);
      break;
    }
    case 'E': {
      if (substituted) {
        masker_->on_ext();
        break;
      }
      masker_->on_execute(server_name(protocol::c_string_at(body, pos, ok)));
      break;
    }
    case 'C': {
      const char what = body.empty() ? 'S' : body[0];
      pos = 1;
      masker_->on_close(what, server_name(protocol::c_string_at(body, pos, ok)));
      break;
    }
    case 'S':
      masker_->on_sync();
      break;
    default:
      break;
  }
}

}  // namespace gh::proxy
