// x86-64 machine code for the loader: far stubs and TLS relaxations.
//
// What is hard: a relaxation rewrites instructions the compiler emitted, so it must only
// ever fire on the exact sequence the psABI prescribes (the one the linker relaxes too);
// anything else is left alone and the caller reports it. Branch fields are found by
// decoding, not by peeking at the byte before a field: a ModRM byte can look like an
// opcode.
#include "loader/x86_64.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace ls::load::x86_64 {
namespace {

// data16 lea x@tlsgd(%rip), %rdi ; then one of the two calls
constexpr std::array<uint8_t, 4> kGdLea = {0x66, 0x48, 0x8d, 0x3d};
constexpr std::array<uint8_t, 4> kGdCallPlt = {0x66, 0x66, 0x48, 0xe8};   // data16 data16 rex.W call rel32
constexpr std::array<uint8_t, 4> kGdCallGot = {0x66, 0x48, 0xff, 0x15};   // data16 rex.W call *rel32(%rip)
// mov %fs:0, %rax ; lea <tpoff32>(%rax), %rax
constexpr std::array<uint8_t, 16> kGdAsLe = {0x64, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00,
                                             0x00, 0x48, 0x8d, 0x80, 0x00, 0x00, 0x00, 0x00};
constexpr uint64_t kGdAsLeTpoff = 12;

// lea x@tlsld(%rip), %rdi ; then one of the two calls
constexpr std::array<uint8_t, 3> kLdLea = {0x48, 0x8d, 0x3d};
constexpr std::array<uint8_t, 1> kLdCallPlt = {0xe8};         // call rel32
constexpr std::array<uint8_t, 2> kLdCallGot = {0xff, 0x15};   // call *rel32(%rip)
// data16 x3 (x4 after the longer call); mov %fs:0, %rax
constexpr std::array<uint8_t, 9> kFsZeroToRax = {0x64, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00};
constexpr uint8_t kData16 = 0x66;

template <size_t N>
bool bytes_at(std::span<const uint8_t> code, uint64_t at, const std::array<uint8_t, N>& want) {
  return at <= code.size() && N <= code.size() - at && std::equal(want.begin(), want.end(), code.begin() + at);
}

}  // namespace

void put32(std::span<uint8_t> at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<uint8_t>(v >> (8 * i));
}

void put64(std::span<uint8_t> at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<uint8_t>(v >> (8 * i));
}

void FarJumpStub::write(std::span<uint8_t> at, uint64_t target) {
  static constexpr std::array<uint8_t, kSize> kTemplate = {
      0xff, 0x25, 0x00, 0x00, 0x00, 0x00,               // jmp *0(%rip)
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // .quad target
      kTrap, kTrap};
  std::copy(kTemplate.begin(), kTemplate.end(), at.begin());
  put64(at.subspan(kTargetOffset), target);
}

std::set<uint64_t> branch_fields(std::span<const uint8_t> code) {
  std::set<uint64_t> out;
  ZydisDecoder decoder;
  if (ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))) return out;
  uint64_t pc = 0;
  while (pc < code.size()) {
    ZydisDecodedInstruction insn;
    if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data() + pc, code.size() - pc, &insn))) {
      // Data inside code (rare: jump tables are elsewhere with -ffunction-sections).
      // Resynchronise on the next byte; a branch missed here only loses a stub, and
      // the relocation then fails with a clear out-of-reach error instead.
      ++pc;
      continue;
    }
    for (const auto& imm : insn.raw.imm)
      if (imm.size == 32 && imm.is_relative) out.insert(pc + imm.offset);
    pc += insn.length;
  }
  return out;
}

std::optional<uint64_t> gd_call_field(std::span<const uint8_t> code, uint64_t field) {
  if (field < kGdLea.size() || !bytes_at(code, field - kGdLea.size(), kGdLea)) return std::nullopt;
  if (bytes_at(code, field + 4, kGdCallPlt) || bytes_at(code, field + 4, kGdCallGot)) {
    uint64_t call_field = field + 4 + kGdCallPlt.size();
    if (call_field + 4 <= code.size()) return call_field;
  }
  return std::nullopt;
}

void rewrite_gd_to_le(std::span<uint8_t> code, uint64_t field, int32_t tpoff) {
  uint64_t start = field - kGdLea.size();
  std::copy(kGdAsLe.begin(), kGdAsLe.end(), code.begin() + static_cast<ptrdiff_t>(start));
  put32(code.subspan(start + kGdAsLeTpoff), static_cast<uint32_t>(tpoff));
}

std::optional<uint64_t> ld_call_field(std::span<const uint8_t> code, uint64_t field) {
  if (field < kLdLea.size() || !bytes_at(code, field - kLdLea.size(), kLdLea)) return std::nullopt;
  uint64_t call_field = 0;
  if (bytes_at(code, field + 4, kLdCallPlt)) call_field = field + 4 + kLdCallPlt.size();
  else if (bytes_at(code, field + 4, kLdCallGot)) call_field = field + 4 + kLdCallGot.size();
  else return std::nullopt;
  if (call_field + 4 > code.size()) return std::nullopt;
  return call_field;
}

void rewrite_ld_to_le(std::span<uint8_t> code, uint64_t field) {
  uint64_t start = field - kLdLea.size();
  uint64_t end = *ld_call_field(code, field) + 4;
  uint64_t pad = end - start - kFsZeroToRax.size();
  std::fill_n(code.begin() + static_cast<ptrdiff_t>(start), pad, kData16);
  std::copy(kFsZeroToRax.begin(), kFsZeroToRax.end(), code.begin() + static_cast<ptrdiff_t>(start + pad));
}

}  // namespace ls::load::x86_64
