// The relocation tables (see relocs.h): one row per number, in number order, so that a
// number indexes its row.
#include "elf/relocs.h"

#include <elf.h>

#include <iterator>
#include <span>

#include <fmt/format.h>

namespace ls::elf {
namespace {

using K = RelocKind;

struct Row {
  uint32_t type;
  const char* name;
  std::optional<RelocInfo> info;   // nullopt: never in a relocatable object we read
};

// x86-64 psABI, LP64. `Other` rows are numbers a compiler may emit that the differ does
// not reason about (it refuses them); nullopt rows are numbers only linked files hold,
// or that no table names (39, 40).
constexpr RelocInfo kOther{K::Other, 0};
constexpr Row kX86_64[] = {
    {R_X86_64_NONE, "R_X86_64_NONE", RelocInfo{K::None, 0}},
    {R_X86_64_64, "R_X86_64_64", RelocInfo{K::Abs64, 8}},
    {R_X86_64_PC32, "R_X86_64_PC32", RelocInfo{K::PcRel32, 4}},
    {R_X86_64_GOT32, "R_X86_64_GOT32", kOther},
    {R_X86_64_PLT32, "R_X86_64_PLT32", RelocInfo{K::Plt32, 4}},
    {R_X86_64_COPY, "R_X86_64_COPY", std::nullopt},
    {R_X86_64_GLOB_DAT, "R_X86_64_GLOB_DAT", std::nullopt},
    {R_X86_64_JUMP_SLOT, "R_X86_64_JUMP_SLOT", std::nullopt},
    {R_X86_64_RELATIVE, "R_X86_64_RELATIVE", std::nullopt},
    {R_X86_64_GOTPCREL, "R_X86_64_GOTPCREL", RelocInfo{K::GotPcRel, 4}},
    {R_X86_64_32, "R_X86_64_32", RelocInfo{K::Abs32, 4}},
    {R_X86_64_32S, "R_X86_64_32S", RelocInfo{K::Abs32S, 4}},
    {R_X86_64_16, "R_X86_64_16", kOther},
    {R_X86_64_PC16, "R_X86_64_PC16", kOther},
    {R_X86_64_8, "R_X86_64_8", kOther},
    {R_X86_64_PC8, "R_X86_64_PC8", kOther},
    {R_X86_64_DTPMOD64, "R_X86_64_DTPMOD64", std::nullopt},
    {R_X86_64_DTPOFF64, "R_X86_64_DTPOFF64", RelocInfo{K::DtpOff64, 8}},
    {R_X86_64_TPOFF64, "R_X86_64_TPOFF64", RelocInfo{K::TpOff64, 8}},
    {R_X86_64_TLSGD, "R_X86_64_TLSGD", RelocInfo{K::TlsGd, 4}},
    {R_X86_64_TLSLD, "R_X86_64_TLSLD", RelocInfo{K::TlsLd, 4}},
    {R_X86_64_DTPOFF32, "R_X86_64_DTPOFF32", RelocInfo{K::DtpOff32, 4}},
    {R_X86_64_GOTTPOFF, "R_X86_64_GOTTPOFF", RelocInfo{K::GotTpOff, 4}},
    {R_X86_64_TPOFF32, "R_X86_64_TPOFF32", RelocInfo{K::TpOff32, 4}},
    {R_X86_64_PC64, "R_X86_64_PC64", RelocInfo{K::PcRel64, 8}},
    {R_X86_64_GOTOFF64, "R_X86_64_GOTOFF64", RelocInfo{K::GotOff64, 8}},
    {R_X86_64_GOTPC32, "R_X86_64_GOTPC32", RelocInfo{K::GotPc32, 4}},
    {R_X86_64_GOT64, "R_X86_64_GOT64", std::nullopt},
    {R_X86_64_GOTPCREL64, "R_X86_64_GOTPCREL64", kOther},
    {R_X86_64_GOTPC64, "R_X86_64_GOTPC64", kOther},
    {R_X86_64_GOTPLT64, "R_X86_64_GOTPLT64", kOther},
    {R_X86_64_PLTOFF64, "R_X86_64_PLTOFF64", kOther},
    {R_X86_64_SIZE32, "R_X86_64_SIZE32", RelocInfo{K::Size32, 4}},
    {R_X86_64_SIZE64, "R_X86_64_SIZE64", RelocInfo{K::Size64, 8}},
    {R_X86_64_GOTPC32_TLSDESC, "R_X86_64_GOTPC32_TLSDESC", kOther},
    {R_X86_64_TLSDESC_CALL, "R_X86_64_TLSDESC_CALL", kOther},
    {R_X86_64_TLSDESC, "R_X86_64_TLSDESC", std::nullopt},
    {R_X86_64_IRELATIVE, "R_X86_64_IRELATIVE", std::nullopt},
    {R_X86_64_RELATIVE64, "R_X86_64_RELATIVE64", std::nullopt},
    {39, "R_X86_64_39", std::nullopt},
    {40, "R_X86_64_40", std::nullopt},
    {R_X86_64_GOTPCRELX, "R_X86_64_GOTPCRELX", RelocInfo{K::GotPcRel, 4}},
    {R_X86_64_REX_GOTPCRELX, "R_X86_64_REX_GOTPCRELX", RelocInfo{K::GotPcRel, 4}},
};

constexpr bool in_number_order(std::span<const Row> rows) {
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].type != i) return false;
  return true;
}
static_assert(in_number_order(kX86_64), "a row's index is its number");

std::span<const Row> table(Machine m) {
  switch (m) {
    case Machine::X86_64: return kX86_64;
    case Machine::AArch64: return {};
  }
  return {};
}

const Row* row(Machine m, uint32_t type) {
  std::span<const Row> t = table(m);
  return type < t.size() && t[type].type == type ? &t[type] : nullptr;
}

}  // namespace

std::optional<RelocInfo> reloc_info(Machine m, uint32_t type) {
  const Row* r = row(m, type);
  return r ? r->info : std::nullopt;
}

std::string reloc_name(Machine m, uint32_t type) {
  if (const Row* r = row(m, type)) return r->name;
  return fmt::format("relocation type {}", type);
}

DynamicSlot dynamic_slot(Machine m, uint32_t type) {
  switch (m) {
    case Machine::X86_64:
      if (type == R_X86_64_IRELATIVE) return DynamicSlot::ResolverResult;
      if (type == R_X86_64_GLOB_DAT || type == R_X86_64_JUMP_SLOT) return DynamicSlot::SymbolAddress;
      return DynamicSlot::Other;
    case Machine::AArch64:
      if (type == R_AARCH64_IRELATIVE) return DynamicSlot::ResolverResult;
      if (type == R_AARCH64_GLOB_DAT || type == R_AARCH64_JUMP_SLOT) return DynamicSlot::SymbolAddress;
      return DynamicSlot::Other;
  }
  return DynamicSlot::Other;
}

uint16_t e_machine(Machine m) { return m == Machine::AArch64 ? EM_AARCH64 : EM_X86_64; }

std::optional<Machine> machine_of(uint16_t e_machine) {
  if (e_machine == EM_X86_64) return Machine::X86_64;
  if (e_machine == EM_AARCH64) return Machine::AArch64;
  return std::nullopt;
}

}  // namespace ls::elf
