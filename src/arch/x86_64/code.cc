// x86-64 machine code livesplice writes: the loader's far stubs and TLS relaxations,
// the trampoline's jumps. Templates are byte arrays with the assembly beside them.
//
// What is hard: a relaxation rewrites instructions the compiler emitted, so it must only
// ever fire on the exact sequence the psABI prescribes (the one the linker relaxes too);
// anything else is left alone and the caller reports it. Branch fields are found by
// decoding, not by peeking at the byte before a field: a ModRM byte can look like an
// opcode.
#include <Zydis/Zydis.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "arch/x86_64/target.h"
#include "base/bytes.h"

namespace ls::arch::x86_64 {
namespace {

constexpr uint8_t kInt3 = 0xcc;

// Far stub: an absolute jump through a literal that follows it.
//   ff 25 00 00 00 00     jmp *0(%rip)        ; reads the next 8 bytes
//   <abs64>               .quad target
//   cc cc                 int3; int3           ; pad to 16 so stubs stay aligned
constexpr std::array<uint8_t, 16> kFarStub = {
    0xff, 0x25, 0x00, 0x00, 0x00, 0x00,               // jmp *0(%rip)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   // .quad target
    kInt3, kInt3};
constexpr uint64_t kFarStubTarget = 6;

// The trampoline's two jumps. The ledger reader accepts a recorded jump only if it is
// exactly the one jump() makes for its site and target.
//   jmp rel32            e9 <rel32>                   5 bytes, when the target is in reach
//   jmp *0(%rip); .quad  ff 25 00 00 00 00 <abs64>   14 bytes, otherwise
constexpr std::array<uint8_t, 5> kJmpRel32 = {0xe9, 0, 0, 0, 0};
constexpr std::array<uint8_t, 14> kJmpAbs64 = {0xff, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

// endbr64: an indirect branch must land on it under CET, so a trampoline goes after it.
constexpr std::array<uint8_t, 4> kEndbr64 = {0xf3, 0x0f, 0x1e, 0xfa};

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

X86_64::X86_64() {
  machine = elf::Machine::X86_64;
  name = "x86-64";
  trap = kInt3;
  // A rel32 branch field is the last 4 bytes of its instruction, so the CPU adds the
  // field to P + 4: a relocation S + A - P reaches S + A + 4.
  branch_bias = 4;
  far_stub_size = kFarStub.size();
  far_stub_align = 16;
  entry_head_size = kEndbr64.size();
  max_jump_size = kJmpAbs64.size();
  kernel_jump_size = kJmpRel32.size();
}

const Target& target() {
  static const X86_64 instance;
  return instance;
}

void X86_64::write_far_stub(std::span<uint8_t> at, uint64_t target) const {
  std::copy(kFarStub.begin(), kFarStub.end(), at.begin());
  put_le64(at.subspan(kFarStubTarget), target);
}

std::set<uint64_t> X86_64::branch_fields(std::span<const uint8_t> code) const {
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

// General-dynamic TLS access -> local-exec, as ld does. `field` is the offset of the
// R_X86_64_TLSGD field; the sequence must be exactly one of
//   66 48 8d 3d <tlsgd>      data16 lea x@tlsgd(%rip), %rdi
//   66 66 48 e8 <plt32>      data16 data16 rex.W call __tls_get_addr@PLT
//   66 48 ff 15 <gotpcrel>   data16 rex.W call *__tls_get_addr@GOTPCREL(%rip)   (-fno-plt)
// and becomes
//   64 48 8b 04 25 00 00 00 00   mov %fs:0, %rax
//   48 8d 80 <tpoff32>           lea x@tpoff(%rax), %rax
std::optional<uint64_t> X86_64::gd_call_field(std::span<const uint8_t> code, uint64_t field) const {
  if (field < kGdLea.size() || !bytes_at(code, field - kGdLea.size(), kGdLea)) return std::nullopt;
  if (bytes_at(code, field + 4, kGdCallPlt) || bytes_at(code, field + 4, kGdCallGot)) {
    uint64_t call_field = field + 4 + kGdCallPlt.size();
    if (call_field + 4 <= code.size()) return call_field;
  }
  return std::nullopt;
}

void X86_64::rewrite_gd_to_le(std::span<uint8_t> code, uint64_t field, int32_t tpoff) const {
  uint64_t start = field - kGdLea.size();
  std::copy(kGdAsLe.begin(), kGdAsLe.end(), code.begin() + static_cast<ptrdiff_t>(start));
  put_le32(code.subspan(start + kGdAsLeTpoff), static_cast<uint32_t>(tpoff));
}

// Local-dynamic TLS base -> the thread pointer. The sequence must be exactly one of
//   48 8d 3d <tlsld>         lea x@tlsld(%rip), %rdi
//   e8 <plt32>               call __tls_get_addr@PLT                    (12 bytes)
//   ff 15 <gotpcrel>         call *__tls_get_addr@GOTPCREL(%rip)        (13 bytes)
// and becomes, padded with prefixes to the same length,
//   66 66 66 [66] 64 48 8b 04 25 00 00 00 00   data16...; mov %fs:0, %rax
std::optional<uint64_t> X86_64::ld_call_field(std::span<const uint8_t> code, uint64_t field) const {
  if (field < kLdLea.size() || !bytes_at(code, field - kLdLea.size(), kLdLea)) return std::nullopt;
  uint64_t call_field = 0;
  if (bytes_at(code, field + 4, kLdCallPlt)) call_field = field + 4 + kLdCallPlt.size();
  else if (bytes_at(code, field + 4, kLdCallGot)) call_field = field + 4 + kLdCallGot.size();
  else return std::nullopt;
  if (call_field + 4 > code.size()) return std::nullopt;
  return call_field;
}

void X86_64::rewrite_ld_to_le(std::span<uint8_t> code, uint64_t field) const {
  uint64_t start = field - kLdLea.size();
  uint64_t end = *ld_call_field(code, field) + 4;
  uint64_t pad = end - start - kFsZeroToRax.size();
  std::fill_n(code.begin() + static_cast<ptrdiff_t>(start), pad, kData16);
  std::copy(kFsZeroToRax.begin(), kFsZeroToRax.end(), code.begin() + static_cast<ptrdiff_t>(start + pad));
}

uint64_t X86_64::entry_landing(std::span<const uint8_t> head) const {
  return bytes_at(head, 0, kEndbr64) ? kEndbr64.size() : 0;
}

std::vector<uint8_t> X86_64::jump(TargetAddr site, TargetAddr to) const {
  int64_t rel = to - (site + static_cast<int64_t>(kJmpRel32.size()));
  if (rel >= INT32_MIN && rel <= INT32_MAX) {
    std::vector<uint8_t> b(kJmpRel32.begin(), kJmpRel32.end());
    put_le32(std::span(b).subspan(1), static_cast<uint32_t>(static_cast<int32_t>(rel)));
    return b;
  }
  std::vector<uint8_t> b(kJmpAbs64.begin(), kJmpAbs64.end());
  put_le64(std::span(b).subspan(6), to.value());
  return b;
}

}  // namespace ls::arch::x86_64
