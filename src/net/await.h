#pragma once
// Completion token for coroutines that want (error_code, result...) tuples instead of
// exceptions: errors on the hot path are values.
#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

namespace gh::net {
inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
}
