#pragma once
// Result<T>: expected errors are values. Error carries a PostgreSQL SQLSTATE so that
// any failure can be turned into an ErrorResponse without guessing.
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace gh {

struct Error {
  std::string sqlstate;  // e.g. "08P01"; empty when not a protocol-facing error
  std::string message;
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(std::string sqlstate, std::string message) {
  return tl::unexpected<Error>(Error{std::move(sqlstate), std::move(message)});
}

}  // namespace gh
