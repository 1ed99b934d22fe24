// x86-64: relocation classification and instruction-aware PC-relative bias.
#include <Zydis/Zydis.h>
#include <elf.h>

#include "arch/arch.h"

namespace ls::arch {

using elf::RelocKind;

std::optional<RelocInfo> x86_64_reloc(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE: return RelocInfo{RelocKind::None, 0};
    case R_X86_64_64: return RelocInfo{RelocKind::Abs64, 8};
    case R_X86_64_32: return RelocInfo{RelocKind::Abs32, 4};
    case R_X86_64_32S: return RelocInfo{RelocKind::Abs32S, 4};
    case R_X86_64_PC32: return RelocInfo{RelocKind::PcRel32, 4};
    case R_X86_64_PC64: return RelocInfo{RelocKind::PcRel64, 8};
    case R_X86_64_PLT32: return RelocInfo{RelocKind::Plt32, 4};
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX: return RelocInfo{RelocKind::GotPcRel, 4};
    case R_X86_64_GOTOFF64: return RelocInfo{RelocKind::GotOff64, 8};
    case R_X86_64_GOTPC32: return RelocInfo{RelocKind::GotPc32, 4};
    case R_X86_64_TLSGD: return RelocInfo{RelocKind::TlsGd, 4};
    case R_X86_64_TLSLD: return RelocInfo{RelocKind::TlsLd, 4};
    case R_X86_64_DTPOFF32: return RelocInfo{RelocKind::DtpOff32, 4};
    case R_X86_64_DTPOFF64: return RelocInfo{RelocKind::DtpOff64, 8};
    case R_X86_64_GOTTPOFF: return RelocInfo{RelocKind::GotTpOff, 4};
    case R_X86_64_TPOFF32: return RelocInfo{RelocKind::TpOff32, 4};
    case R_X86_64_TPOFF64: return RelocInfo{RelocKind::TpOff64, 8};
    case R_X86_64_SIZE32: return RelocInfo{RelocKind::Size32, 4};
    case R_X86_64_SIZE64: return RelocInfo{RelocKind::Size64, 8};
    case R_X86_64_16:
    case R_X86_64_PC16:
    case R_X86_64_8:
    case R_X86_64_PC8:
    case R_X86_64_GOT32:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOTPCREL64:
    case R_X86_64_GOTPLT64:
    case R_X86_64_PLTOFF64:
    case R_X86_64_GOTPC32_TLSDESC:
    case R_X86_64_TLSDESC_CALL: return RelocInfo{RelocKind::Other, 0};
    default: return std::nullopt;
  }
}

std::vector<OperandField> x86_64_operand_fields(std::span<const uint8_t> code) {
  std::vector<OperandField> fields;
  ZydisDecoder decoder;
  if (ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
    return fields;
  uint64_t pc = 0;
  while (pc < code.size()) {
    ZydisDecodedInstruction insn;
    if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data() + pc,
                                                  code.size() - pc, &insn)))
      break;
    uint64_t end = pc + insn.length;
    if (insn.raw.disp.size != 0) {
      uint64_t f = pc + insn.raw.disp.offset;
      fields.push_back({f, static_cast<int64_t>(end - f)});
    }
    for (const auto& imm : insn.raw.imm) {
      if (imm.size == 0) continue;
      uint64_t f = pc + imm.offset;
      fields.push_back({f, static_cast<int64_t>(end - f)});
    }
    pc = end;
  }
  return fields;
}

std::optional<Instruction> x86_64_instruction_at(std::span<const uint8_t> code, uint64_t offset) {
  ZydisDecoder decoder;
  ZydisFormatter formatter;
  if (ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) ||
      ZYAN_FAILED(ZydisFormatterInit(&formatter, ZYDIS_FORMATTER_STYLE_ATT)))
    return std::nullopt;
  uint64_t pc = 0;
  while (pc < code.size()) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(&decoder, code.data() + pc, code.size() - pc, &insn, ops)))
      return std::nullopt;
    if (offset < pc + insn.length) {
      char buf[256];
      if (ZYAN_FAILED(ZydisFormatterFormatInstruction(&formatter, &insn, ops, insn.operand_count_visible,
                                                      buf, sizeof buf, pc, nullptr)))
        return std::nullopt;
      return Instruction{pc, insn.length, buf};
    }
    pc += insn.length;
  }
  return std::nullopt;
}

std::optional<Decoded> x86_64_decode(std::span<const uint8_t> code, uint64_t offset) {
  ZydisDecoder decoder;
  if (offset >= code.size() ||
      ZYAN_FAILED(ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
    return std::nullopt;
  ZydisDecodedInstruction insn;
  if (ZYAN_FAILED(ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data() + offset, code.size() - offset, &insn)))
    return std::nullopt;
  Decoded d;
  d.length = insn.length;
  d.mnemonic = static_cast<int>(insn.mnemonic);
  d.nop = insn.mnemonic == ZYDIS_MNEMONIC_NOP;
  // Direct relative jumps: jmp, the sixteen jcc and call (a function calling itself
  // through a local alias has no relocation either); not loop/jrcxz, which no
  // assembler would encode another way.
  const bool jump = insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR || insn.meta.category == ZYDIS_CATEGORY_COND_BR ||
                    insn.meta.category == ZYDIS_CATEGORY_CALL;
  const bool relative = (insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) != 0 && insn.raw.imm[0].size != 0 &&
                        insn.raw.imm[0].is_relative;
  if (jump && relative && insn.mnemonic != ZYDIS_MNEMONIC_JRCXZ && insn.mnemonic != ZYDIS_MNEMONIC_JECXZ &&
      insn.mnemonic != ZYDIS_MNEMONIC_LOOP && insn.mnemonic != ZYDIS_MNEMONIC_LOOPE &&
      insn.mnemonic != ZYDIS_MNEMONIC_LOOPNE && (insn.raw.imm[0].size == 8 || insn.raw.imm[0].size == 32)) {
    d.branch = true;
    d.short_branch = insn.raw.imm[0].size == 8;
    d.target = static_cast<int64_t>(offset + insn.length) + insn.raw.imm[0].value.s;
  }
  return d;
}

}  // namespace ls::arch
