#include "proxy/result_masker.h"

#include <algorithm>

#include "base/bytes.h"

namespace gh::proxy {

namespace {

constexpr std::size_t kMaxNames = 10000;     // portal formats and statement fields kept
constexpr std::size_t kMaxLineages = 2048;   // statement texts whose lineage is kept
constexpr int kMaxViewDepth = 16;

std::int16_t load_i16(const char* p) { return std::int16_t(std::uint16_t(load_be16(p))); }

bool reads_data(const sql::Statement& st) {
  for (const auto k : st.kinds)
    switch (k) {
      case sql::StatementKind::Select:
      case sql::StatementKind::Insert:
      case sql::StatementKind::Update:
      case sql::StatementKind::Delete:
      case sql::StatementKind::Merge:
      case sql::StatementKind::CopyTo:
      case sql::StatementKind::Create:
      case sql::StatementKind::Execute:
      case sql::StatementKind::Fetch:
      case sql::StatementKind::DeclareCursor:
      case sql::StatementKind::Prepare:
      case sql::StatementKind::Call:
      case sql::StatementKind::Explain:
        return true;
      default:
        break;
    }
  return false;
}

}  // namespace

ResultMasker::ResultMasker(std::shared_ptr<const policy::Policy> policy, std::vector<std::size_t> rules,
                           std::string hmac_key)
    : key_(std::move(hmac_key)) {
  unknown_origin_.strategy = masking::Strategy::Redact;
  set_rules(std::move(policy), std::move(rules));
}

void ResultMasker::set_rules(std::shared_ptr<const policy::Policy> policy, std::vector<std::size_t> rules) {
  policy_ = std::move(policy);
  rules_ = std::move(rules);
  specs_.assign(policy_ ? policy_->rules().size() : 0, nullptr);
  spec_rule_.clear();
  for (const std::size_t i : rules_) {
    const auto& m = policy_->rules()[i].mask;
    masking::Spec s;
    s.strategy = masking::strategy_from_name(m.strategy).value_or(masking::Strategy::Null);
    s.keep_first = m.keep_first;
    s.keep_last = m.keep_last;
    s.fixed = m.value;
    spec_store_.push_back(std::make_unique<masking::Spec>(std::move(s)));
    specs_[i] = spec_store_.back().get();
    spec_rule_[specs_[i]] = i;
  }
  column_specs_.clear();
  masking::DetectorSet enabled;
  detect_spec_ = nullptr;
  for (const std::size_t i : rules_)
    for (const auto& name : policy_->rules()[i].mask.detect) {
      if (!detect_spec_) detect_spec_ = specs_[i];
      if (name == "all")
        enabled |= masking::all_detectors();
      else if (auto d = masking::detector_from_name(name))
        enabled.set(std::size_t(*d));
    }
  if (enabled.none())
    detectors_.reset();
  else if (!detectors_ || detectors_->enabled() != enabled)
    detectors_ = std::make_unique<masking::Detectors>(enabled);
}

void ResultMasker::note_forwarded(const sql::Statement& st) {
  // A relation this session creates (the catalog read before does not have it) holds no masked
  // values: statements that would copy them into it are refused (refusal_for). Until the catalog
  // is read again it is known as such, not as a relation of unknown origin (found by a client
  // trial: CREATE TEMP TABLE t AS SELECT ...; SELECT count(*) FROM t in one Query counted 0).
  if (!catalog_ || std::find(st.kinds.begin(), st.kinds.end(), sql::StatementKind::Create) == st.kinds.end()) return;
  for (const auto& r : st.relations)
    if ((r.access & sql::kDdl) && !catalog_->find(r.schema, r.name) && created_.size() < 1000)
      created_.insert(r.schema + "." + r.name);
}

void ResultMasker::set_catalog(std::shared_ptr<const sql::Catalog> catalog) {
  catalog_ = std::move(catalog);
  created_.clear();
  column_specs_.clear();
  views_.clear();
  lineages_.clear();
}

void ResultMasker::on_query(std::shared_ptr<const sql::Analysis> analysis) {
  cursor_seq_ = ++seq_;
  Unit u;
  u.kind = Unit::Kind::Query;
  u.analysis = std::move(analysis);
  units_.push_back(std::move(u));
}

void ResultMasker::on_bind(std::string_view portal, std::string_view statement, std::string_view body,
                           std::shared_ptr<const sql::Analysis> analysis) {
  const std::string key(portal);  // one copy of the name for the maps below
  if (portal_analysis_.size() >= kMaxNames) portal_analysis_.clear();
  portal_analysis_[key] = BoundStatement{std::move(analysis), ++seq_};
  Unit u;
  u.kind = Unit::Kind::Ext;
  units_.push_back(std::move(u));
  std::vector<std::int16_t> formats;
  const bool ok = result_formats(body, formats);
  portal_fields_.erase(key);
  if (portal_gen_.size() >= kMaxNames) portal_gen_.clear();
  portal_gen_[key] = ++seq_;
  if (portal_formats_.size() >= kMaxNames) portal_formats_.clear();
  if (portal_statement_.size() >= kMaxNames) portal_statement_.clear();
  portal_statement_[key] = std::string(statement);
  if (ok)
    portal_formats_[key] = std::move(formats);
  else
    portal_formats_.erase(key);
}

bool ResultMasker::result_formats(std::string_view body, std::vector<std::int16_t>& formats) {
  // After the names, the parameter formats and values.
  formats.clear();
  std::size_t pos = body.find('\0');
  if (pos != std::string_view::npos) pos = body.find('\0', pos + 1);
  bool ok = pos != std::string_view::npos;
  if (ok) ++pos;
  auto need = [&](std::size_t n) { return ok && (ok = body.size() - pos >= n); };
  if (need(2)) {
    const auto n = std::size_t(std::uint16_t(load_be16(body.data() + pos)));
    pos += 2;
    if (need(2 * n)) pos += 2 * n;
  }
  if (need(2)) {
    const auto n = std::size_t(std::uint16_t(load_be16(body.data() + pos)));
    pos += 2;
    for (std::size_t i = 0; i < n && need(4); ++i) {
      const auto len = std::int32_t(load_be32(body.data() + pos));
      pos += 4;
      if (len > 0 && need(std::size_t(len))) pos += std::size_t(len);
    }
  }
  if (need(2)) {
    const auto n = std::size_t(std::uint16_t(load_be16(body.data() + pos)));
    pos += 2;
    for (std::size_t i = 0; i < n && need(2); ++i, pos += 2) formats.push_back(load_i16(body.data() + pos));
  }
  return ok;
}

void ResultMasker::on_ext() {
  Unit u;
  u.kind = Unit::Kind::Ext;
  units_.push_back(std::move(u));
}

void ResultMasker::on_parse(std::string_view name) {
  on_ext();
  if (statement_gen_.size() >= kMaxNames) statement_gen_.clear();
  statement_gen_[std::string(name)] = ++seq_;
  statement_fields_.erase(std::string(name));
}

const std::vector<ResultMasker::Field>* ResultMasker::described(
    const std::unordered_map<std::string, Described>& map, const std::unordered_map<std::string, std::uint64_t>& gens,
    const std::string& name) const {
  const auto it = map.find(name);
  if (it == map.end() || it->second.seq <= cursor_seq_) return nullptr;
  const auto g = gens.find(name);
  if (g == gens.end() || g->second != it->second.gen) return nullptr;
  return &it->second.fields;
}

void ResultMasker::forget_described() {
  statement_fields_.clear();
  portal_fields_.clear();
}

void ResultMasker::on_describe(char what, std::string_view name) {
  Unit u;
  u.kind = Unit::Kind::Describe;
  u.describe = what;
  u.name = std::string(name);
  const auto& gens = what == 'S' ? statement_gen_ : portal_gen_;
  const auto g = gens.find(u.name);
  u.gen = g == gens.end() ? 0 : g->second;
  u.seq = ++seq_;
  units_.push_back(std::move(u));
}

void ResultMasker::on_execute(std::string_view portal) {
  Unit u;
  u.kind = Unit::Kind::Execute;
  u.name = std::string(portal);
  if (auto it = portal_analysis_.find(u.name); it != portal_analysis_.end() && it->second.seq > cursor_seq_)
    u.analysis = it->second.analysis;
  bool cursor_sql = !u.analysis || u.analysis->error;
  if (u.analysis)
    for (const auto& st : u.analysis->statements) {
      cursor_sql = cursor_sql || st.opaque_code;
      for (const auto k : st.kinds)
        cursor_sql = cursor_sql || k == sql::StatementKind::DeclareCursor || k == sql::StatementKind::CloseCursor ||
                     k == sql::StatementKind::Discard || k == sql::StatementKind::Execute ||
                     k == sql::StatementKind::Fetch || k == sql::StatementKind::Do || k == sql::StatementKind::Call ||
                     k == sql::StatementKind::Other || k == sql::StatementKind::Unknown;
    }
  if (cursor_sql) cursor_seq_ = ++seq_;
  units_.push_back(std::move(u));
}

void ResultMasker::on_sync() {
  Unit u;
  u.kind = Unit::Kind::Sync;
  units_.push_back(std::move(u));
}

void ResultMasker::on_close(char what, std::string_view name) {
  on_ext();
  if (what == 'S') {
    statement_fields_.erase(std::string(name));
  } else {
    portal_fields_.erase(std::string(name));
    portal_analysis_.erase(std::string(name));
  }
}

void ResultMasker::syncs_ignored(std::uint32_t n) {
  for (auto it = units_.empty() ? units_.end() : units_.begin() + 1; n > 0 && it != units_.end();) {
    if (it->kind == Unit::Kind::Sync) {
      it = units_.erase(it);
      --n;
    } else {
      ++it;
    }
  }
}

ResultMasker::Unit* ResultMasker::front() { return units_.empty() ? nullptr : &units_.front(); }
void ResultMasker::pop() {
  if (!units_.empty()) units_.pop_front();
}
void ResultMasker::skip_to_sync() {
  while (!units_.empty() && units_.front().kind != Unit::Kind::Sync) units_.pop_front();
}

bool ResultMasker::needs_whole(char type) const {
  if (type == 'T' || ((type == 'E' || type == 'N') && active())) return true;
  if (type == 'd') return copy_masker_ != nullptr;
  if (type == 'A') return detectors_ != nullptr;
  if (type != 'D') return false;
  if (units_.empty()) return true;
  const Unit& u = units_.front();
  return !u.planned || u.masks;
}

bool ResultMasker::parse_row_description(std::string_view body, std::vector<Field>& out) {
  out.clear();
  if (body.size() < 2) return false;
  const auto n = load_i16(body.data());
  if (n < 0) return false;
  std::size_t pos = 2;
  for (int i = 0; i < n; ++i) {
    const auto nul = body.find('\0', pos);
    if (nul == std::string_view::npos || body.size() - nul - 1 < 18) return false;
    pos = nul + 1;
    Field f;
    f.table = load_be32(body.data() + pos);
    f.attnum = load_i16(body.data() + pos + 4);
    f.type = load_be32(body.data() + pos + 6);
    f.format = load_i16(body.data() + pos + 16);
    pos += 18;
    out.push_back(f);
  }
  return pos == body.size();
}

const sql::Lineage* ResultMasker::lineage(const std::string& text) {
  if (!catalog_) return nullptr;
  if (auto it = lineages_.find(text); it != lineages_.end()) return it->second.get();
  if (lineages_.size() >= kMaxLineages) lineages_.clear();
  auto l = std::make_shared<const sql::Lineage>(sql::lineage_of(text, *catalog_));
  return lineages_.emplace(text, std::move(l)).first->second.get();
}

const masking::Spec* ResultMasker::fallback() const {
  // Not the first rule's strategy: a partial one would show part of whatever the column holds.
  return rules_.empty() ? nullptr : &unknown_origin_;
}

std::string ResultMasker::rule_of(const masking::Spec* spec) const {
  const auto it = spec_rule_.find(spec);
  return it == spec_rule_.end() ? std::string("a masking rule") : "rule " + policy_->rules()[it->second].name;
}

void ResultMasker::note_masked(std::size_t column, const sql::SourceColumn& origin, const masking::Spec* spec) {
  constexpr std::size_t kMaxMasked = 256;
  if (masked_.size() >= kMaxMasked) return;
  std::string d;
  const auto* rel = origin.relation && catalog_ ? catalog_->by_oid(origin.relation) : nullptr;
  const auto* col = rel ? rel->column_at(origin.attnum) : nullptr;
  if (col)
    d = rel->schema + "." + rel->name + "." + col->name;
  else
    d = "column " + std::to_string(column + 1);
  const auto it = spec_rule_.find(spec);
  d += it == spec_rule_.end() ? std::string(" (origin unknown)") : " (" + policy_->rules()[it->second].name + ")";
  if (std::find(masked_.begin(), masked_.end(), d) == masked_.end()) masked_.push_back(std::move(d));
}

bool ResultMasker::uncertain(const sql::Statement& st) {
  // An unqualified name may mean another relation than the catalog's search path says: after a
  // change of the search_path or of tables earlier in the batch (any schema's relation of that
  // name), or when a relation of that name in another schema of the path can be dropped by another
  // session at any moment (found by an attack round: expressions over the masked table came back
  // raw, traced through a dropped shadow). Uncertain only when one of the candidates has masked
  // columns: otherwise whichever it means, nothing of it is masked (found by a client trial:
  // migrations and reports over unmasked tables were refused or came back masked).
  if (!catalog_) return false;
  for (const auto& r : st.relations) {
    if (!r.schema.empty()) continue;
    // (With one candidate or none, the name means it or nothing the catalog knows: the lineage is
    // right, or undecided and masked as unknown.)
    const auto candidates = catalog_->named(r.name, path_uncertain_);
    if (candidates.size() < 2) continue;
    for (const auto* c : candidates)
      for (const auto& col : c->columns) {
        bool unknown = false;
        if (spec_of_relation_column(c->oid, col.attnum, unknown)) return true;
      }
  }
  return false;
}

bool ResultMasker::any_denies(bool policy::MaskSpec::*what) const {
  for (const std::size_t i : rules_)
    if (policy_->rules()[i].mask.*what) return true;
  return false;
}

bool ResultMasker::denies(const masking::Spec* spec, bool policy::MaskSpec::*what) const {
  if (!spec) return false;
  const auto it = spec_rule_.find(spec);
  if (it == spec_rule_.end()) return any_denies(what);  // unknown origin: masked for every rule
  return policy_->rules()[it->second].mask.*what;
}

const masking::Spec* ResultMasker::spec_of_relation_column(std::uint32_t oid, std::int16_t attnum, bool& unknown) {
  unknown = false;
  const std::uint64_t k = (std::uint64_t(oid) << 16) | std::uint16_t(attnum);
  if (auto it = column_specs_.find(k); it != column_specs_.end()) return it->second;
  const sql::CatalogRelation* rel = catalog_ ? catalog_->by_oid(oid) : nullptr;
  if (!rel) {
    unknown = true;
    return fallback();
  }
  const masking::Spec* spec = nullptr;
  if ((rel->kind == 'v' || rel->kind == 'm') && !rel->definition.empty()) {
    // A view's column: what its definition's column reads.
    std::shared_ptr<const sql::Lineage> vl;
    if (auto it = views_.find(oid); it != views_.end()) {
      vl = it->second;
    } else if (view_depth_ < kMaxViewDepth) {
      vl = std::make_shared<const sql::Lineage>(sql::lineage_of(rel->definition, *catalog_));
      views_.emplace(oid, vl);
    }
    // The view's attnum counts its columns from 1 in order.
    std::size_t index = 0;
    bool found = false;
    for (const auto& c : rel->columns) {
      if (c.attnum == attnum) {
        found = true;
        break;
      }
      ++index;
    }
    if (!found) {
      // A column the catalog read does not have (added since, by another session): unknown origin
      // (found by an attack round: a column added to a view read raw until the catalog expired).
      unknown = true;
      spec = fallback();
    } else if (!vl || !vl->decided || index >= vl->columns.size()) {
      // Cannot tell: masked when the view reads any masked column (or anything unknown).
      spec = nullptr;
      if (!vl || !vl->decided) {
        spec = fallback();
      } else {
        for (const auto& s : vl->read)
          if ((spec = spec_of(s))) break;
      }
    } else {
      ++view_depth_;
      for (const auto& s : vl->columns[index].sources)
        if ((spec = spec_of(s))) break;
      --view_depth_;
    }
  } else if (const auto* col = rel->column_at(attnum)) {
    if (const policy::Rule* r = policy_->column_mask(rules_, rel->schema, rel->name, col->name))
      spec = specs_[std::size_t(r - policy_->rules().data())];
  } else {
    unknown = true;  // a column added since the catalog was read
    spec = fallback();
  }
  column_specs_.emplace(k, spec);
  return spec;
}

const masking::Spec* ResultMasker::spec_of(const sql::SourceColumn& c) {
  bool unknown = false;
  return spec_of_relation_column(c.relation, c.attnum, unknown);
}

bool ResultMasker::involves_masked(const sql::Statement& st, bool unknown_counts) {
  if (!catalog_) return true;
  for (const auto k : st.kinds)  // what they run is another statement's (a cursor's, a prepared one's)
    if (k == sql::StatementKind::Execute || k == sql::StatementKind::Fetch || k == sql::StatementKind::Call)
      return true;
  if (st.opaque_code) return true;
  for (const auto& f : st.functions)  // user code may read any table
    if (catalog_->user_function(f)) return true;
  for (const auto& r : st.relations) {
    const sql::CatalogRelation* rel = catalog_->find(r.schema, r.name);
    if (!rel) {
      // Unknown (made since the catalog was read, or by this very text): a relation only written
      // to is no source of values (found by a client trial: CREATE TEMP TABLE t ...; INSERT INTO t
      // VALUES ... in one Query was refused); one read from may be anything, unless this session
      // made it (note_forwarded).
      if (!(r.access & (sql::kRead | sql::kUpdate | sql::kDelete)) || !unknown_counts) continue;
      if (created_.count(r.schema + "." + r.name)) continue;
      return true;
    }
    for (const auto& c : rel->columns) {
      bool unknown = false;
      if (spec_of_relation_column(rel->oid, c.attnum, unknown)) return true;
    }
  }
  return false;
}

const sql::Statement* ResultMasker::statement_of(const Unit& u) const {
  if (!u.analysis || u.analysis->error) return nullptr;
  const auto& sts = u.analysis->statements;
  const std::size_t i = u.kind == Unit::Kind::Query ? u.statement : 0;
  return i < sts.size() ? &sts[i] : nullptr;
}

void ResultMasker::plan_from(Unit& u, const sql::Statement* st, const std::vector<Field>* fields,
                             const std::vector<std::int16_t>* formats, std::size_t columns, bool trust_origins) {
  u.planned = true;
  u.masks = false;
  u.plan.assign(columns, masking::ColumnMask{});
  u.detect.assign(columns, false);
  if (st && !st->kinds.empty() && st->kinds.front() == sql::StatementKind::Explain) return;  // a plan, not data
  const sql::Lineage* l = nullptr;
  bool lineage_fits = false;
  if (st) {
    l = lineage(st->text);
    // A cursor's DECLARE or a PREPARE stands for the FETCH or EXECUTE that returns its rows.
    const bool defines = std::any_of(st->kinds.begin(), st->kinds.end(), [](sql::StatementKind k) {
      return k == sql::StatementKind::DeclareCursor || k == sql::StatementKind::Prepare;
    });
    lineage_fits = !uncertain(*st) && l && l->decided && (l->returns_rows || defines) && l->columns.size() == columns;
    // A user function may read any table: lineage sees only its arguments (found by an attack
    // round: SELECT f() of a function reading masked columns came back raw).
    if (catalog_)
      for (const auto& f : st->functions) lineage_fits = lineage_fits && !catalog_->user_function(f);
  }
  // Without a statement or a lineage that fits, columns whose origin RowDescription does not give
  // are masked when the statement involves a masked column (fail closed).
  bool involved = false, involved_known = false;
  auto is_involved = [&] {
    if (!involved_known) {
      involved = !st || (!st->relations.empty() && uncertain(*st)) || involves_masked(*st);
      involved_known = true;
    }
    return involved;
  };
  const bool record = collect_ && (u.kind == Unit::Kind::Execute || u.kind == Unit::Kind::Query);
  for (std::size_t i = 0; i < columns; ++i) {
    const masking::Spec* spec = nullptr;
    sql::SourceColumn origin;  // what the column was masked for, when known (for the audit record)
    masking::ColumnMask& cm = u.plan[i];
    if (fields && i < fields->size()) {
      const Field& f = (*fields)[i];
      cm.type_oid = f.type;
      cm.format = f.format == 1 ? masking::Format::Binary : masking::Format::Text;
      if (f.table != 0 && f.attnum > 0 && trust_origins) {
        bool unknown = false;
        spec = spec_of_relation_column(f.table, f.attnum, unknown);
        if (spec) origin = {f.table, f.attnum};
      }
    }
    if (formats) {
      // Bind's result formats: none = text, one = all, else one per column.
      const std::int16_t fmt = formats->empty() ? 0 : formats->size() == 1 ? (*formats)[0]
                                                    : i < formats->size() ? (*formats)[i] : -1;
      if (fmt == 0 || fmt == 1)
        cm.format = fmt == 1 ? masking::Format::Binary : masking::Format::Text;
      else
        cm.type_oid = 0;  // unknown: a masked value becomes NULL
    }
    if (!spec) {
      if (lineage_fits) {
        for (const auto& s : l->columns[i].sources)
          if ((spec = spec_of(s))) {
            origin = s;
            break;
          }
      } else if ((!fields || i >= fields->size() || (*fields)[i].table == 0 || !trust_origins) && is_involved()) {
        spec = fallback();
      }
    }
    cm.spec = spec;
    if (spec) u.masks = true;
    if (spec && record) note_masked(i, origin, spec);
    if (!spec && detectors_) {
      // Text values only: a value of another type has no text to find things in (and a rewrite
      // would not parse as its type).
      // (binary json is its text; binary jsonb a version byte and its text; both stay valid when
      // a string's contents change)
      const bool text = cm.type_oid == 25 || cm.type_oid == 1043 || cm.type_oid == 1042 || cm.type_oid == 19 ||
                        cm.type_oid == 705 || cm.type_oid == 142 || cm.type_oid == 114 || cm.type_oid == 3802;
      if (text) {
        u.detect[i] = true;
        u.masks = true;
      }
    }
  }
}

bool ResultMasker::json_escapes_hide_matches(std::string_view v) {
  // A json value with escapes: decoded (\uXXXX of ASCII, and the one-character escapes), then
  // scanned. When the decoded text holds a match the value is replaced as a whole (found by an
  // attack round: "alice.smith\u0040example.com" passed the detectors).
  if (v.find('\\') == std::string_view::npos) return false;
  std::string decoded;
  decoded.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\\' || i + 1 >= v.size()) {
      decoded.push_back(v[i]);
      continue;
    }
    const char e = v[++i];
    if (e == 'u' && i + 4 < v.size()) {
      unsigned code = 0;
      bool ok = true;
      for (int k = 1; k <= 4; ++k) {
        const char h = v[i + std::size_t(k)];
        code = code * 16 + unsigned(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                    : h >= 'A' && h <= 'F' ? h - 'A' + 10 : (ok = false, 0));
      }
      if (ok) {
        decoded.push_back(code < 0x80 ? char(code) : ' ');
        i += 4;
        continue;
      }
    }
    decoded.push_back(e == 'n' || e == 't' || e == 'r' || e == 'b' || e == 'f' ? ' ' : e);
  }
  std::vector<masking::Match> found;
  return detectors_->find(decoded, found);
}

