// The machine behind one interface, in the manner of lld's TargetInfo: everything that
// knows an instruction set's encodings is a `Target`, chosen by the ELF machine of the
// objects at hand (target()) or, for what runs here — a traced process, the running
// kernel — by the machine this program runs on (host()). Above src/arch nothing decodes
// an instruction or writes one; below it, src/elf knows relocation numbers (relocs.h)
// and nothing of instructions.
//
// An architecture implements, in its own folder (src/arch/x86_64/):
//   decoding        operand fields and their PC-relative bias (the differ), one
//                   instruction's length and branch target (run-pre matching), AT&T
//                   text for messages;
//   linked sites    what a relocation site of pre code may look like once a linker
//                   rewrote it, and what the linked bytes reveal (run-pre matching);
//   the loader's    far stubs, branch fields that may go through one, the TLS
//   machine code    relaxations it performs itself, the trap that fills padding;
//   trampolines     the jump written at a replaced function's entry, the landing pad
//                   an indirect branch must still find there, the one-byte trap that
//                   makes a half-written site safe;
//   the kernel's    its run-time rewrites of its own code (as data for matching), where
//   forms           ftrace's site is at a function's entry, and which relocations its
//                   module loader applies.
//
// What is hard: nothing here may carry state — a Target is a description, shared by
// every caller, and its functions are pure on the bytes they are given.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/rewrites.h"
#include "base/addr.h"
#include "base/result.h"
#include "elf/object.h"

namespace ls::arch {

// An operand field of an instruction, with the distance from the field to the end of
// its instruction (the "bias"). The assembler folds that distance into a PC-relative
// addend (`lea .LC0(%rip)` has addend -4, `cmpb $0, x(%rip)` has -5), so the place a
// reference really points at is sym + addend + bias.
struct OperandField {
  uint64_t offset;
  int64_t bias;
};

// One instruction for messages: {start offset, length, text}.
struct Instruction {
  uint64_t start;
  unsigned length;
  std::string text;
};

// What run-pre matching needs to know of one instruction when the assembler may have
// encoded the same code differently: its length, whether it is alignment padding (a NOP
// of any length), and whether it is a direct jump, conditional jump (short or long form)
// or call, and then where it goes, as an offset in the code (may lie outside it).
// `mnemonic` tells a conditional jump's condition apart; equal for both widths of one
// branch.
struct Decoded {
  unsigned length = 0;
  bool nop = false;
  bool branch = false;
  bool short_branch = false;   // the short-displacement form
  int mnemonic = 0;
  int64_t target = 0;
};

// What a relocation site tells about its symbol. The loader's ls::View plus two TLS
// values it does not ask for (yet): the address of a module's local-dynamic GOT pair,
// and an offset inside the module's TLS block. The matcher checks those for agreement
// like the others. TlsGotSlot is an initial-exec slot (it holds the tp offset);
// TlsGdPair a general-dynamic pair (module id, offset) for __tls_get_addr.
enum class Reveal { Address, GotSlot, TlsOffset, TlsGotSlot, TlsGdPair, TlsModule, DtpOffset };
std::string_view to_string(Reveal r);

// One site read against run bytes. [begin, end) are the pre bytes it accounts for (its
// field plus any instruction bytes the linker may rewrite); bytes of pre code that no
// site accounts for must be equal in run.
struct SiteRead {
  enum class Outcome {
    Read,          // recognised: `revealed` holds what it tells (unless reveals == false)
    Differs,       // neither as assembled nor a rewrite the linker makes: first differing byte at `offset`
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

// The pre bytes a site's instruction may differ in after linking: never used as a
// content-search anchor. Clamped to the code.
struct Extent {
  uint64_t begin, end;
};

// A relocated operand shown by its symbol in disassembly (`call helper`).
struct FieldSymbol {
  elf::RelocKind kind;
  std::string name;
  int64_t addend;
};

// The patchable site ftrace keeps at a kernel function's entry: `length` bytes, either
// its NOP or a call (then `call_to`: where it goes, relative to the site's start).
struct FentrySite {
  unsigned length = 0;
  std::optional<int64_t> call_to;
};

class Target {
 public:
  virtual ~Target() = default;

  elf::Machine machine;
  std::string_view name;            // "x86-64", for messages

  // --- Decoding --------------------------------------------------------------------
  // Every operand field of the instructions in `code`, sorted by offset; decoding
  // stops at the first undecodable byte.
  virtual std::vector<OperandField> operand_fields(std::span<const uint8_t> code) const = 0;
  // The instruction covering `offset` (decoded from the start of `code`); nullopt if
  // decoding fails before reaching it.
  virtual std::optional<Instruction> instruction_at(std::span<const uint8_t> code, uint64_t offset) const = 0;
  // The instruction starting at `offset`.
  virtual std::optional<Decoded> decode(std::span<const uint8_t> code, uint64_t offset) const = 0;
  // Disassembly for reports, addresses as at `runtime_base`. Operands whose field
  // carries a relocation print the symbol instead of the placeholder bytes; `fields`
  // maps a field's offset in `code` to its relocation and symbol name.
  virtual std::optional<Instruction> disassemble(std::span<const uint8_t> code, uint64_t offset,
                                                 uint64_t runtime_base,
                                                 const std::map<uint64_t, FieldSymbol>& fields = {}) const = 0;

