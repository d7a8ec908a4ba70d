// index_of and record_of read the parser's events instead of a document (record.cpp,
// IndexReader); the document read they replaced (detail::) is the reference: for real bodies and
// for bodies mangled in every member the index reads, both must give the same index, seq and prev,
// and fail alike.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "audit/record.h"

namespace gh::audit {
namespace {

using nlohmann::json;

json statement_body() {
  json stmts = json::array();
  stmts.push_back({{"fingerprint", "1"}, {"kinds", {"select", "select"}}, {"relations", {"public.a", "b"}}});
  stmts.push_back({{"kinds", {"update"}}, {"relations", {"b", "c"}}});
  return {{"v", 1}, {"seq", 7}, {"prev", std::string(64, 'a')}, {"time", "2026-01-01T00:00:00.000001Z"},
          {"time_us", 1767225600000001}, {"type", "statement"}, {"node", "n1"}, {"session", 3}, {"statement", 9},
          {"identity", {{"subject", "alice"}, {"email", "a@x.test"}, {"groups", {"eng", "ops", "eng"}}, {"kind", "human"}}},
          {"client", "127.0.0.1"}, {"target", "prod"}, {"environment", "production"}, {"database", "app"},
          {"outcome", "ok"}, {"sqlstate", ""}, {"rows", 2}, {"duration_us", 40}, {"message", "not the text"},
          {"sql", {{"text", "SELECT \"é\" \\ 1"}, {"statements", stmts}, {"tags", {"pii", "pii", "card"}},
                   {"decision", {{"action", "allow"}, {"rule", "r1"}, {"reason", "why"}}}}},
          {"fields", {{"time", "not this"}, {"type", "nor this"}}}};
}

json result_body() {
  return {{"v", 1}, {"seq", 8}, {"prev", std::string(64, 'b')}, {"time", "t"}, {"time_us", 5}, {"type", "result"},
          {"node", "n1"}, {"session", 3}, {"statement", 9}, {"outcome", "error"}, {"sqlstate", "42P01"},
          {"message", "relation \"nope\" does not exist"}, {"rows", 0}};
}

// Every value a member can be given in place of its own.
std::vector<json> replacements() {
  return {nullptr, true, false, 0, -5, std::numeric_limits<std::uint64_t>::max(), 1.5, "s", "",
          json::array(), json::array({"a", "b", "a"}), json::array({1, "a", nullptr}), json::array({json::array()}),
          json::object(), json::object({{"x", 1}}), json::array({json::object({{"kinds", {"x"}}})})};
}

struct Outcome {
  bool ok = false, threw = false;
  Record rec;
};

Outcome by_document(const std::string& body) {
  Outcome o;
  try {
    auto r = detail::record_of_document("h", body);
    o.ok = r.has_value();
    if (r) o.rec = std::move(*r);
  } catch (const json::exception&) {
    o.threw = true;  // json::value() of a seq or prev of another type
  }
  return o;
}

void expect_same(const std::string& body) {
  SCOPED_TRACE(body);
  const auto doc = by_document(body);
  const auto sax = record_of("h", body);
  if (doc.threw) {
    EXPECT_FALSE(sax.has_value());
  } else {
    ASSERT_EQ(sax.has_value(), doc.ok);
    if (doc.ok) {
      EXPECT_EQ(sax->seq, doc.rec.seq);
      EXPECT_EQ(sax->prev, doc.rec.prev);
      EXPECT_TRUE(sax->index == doc.rec.index);
      EXPECT_EQ(sax->index.kinds, doc.rec.index.kinds);
      EXPECT_EQ(sax->index.groups, doc.rec.index.groups);
      EXPECT_EQ(sax->index.tags, doc.rec.index.tags);
      EXPECT_EQ(sax->index.text, doc.rec.index.text);
    }
  }
  const auto a = index_of(body), b = detail::index_of_document(body);
  ASSERT_EQ(a.has_value(), b.has_value());
  if (a) EXPECT_TRUE(*a == *b);
}

// The body with `"key":value` written again at the start (the original, later, counts) and at the
// end (this one counts) of the object that `open` begins.
std::vector<std::string> with_twice(const std::string& body, const std::string& open, const std::string& member) {
  std::vector<std::string> out;
  const auto at = body.find(open);
  if (at == std::string::npos) return out;
  const auto start = at + open.size();
  out.push_back(body.substr(0, start) + member + "," + body.substr(start));
  // The end of that object: its matching brace, counted outside strings.
  int depth = 1;
  bool in_string = false;
  for (std::size_t i = start; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      out.push_back(body.substr(0, i) + "," + member + body.substr(i));
      break;
    }
  }
  return out;
}

TEST(AuditIndexReader, RealBodiesReadAsTheDocument) {
  for (const auto& b : {statement_body(), result_body()}) expect_same(b.dump());
  auto no_sql = statement_body();
  no_sql.erase("sql");
  expect_same(no_sql.dump());  // the message is the text
  const auto idx = index_of(statement_body().dump());
  ASSERT_TRUE(idx.has_value());
  EXPECT_EQ(idx->kinds, ",select,update,");
  EXPECT_EQ(idx->relations, ",public.a,b,c,");
  EXPECT_EQ(idx->groups, ",eng,ops,eng,");
  EXPECT_EQ(idx->tags, ",pii,pii,card,");
  EXPECT_EQ(idx->text, "SELECT \"é\" \\ 1");
  EXPECT_EQ(idx->decision, "allow");
  EXPECT_EQ(idx->time, "2026-01-01T00:00:00.000001Z");  // not the one in "fields"
}

TEST(AuditIndexReader, MangledMembersReadAsTheDocument) {
  const std::vector<std::vector<std::string>> paths = {
      {"seq"}, {"prev"}, {"time"}, {"time_us"}, {"type"}, {"node"}, {"session"}, {"statement"}, {"identity"},
      {"client"}, {"target"}, {"environment"}, {"database"}, {"outcome"}, {"sqlstate"}, {"rows"}, {"duration_us"},
      {"message"}, {"sql"}, {"identity", "subject"}, {"identity", "email"}, {"identity", "groups"},
      {"identity", "kind"}, {"sql", "text"}, {"sql", "statements"}, {"sql", "tags"}, {"sql", "decision"},
      {"sql", "decision", "action"}, {"sql", "decision", "rule"}, {"sql", "statements", "0"},
      {"sql", "statements", "0", "kinds"}, {"sql", "statements", "1", "relations"}, {"fields", "time"}};
  std::size_t n = 0;
  for (const auto& base : {statement_body(), result_body()})
    for (const auto& p : paths)
      for (const auto& v : replacements()) {
        json b = base;
        json* at = &b;
        for (std::size_t i = 0; i + 1 < p.size(); ++i) {
          const auto& k = p[i];
          at = at->is_array() ? &(*at)[std::stoul(k)] : &(*at)[k];
        }
        if (at->is_array())
          (*at)[std::stoul(p.back())] = v;
        else
          (*at)[p.back()] = v;
        expect_same(b.dump());
        ++n;
      }
  EXPECT_EQ(n, 2 * 33 * 16u);
}

TEST(AuditIndexReader, AMemberGivenTwiceCountsAsTheLast) {
  const std::string body = statement_body().dump();
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"{", {"\"type\":\"result\"", "\"seq\":99", "\"seq\":\"x\"", "\"prev\":null", "\"time_us\":1",
             "\"identity\":{\"subject\":\"mallory\"}", "\"identity\":3", "\"sql\":{\"text\":\"other\"}", "\"sql\":[]",
             "\"message\":\"m2\"", "\"rows\":1.5"}},
      {"\"identity\":{", {"\"subject\":\"mallory\"", "\"groups\":[\"x\"]", "\"groups\":\"x\""}},
      {"\"sql\":{", {"\"text\":\"other\"", "\"tags\":[\"t\"]", "\"tags\":{}", "\"statements\":[{\"kinds\":[\"drop\"]}]",
                      "\"statements\":1", "\"decision\":{\"action\":\"deny\"}", "\"decision\":\"deny\""}},
      {"\"decision\":{", {"\"action\":\"deny\"", "\"rule\":[]"}},
      {"{\"fingerprint\":\"1\",", {"\"kinds\":[\"drop\"]", "\"kinds\":null", "\"relations\":[\"z\",\"z\"]"}},
  };
  std::size_t n = 0;
  for (const auto& [open, members] : cases)
    for (const auto& m : members)
      for (const auto& b : with_twice(body, open, m)) {
        expect_same(b);
        ++n;
      }
  EXPECT_EQ(n, 2 * 26u);
}

TEST(AuditIndexReader, WhatIsNotARecordBodyFailsAlike) {
  for (const std::string& b : std::vector<std::string>{"", "[]", "\"x\"", "1", "null", "[{\"type\":\"statement\"}]", "{\"a\":", "{} x", "{\"type\":\"st\\u0061tement\"}",
        "{\"type\":\"\xff\"}", "{\"sql\":{\"statements\":[[{\"kinds\":[\"a\"]}]]}}", "{}", "{\"a\":1,}",
        "{\"identity\":{\"groups\":[[\"a\"],{\"b\":1},\"c\"]}}", std::string(2000, '[') + std::string(2000, ']')})
    expect_same(b);
}

}  // namespace
}  // namespace gh::audit