void ResultMasker::mask_matches(std::string_view v, bool json, std::string& out) {
  // In JSON, a match outside a string is a number (a card number stored as one): it becomes 0, so
  // the document stays valid (found by a client trial: "****" in place of a number broke it). In a
  // string, the masked text has no quote or backslash of its own.
  out.clear();
  std::size_t at = 0;
  bool in_string = false, escaped = false;
  std::size_t scanned = 0;
  for (const auto& m : matches_) {
    if (json)
      for (; scanned < m.offset; ++scanned) {
        const char c = v[scanned];
        if (escaped) escaped = false;
        else if (c == '\\' && in_string) escaped = true;
        else if (c == '"') in_string = !in_string;
      }
    out.append(v.substr(at, m.offset - at));
    const std::string_view found = v.substr(m.offset, m.length);
    if (json && in_string && m.offset > at) {
      // A match right after a backslash would leave half an escape: the backslash goes too.
      std::size_t run = 0;
      while (run < m.offset - at && v[m.offset - 1 - run] == '\\') ++run;
      if (run % 2 == 1) out.pop_back();
    }
    if (json && !in_string) {
      out.push_back('0');
    } else {
      const std::size_t mark = out.size();
      if (!masking::mask_value(*detect_spec_, key_, 25, masking::Format::Text, found, out) ||
          out.find_first_of("\"\\", mark) != std::string::npos) {
        out.resize(mark);
        out.append("****");
      }
    }
    at = m.offset + m.length;
  }
  out.append(v.substr(at));
}

