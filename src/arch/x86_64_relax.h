// x86-64 knowledge for run-pre matching: what a relocation site of pre code (an object
// file's bytes) may look like once a linker has processed it, and what the linked bytes
// then tell about the symbol. Also the symbolic disassembly used in mismatch reports.
//
// What is hard: GNU ld rewrites instructions, not just fields. `mov foo@GOTPCREL(%rip)`
// becomes `lea foo(%rip)` or `mov $foo`, `call *foo@GOTPCREL(%rip)` becomes `addr32 call
// foo`, TLS access sequences shrink from general-dynamic to initial- or local-exec. Each
// rewrite changes which *view* of the symbol the field holds (its GOT slot or its
// address; a GOT pair or a thread-pointer offset). The rewrites recognised here are
// exactly those of binutils' elf_x86_64_convert_load_reloc and the TLS transitions of
// elf_x86_64_relocate_section (LP64, small code model); anything else is a difference.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "arch/arch.h"
#include "elf/object.h"

namespace ls::arch {

// What a site tells about its symbol. ls::View plus two TLS values the loader does not
// ask for (yet): the address of a module's local-dynamic GOT pair, and an offset inside
// the module's TLS block. The matcher checks those for agreement like the others.
// TlsGotSlot is an initial-exec slot (it holds the tp offset); TlsGdPair a
// general-dynamic pair (module id, offset) for __tls_get_addr.
enum class Reveal { Address, GotSlot, TlsOffset, TlsGotSlot, TlsGdPair, TlsModule, DtpOffset };
std::string_view to_string(Reveal r);

// One site read against run bytes. [begin, end) are the pre bytes it accounts for
// (its field plus any instruction bytes the linker may rewrite); bytes of pre code that
// no site accounts for must be equal in run.
struct SiteRead {
  enum class Outcome {
    Read,          // recognised: `revealed` holds what it tells (unless reveals == false)
    Differs,       // neither as assembled nor a rewrite ld makes: first differing byte at `offset`
  };
  Outcome outcome = Outcome::Read;
  uint64_t begin = 0, end = 0;
  size_t relocs = 1;              // relocations consumed (2: a TLS sequence and its __tls_get_addr call)
  bool reveals = false;
  Reveal view = Reveal::Address;
  uint64_t value = 0;             // the symbol's value in `view` (offsets as two's complement)
  std::string_view form;          // "" as assembled, else the rewrite, e.g. "mov to lea"
  bool tls_ld_relaxed = false;    // a local-dynamic sequence rewritten to local-exec
  uint64_t offset = 0;            // Differs: first differing pre offset
};

// "R_X86_64_PLT32" for a relocation number; "relocation type N" when unknown.
std::string x86_64_reloc_name(uint32_t type);

// Whether relocs[i] of `pre` is a site the matcher can interpret at all (its kind, and
// for TLS sequences the instruction shapes around it). Empty when it is; otherwise why
// not, e.g. "the large code model is not supported".
std::string x86_64_site_unsupported(std::span<const uint8_t> pre, std::span<const elf::Reloc> relocs, size_t i);

// Reads relocs[i] in `run` (the same length as `pre`, linked at `run_base`). Requires
// x86_64_site_unsupported() to be empty for it. `dtpoff_is_tpoff`: the function's
// local-dynamic sequences were rewritten to local-exec, so DTPOFF fields hold
// thread-pointer offsets (ld does this for all code of an executable).
SiteRead x86_64_read_site(std::span<const uint8_t> pre, std::span<const uint8_t> run,
                          std::span<const elf::Reloc> relocs, size_t i, uint64_t run_base,
                          bool dtpoff_is_tpoff);

// The pre bytes a site's instruction may differ in after linking: never used as a
// content-search anchor. Clamped to the code.
struct Extent {
  uint64_t begin, end;
};
Extent x86_64_site_extent(std::span<const uint8_t> pre, const elf::Reloc& r);

// Disassembly for reports, AT&T syntax, addresses as at `runtime_base`. Operands whose
// field carries a relocation print the symbol instead of the placeholder bytes
// (`call helper`, `mov %fs:tls_hits@tpoff, %eax`). `fields` maps a field's offset in
// `code` to its relocation and the symbol's name.
struct FieldSymbol {
  elf::RelocKind kind;
  std::string name;
  int64_t addend;
};
std::optional<Instruction> x86_64_disassemble(std::span<const uint8_t> code, uint64_t offset,
                                              uint64_t runtime_base,
                                              const std::map<uint64_t, FieldSymbol>& fields = {});

}  // namespace ls::arch
