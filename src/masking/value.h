#pragma once
// Masking one value: strategies (redact, partial, keyed hash, keep-domain, null, fixed,
// format-preserving digits) applied so that the result still parses as the column's type in
// its wire format, or becomes NULL. Pure: no I/O, no clock, no globals.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gh::masking {

enum class Strategy : std::uint8_t { Redact, Partial, Hash, KeepDomain, Null, Fixed, Digits };
std::string_view strategy_name(Strategy s);                       // "redact", "partial", "hash", "keep_domain", "null", "fixed", "digits"
std::optional<Strategy> strategy_from_name(std::string_view name);

struct Spec {
  Strategy strategy = Strategy::Redact;
  int keep_first = 0;  // partial: characters kept at the start
  int keep_last = 4;   // partial: characters kept at the end
  std::string fixed;   // fixed: the value every masked value becomes (NULL when it does not parse as the column's type)
};

enum class Format : std::uint8_t { Text = 0, Binary = 1 };

// Masks one non-NULL value of a column of PostgreSQL type `type_oid` sent in `format`.
// Returns true and appends the masked value to `out`, or returns false: the value becomes NULL
// (the strategy is null, or no value of the strategy's kind is valid for the type/format).
// `hmac_key` keys the hash and digits strategies (HMAC-SHA256): the same input and key give
// the same output, so joins and GROUP BY over masked values still work.
bool mask_value(const Spec& spec, std::string_view hmac_key, std::uint32_t type_oid, Format format,
                std::string_view value, std::string& out);

// text, varchar, bpchar, name, unknown: types whose binary form is their text (masked in place).
bool is_text_type(std::uint32_t type_oid);

}  // namespace gh::masking
