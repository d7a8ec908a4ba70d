#include "net/buffer.h"

#include <gtest/gtest.h>

#include <cstring>

namespace gh::net {
namespace {

// A relay that keeps a partial message back after each read (the slow path: masking, refusals)
// must still get large reads on a busy stream: found by the masking benchmark, where a 1M-row
// result was read 512 bytes at a time because the partial row kept the buffer in its inline area.
TEST(IoBuffer, PartialMessageKeptOnABusyStreamGetsABlockForTheNextRead) {
  IoBuffer b;
  std::size_t room = b.write_room();
  ASSERT_EQ(room, IoBuffer::kInline);
  std::memset(b.write_ptr(), 'x', room);
  b.commit(room, room);  // the read filled the room: more is coming
  b.consume(room - 100);  // whole messages relayed; 100 bytes of the next one kept
  b.compact();
  b.grow_if_busy();
  EXPECT_GE(b.write_room(), BufferPool::kBlock - 100);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(b.data()[0], 'x');
}

TEST(IoBuffer, PartialMessageOnAQuietStreamStaysInline) {
  IoBuffer b;
  const std::size_t room = b.write_room();
  std::memset(b.write_ptr(), 'y', 200);
  b.commit(200, room);  // a short read: the stream is quiet
  b.consume(150);
  b.compact();
  b.grow_if_busy();
  EXPECT_EQ(b.write_room(), IoBuffer::kInline - 50);
}

}  // namespace
}  // namespace gh::net
