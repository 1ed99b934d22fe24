// Addresses in another address space (a traced process, the kernel), typed so that they
// cannot be mixed up with offsets, sizes or addresses of our own memory.
#pragma once

#include <compare>
#include <cstdint>

#include <fmt/format.h>

namespace ls {

class TargetAddr {
 public:
  constexpr TargetAddr() = default;
  constexpr explicit TargetAddr(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  constexpr bool null() const { return v_ == 0; }

  constexpr TargetAddr operator+(int64_t d) const { return TargetAddr(v_ + static_cast<uint64_t>(d)); }
  constexpr TargetAddr operator-(int64_t d) const { return TargetAddr(v_ - static_cast<uint64_t>(d)); }
  constexpr int64_t operator-(TargetAddr o) const { return static_cast<int64_t>(v_ - o.v_); }
  constexpr TargetAddr& operator+=(int64_t d) { v_ += static_cast<uint64_t>(d); return *this; }
  constexpr auto operator<=>(const TargetAddr&) const = default;

 private:
  uint64_t v_ = 0;
};

// [start, end) in a target's address space.
struct TargetRange {
  TargetAddr start;
  TargetAddr end;
  constexpr uint64_t size() const { return end.value() - start.value(); }
  constexpr bool contains(TargetAddr a) const { return a >= start && a < end; }
};

}  // namespace ls

template <>
struct fmt::formatter<ls::TargetAddr> : fmt::formatter<uint64_t> {
  template <typename Ctx>
  auto format(ls::TargetAddr a, Ctx& ctx) const {
    return fmt::format_to(ctx.out(), "{:#x}", a.value());
  }
};
