#pragma once
// A sealed audit record: the canonical encoding of one event plus its place in the hash chain.
//
// Chain: hash(n) = SHA-256(raw(hash(n-1)) || body(n)), hash(0) = 32 zero bytes, where body(n)
// is the canonical JSON of record n (keys sorted, no insignificant whitespace, invalid UTF-8
// replaced), and holds "seq" = n and "prev" = hex(hash(n-1)). The body is stored exactly as
// hashed; verifiers hash the stored bytes and never re-encode.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace gh::audit {

struct Event;

constexpr std::string_view kGenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

struct ChainHead {
  std::uint64_t seq = 0;                     // last record's sequence number; 0: empty chain
  std::string hash = std::string(kGenesisHash);  // its hash, hex
};

// Columns kept beside the body for search. Derived from the body only (index_of), so a
// verifier can check that the columns say what the signed body says.
struct RecordIndex {
  std::string time;         // RFC 3339 UTC with microseconds, "2026-12-04T21:46:42.123456Z"
  std::int64_t time_us = 0; // microseconds since the Unix epoch
  std::string type;         // type_name()
  std::string node;
  std::int64_t session = 0;
  std::int64_t statement = 0;
  std::string subject, email, groups, kind;  // groups: ",a,b," (so LIKE '%,a,%' finds one)
  std::string client, target, environment, database;
  std::string kinds;        // ",select,update,"
  std::string relations;    // ",public.orders,customers,"
  std::string tags;         // ",pii,"
  std::string decision;     // allow, deny, review, mask; "" when none
  std::string rule;
  std::string outcome, sqlstate;
  std::int64_t rows = -1, duration_us = -1;
  std::string text;         // statement text (possibly truncated) or message
  bool operator==(const RecordIndex&) const = default;
};

struct Record {
  std::uint64_t seq = 0;
  std::string prev;  // hex
  std::string hash;  // hex
  std::string body;  // canonical JSON
  RecordIndex index;
};

struct SealOptions {
  std::string_view node;
  std::size_t max_text = 64 * 1024;  // longer statement texts are cut, with their full length and SHA-256 kept
  enum class Params { Masked, Full, None } params = Params::Masked;
  // false: a record sealed from a draft gets only the index fields a store of blocks reads
  // (time_us, type, node, session, statement), not the search columns of a row per record
  // (copying those strings was a fifth of a statement's sealing; AuditSink::needs_index).
  bool index = true;
};

// Encodes `e` as record head.seq + 1 chained to `head`, and advances `head`. An event with a
// draft (Event::draft) is sealed from it (seal_draft).
Record seal(const Event& e, ChainHead& head, const SealOptions& options);

// A statement's record encoded before it runs, without its outcome: the body of its intent
// (Trail::intend), and the bytes its record is sealed from when it ends, with the outcome
// (outcome, sqlstate, message, rows, duration_us) spliced in instead of encoding it all again.
// Null for an event that is not a statement about to run (or the Result record of one, for a
// statement recorded before it runs).
struct Draft;
std::shared_ptr<Draft> draft(const Event& e, const SealOptions& options);
std::string_view draft_body(const Draft& d);
// `e`: the drafted event, now with its outcome (nothing else of it may have changed).
Record seal_draft(const Draft& d, const Event& e, ChainHead& head, const SealOptions& options);

// seal_draft in two steps, so that a writer can do all that does not depend on the record's
// place in the chain before it takes the chain's lock: prepare_draft builds the index and the
// body's bytes around the two chain values (prev's digits, seq's digits); link puts the record at
// head.seq + 1, completes the body, hashes it and advances `head` (a few hundred nanoseconds).
struct Sealing {
  Record record;         // body: the bytes up to prev's digits
  std::string rest;      // the bytes after prev's digits; seq's digits go at seq_at
  std::size_t seq_at = 0;
};
Sealing prepare_draft(const Draft& d, const Event& e, const SealOptions& options);
void link(Sealing& s, ChainHead& head);

// The record of a statement whose intent (Trail::intend) a stopped process left behind: the
// intent's body with outcome "unknown" and `message`, as record head.seq + 1; advances `head`.
// Fails when the body is not a JSON object.
[[nodiscard]] Result<Record> seal_unfinished(std::string_view intent_body, std::string_view message, ChainHead& head);

// hex(SHA-256(raw(prev_hex) || body)); empty when prev_hex is not 64 hex digits.
std::string chain_hash(std::string_view prev_hex, std::string_view body);

// The search columns a body implies; fails when the body is not a JSON object of a record.
Result<RecordIndex> index_of(std::string_view body);

// A stored record back from its hash and body: seq and prev from the body, the index as index_of
// (one parse of the body); fails as index_of does.
Result<Record> record_of(std::string hash, std::string body);

namespace detail {
// The same through a parsed document (what index_of and record_of did before they read the
// parser's events): the reference their tests compare with. record_of_document throws where
// record_of fails on a seq or prev of the wrong type.
Result<RecordIndex> index_of_document(std::string_view body);
Result<Record> record_of_document(std::string hash, std::string body);
}  // namespace detail

std::string hex(std::string_view raw);
std::string sha256_hex(std::string_view data);

}  // namespace gh::audit