  // --- Relocation sites as a linker leaves them (run-pre matching) -------------------
  // Whether relocs[i] of `pre` is a site the matcher can interpret at all. Empty when
  // it is; otherwise why not, e.g. "the large code model is not supported".
  virtual std::string site_unsupported(std::span<const uint8_t> pre, std::span<const elf::Reloc> relocs,
                                       size_t i) const = 0;
  // Reads relocs[i] in `run` (the same length as `pre`, linked at `run_base`). Requires
  // site_unsupported() to be empty for it. `dtpoff_is_tpoff`: the function's
  // local-dynamic sequences were rewritten to local-exec, so DTPOFF fields hold
  // thread-pointer offsets (ld does this for all code of an executable).
  virtual SiteRead read_site(std::span<const uint8_t> pre, std::span<const uint8_t> run,
                             std::span<const elf::Reloc> relocs, size_t i, uint64_t run_base,
                             bool dtpoff_is_tpoff) const = 0;
  virtual Extent site_extent(std::span<const uint8_t> pre, const elf::Reloc& r) const = 0;

  // --- The loader's machine code -----------------------------------------------------
  uint8_t trap = 0;                 // one byte that traps: code padding, unused stubs, armed sites
  int64_t branch_bias = 0;          // a branch field at P reaches S + A + bias for S + A - P
  uint64_t far_stub_size = 0, far_stub_align = 0;
  // A stub at `at` (far_stub_size bytes) that jumps to any 64-bit `target`.
  virtual void write_far_stub(std::span<uint8_t> at, uint64_t target) const = 0;
  // Offsets of the PC-relative fields of branch instructions in `code`: a relocation at
  // one of these may be redirected through a stub; any other cannot.
  virtual std::set<uint64_t> branch_fields(std::span<const uint8_t> code) const = 0;
  // General-dynamic TLS access rewritten to local-exec, as the linker does: `field` is
  // the TLSGD relocation's offset. gd_call_field() checks the sequence's shape without
  // changing anything and gives the offset of the call's relocation field, which the
  // rewrite consumes; nullopt when it is not the shape the psABI prescribes.
  virtual std::optional<uint64_t> gd_call_field(std::span<const uint8_t> code, uint64_t field) const = 0;
  virtual void rewrite_gd_to_le(std::span<uint8_t> code, uint64_t field, int32_t tpoff) const = 0;
  // Local-dynamic TLS base rewritten to the thread pointer; after it every DTPOFF field
  // holds the thread-pointer offset instead.
  virtual std::optional<uint64_t> ld_call_field(std::span<const uint8_t> code, uint64_t field) const = 0;
  virtual void rewrite_ld_to_le(std::span<uint8_t> code, uint64_t field) const = 0;

  // --- Trampolines -------------------------------------------------------------------
  uint64_t entry_head_size = 0;     // bytes entry_landing() looks at
  uint64_t max_jump_size = 0;       // the longest jump() makes
  // How many bytes at a function's entry an indirect branch must still find there (a
  // landing pad: `endbr64`); the jump is written after them.
  virtual uint64_t entry_landing(std::span<const uint8_t> head) const = 0;
  // The jump written at `site` to reach `to`: the shortest form that reaches.
  virtual std::vector<uint8_t> jump(TargetAddr site, TargetAddr to) const = 0;

  // --- The kernel's forms --------------------------------------------------------------
  uint64_t kernel_jump_size = 0;    // the jump the kernel core writes (kernel/core/splice.c)
  // The kernel's run-time rewrites of instructions naming certain symbols.
  virtual Rewrites kernel_rewrites() const = 0;
  // The rewritten sites of the update's replaced functions, from the tables `create
  // --kernel` carries beside their pre code, into `rw.sites`. A table entry that does
  // not fit its layout is a tool error.
  virtual Status kernel_table_sites(const elf::Object& update, Rewrites& rw) const = 0;
  // ftrace's site at `at` (a function's entry, past its landing pad), if there is one.
  virtual std::optional<FentrySite> fentry_site(std::span<const uint8_t> at) const = 0;
  // The bytes the kernel's module loader patches for relocation `type`; nullopt for a
  // type it does not apply.
  virtual std::optional<unsigned> kernel_module_reloc_width(uint32_t type) const = 0;
};

// The target for objects of machine `m`. Throws ls::Error for a machine livesplice does
// not support; checked_target() returns that error instead (the apply path).
const Target& target(elf::Machine m);
Result<const Target*> checked_target(elf::Machine m);
// The machine this program runs on: the only one it can trace, and the running kernel's.
const Target& host();

}  // namespace ls::arch
