// x86-64 pieces of the loader (internal to src/loader): the machine-code templates it
// writes and the instruction patterns it rewrites. link.cc decides *what* value goes
// where; this file knows how x86-64 encodes it.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>

namespace ls::load::x86_64 {

// A rel32 branch field is the last 4 bytes of its instruction, so the CPU adds the
// field to P + 4: a relocation S + A - P reaches S + A + kBranchBias.
inline constexpr int64_t kBranchBias = 4;

// Far stub: an absolute jump through a literal that follows it.
//   ff 25 00 00 00 00     jmp *0(%rip)        ; reads the next 8 bytes
//   <abs64>               .quad target
//   cc cc                 int3; int3           ; pad to 16 so stubs stay aligned
struct FarJumpStub {
  static constexpr uint64_t kSize = 16;
  static constexpr uint64_t kAlign = 16;
  static constexpr uint64_t kTargetOffset = 6;
  static void write(std::span<uint8_t> at, uint64_t target);
};

inline constexpr uint8_t kTrap = 0xcc;   // fills code padding and unused stubs

// Offsets of the rel32 fields of branch instructions (call, jmp, jcc) in `code`,
// decoded from its start. A PC-relative relocation at one of these may be redirected
// through a stub; any other PC-relative field cannot.
std::set<uint64_t> branch_fields(std::span<const uint8_t> code);

// General-dynamic TLS access -> local-exec, as ld does. `field` is the offset of the
// R_X86_64_TLSGD field; the sequence must be exactly one of
//   66 48 8d 3d <tlsgd>      data16 lea x@tlsgd(%rip), %rdi
//   66 66 48 e8 <plt32>      data16 data16 rex.W call __tls_get_addr@PLT
//   66 48 ff 15 <gotpcrel>   data16 rex.W call *__tls_get_addr@GOTPCREL(%rip)   (-fno-plt)
// and becomes
//   64 48 8b 04 25 00 00 00 00   mov %fs:0, %rax
//   48 8d 80 <tpoff32>           lea x@tpoff(%rax), %rax
// gd_call_field() checks the shape without changing anything and gives the offset of
// the call's relocation field, which the rewrite consumes.
std::optional<uint64_t> gd_call_field(std::span<const uint8_t> code, uint64_t field);
void rewrite_gd_to_le(std::span<uint8_t> code, uint64_t field, int32_t tpoff);

// Local-dynamic TLS base -> the thread pointer. The sequence must be exactly one of
//   48 8d 3d <tlsld>         lea x@tlsld(%rip), %rdi
//   e8 <plt32>               call __tls_get_addr@PLT                    (12 bytes)
//   ff 15 <gotpcrel>         call *__tls_get_addr@GOTPCREL(%rip)        (13 bytes)
// and becomes, padded with prefixes to the same length,
//   66 66 66 [66] 64 48 8b 04 25 00 00 00 00   data16...; mov %fs:0, %rax
// after which every x@dtpoff field holds the thread-pointer offset instead.
std::optional<uint64_t> ld_call_field(std::span<const uint8_t> code, uint64_t field);
void rewrite_ld_to_le(std::span<uint8_t> code, uint64_t field);

void put32(std::span<uint8_t> at, uint32_t v);
void put64(std::span<uint8_t> at, uint64_t v);

}  // namespace ls::load::x86_64
