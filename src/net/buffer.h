#pragma once
// A relay buffer that holds memory only while bytes are in flight. Idle sessions return
// their block to a per-thread pool, so ten thousand idle connections cost no buffers.
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

namespace gh::net {

class BufferPool {
 public:
  static constexpr std::size_t kBlock = 32 * 1024;
  static constexpr std::size_t kKeep = 512;  // blocks kept per thread
  static char* get() {
    auto& f = free_list();
    if (f.empty()) return new char[kBlock];
    char* p = f.back();
    f.pop_back();
    return p;
  }
  static void put(char* p) {
    auto& f = free_list();
    if (f.size() >= kKeep)
      delete[] p;
    else
      f.push_back(p);
  }

 private:
  struct List {
    std::vector<char*> v;
    ~List() {
      for (char* p : v) delete[] p;
    }
  };
  static std::vector<char*>& free_list() {
    thread_local List l;
    return l.v;
  }
};

class IoBuffer {
 public:
  // Reads start in a small inline area, so a session waiting for its next message holds no
  // pooled block (and the read can still be started speculatively, which saves a syscall per
  // message over waiting for readiness). A read that fills the area means more is coming: the
  // next one gets a pooled 32 KiB block, until the stream goes quiet again.
  static constexpr std::size_t kInline = 512;

  IoBuffer() = default;
  IoBuffer(const IoBuffer&) = delete;
  IoBuffer& operator=(const IoBuffer&) = delete;
  ~IoBuffer() { drop(); }

  bool empty() const { return begin_ == end_; }
  std::size_t size() const { return end_ - begin_; }
  char* data() { return data_ + begin_; }
  const char* data() const { return data_ + begin_; }

  // Room to read into.
  char* write_ptr() {
    acquire();
    return data_ + end_;
  }
  std::size_t write_room() {
    acquire();
    return cap_ - end_;
  }
  // Records a read of n bytes into a room of `room` bytes.
  void commit(std::size_t n, std::size_t room) {
    end_ += n;
    want_block_ = n == room;
  }
  void commit(std::size_t n) { end_ += n; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // Makes room for a message of `need` bytes in total starting at begin_.
  void ensure_contiguous(std::size_t need) {
    acquire();
    if (need <= cap_ - begin_) return;
    if (need <= cap_) {
      compact();
      return;
    }
    const bool pooled = need <= BufferPool::kBlock;
    char* bigger = pooled ? BufferPool::get() : new char[need];
    std::memcpy(bigger, data_ + begin_, size());
    drop_block();
    end_ -= begin_;
    begin_ = 0;
    data_ = bigger;
    cap_ = pooled ? BufferPool::kBlock : need;
    pooled_ = pooled;
  }
  // A partial message kept in the inline area while reads fill it (a busy stream): moved to a
  // pooled block, so the next reads are large (otherwise a stream relayed message by message,
  // with a partial one always kept, reads 512 bytes at a time).
  void grow_if_busy() {
    if (want_block_ && data_ == inline_) ensure_contiguous(kInline + 1);
  }
  // Moves a partial message to the front so reads have room.
  void compact() {
    if (begin_ == 0) return;
    std::memmove(data_, data_ + begin_, size());
    end_ -= begin_;
    begin_ = 0;
  }
  // Gives the memory back when nothing is buffered.
  void release_if_empty() {
    if (empty() && data_) drop();
  }

 private:
  void acquire() {
    if (data_) return;
    if (want_block_) {
      data_ = BufferPool::get();
      cap_ = BufferPool::kBlock;
      pooled_ = true;
    } else {
      data_ = inline_;
      cap_ = kInline;
      pooled_ = false;
    }
  }
  void drop_block() {
    if (!data_ || data_ == inline_) {
      data_ = nullptr;
      return;
    }
    if (pooled_)
      BufferPool::put(data_);
    else
      delete[] data_;
    data_ = nullptr;
  }
  void drop() {
    drop_block();
    cap_ = begin_ = end_ = 0;
  }
  char* data_ = nullptr;
  std::size_t cap_ = 0, begin_ = 0, end_ = 0;
  bool pooled_ = false;
  bool want_block_ = false;
  char inline_[kInline];
};

}  // namespace gh::net
