// x86-64 relocation sites as linked code shows them: what a relocation site of pre code
// (an object file's bytes) may look like once a linker has processed it, and what the
// linked bytes then tell about the symbol. Also the symbolic disassembly used in
// mismatch reports.
//
// What is hard: GNU ld rewrites instructions, not just fields. `mov foo@GOTPCREL(%rip)`
// becomes `lea foo(%rip)` or `mov $foo`, `call *foo@GOTPCREL(%rip)` becomes `addr32 call
// foo`, TLS access sequences shrink from general-dynamic to initial- or local-exec. Each
// rewrite changes which *view* of the symbol the field holds (its GOT slot or its
// address; a GOT pair or a thread-pointer offset). The rewrites recognised here are
// exactly those of binutils' elf_x86_64_convert_load_reloc and the TLS transitions of
// elf_x86_64_relocate_section (LP64, small code model); anything else is a difference.
//
// Byte shapes are written out as arrays with the assembly beside them, in the manner of
// a linker's PLT templates: each is what GNU ld writes, found by reading binutils'
// elf_x86_64_convert_load_reloc / elf_x86_64_relocate_section and checked against ld
// 2.40 output. `f` is always the offset of the relocated field in the function.
#include <Zydis/Zydis.h>
#include <elf.h>

#include <cstring>

#include <fmt/format.h>

#include "arch/x86_64/target.h"

