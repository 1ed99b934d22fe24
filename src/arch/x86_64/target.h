// x86-64 (LP64, small code model), internal to src/arch/x86_64/: the Target, its members
// defined by subject across the folder —
//   decode.cc   Zydis decoding: operand fields, instructions, branches
//   sites.cc    relocation sites as GNU ld leaves them, and disassembly for reports
//   code.cc     the machine code livesplice writes: far stubs, TLS relaxations,
//               trampolines
//   kernel.cc   the kernel's run-time rewrites, ftrace's entry site, module relocations
#pragma once

#include "arch/target.h"

namespace ls::arch::x86_64 {

class X86_64 final : public Target {
 public:
  X86_64();

  std::vector<OperandField> operand_fields(std::span<const uint8_t> code) const override;
  std::optional<Instruction> instruction_at(std::span<const uint8_t> code, uint64_t offset) const override;
  std::optional<Decoded> decode(std::span<const uint8_t> code, uint64_t offset) const override;
  std::optional<Instruction> disassemble(std::span<const uint8_t> code, uint64_t offset, uint64_t runtime_base,
                                         const std::map<uint64_t, FieldSymbol>& fields) const override;

  std::string site_unsupported(std::span<const uint8_t> pre, std::span<const elf::Reloc> relocs,
                               size_t i) const override;
  SiteRead read_site(std::span<const uint8_t> pre, std::span<const uint8_t> run, std::span<const elf::Reloc> relocs,
                     size_t i, uint64_t run_base, bool dtpoff_is_tpoff) const override;
  Extent site_extent(std::span<const uint8_t> pre, const elf::Reloc& r) const override;

  void write_far_stub(std::span<uint8_t> at, uint64_t target) const override;
  std::set<uint64_t> branch_fields(std::span<const uint8_t> code) const override;
  std::optional<uint64_t> gd_call_field(std::span<const uint8_t> code, uint64_t field) const override;
  void rewrite_gd_to_le(std::span<uint8_t> code, uint64_t field, int32_t tpoff) const override;
  std::optional<uint64_t> ld_call_field(std::span<const uint8_t> code, uint64_t field) const override;
  void rewrite_ld_to_le(std::span<uint8_t> code, uint64_t field) const override;

  uint64_t entry_landing(std::span<const uint8_t> head) const override;
  std::vector<uint8_t> jump(TargetAddr site, TargetAddr to) const override;

  Rewrites kernel_rewrites() const override;
  Status kernel_table_sites(const elf::Object& update, Rewrites& rw) const override;
  std::optional<FentrySite> fentry_site(std::span<const uint8_t> at) const override;
  std::optional<unsigned> kernel_module_reloc_width(uint32_t type) const override;
};

// The one instance (stateless).
const Target& target();

// decode.cc's decoder, for the folder's other files.
std::optional<Decoded> decode_one(std::span<const uint8_t> code, uint64_t offset);

}  // namespace ls::arch::x86_64
