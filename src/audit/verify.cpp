#include "audit/verify.h"

#include <charconv>

#include <nlohmann/json.hpp>

namespace gh::audit {

namespace {

using nlohmann::json;

std::string str_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::int64_t> body_seq(const json& j) {
  auto it = j.find("seq");
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}

// The first search column that disagrees with what the body implies, or "".
std::string differing_column(const RecordIndex& c, const RecordIndex& b) {
#define GH_CMP(f) \
  if (c.f != b.f) return #f;
  GH_CMP(node) GH_CMP(time) GH_CMP(time_us) GH_CMP(type) GH_CMP(session) GH_CMP(statement) GH_CMP(subject)
  GH_CMP(email) GH_CMP(groups) GH_CMP(kind) GH_CMP(client) GH_CMP(target) GH_CMP(environment) GH_CMP(database)
  GH_CMP(kinds) GH_CMP(relations) GH_CMP(tags) GH_CMP(decision) GH_CMP(rule) GH_CMP(outcome) GH_CMP(sqlstate)
  GH_CMP(rows) GH_CMP(duration_us) GH_CMP(text)
#undef GH_CMP
  return {};
}

std::string where(const StoredRecord& s) {
  return s.line ? "line " + std::to_string(s.line) : "seq " + std::to_string(s.seq);
}

struct Anomaly {
  std::int64_t expect = 0;  // the seq the chain needs next
  std::int64_t found = 0;   // the seq the record's body claims
  std::string at;           // where it is stored
};

// Which change explains a record claiming seq `found` where `expect` belongs: a second scan
// (constant memory) counts the records claiming each of the two.
Result<Finding> classify(AuditReader& reader, std::string_view node, const Anomaly& a) {
  std::uint64_t count_found = 0, count_expect = 0;
  std::string first_found_at, expect_at;
  auto r = reader.scan(node, 0, [&](const StoredRecord& s) {
    if (!s.well_formed) return true;
    auto j = json::parse(s.body, nullptr, false);
    if (!j.is_object()) return true;
    const auto b = body_seq(j);
    if (!b) return true;
    if (*b == a.found && count_found++ == 0) first_found_at = where(s);
    if (*b == a.expect && count_expect++ == 0) expect_at = where(s);
    return true;
  });
  if (!r) return tl::unexpected(r.error());
  const auto E = std::uint64_t(a.expect), F = std::uint64_t(a.found);
  if (count_found >= 2)
    return Finding{Problem::Inserted, F,
                   "record " + std::to_string(F) + " appears more than once (" + first_found_at + " and " + a.at +
                       "): a record was inserted into the chain"};
  if (count_expect >= 1)
    return Finding{Problem::Reordered, E,
                   "record " + std::to_string(E) + " is stored out of order: " + a.at + " holds record " +
                       std::to_string(F) + " where record " + std::to_string(E) + " belongs (record " +
                       std::to_string(E) + " is at " + expect_at + ")"};
  if (a.found > a.expect)
    return Finding{Problem::Deleted, E,
                   F - E == 1 ? "record " + std::to_string(E) + " is missing (the next stored record is " +
                                    std::to_string(F) + ")"
                              : "records " + std::to_string(E) + " to " + std::to_string(F - 1) + " are missing"};
  return Finding{Problem::Reordered, E,
                 a.at + " holds record " + std::to_string(F) + " where record " + std::to_string(E) + " belongs"};
}

}  // namespace

std::string_view problem_name(Problem p) {
  switch (p) {
    case Problem::EditedBody: return "edited body";
    case Problem::EditedColumn: return "edited column";
    case Problem::Deleted: return "deleted";
    case Problem::Inserted: return "inserted";
    case Problem::Reordered: return "reordered";
    case Problem::Truncated: return "truncated";
    case Problem::BadSignature: return "bad checkpoint signature";
    case Problem::CheckpointMismatch: return "checkpoint does not match the chain";
    case Problem::AnchorMismatch: return "does not match the external anchor";
    case Problem::EditedStore: return "edited store structure";
    case Problem::Unsigned: return "no signed checkpoint";
  }
  return "?";
}

Result<VerifyOptions::Head> parse_head(std::string_view text, std::string_view option) {
  const auto colon = text.find(':');
  VerifyOptions::Head h;
  auto seq = colon == std::string_view::npos ? std::nullopt : to_u64(text.substr(0, colon));
  if (!seq || *seq == 0 || text.size() - colon - 1 != 64)
    return fail("", std::string(option) + ": expected SEQ:HASH (a sequence number and 64 hex digits), got \"" +
                        std::string(text) + "\"");
  h.seq = *seq;
  h.hash = std::string(text.substr(colon + 1));
  for (auto& c : h.hash) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (chain_hash(h.hash, "").empty()) return fail("", std::string(option) + ": the hash must be 64 hex digits");
  return h;
}

Result<VerifyReport> verify_chain(AuditReader& reader, std::string_view node, const VerifyOptions& o) {
  VerifyReport rep;
  rep.node = std::string(node);
  const bool columns = reader.has_columns();
  bool first = true;
  std::int64_t expect = 0, last_pos = 0;
  std::string prev_hash, first_prev, prev_type;
  std::uint64_t prev_seq = 0;
  bool retention_ok = false;
  // With a key, the Retention record that explains the missing start must be covered by a signed
  // checkpoint of its own run (before any later Start): one appended to the chain by whoever
  // deleted the start would not be (found by adversarial testing: the start of a trail deleted
  // and one forged Retention record appended passed verify with the key).
  std::uint64_t retention_seq = 0;
  bool retention_signed = false, retention_run_ended = false;
  std::optional<Anomaly> anomaly;
  std::optional<std::string> anchor_hash;  // the hash of record expect_head->seq, when stored
  struct Deferred {  // a checkpoint covering an older record than its predecessor
    std::uint64_t at, covers;
    std::string hash;
  };
  std::vector<Deferred> deferred;
  bool last_checkpoint_covers_stop = false;
  std::string wrong_algorithm;  // set: a usage error, not a finding

  auto stop = [&](Problem k, std::uint64_t seq, std::string msg) {
    rep.problem = Finding{k, seq, std::move(msg)};
    return false;
  };

  auto scanned = reader.scan(node, 0, [&](const StoredRecord& s) -> bool {
    const std::uint64_t here = first ? std::uint64_t(std::max<std::int64_t>(s.seq, 1)) : std::uint64_t(expect);
    if (!s.well_formed && !s.block_problem.empty()) return stop(Problem::EditedBody, here, s.block_problem);
    if (!s.well_formed)
      return stop(Problem::EditedBody, here, where(s) + " is not an audit record line ({\"hash\":...,\"body\":...})");
    auto j = json::parse(s.body, nullptr, false);
    const auto B = j.is_object() ? body_seq(j) : std::nullopt;
    if (!B || *B <= 0) return stop(Problem::EditedBody, here, "the body at " + where(s) + " is not a valid record");
    const std::int64_t S = columns ? s.seq : *B;
    if (!first && columns && S <= last_pos)
      return stop(Problem::Inserted, std::uint64_t(S),
                  "a second row is stored at seq " + std::to_string(S) + ": a record was inserted");
    if (first) expect = S;
    if (columns && S != *B && *B == expect)
      return stop(Problem::EditedColumn, std::uint64_t(*B),
                  "the seq column of record " + std::to_string(*B) + " says " + std::to_string(S));
    if (*B != expect || S != expect) {
      anomaly = Anomaly{expect, *B, where(s)};
      return false;
    }
    const std::uint64_t seq = std::uint64_t(*B);
    const std::string prev = str_field(j, "prev");
    const std::string h = chain_hash(prev, s.body);
    if (h.empty() || h != s.hash)
      return stop(Problem::EditedBody, seq,
                  "record " + std::to_string(seq) + " does not hash to its stored hash: its body (or hash) was changed");
    if (first) {
      if (seq == 1 && prev != kGenesisHash)
        return stop(Problem::EditedBody, 1, "record 1 does not start from the genesis hash");
      if (o.continues) {
        // A rotated file: its start is proven by the end of the file before it.
        if (seq != o.continues->seq + 1)
          return stop(Problem::Deleted, o.continues->seq + 1,
                      "the trail starts at record " + std::to_string(seq) + ", not at " +
                          std::to_string(o.continues->seq + 1) + " right after the given record " +
                          std::to_string(o.continues->seq) + ": records between them are missing");
        if (prev != o.continues->hash)
          return stop(Problem::EditedBody, seq,
                      "record " + std::to_string(seq) + " does not follow the given record " +
                          std::to_string(o.continues->seq) + " (its prev is another hash)");
        retention_ok = retention_signed = true;  // the start is accounted for
      }
      first_prev = prev;
      rep.first_seq = seq;
    } else if (prev != prev_hash) {
      return stop(Problem::EditedBody, seq - 1,
                  "record " + std::to_string(seq) + " names another predecessor than the stored record " +
                      std::to_string(seq - 1) + ": record " + std::to_string(seq - 1) +
                      " was replaced and its hash recomputed");
    }
    const std::string body_node = str_field(j, "node");
    if (body_node != node)
      return stop(columns ? Problem::EditedColumn : Problem::Inserted, seq,
                  "record " + std::to_string(seq) + " belongs to the chain of node \"" + body_node + "\"");
    if (!s.block_problem.empty()) return stop(Problem::EditedColumn, seq, s.block_problem);
    if (columns) {
      if (!s.mistyped_column.empty())
        return stop(Problem::EditedColumn, seq,
                    "the " + s.mistyped_column + " column of record " + std::to_string(seq) +
                        " is stored as another type than its own (the same bytes as a BLOB, say): searches "
                        "compare types and would no longer find the record");
      if (s.prev != prev)
        return stop(Problem::EditedColumn, seq, "the prev column of record " + std::to_string(seq) + " was changed");
      auto idx = index_of(s.body);
      if (!idx) return stop(Problem::EditedBody, seq, "record " + std::to_string(seq) + ": " + idx.error().message);
      if (auto col = differing_column(*s.columns, *idx); !col.empty())
        return stop(Problem::EditedColumn, seq,
                    "the " + col + " column of record " + std::to_string(seq) + " disagrees with its signed body");
    }
    const std::string type = str_field(j, "type");
    json fields = j.contains("fields") && j["fields"].is_object() ? j["fields"] : json::object();
    if (type == "checkpoint") {
      ++rep.checkpoints;
      const auto covers = to_u64(str_field(fields, "covers_seq"));
      const std::string covers_hash = str_field(fields, "covers_hash");
      if (!covers || *covers >= seq)
        return stop(Problem::CheckpointMismatch, seq, "checkpoint " + std::to_string(seq) + " names no earlier record");
      if (*covers + 1 == seq) {
        if (covers_hash != prev)
          return stop(Problem::CheckpointMismatch, seq,
                      "checkpoint " + std::to_string(seq) + " signed hash " + covers_hash.substr(0, 16) +
                          "... for record " + std::to_string(*covers) + ", but the chain has " + prev.substr(0, 16) +
                          "... there: the records up to " + std::to_string(*covers) +
                          " were changed and the chain recomputed");
      } else {
        deferred.push_back({seq, *covers, covers_hash});
      }
      if (o.signer) {
        const std::string alg = str_field(fields, "algorithm"), key_id = str_field(fields, "key_id");
        if (alg != CheckpointSigner::name(o.signer->algorithm()) && rep.signatures_checked == 0 &&
            CheckpointSigner::algorithm_from_name(alg)) {
          // The first signed checkpoint names another algorithm than the one given: most likely
          // --algorithm (or the key) is wrong, not the trail (it said TAMPERED).
          wrong_algorithm = "the trail's checkpoints are signed with " + alg + " (checkpoint " + std::to_string(seq) +
                            "), not " + std::string(CheckpointSigner::name(o.signer->algorithm())) +
                            ": give --algorithm " + alg + " and that key";
          return false;
        }
        if (alg != CheckpointSigner::name(o.signer->algorithm()) || key_id != o.signer->key_id())
          return stop(Problem::BadSignature, seq,
                      "checkpoint " + std::to_string(seq) + " says it is signed with " + alg + " key " + key_id +
                          ", not the given " + std::string(CheckpointSigner::name(o.signer->algorithm())) + " key " +
                          o.signer->key_id());
        if (!o.signer->verify(CheckpointSigner::message(body_node, *covers, covers_hash), str_field(fields, "signature")))
          return stop(Problem::BadSignature, seq, "the signature of checkpoint " + std::to_string(seq) + " is not valid");
        ++rep.signatures_checked;
        if (retention_seq && !retention_run_ended && *covers >= retention_seq) retention_signed = true;
      }
      rep.last_checkpoint_seq = seq;
      last_checkpoint_covers_stop = prev_type == "stop" && *covers == prev_seq;
    } else if (type == "retention") {
      const auto through = to_u64(str_field(fields, "pruned_through"));
      if (through && *through + 1 == rep.first_seq && str_field(fields, "anchor") == first_prev && !retention_ok) {
        retention_ok = true;
        retention_seq = seq;
      }
    } else if (type == "start" && retention_seq && !retention_signed) {
      retention_run_ended = true;
    }
    if (o.expect_head && o.expect_head->seq == seq) anchor_hash = s.hash;
    prev_hash = s.hash;
    prev_type = type;
    prev_seq = seq;
    expect = std::int64_t(seq) + 1;
    last_pos = S;
    first = false;
    ++rep.records;
    rep.last_seq = seq;
    rep.last_hash = s.hash;
    return true;
  });
  if (!scanned) return tl::unexpected(scanned.error());
  if (!wrong_algorithm.empty()) return fail("", wrong_algorithm);
  if (anomaly) {
    auto f = classify(reader, node, *anomaly);
    if (!f) return tl::unexpected(f.error());
    rep.problem = std::move(*f);
  }
  if (rep.problem) return rep;

  if (rep.records > 0 && rep.first_seq > 1 && !retention_ok) {
    rep.problem = Finding{Problem::Deleted, rep.first_seq - 1,
                          "the trail starts at record " + std::to_string(rep.first_seq) + " and no Retention record says "
                          "records up to " + std::to_string(rep.first_seq - 1) + " were pruned: they were deleted"};
    return rep;
  }
  if (rep.records > 0 && rep.first_seq > 1 && o.signer && !retention_signed) {
    rep.problem = Finding{Problem::Deleted, rep.first_seq - 1,
                          "the trail starts at record " + std::to_string(rep.first_seq) + "; Retention record " +
                              std::to_string(retention_seq) + " says records up to " + std::to_string(rep.first_seq - 1) +
                              " were pruned, but no signed checkpoint of its run covers it (the proxy signs one right "
                              "after each Retention record): it may have been added by whoever deleted them"};
    return rep;
  }
  {  // SQLite (rows and blocks): an index that misses rows hides them from searches
    auto bad = reader.integrity();
    if (!bad) return tl::unexpected(bad.error());
    if (!bad->empty()) {
      rep.problem = Finding{Problem::EditedStore, rep.first_seq,
                            "the store's structure disagrees with its rows (PRAGMA integrity_check: " + *bad +
                                "): an index was changed, so searches may not see every record"};
      return rep;
    }
  }
  for (const auto& d : deferred) {
    std::optional<std::string> have;
    auto r = reader.scan(node, std::int64_t(d.covers) - 1, [&](const StoredRecord& s) {
      if (s.seq == std::int64_t(d.covers)) have = s.hash;
      return false;
    });
    if (!r) return tl::unexpected(r.error());
    if (have && *have != d.hash) {
      rep.problem = Finding{Problem::CheckpointMismatch, d.at,
                            "checkpoint " + std::to_string(d.at) + " signed another hash for record " +
                                std::to_string(d.covers) + " than the chain has"};
      return rep;
    }
  }
  rep.clean_end = rep.last_checkpoint_seq != 0 && rep.last_checkpoint_seq == rep.last_seq && last_checkpoint_covers_stop;
  rep.uncovered = rep.last_checkpoint_seq ? rep.last_seq - rep.last_checkpoint_seq : rep.records;

  if (o.expect_head) {
    const auto& h = *o.expect_head;
    if (h.seq > rep.last_seq) {
      rep.problem = Finding{Problem::Truncated, rep.last_seq + 1,
                            "the trail ends at record " + std::to_string(rep.last_seq) + " but the anchor names record " +
                                std::to_string(h.seq) + ": records " + std::to_string(rep.last_seq + 1) + " to " +
                                std::to_string(h.seq) + " (at least) were removed"};
      return rep;
    }
    if (anchor_hash && *anchor_hash != h.hash) {
      rep.problem = Finding{Problem::AnchorMismatch, h.seq,
                            "record " + std::to_string(h.seq) + " has hash " + anchor_hash->substr(0, 16) +
                                "..., the anchor says " + h.hash.substr(0, 16) +
                                "...: the chain up to it was rewritten"};
      return rep;
    }
    if (!anchor_hash)
      rep.notes.push_back("the anchor's record " + std::to_string(h.seq) + " is no longer stored (pruned); not checked");
  }
  if (o.signer && rep.records > 0 && rep.checkpoints == 0 && o.continues) {
    // A rotated JSON-lines file: more than max_size of records within one checkpoint interval
    // leaves files with no checkpoint of their own, and verify called such an untouched file
    // TAMPERED (found by an audit trial). Its records are proven by the next checkpoint of the
    // chain, in a later file, which covers them through the hashes once that file verifies
    // with --continues from this one's head.
    rep.notes.push_back("this file holds no signed checkpoint: its records are proven only by the next checkpoint of the "
                        "chain, in a later file; verify the later files in order with --continues (from this file's "
                        "head) up to one that holds a checkpoint");
  } else if (o.signer && rep.records > 0 && rep.checkpoints == 0) {
    // A proxy with a checkpoint key signs one right after its Start record: none at all means the
    // checkpoints were deleted (and the chain possibly recomputed), or the store was written
    // without a key. Either way nothing proves it (found by adversarial testing).
    rep.problem = Finding{Problem::Unsigned, rep.first_seq,
                          "a checkpoint key was given, but the trail holds no signed checkpoint: its checkpoints were "
                          "deleted (and the chain may have been recomputed), or it was written without a key"};
    return rep;
  }
  if (o.expect_stopped && !rep.clean_end && rep.checkpoints == 0 && prev_type == "stop") {
    // No checkpoint key configured: the proxy signs nothing, so the Stop record at the end is all
    // there is to check (found by adversarial testing: a clean stop was reported as truncated).
    rep.notes.push_back("the trail ends with a Stop record; without signed checkpoints (no audit checkpoint key "
                        "configured) that does not prove no records were removed after it");
  } else if (o.expect_stopped && !rep.clean_end) {
    rep.problem = Finding{Problem::Truncated, rep.last_seq + 1,
                          "the proxy is stopped, but the trail does not end with a Stop record and a checkpoint "
                          "covering it: records after " + std::to_string(rep.last_seq) + " may have been removed"};
    return rep;
  }
  if (!o.signer) {
    rep.notes.push_back(rep.checkpoints ? std::to_string(rep.checkpoints) +
                                              " checkpoint signature(s) not checked (no key: give --config or --key); "
                                              "without them someone with write access could recompute the whole chain"
                                        : "no key given and no checkpoints: this proves internal consistency only");
  } else if (rep.checkpoints == 0) {
    rep.notes.push_back("no checkpoints: nothing is signed, so a recomputed chain would not be detected");
  }
  if (rep.records > 0 && !rep.clean_end && rep.uncovered > 0) {
    rep.notes.push_back(
        rep.last_checkpoint_seq
            ? "the trail ends " + std::to_string(rep.uncovered) + " record(s) after the last checkpoint (seq " +
                  std::to_string(rep.last_checkpoint_seq) +
                  "): those are not covered by a signature; if the proxy is stopped the tail may have been "
                  "truncated (check with --expect-head SEQ:HASH from the proxy log, or --expect-stopped)"
            : "no record is covered by a checkpoint: removing records from the end would not be detected without "
              "--expect-head");
  }
  return rep;
}

}  // namespace gh::audit