bool ResultMasker::rewrite_detecting(std::string_view body, const Unit& u, std::string& out) {
  // As masking::rewrite_data_row, and text columns not masked by the plan are scanned; each match
  // is replaced by the detecting rule's mask of it (the rest of the value stays).
  if (body.size() < 2) return false;
  const auto n = load_i16(body.data());
  if (n < 0 || std::size_t(n) != u.plan.size()) return false;
  out.clear();
  out.push_back('D');
  out.append(4, '\0');
  out.append(body.substr(0, 2));
  std::size_t pos = 2;
  for (std::size_t i = 0; i < std::size_t(n); ++i) {
    if (body.size() - pos < 4) return false;
    const auto len = std::int32_t(load_be32(body.data() + pos));
    pos += 4;
    if (len < -1 || (len >= 0 && std::size_t(len) > body.size() - pos)) return false;
    const auto put = [&](std::string_view v, bool null) {
      char b[4];
      const std::uint32_t l = null ? 0xFFFFFFFFu : std::uint32_t(v.size());
      b[0] = char(l >> 24), b[1] = char(l >> 16), b[2] = char(l >> 8), b[3] = char(l);
      out.append(b, 4);
      if (!null) out.append(v);
    };
    if (len == -1) {
      put({}, true);
      continue;
    }
    const std::string_view v = body.substr(pos, std::size_t(len));
    pos += std::size_t(len);
    const masking::ColumnMask& cm = u.plan[i];
    if (cm.spec) {
      value_.clear();
      if (masking::mask_value(*cm.spec, key_, cm.type_oid, cm.format, v, value_))
        put(value_, false);
      else
        put({}, true);
      continue;
    }
    matches_.clear();
    if (!u.detect[i] || !detectors_->find(v, matches_)) {
      // json keeps \u escapes as written: what they spell is scanned too (jsonb has none left).
      if (u.detect[i] && cm.type_oid == 114 && json_escapes_hide_matches(v))
        put("null", false);
      else
        put(v, false);
      continue;
    }
    mask_matches(v, cm.type_oid == 114 || cm.type_oid == 3802, value_);
    if (cm.type_oid == 114 && json_escapes_hide_matches(value_)) value_ = "null";
    put(value_, false);
  }
  if (pos != body.size()) return false;
  const std::uint32_t l = std::uint32_t(out.size() - 1);
  out[1] = char(l >> 24), out[2] = char(l >> 16), out[3] = char(l >> 8), out[4] = char(l);
  return true;
}