namespace ls::arch::x86_64 {

using elf::RelocKind;

namespace {

constexpr uint8_t kRexR = 0x04;
constexpr uint8_t kRexW = 0x08;

bool is_rex(uint8_t b) { return (b & 0xf0) == 0x40; }

int64_t s32(std::span<const uint8_t> b, uint64_t at) {
  int32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
uint64_t u32(std::span<const uint8_t> b, uint64_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
uint64_t u64(std::span<const uint8_t> b, uint64_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}

bool has(std::span<const uint8_t> b, uint64_t at, std::span<const uint8_t> want) {
  return at <= b.size() && want.size() <= b.size() - at && std::memcmp(b.data() + at, want.data(), want.size()) == 0;
}

// First offset in [lo, hi) where a and b differ; hi when equal.
uint64_t first_difference(std::span<const uint8_t> a, std::span<const uint8_t> b, uint64_t lo, uint64_t hi) {
  for (uint64_t k = lo; k < hi; ++k)
    if (a[k] != b[k]) return k;
  return hi;
}

// General-dynamic: `data16 lea x@tlsgd(%rip),%rdi` then the __tls_get_addr call, 16 bytes.
constexpr uint8_t kGdLea[] = {0x66, 0x48, 0x8d, 0x3d};            // .byte 0x66; leaq x@tlsgd(%rip),%rdi
constexpr uint8_t kGdCallPlt[] = {0x66, 0x66, 0x48, 0xe8};        // .word 0x6666; rex64; call __tls_get_addr@PLT
constexpr uint8_t kGdCallGot[] = {0x66, 0x48, 0xff, 0x15};        // .byte 0x66; rex64; call *__tls_get_addr@GOTPCREL(%rip)
constexpr uint8_t kFsBase[] = {0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0};   // mov %fs:0,%rax
constexpr uint8_t kGdToLe[] = {0x48, 0x8d, 0x80};                 // lea x@tpoff(%rax),%rax
constexpr uint8_t kGdToIe[] = {0x48, 0x03, 0x05};                 // add x@gottpoff(%rip),%rax
// Local-dynamic: `lea x@tlsld(%rip),%rdi` then the call; 12 bytes (PLT) or 13 (GOT).
constexpr uint8_t kLdLea[] = {0x48, 0x8d, 0x3d};
constexpr uint8_t kLdToLe12[] = {0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0};
constexpr uint8_t kLdToLe13[] = {0x66, 0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0};

SiteRead reads(uint64_t begin, uint64_t end, Reveal view, uint64_t value, std::string_view form = {}) {
  SiteRead s;
  s.begin = begin;
  s.end = end;
  s.reveals = true;
  s.view = view;
  s.value = value;
  s.form = form;
  return s;
}

SiteRead differs(uint64_t offset) {
  SiteRead s;
  s.outcome = SiteRead::Outcome::Differs;
  s.offset = offset;
  return s;
}

// The REX byte ld writes when it turns a memory operand `reg, foo(%rip)` into a register
// operand: REX.R moves to REX.B; REX.W is kept (it is never set when cleared would matter).
uint8_t rex_r_to_b(uint8_t rex) { return static_cast<uint8_t>((rex & ~kRexR) | ((rex & kRexR) >> 2)); }

// R_X86_64_GOTPCREL(X) and REX_GOTPCRELX at f.
SiteRead got_site(std::span<const uint8_t> pre, std::span<const uint8_t> run, const elf::Reloc& r, uint64_t P) {
  const uint64_t f = r.offset;
  const bool relocx = r.type == R_X86_64_GOTPCRELX || r.type == R_X86_64_REX_GOTPCRELX;
  const bool rex = r.type == R_X86_64_REX_GOTPCRELX && f >= 3 && is_rex(pre[f - 3]);
  const uint64_t lo = f >= 2 ? (rex ? f - 3 : f - 2) : f;
  const uint64_t hi = f + 4;
  // As assembled: the field holds the GOT slot, PC-relative.
  if (first_difference(pre, run, lo, f) == f) return reads(lo, hi, Reveal::GotSlot, s32(run, f) - r.addend + P);
  if (f < 2) return differs(first_difference(pre, run, lo, f));
  const uint8_t op = pre[f - 2], modrm = pre[f - 1];
  const bool rex_same = !rex || run[f - 3] == pre[f - 3];
  const bool wide = rex && (pre[f - 3] & kRexW);
  auto imm = [&](uint64_t at) { return wide ? static_cast<uint64_t>(s32(run, at)) : u32(run, at); };

  if (op == 0xff && modrm == 0x15 && rex_same) {
    // call *foo@GOTPCREL(%rip) -> addr32 call foo. The padding byte is ld's choice
    // (-z call-nop=prefix-addr|prefix-BYTE|suffix-nop|suffix-BYTE), so any byte is taken.
    if (run[f - 1] == 0xe8 && run[f - 2] != 0xe8)
      return reads(lo, hi, Reveal::Address, s32(run, f) - r.addend + P, "call via GOT to direct call");
    // Suffix forms, `call foo; nop`: the field moves one byte back.
    if (run[f - 2] == 0xe8)
      return reads(lo, hi, Reveal::Address, s32(run, f - 1) - r.addend + P - 1, "call via GOT to direct call");
  }
  if (op == 0xff && modrm == 0x25 && rex_same && run[f - 2] == 0xe9 && run[f + 3] == 0x90)
    // jmp *foo@GOTPCREL(%rip) -> jmp foo; nop
    return reads(lo, hi, Reveal::Address, s32(run, f - 1) - r.addend + P - 1, "jmp via GOT to direct jmp");
  if (op == 0x8b) {
    // mov foo@GOTPCREL(%rip),%reg -> lea foo(%rip),%reg (PIC, or any GOTPCREL)
    if (run[f - 2] == 0x8d && run[f - 1] == modrm && rex_same)
      return reads(lo, hi, Reveal::Address, s32(run, f) - r.addend + P, "mov from GOT to lea");
    // -> mov $foo,%reg (non-PIC; R_X86_64_32S with REX.W, else R_X86_64_32; no addend)
    if (relocx && run[f - 2] == 0xc7 && run[f - 1] == (0xc0 | ((modrm & 0x38) >> 3)) &&
        (!rex || run[f - 3] == rex_r_to_b(pre[f - 3])))
      return reads(lo, hi, Reveal::Address, imm(f), "mov from GOT to mov immediate");
  }
  if (relocx && (op == 0x85 || (op & 0xc7) == 0x03)) {
    // test %reg,foo@GOTPCREL(%rip) -> test $foo,%reg;  binop foo@GOTPCREL(%rip),%reg -> binop $foo,%reg
    uint8_t want_op = op == 0x85 ? 0xf7 : 0x81;
    uint8_t want_modrm = static_cast<uint8_t>(0xc0 | ((modrm & 0x38) >> 3) | (op == 0x85 ? 0 : (op & 0x38)));
    if (run[f - 2] == want_op && run[f - 1] == want_modrm && (!rex || run[f - 3] == rex_r_to_b(pre[f - 3])))
      return reads(lo, hi, Reveal::Address, imm(f), "GOT operand to immediate");
  }
  return differs(first_difference(pre, run, lo, f));
}

// R_X86_64_GOTTPOFF at f: `mov x@gottpoff(%rip),%reg` or `add x@gottpoff(%rip),%reg`.
SiteRead ie_site(std::span<const uint8_t> pre, std::span<const uint8_t> run, const elf::Reloc& r, uint64_t P) {
  const uint64_t f = r.offset;
  const bool rex = f >= 3 && is_rex(pre[f - 3]);
  const uint64_t lo = f >= 2 ? (rex ? f - 3 : f - 2) : f;
  if (first_difference(pre, run, lo, f) == f) return reads(lo, f + 4, Reveal::TlsGotSlot, s32(run, f) - r.addend + P);
  if (f < 2) return differs(first_difference(pre, run, lo, f));
  // IE -> LE. The field then holds the tp offset itself, without the addend.
  const uint8_t op = pre[f - 2], reg = (pre[f - 1] >> 3) & 7, prex = rex ? pre[f - 3] : 0;
  uint8_t want_op = 0, want_modrm = 0, want_rex = prex;
  if (op == 0x8b) {           // movq -> movq $x@tpoff,%reg
    want_op = 0xc7, want_modrm = 0xc0 | reg;
    if (prex == 0x4c) want_rex = 0x49;
  } else if (op == 0x03 && reg == 4) {   // addq -> addq $x@tpoff,%reg (%rsp/%r12 cannot be a lea base here)
    want_op = 0x81, want_modrm = 0xc0 | reg;
    if (prex == 0x4c) want_rex = 0x49;
  } else if (op == 0x03) {    // addq -> leaq x@tpoff(%reg),%reg
    want_op = 0x8d, want_modrm = static_cast<uint8_t>(0x80 | reg | (reg << 3));
    if (prex == 0x4c) want_rex = 0x4d;
  }
  if (want_op && run[f - 2] == want_op && run[f - 1] == want_modrm && (!rex || run[f - 3] == want_rex))
    return reads(lo, f + 4, Reveal::TlsOffset, static_cast<uint64_t>(s32(run, f)), "initial-exec to local-exec");
  return differs(first_difference(pre, run, lo, f));
}

// R_X86_64_TLSGD at f; the shape was checked by site_unsupported().
SiteRead gd_site(std::span<const uint8_t> pre, std::span<const uint8_t> run, const elf::Reloc& r, uint64_t P) {
  const uint64_t f = r.offset;
  if (first_difference(pre, run, f - 4, f) == f)
    return reads(f - 4, f + 4, Reveal::TlsGdPair, s32(run, f) - r.addend + P);
  if (has(run, f - 4, kFsBase)) {
    SiteRead s;
    if (has(run, f + 5, kGdToLe))
      s = reads(f - 4, f + 12, Reveal::TlsOffset, static_cast<uint64_t>(s32(run, f + 8)), "general-dynamic to local-exec");
    else if (has(run, f + 5, kGdToIe))
      s = reads(f - 4, f + 12, Reveal::TlsGotSlot, s32(run, f + 8) + P + 12, "general-dynamic to initial-exec");
    else
      return differs(f + 5);
    s.relocs = 2;   // the __tls_get_addr call is gone
    return s;
  }
  return differs(first_difference(pre, run, f - 4, f));
}

// R_X86_64_TLSLD at f; the shape was checked by site_unsupported().
SiteRead ld_site(std::span<const uint8_t> pre, std::span<const uint8_t> run, const elf::Reloc& r, uint64_t P) {
  const uint64_t f = r.offset;
  if (first_difference(pre, run, f - 3, f) == f)
    return reads(f - 3, f + 4, Reveal::TlsModule, s32(run, f) - r.addend + P);
  bool got_call = pre[f + 4] == 0xff;
  std::span<const uint8_t> le = got_call ? std::span<const uint8_t>(kLdToLe13) : std::span<const uint8_t>(kLdToLe12);
  if (has(run, f - 3, le)) {
    SiteRead s;
    s.begin = f - 3;
    s.end = f - 3 + le.size();
    s.relocs = 2;
    s.form = "local-dynamic to local-exec";
    s.tls_ld_relaxed = true;
    return s;
  }
  return differs(first_difference(pre, run, f - 3, f));
}

}  // namespace

std::string X86_64::site_unsupported(std::span<const uint8_t> pre, std::span<const elf::Reloc> relocs,
                                     size_t i) const {
  const elf::Reloc& r = relocs[i];
  const uint64_t f = r.offset;
  auto next_call_at = [&](uint64_t at, std::initializer_list<RelocKind> kinds) {
    if (i + 1 >= relocs.size() || relocs[i + 1].offset != at) return false;
    for (RelocKind k : kinds)
      if (relocs[i + 1].kind == k) return true;
    return false;
  };
  switch (r.kind) {
    case RelocKind::None:
    case RelocKind::Abs64:
    case RelocKind::Abs32:
    case RelocKind::Abs32S:
    case RelocKind::PcRel32:
    case RelocKind::PcRel64:
    case RelocKind::Plt32:
    case RelocKind::GotPcRel:
    case RelocKind::GotTpOff:
    case RelocKind::TpOff32:
    case RelocKind::TpOff64:
    case RelocKind::DtpOff32:
    case RelocKind::DtpOff64:
      return {};
    case RelocKind::TlsGd:
      if (f >= 4 && has(pre, f - 4, kGdLea) && f + 12 <= pre.size() &&
          ((has(pre, f + 4, kGdCallPlt) && next_call_at(f + 8, {RelocKind::Plt32, RelocKind::PcRel32})) ||
           (has(pre, f + 4, kGdCallGot) && next_call_at(f + 8, {RelocKind::GotPcRel}))))
        return {};
      if (f + 5 < pre.size() && pre[f + 5] == 0xb8) return "a large-model general-dynamic TLS sequence is not supported";
      return "not the general-dynamic TLS sequence ld knows (data16 lea x@tlsgd(%rip),%rdi; call __tls_get_addr)";
    case RelocKind::TlsLd:
      if (f >= 3 && has(pre, f - 3, kLdLea) && f + 9 <= pre.size() &&
          ((pre[f + 4] == 0xe8 && next_call_at(f + 5, {RelocKind::Plt32, RelocKind::PcRel32})) ||
           (pre[f + 4] == 0xff && pre[f + 5] == 0x15 && f + 10 <= pre.size() &&
            next_call_at(f + 6, {RelocKind::GotPcRel}))))
        return {};
      if (f + 5 < pre.size() && pre[f + 5] == 0xb8) return "a large-model local-dynamic TLS sequence is not supported";
      return "not the local-dynamic TLS sequence ld knows (lea x@tlsld(%rip),%rdi; call __tls_get_addr)";
    case RelocKind::GotOff64:
    case RelocKind::GotPc32:
      return "GOT-relative addressing (the large code model) is not supported";
    case RelocKind::Size32:
    case RelocKind::Size64:
      return "a symbol's size cannot be learned from code";
    case RelocKind::Other:
      if (r.type == R_X86_64_GOTPC32_TLSDESC || r.type == R_X86_64_TLSDESC_CALL)
        return "TLS descriptors (-mtls-dialect=gnu2) are not supported";
      return "8/16-bit and large-model fields are not supported";
  }
  return "not supported";
}

SiteRead X86_64::read_site(std::span<const uint8_t> pre, std::span<const uint8_t> run,
                           std::span<const elf::Reloc> relocs, size_t i, uint64_t run_base,
                           bool dtpoff_is_tpoff) const {
  const elf::Reloc& r = relocs[i];
  const uint64_t f = r.offset, P = run_base + f;
  const uint64_t A = static_cast<uint64_t>(r.addend);
  const uint64_t end = f + r.width;
  switch (r.kind) {
    case RelocKind::None: {
      SiteRead s;
      s.begin = s.end = f;
      return s;
    }
    case RelocKind::Abs64: return reads(f, end, Reveal::Address, u64(run, f) - A);
    case RelocKind::Abs32: return reads(f, end, Reveal::Address, u32(run, f) - A);
    case RelocKind::Abs32S: return reads(f, end, Reveal::Address, static_cast<uint64_t>(s32(run, f)) - A);
    case RelocKind::PcRel32:
    case RelocKind::Plt32: return reads(f, end, Reveal::Address, static_cast<uint64_t>(s32(run, f)) - A + P);
    case RelocKind::PcRel64: return reads(f, end, Reveal::Address, u64(run, f) - A + P);
    case RelocKind::TpOff32: return reads(f, end, Reveal::TlsOffset, static_cast<uint64_t>(s32(run, f)) - A);
    case RelocKind::TpOff64: return reads(f, end, Reveal::TlsOffset, u64(run, f) - A);
    case RelocKind::DtpOff32:
      return reads(f, end, dtpoff_is_tpoff ? Reveal::TlsOffset : Reveal::DtpOffset,
                   static_cast<uint64_t>(s32(run, f)) - A);
    case RelocKind::DtpOff64: return reads(f, end, Reveal::DtpOffset, u64(run, f) - A);
    case RelocKind::GotPcRel: return got_site(pre, run, r, P);
    case RelocKind::GotTpOff: return ie_site(pre, run, r, P);
    case RelocKind::TlsGd: return gd_site(pre, run, r, P);
    case RelocKind::TlsLd: return ld_site(pre, run, r, P);
    default: return differs(f);   // excluded by site_unsupported()
  }
}

Extent X86_64::site_extent(std::span<const uint8_t> pre, const elf::Reloc& r) const {
  uint64_t f = r.offset, lo = f, hi = f + r.width;
  switch (r.kind) {
    case RelocKind::GotPcRel:
    case RelocKind::GotTpOff: lo = f >= 3 ? f - 3 : 0; break;
    case RelocKind::TlsGd: lo = f >= 4 ? f - 4 : 0, hi = f + 12; break;
    case RelocKind::TlsLd: lo = f >= 3 ? f - 3 : 0, hi = f + 10; break;
    default: break;
  }
  return {lo, std::min<uint64_t>(hi, pre.size())};
}

// ---- Disassembly for reports ----------------------------------------------------------

namespace {

struct FormatState {
  const std::map<uint64_t, FieldSymbol>* fields;
  uint64_t insn_offset;
  ZydisFormatterFunc print_address_abs, print_imm, print_disp;
};

std::string_view suffix(RelocKind k) {
  switch (k) {
    case RelocKind::GotPcRel: return "@GOTPCREL";
    case RelocKind::GotTpOff: return "@gottpoff";
    case RelocKind::TpOff32:
    case RelocKind::TpOff64: return "@tpoff";
    case RelocKind::DtpOff32:
    case RelocKind::DtpOff64: return "@dtpoff";
    case RelocKind::TlsGd: return "@tlsgd";
    case RelocKind::TlsLd: return "@tlsld";
    default: return "";
  }
}

// The symbol standing in an operand's field, or nullptr.
const FieldSymbol* field_of(const ZydisFormatterContext* c, uint64_t* field) {
  const auto* st = static_cast<const FormatState*>(c->user_data);
  const ZydisDecodedInstruction& insn = *c->instruction;
  auto look = [&](uint64_t rel) -> const FieldSymbol* {
    auto it = st->fields->find(st->insn_offset + rel);
    if (it == st->fields->end()) return nullptr;
    *field = st->insn_offset + rel;
    return &it->second;
  };
  if (c->operand->type == ZYDIS_OPERAND_TYPE_MEMORY) return insn.raw.disp.size ? look(insn.raw.disp.offset) : nullptr;
  for (const auto& imm : insn.raw.imm)
    if (imm.size)
      if (const FieldSymbol* s = look(imm.offset)) return s;
  return nullptr;
}

ZyanStatus print_symbol(ZydisFormatterBuffer* buffer, ZydisFormatterContext* c, const FieldSymbol& s, uint64_t field) {
  const auto* st = static_cast<const FormatState*>(c->user_data);
  // A PC-relative field's addend includes the distance to the end of the instruction.
  int64_t shown = s.addend;
  if (elf::is_pc_relative(s.kind) || s.kind == RelocKind::GotPcRel || s.kind == RelocKind::GotTpOff ||
      s.kind == RelocKind::TlsGd || s.kind == RelocKind::TlsLd)
    shown += static_cast<int64_t>(st->insn_offset + c->instruction->length - field);
  std::string text = s.name + std::string(suffix(s.kind));
  if (shown > 0) text += fmt::format("+{:#x}", shown);
  if (shown < 0) text += fmt::format("-{:#x}", -shown);
  ZYAN_CHECK(ZydisFormatterBufferAppend(buffer, ZYDIS_TOKEN_SYMBOL));
  ZyanString* out;
  ZYAN_CHECK(ZydisFormatterBufferGetString(buffer, &out));
  ZyanStringView view;
  ZYAN_CHECK(ZyanStringViewInsideBuffer(&view, text.c_str()));
  return ZyanStringAppend(out, &view);
}

ZyanStatus hook_address_abs(const ZydisFormatter* f, ZydisFormatterBuffer* b, ZydisFormatterContext* c) {
  uint64_t field;
  if (const FieldSymbol* s = field_of(c, &field)) return print_symbol(b, c, *s, field);
  return static_cast<const FormatState*>(c->user_data)->print_address_abs(f, b, c);
}
ZyanStatus hook_imm(const ZydisFormatter* f, ZydisFormatterBuffer* b, ZydisFormatterContext* c) {
  uint64_t field;
  if (const FieldSymbol* s = field_of(c, &field)) return print_symbol(b, c, *s, field);
  return static_cast<const FormatState*>(c->user_data)->print_imm(f, b, c);
}
ZyanStatus hook_disp(const ZydisFormatter* f, ZydisFormatterBuffer* b, ZydisFormatterContext* c) {
  uint64_t field;
  if (const FieldSymbol* s = field_of(c, &field)) {
    // The disp printer owns the sign: AT&T prints `sym(%rax)` with no '+'.
    return print_symbol(b, c, *s, field);
  }
  return static_cast<const FormatState*>(c->user_data)->print_disp(f, b, c);
}

}  // namespace

std::optional<Instruction> X86_64::disassemble(std::span<const uint8_t> code, uint64_t offset,
                                               uint64_t runtime_base,
                                               const std::map<uint64_t, FieldSymbol>& fields) const {
  ZydisDecoder decoder;
  ZydisFormatter formatter;
  if (ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) ||
      ZYAN_FAILED(ZydisFormatterInit(&formatter, ZYDIS_FORMATTER_STYLE_ATT)))
    return std::nullopt;
  ZydisFormatterSetProperty(&formatter, ZYDIS_FORMATTER_PROP_HEX_UPPERCASE, ZYAN_FALSE);
  ZydisFormatterSetProperty(&formatter, ZYDIS_FORMATTER_PROP_ADDR_PADDING_ABSOLUTE, ZYDIS_PADDING_DISABLED);
  ZydisFormatterSetProperty(&formatter, ZYDIS_FORMATTER_PROP_DISP_PADDING, ZYDIS_PADDING_DISABLED);
  ZydisFormatterSetProperty(&formatter, ZYDIS_FORMATTER_PROP_IMM_PADDING, ZYDIS_PADDING_DISABLED);
  FormatState st{&fields, 0, nullptr, nullptr, nullptr};
  // Swaps in our hooks and hands back Zydis' own printers, which the hooks fall back to.
  auto hook = [&](ZydisFormatterFunction which, ZydisFormatterFunc ours, ZydisFormatterFunc& original) {
    const void* fn = reinterpret_cast<const void*>(ours);
    ZydisFormatterSetHook(&formatter, which, &fn);
    original = reinterpret_cast<ZydisFormatterFunc>(const_cast<void*>(fn));
  };
  hook(ZYDIS_FORMATTER_FUNC_PRINT_ADDRESS_ABS, hook_address_abs, st.print_address_abs);
  hook(ZYDIS_FORMATTER_FUNC_PRINT_IMM, hook_imm, st.print_imm);
  hook(ZYDIS_FORMATTER_FUNC_PRINT_DISP, hook_disp, st.print_disp);

  uint64_t pc = 0;
  while (pc < code.size()) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(&decoder, code.data() + pc, code.size() - pc, &insn, ops)))
      return std::nullopt;
    if (offset < pc + insn.length) {
      st.insn_offset = pc;
      // Zydis leaves out a zero displacement, and a relocated one is zero in pre code:
      // make it print, so that the hook can put the symbol there (`sym@dtpoff(%rax)`).
      if (insn.raw.disp.size && fields.count(pc + insn.raw.disp.offset))
        for (unsigned k = 0; k < insn.operand_count_visible; ++k)
          if (ops[k].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[k].mem.disp.has_displacement && ops[k].mem.disp.value == 0)
            ops[k].mem.disp.value = 1;
      char buf[256];
      if (ZYAN_FAILED(ZydisFormatterFormatInstruction(&formatter, &insn, ops, insn.operand_count_visible, buf,
                                                      sizeof buf, runtime_base + pc, &st)))
        return std::nullopt;
      return Instruction{pc, insn.length, buf};
    }
    pc += insn.length;
  }
  return std::nullopt;
}

}  // namespace ls::arch::x86_64
