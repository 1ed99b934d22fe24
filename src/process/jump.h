// The two jumps a trampoline can be, as byte templates. Shared by the code that writes
// trampolines and by the ledger reader, which accepts a recorded jump only if it is
// exactly the one these produce for its site and target.
//
//   jmp rel32            e9 <rel32>                   5 bytes, when the target is in reach
//   jmp *0(%rip); .quad  ff 25 00 00 00 00 <abs64>   14 bytes, otherwise
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/addr.h"

namespace ls::proc {

inline constexpr size_t kJmpRel32Size = 5;
inline constexpr size_t kJmpAbs64Size = 14;

// The jump written at `site` to reach `to`: rel32 when it reaches, else absolute.
inline std::vector<uint8_t> jump_bytes(TargetAddr site, TargetAddr to) {
  int64_t rel = to - (site + static_cast<int64_t>(kJmpRel32Size));
  if (rel >= INT32_MIN && rel <= INT32_MAX) {
    std::vector<uint8_t> b{0xe9, 0, 0, 0, 0};
    int32_t r = static_cast<int32_t>(rel);
    std::memcpy(&b[1], &r, 4);
    return b;
  }
  std::vector<uint8_t> b{0xff, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  uint64_t abs = to.value();
  std::memcpy(&b[6], &abs, 8);
  return b;
}

}  // namespace ls::proc