ResultMasker::Verdict ResultMasker::on_backend(char type, std::string_view body, std::string& out) {
  Unit* u = front();
  switch (type) {
    case 'T': {
      if (!u) return Verdict::Lost;
      std::vector<Field> fields;
      if (!parse_row_description(body, fields)) return Verdict::Lost;
      if (u->kind == Unit::Kind::Describe) {
        auto& map = u->describe == 'S' ? statement_fields_ : portal_fields_;
        const auto& gens = u->describe == 'S' ? statement_gen_ : portal_gen_;
        const auto g = gens.find(u->name);
        if (map.size() >= kMaxNames) map.clear();
        if (u->gen != 0 && g != gens.end() && g->second == u->gen)
          map[u->name] = Described{std::move(fields), u->gen, u->seq};
        else
          map.erase(u->name);  // what it described was replaced since
        pop();
        return Verdict::Pass;
      }
      if (u->kind != Unit::Kind::Query) return Verdict::Lost;
      plan_from(*u, statement_of(*u), &fields, nullptr, fields.size());
      return Verdict::Pass;
    }
    case 'n':
      if (!u || u->kind != Unit::Kind::Describe) return Verdict::Lost;
      if (u->describe == 'S')
        statement_fields_.erase(u->name);
      else
        portal_fields_.erase(u->name);
      pop();
      return Verdict::Pass;
    case 't':
      return u && u->kind == Unit::Kind::Describe ? Verdict::Pass : Verdict::Lost;
    case '1':
    case '2':
    case '3':
      if (!u || u->kind != Unit::Kind::Ext) return Verdict::Lost;
      pop();
      return Verdict::Pass;
    case 'D': {
      if (!u || (u->kind != Unit::Kind::Query && u->kind != Unit::Kind::Execute)) return Verdict::Lost;
      if (!u->planned) {
        if (u->kind == Unit::Kind::Query || body.size() < 2) return Verdict::Lost;  // rows before RowDescription
        const auto columns = std::size_t(std::max<std::int16_t>(0, load_i16(body.data())));
        const std::vector<Field>* fields = described(portal_fields_, portal_gen_, u->name);
        if (!fields)
          if (auto ps = portal_statement_.find(u->name); ps != portal_statement_.end())
            fields = described(statement_fields_, statement_gen_, ps->second);
        const std::vector<std::int16_t>* formats = nullptr;
        if (auto it = portal_formats_.find(u->name); it != portal_formats_.end()) formats = &it->second;
        // What the portal runs is another statement's (a cursor's, a prepared one's) or unknown:
        // the kept RowDescription may be of something else; its origins are not trusted.
        const sql::Statement* st = statement_of(*u);
        bool trust = st != nullptr;
        if (st)
          for (const auto k : st->kinds)
            trust = trust && k != sql::StatementKind::Fetch && k != sql::StatementKind::Execute;
        // Without fields the types are unknown (0): a masked column becomes NULL and nothing is
        // scanned (it may not be text).
        plan_from(*u, st, fields, formats, columns, trust);
      }
      if (!u->masks) return Verdict::Pass;
      out.clear();
      if (detectors_ && std::find(u->detect.begin(), u->detect.end(), true) != u->detect.end()) {
        if (!rewrite_detecting(body, *u, out)) return Verdict::Lost;
        return Verdict::Rewritten;
      }
      if (!masking::rewrite_data_row(body, u->plan, key_, out)) return Verdict::Lost;
      return Verdict::Rewritten;
    }
    case 'C':
    case 'I':
      if (!u) return Verdict::Lost;
      if (u->kind == Unit::Kind::Query) {
        ++u->statement;
        u->planned = false;
        u->masks = false;
        return Verdict::Pass;
      }
      if (u->kind != Unit::Kind::Execute) return Verdict::Lost;
      pop();
      return Verdict::Pass;
    case 's':
      if (!u || u->kind != Unit::Kind::Execute) return Verdict::Lost;
      pop();
      return Verdict::Pass;
    case 'N':
      return u && scrub_message(*u, 'N', body, out) ? Verdict::Rewritten : Verdict::Pass;
    case 'A': {
      // NotificationResponse: a payload comes from whoever ran NOTIFY (or a trigger someone else
      // made); lineage cannot trace it. The content detectors scan it when the session has them.
      if (!detectors_ || body.size() < 4) return Verdict::Pass;
      const auto chan_end = body.find('\0', 4);
      if (chan_end == std::string_view::npos) return Verdict::Lost;
      const auto pay_end = body.find('\0', chan_end + 1);
      if (pay_end == std::string_view::npos) return Verdict::Lost;
      const std::string_view payload = body.substr(chan_end + 1, pay_end - chan_end - 1);
      matches_.clear();
      if (!detectors_->find(payload, matches_)) return Verdict::Pass;
      mask_matches(payload, false, value_);
      std::string b(body.substr(0, chan_end + 1));
      b += value_;
      b.push_back('\0');
      out.clear();
      out.push_back('A');
      const std::uint32_t l = std::uint32_t(b.size() + 4);
      out.push_back(char(l >> 24));
      out.push_back(char(l >> 16));
      out.push_back(char(l >> 8));
      out.push_back(char(l));
      out += b;
      return Verdict::Rewritten;
    }
    case 'E': {
      const bool scrubbed = u && scrub_message(*u, 'E', body, out);
      const Verdict v = scrubbed ? Verdict::Rewritten : Verdict::Pass;
      if (!u) return v;  // a FATAL error on its own
      if (u->kind == Unit::Kind::Query || u->kind == Unit::Kind::Sync) return v;  // ReadyForQuery follows
      skip_to_sync();
      return v;
    }
    case 'Z':
      if (!u || (u->kind != Unit::Kind::Query && u->kind != Unit::Kind::Sync)) return Verdict::Lost;
      pop();
      return Verdict::Pass;
    case 'H': {
      // COPY TO STDOUT: its rows are masked as DataRows are (start_copy); what cannot be traced
      // was refused up front (refusal_for). One that gets here anyway (through a function, a
      // rule) while it involves masked columns ends the session.
      copy_masker_.reset();
      if (!u) return Verdict::Lost;
      if (!active()) return Verdict::Pass;
      const sql::Statement* st = statement_of(*u);
      if (!st) return Verdict::Lost;
      const sql::Lineage* l = lineage(st->text);
      if (!l || !l->decided || !l->copy.present) return involves_masked(*st) ? Verdict::Lost : Verdict::Pass;
      bool masked = false;
      for (const auto& c : l->columns)
        for (const auto& s : c.sources) masked = masked || spec_of(s) != nullptr;
      if (!masked) return Verdict::Pass;
      if (!copy_unsupported(l->copy).empty()) return Verdict::Lost;
      start_copy(*l);
      return Verdict::Pass;
    }
    case 'd': {
      if (!copy_masker_) return Verdict::Pass;
      copy_out_.clear();
      if (!copy_masker_->feed(body, copy_out_)) return Verdict::Lost;
      out.clear();
      if (!copy_out_.empty()) {  // whole rows only; the rest waits for the next CopyData
        const std::uint32_t l = std::uint32_t(copy_out_.size() + 4);
        out.push_back('d');
        out.push_back(char(l >> 24));
        out.push_back(char(l >> 16));
        out.push_back(char(l >> 8));
        out.push_back(char(l));
        out += copy_out_;
      }
      return Verdict::Rewritten;
    }
    case 'c': {
      if (!copy_masker_) return Verdict::Pass;
      const bool ok = copy_masker_->finish();
      copy_masker_.reset();
      return ok ? Verdict::Pass : Verdict::Lost;
    }
    default:
      return Verdict::Pass;
  }
}

