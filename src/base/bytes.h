// Bounds-checked views of raw bytes. Every read of object contents goes through here so
// that a truncated or malformed input becomes an Error naming the file, never a crash.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/diag.h"

namespace ls {

// A read-only window on bytes owned elsewhere (an object file's image), comparable with
// another window or with a vector by contents.
class Bytes : public std::span<const uint8_t> {
 public:
  using std::span<const uint8_t>::span;
  Bytes(std::span<const uint8_t> s) : std::span<const uint8_t>(s) {}
  bool operator==(const Bytes& o) const {
    return size() == o.size() && (size() == 0 || std::memcmp(data(), o.data(), size()) == 0);
  }
  bool operator==(const std::vector<uint8_t>& v) const { return *this == Bytes(v.data(), v.size()); }
};

class ByteView {
 public:
  ByteView() = default;
  ByteView(std::span<const uint8_t> data, std::string_view what) : data_(data), what_(what) {}

  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }
  const uint8_t* data() const { return data_.data(); }
  std::span<const uint8_t> span() const { return data_; }

  bool contains(uint64_t offset, uint64_t len) const {
    return offset <= data_.size() && len <= data_.size() - offset;
  }

  ByteView sub(uint64_t offset, uint64_t len) const {
    if (!contains(offset, len))
      fail("{}: range {:#x}+{:#x} is outside its {:#x} bytes", what_, offset, len, data_.size());
    return ByteView(data_.subspan(offset, len), what_);
  }

  template <typename T>
  T read(uint64_t offset) const {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!contains(offset, sizeof(T)))
      fail("{}: read of {} bytes at {:#x} is outside its {:#x} bytes", what_, sizeof(T), offset,
           data_.size());
    T v;
    std::memcpy(&v, data_.data() + offset, sizeof(T));
    return v;
  }

  // The NUL-terminated string starting at offset (without the NUL). A string that runs
  // off the end is an error: merged-string sections always terminate theirs.
  std::string_view cstring(uint64_t offset) const {
    if (offset >= data_.size()) fail("{}: string offset {:#x} is past the end", what_, offset);
    const auto* start = reinterpret_cast<const char*>(data_.data() + offset);
    const void* nul = std::memchr(start, 0, data_.size() - offset);
    if (!nul) fail("{}: unterminated string at {:#x}", what_, offset);
    return {start, static_cast<size_t>(static_cast<const char*>(nul) - start)};
  }

 private:
  std::span<const uint8_t> data_;
  std::string_view what_;
};

// Little-endian stores into bytes the caller has sized (every machine livesplice knows
// is little-endian): relocated fields, stubs, jumps.
inline void put_le32(std::span<uint8_t> at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put_le64(std::span<uint8_t> at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace ls
