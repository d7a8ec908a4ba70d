#pragma once
// Text for values sent in PostgreSQL's binary format, so that a person can read them (bind
// parameters shown to reviewers). Pure functions over the wire bytes; types the proxy does not
// decode give nullopt and callers show the bytes in hex.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gh::protocol {

// The value's text as PostgreSQL would print it, for the common built-in types: bool, bytea,
// int2/4/8, oid, float4/8, numeric, text-like types, json(b), uuid, date, time, timestamp(tz)
// (timestamptz in UTC). nullopt: another type, or bytes that do not fit the type.
std::optional<std::string> binary_value_text(std::uint32_t type_oid, std::string_view bytes);

// "\x" followed by the bytes in lowercase hex (bytea's text form).
std::string hex_text(std::string_view bytes);

}  // namespace gh::protocol