bool ResultMasker::scrub_message(Unit& u, char type, std::string_view body, std::string& out) {
  // PostgreSQL's messages quote values ("invalid input syntax for type integer: \"219-09-9999\"",
  // "Key (ssn)=(...) already exists", `schema "..." does not exist` from a cast to regnamespace),
  // and code can RAISE anything, in the statement or in a trigger or function it runs (found by
  // attack rounds). In a session whose results are masked, the message, detail, hint and context of
  // errors and notices are withheld, whatever statement they answer; the SQLSTATE, severity and
  // position stay. Kept: the few classes whose messages never carry data.
  if (!active()) return false;
  bool involved = true;  // Sync: errors at commit (deferred triggers); a statement not known
  if (u.kind == Unit::Kind::Query || u.kind == Unit::Kind::Execute) {
    if (const sql::Statement* st = statement_of(u)) {
      // Triggers run on writes; an unknown relation alone does not count here (a typo's
      // "relation does not exist" is the statement's own text).
      involved = involves_masked(*st, false);
      for (const auto k : st->kinds)
        involved = involved || k == sql::StatementKind::Insert || k == sql::StatementKind::Update ||
                   k == sql::StatementKind::Delete || k == sql::StatementKind::Merge ||
                   k == sql::StatementKind::CopyFrom || k == sql::StatementKind::Commit;
    }
  } else if (u.kind != Unit::Kind::Sync) {
    return false;  // Parse, Bind, Describe: about the client's own text and parameters
  }
  if (!involved) return false;
  std::string_view sqlstate;
  for (std::size_t pos = 0; pos < body.size() && body[pos] != '\0';) {
    const char f = body[pos];
    const auto end = body.find('\0', pos + 1);
    if (end == std::string_view::npos) return false;
    if (f == 'C') sqlstate = body.substr(pos + 1, end - pos - 1);
    pos = end + 1;
  }
  static constexpr std::string_view kKept[] = {"42501", "25P02", "25001", "25006", "57014", "57P01", "40001", "40P01",
                                               "53100", "53200", "53300", "08006", "0A000"};
  for (const auto c : kKept)
    if (sqlstate == c) {
      // 0A000 only as the proxy's own refusals and PostgreSQL's "not supported" messages without
      // quotes; a quoted name in it may be a value (cross-database reference of a cast).
      if (c == "0A000" && body.find('"') != std::string_view::npos) break;
      return false;
    }
  std::string b;
  for (std::size_t pos = 0; pos < body.size() && body[pos] != '\0';) {
    const char f = body[pos];
    const auto end = body.find('\0', pos + 1);
    const std::string_view v = body.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    switch (f) {
      case 'S': case 'V': case 'C': case 'P': case 's': case 't': case 'c': case 'd': case 'n': case 'F': case 'L':
      case 'R':
        b.push_back(f);
        b.append(v);
        b.push_back('\0');
        break;
      case 'M':
        b.push_back('M');
        b.append("message withheld by Gatehouse: the statement involves masked columns (or code or triggers the "
                 "proxy cannot see into), and the server's message may quote their values (SQLSTATE ");
        b.append(sqlstate);
        b.append(")");
        b.push_back('\0');
        break;
      default:  // D, H, W, p, q: detail, hint, context, internal query
        break;
    }
  }
  b.push_back('\0');
  out.clear();
  out.push_back(type);
  const std::uint32_t len = std::uint32_t(b.size() + 4);
  out.push_back(char(len >> 24));
  out.push_back(char(len >> 16));
  out.push_back(char(len >> 8));
  out.push_back(char(len));
  out += b;
  return true;
}

