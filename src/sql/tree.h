#pragma once
// Internal to the sql module: a read-only view of libpg_query's JSON parse tree.
//
// pg_query_parse's JSON is parsed into an arena with zero-copy strings where no escapes
// occur. A general JSON library (nlohmann) costs ~45 µs on a 2 KiB tree, several times
// the parse itself; this costs a few µs. Only the JSON libpg_query writes needs to be
// understood, but the parser is strict and bounded (depth, size) because the tree mirrors
// untrusted SQL.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace gh::sql::detail {

enum class JType : std::uint8_t { Null, False, True, Number, String, Array, Object };

struct JMember;

struct JValue {
  JType type = JType::Null;
  std::uint32_t count = 0;        // Array: items, Object: members
  std::string_view str;           // String (decoded) and Number (as written)
  const JValue* items = nullptr;  // Array
  const JMember* members = nullptr;

  bool is_object() const { return type == JType::Object; }
  bool is_array() const { return type == JType::Array; }
  bool is_string() const { return type == JType::String; }
  bool is_true() const { return type == JType::True; }
  const JValue* begin() const { return items; }
  const JValue* end() const { return items + (type == JType::Array ? count : 0); }

  // Object member by key, nullptr when absent (or when this is not an object).
  const JValue* get(std::string_view key) const;
  std::string_view get_str(std::string_view key) const;  // "" when absent or not a string
  bool get_bool(std::string_view key) const;             // false when absent
  std::optional<std::int64_t> get_int(std::string_view key) const;

  // libpg_query writes a Node as {"TypeName": {fields}}; an embedded struct (a field whose
  // type is a concrete message such as InsertStmt.relation) is written as {fields}. Node type
  // names start with an upper-case letter, field names never do.
  bool is_node() const;
  std::string_view node_name() const;  // "" when not a node
  const JValue* node_body() const;     // nullptr when not a node
};

struct JMember {
  std::string_view key;
  JValue value;
};

// Bump allocator; reset() keeps the first blocks for reuse by the next parse.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  void* allocate(std::size_t bytes, std::size_t align);
  void reset();

 private:
  struct Block {
    std::unique_ptr<char[]> data;
    std::size_t size = 0;
  };
  std::vector<Block> blocks_;
  std::size_t current_ = 0;  // index into blocks_
  std::size_t used_ = 0;     // bytes used in blocks_[current_]
};

struct JsonParseError {
  std::string_view message;
};

// Parses `json` (which must outlive the result) into `arena`. Returns nullptr and sets
// `error` on malformed input or nesting deeper than kMaxJsonDepth.
// 2000 JSON levels are about 700-1000 levels of expression nesting. The analysis recurses per
// level (here and in the walker): the bound keeps the stack under ~1 MiB without sanitizers.
inline constexpr int kMaxJsonDepth = 2000;
const JValue* parse_json(std::string_view json, Arena& arena, JsonParseError* error);

// Structural equality that ignores "location" members (used to compare `x = x`).
bool same_tree(const JValue& a, const JValue& b);

}  // namespace gh::sql::detail