masking::CopyOptions ResultMasker::copy_options(const sql::CopyOut& c, masking::CopyFormat& format) {
  format = c.format == "csv"      ? masking::CopyFormat::Csv
           : c.format == "binary" ? masking::CopyFormat::Binary
                                  : masking::CopyFormat::Text;
  masking::CopyOptions o;
  if (c.delimiter) o.delimiter = (*c.delimiter)[0];
  if (c.quote) o.quote = (*c.quote)[0];
  if (c.escape) o.escape = (*c.escape)[0];
  o.null_string = c.null;
  o.header = c.header;
  return o;
}

std::string ResultMasker::copy_unsupported(const sql::CopyOut& c) {
  if (c.format != "text" && c.format != "csv" && c.format != "binary") return "COPY format " + c.format;
  if (c.other_options) return "COPY options other than FORMAT, DELIMITER, NULL, QUOTE, ESCAPE and HEADER";
  for (const auto* o : {&c.delimiter, &c.quote, &c.escape})
    if (*o && o->value().size() != 1) return "a COPY option of more than one character";
  // In text format PostgreSQL does not escape a value equal to the NULL string: a chosen NULL
  // string would pass a guessed value through as "NULL" (found by an attack round).
  // (\N, the default, as psycopg2's copy_to spells it out, is the default's own behaviour.)
  if (c.format == "text" && c.null && *c.null != "\\N") return "a NULL string other than \\N in text format";
  masking::CopyFormat format;
  const masking::CopyMasker probe(format, {}, {}, copy_options(c, format));
  if (probe.failed()) return "COPY options the proxy cannot read back";
  return {};
}

void ResultMasker::start_copy(const sql::Lineage& l) {
  std::vector<masking::ColumnMask> plan(l.columns.size());
  for (std::size_t i = 0; i < l.columns.size(); ++i) {
    for (const auto& s : l.columns[i].sources)
      if ((plan[i].spec = spec_of(s))) {
        if (collect_) note_masked(i, s, plan[i].spec);
        break;
      }
    // COPY table TO: each column is the table's, of its type; an expression's type is not known
    // here, and a masked value of unknown type becomes NULL.
    if (l.copy.relation && l.columns[i].sources.size() == 1)
      if (const auto* rel = catalog_->by_oid(l.columns[i].sources[0].relation))
        if (const auto* col = rel->column_at(l.columns[i].sources[0].attnum)) plan[i].type_oid = col->type_oid;
  }
  masking::CopyFormat format;
  masking::CopyOptions o = copy_options(l.copy, format);
  copy_masker_ = std::make_unique<masking::CopyMasker>(format, std::move(plan), key_, std::move(o));
}

std::optional<std::string> ResultMasker::refusal_for(const sql::Statement& st) {
  static constexpr std::string_view kStatistics[] = {"pg_stats", "pg_statistic", "pg_stats_ext",
                                                     "pg_stats_ext_exprs", "pg_statistic_ext_data"};
  for (const auto& r : st.relations) {
    if (r.schema.empty() || r.schema == "pg_catalog")
      for (const auto n : kStatistics)
        if (r.name == n)
          return "it reads " + r.name + ", which holds sampled values of every table's columns, masked ones too";
    if (!(r.access & sql::kDdl) || !catalog_) continue;
    // Classification and lineage go by names: renaming a table or column, adding a generated
    // column, an index over an expression, a rule, a trigger or a parent table would let its values
    // out under names no rule covers (found by an attack round).
    const sql::CatalogRelation* rel = catalog_->find(r.schema, r.name);
    if (!rel) continue;  // made by this statement
    for (const auto& c : rel->columns) {
      bool unknown = false;
      if (spec_of_relation_column(rel->oid, c.attnum, unknown))
        return "it changes the definition of " + rel->schema + "." + rel->name + ", whose column " + c.name +
               " is masked for you";
    }
  }
  for (const auto& f : st.functions)
    if (f == "pg_mcv_list_items" || f == "pg_catalog.pg_mcv_list_items")
      return std::string("it reads extended statistics, which hold sampled column values");
  // Files on the database server include the masked tables' own data files (found by an attack
  // round: pg_read_binary_file(pg_relation_filepath('customers')) and COPY FROM PROGRAM 'strings
  // ...' read every masked value raw, on a target whose guardrails were off).
  if (st.server_file_access || st.server_program)
    return std::string("it reads or writes files on the database server (or runs a program there), where the data "
                       "of masked columns is stored unmasked");
  for (const auto k : st.kinds) {
    // A fast-path call's result is a value of a function named by OID: no RowDescription, no
    // statement to trace (it was sent back unmasked until this refusal). The large-object calls
    // the proxy knows by OID (libpq's lo_* API) return large objects, not table columns.
    if (k == sql::StatementKind::FunctionCall && st.opaque_code)
      return std::string("it is a fast-path function call, whose result the proxy cannot trace or mask");
    // Code the proxy cannot see into may copy masked values anywhere (found by an attack round:
    // DO $$ BEGIN INSERT INTO mine SELECT ssn FROM customers; END $$).
    if (k == sql::StatementKind::Do || k == sql::StatementKind::CreateFunction || k == sql::StatementKind::Call)
      return std::string("it runs or defines code (DO, a function or procedure) that the proxy cannot see into, and "
                         "masking could not follow what it reads");
    // ALTER SCHEMA ... RENAME and the like: classification goes by names.
    if (k == sql::StatementKind::Alter && st.relations.empty())
      return std::string("it alters a schema or another object by name, and classification goes by names");
  }
  if (catalog_) {
    const sql::Lineage* l = lineage(st.text);
    for (const auto& f : st.functions)
      if (catalog_->user_function(f)) {
        bool masked_input = !l || !l->decided;
        if (l && l->decided)
          for (const auto& s : l->read) masked_input = masked_input || spec_of(s) != nullptr;
        if (masked_input && involves_masked(st))
          return "it calls " + f + "(), a function the proxy cannot see into, in a statement that involves masked "
                 "columns";
        if (any_denies(&policy::MaskSpec::deny_undecided) && involves_masked(st))
          return "it calls " + f + "(), a function the proxy cannot see into, so the origin of its result columns "
                 "cannot be told, and a masking rule refuses such statements (mask.undecided: deny)";
      }
  }
  if (!reads_data(st)) return std::nullopt;
  const sql::Lineage* l = lineage(st.text);
  if (!l) return std::string("the proxy could not read the database's catalog, which masking needs");
  if (!st.relations.empty() && uncertain(st)) {
    const bool moves = std::any_of(st.kinds.begin(), st.kinds.end(), [](sql::StatementKind k) {
      return k == sql::StatementKind::Insert || k == sql::StatementKind::Update || k == sql::StatementKind::Merge ||
             k == sql::StatementKind::Create || k == sql::StatementKind::CopyTo || k == sql::StatementKind::Delete;
    });
    if (moves || (any_denies(&policy::MaskSpec::deny_undecided) && involves_masked(st)))
      return std::string("the proxy cannot be sure which tables it reads (the search_path or tables changed earlier in "
                         "this batch, or a table name it uses is in more than one schema of the search_path); send it "
                         "after the next Sync or as its own Query, or qualify the table names");
  }
  if (!l->decided) {
    // What cannot be analysed may still run when it involves no masked column: its columns are
    // then masked by origin, or when their origin is unknown (plan_from).
    if (!involves_masked(st)) return std::nullopt;
    const bool moves = std::any_of(st.kinds.begin(), st.kinds.end(), [](sql::StatementKind k) {
      return k == sql::StatementKind::Insert || k == sql::StatementKind::Update || k == sql::StatementKind::Merge ||
             k == sql::StatementKind::Create || k == sql::StatementKind::CopyTo || k == sql::StatementKind::Delete;
    });
    if (moves) return "it involves masked columns and the proxy cannot trace where their values go (" + l->why + ")";
    for (const std::size_t i : rules_)
      if (policy_->rules()[i].mask.deny_predicates)
        return "it involves masked columns and the proxy cannot tell whether it filters by them (" + l->why + ")";
    // EXECUTE and FETCH run what their PREPARE or DECLARE traced (and judged) when it was sent.
    if (!l->runs_another && any_denies(&policy::MaskSpec::deny_undecided))
      return "it involves masked columns and the proxy cannot trace the origin of its result columns (" + l->why +
             "), and a masking rule refuses such statements (mask.undecided: deny)";
    return std::nullopt;
  }
    for (const auto& s : l->filtered)
      if (const auto it = spec_rule_.find(spec_of(s)); it != spec_rule_.end()) {
        const auto& rule = policy_->rules()[it->second];
        if (rule.mask.deny_predicates) {
          const auto* rel = catalog_->by_oid(s.relation);
          const auto* col = rel ? rel->column_at(s.attnum) : nullptr;
          return "it filters, joins, groups or orders by " +
                 (rel && col ? rel->schema + "." + rel->name + "." + col->name : std::string("a column")) +
                 ", which rule " + rule.name + " masks for you and whose values it keeps from being inferred";
        }
      }
  for (const auto& s : l->stored)
    if (spec_of(s))
      return std::string("it would store values of masked columns where masking cannot follow them (a table, a file or "
                         "a view)");
  bool copy_to = false;
  for (const auto k : st.kinds) copy_to = copy_to || k == sql::StatementKind::CopyTo;
  if (copy_to && catalog_)
    for (const auto& f : st.functions)
      if (catalog_->user_function(f))
        return "COPY TO output is not masked, and it calls " + f + "(), a function the proxy cannot see into";
  if (copy_to && l->copy.present && detectors_)
    return std::string("content detectors apply to your session, and COPY output is not scanned by them");
  if (copy_to && l->copy.present)
    for (const auto& c : l->columns)
      for (const auto& s : c.sources)
        if (const masking::Spec* spec = spec_of(s); spec && denies(spec, &policy::MaskSpec::deny_copy)) {
          const auto* rel = catalog_->by_oid(s.relation);
          const auto* col = rel ? rel->column_at(s.attnum) : nullptr;
          return "COPY TO would return " +
                 (rel && col ? rel->schema + "." + rel->name + "." + col->name : std::string("a column")) + ", which " +
                 rule_of(spec) + " masks for you and does not let out through COPY (mask.copy: deny)";
        }
  if (copy_to && l->copy.present)
    for (const auto& c : l->columns)
      for (const auto& s : c.sources)
        if (spec_of(s))
          if (auto why = copy_unsupported(l->copy); !why.empty())
            return "COPY TO would return values of masked columns, and the proxy masks COPY output only in text, csv "
                   "and binary format with single-character options (" + why + ")";
  return std::nullopt;
}

std::optional<std::string> ResultMasker::binary_refusal(const sql::Analysis& a, std::string_view statement,
                                                        std::string_view bind) {
  if (!any_denies(&policy::MaskSpec::deny_binary)) return std::nullopt;
  std::vector<std::int16_t> formats;
  if (!result_formats(bind, formats)) return std::nullopt;  // malformed: the server refuses it
  if (std::none_of(formats.begin(), formats.end(), [](std::int16_t f) { return f == 1; })) return std::nullopt;
  const sql::Statement* st = !a.error && a.statements.size() == 1 ? &a.statements[0] : nullptr;
  if (st && !st->kinds.empty() && st->kinds.front() == sql::StatementKind::Explain) return std::nullopt;
  // The result's columns: from a Describe of the statement answered earlier, else the lineage (as
  // plan_from traces them once the rows come).
  const std::vector<Field>* fields = described(statement_fields_, statement_gen_, std::string(statement));
  const sql::Lineage* l = st ? lineage(st->text) : nullptr;
  bool fits = st && !uncertain(*st) && l && l->decided && l->returns_rows;
  if (fits && catalog_)
    for (const auto& f : st->functions) fits = fits && !catalog_->user_function(f);
  if (fits && fields && l->columns.size() != fields->size()) fits = false;
  if (!fields && !fits) {
    if (st && l && l->decided && !l->returns_rows) return std::nullopt;  // no rows
    if (st && !involves_masked(*st)) return std::nullopt;
    return std::string("it asks for its result in binary format, the proxy cannot tell its columns before it runs, "
                       "and it involves masked columns, which a masking rule refuses in binary format unless they "
                       "are text (mask.binary: deny)");
  }
  const std::size_t n = fields ? fields->size() : l->columns.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::int16_t fmt = formats.size() == 1 ? formats[0] : i < formats.size() ? formats[i] : 0;
    if (fmt != 1) continue;
    const Field* f = fields ? &(*fields)[i] : nullptr;
    const masking::Spec* spec = nullptr;
    if (f && f->table != 0 && f->attnum > 0) {
      bool unknown = false;
      spec = spec_of_relation_column(f->table, f->attnum, unknown);
    }
    if (!spec) {
      if (fits) {
        for (const auto& s : l->columns[i].sources)
          if ((spec = spec_of(s))) break;
      } else if ((!f || f->table == 0) && (!st || involves_masked(*st))) {
        spec = fallback();
      }
    }
    if (!spec || !denies(spec, &policy::MaskSpec::deny_binary)) continue;
    // The column's type: as described, else the source column's when the result column is named
    // as its one source (a guess that only decides between refusing and NULL: the rows are masked
    // by their RowDescription's type either way).
    std::uint32_t type = f ? f->type : 0;
    if (!type && fits && l->columns[i].sources.size() == 1 && catalog_)
      if (const auto* rel = catalog_->by_oid(l->columns[i].sources[0].relation))
        if (const auto* col = rel->column_at(l->columns[i].sources[0].attnum); col && col->name == l->columns[i].name)
          type = col->type_oid;
    if (masking::is_text_type(type)) continue;
    const std::string name = fits && !l->columns[i].name.empty() ? "\"" + l->columns[i].name + "\""
                                                                  : "number " + std::to_string(i + 1);
    return "it asks for column " + name + " in binary format, which " + rule_of(spec) + " masks for you, and " +
           (type ? "its type is not text" : "the proxy cannot tell its type before it runs") +
           ": in binary format only text is masked in place, and the rule refuses the rest (mask.binary: deny)";
  }
  return std::nullopt;
}

}  // namespace gh::proxy
