// The loader: an update's post sections linked into one image that runs at a chosen
// address inside the target.
//
// Two calls, so that the apply layer can reserve memory before it knows what every
// symbol resolves to: plan() lays the image out and says how big it can get; link()
// fixes the base, asks the resolver what each run symbol is, and produces the bytes.
// Nothing here touches a target: the apply layer maps memory at `base`, writes
// Image::bytes and sets protections from Image::code / readonly / writable. The kernel
// target uses only check() (below): the kernel's own module loader lays its module out
// and relocates it (src/kernel/module.h).
//
// Layout, in order, all offsets from the base (which must be aligned to Plan::align):
//   code      every executable post section, at its own alignment, in section order
//   stubs     far stubs, one reserved per (run symbol, addend) that a branch names
//   ------    end of Image::code (map read+exec)
//   rodata    read-only post sections (literals, jump tables, const data)
//   GOT       slots, one reserved per run symbol a GOT-relative access names
//   ------    page boundary: start of Image::writable (map read+write)
//   data/bss  writable post sections (new globals, static locals)
// The readonly part may share its first page with the end of the code; it holds nothing
// writable, so mapping those pages read+exec keeps W^X.
//
// Policies (the machine's details are its arch::Target's; x86-64's in src/arch/x86_64/):
//   - Branches (call/jmp/jcc rel32) to a run symbol outside ±2 GiB of the field go
//     through a far stub in the image: `jmp *0(%rip)` followed by the 8-byte address.
//     Other PC-relative fields (`lea x(%rip)`) cannot be redirected: out of reach is an
//     error asking for the image to be placed nearer.
//   - Every GOT-relative access gets a slot in the image's own GOT, filled with the
//     value the resolver gives for View::Address (or View::TlsOffset for initial-exec
//     TLS). The program's own slot (View::GotSlot / View::TlsGotSlot) is used only when
//     the resolver knows the slot but not the value, and only if it is within reach.
//     Own slots are always in reach, and a PIE's accesses to its own symbols have no
//     GOT slot at all (the linker relaxed them), so the value is what run-pre matching
//     most often learns.
//   - TLS: local-exec fields take View::TlsOffset; initial-exec ones an own slot holding
//     it, else the program's slot (View::TlsGotSlot). A general-dynamic access becomes
//     local-exec (the code sequence is rewritten, as ld does) when the resolver gives a
//     TLS offset that fits 32 bits (static TLS); otherwise it uses the program's GD pair
//     (View::TlsGdPair). An IE slot is never a GD pair: the two views are kept apart.
//     Local-dynamic accesses are always relaxed to local-exec and need every variable's
//     TLS offset: variables in dynamically allocated TLS (a dlopen()ed library) are not
//     supported and give an error naming them.
//   - An undefined global that the update itself defines binds to that definition, as a
//     static link would: a new function in one object called from another has no run
//     copy to resolve to.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/diag.h"
#include "base/result.h"
#include "base/view.h"
#include "elf/object.h"
#include "update/contents.h"

namespace ls::load {

using ls::View;

// Answers what a run symbol (an undefined symbol of the update, by its index in the
// update's symbol table) is in the target, in the view a relocation needs. The apply
// layer implements it from run-pre matching results and symbol tables. An error means
// "not known"; its message is quoted when the symbol turns out to be required.
// For View::TlsOffset the answer is the (usually negative) offset from the thread
// pointer, carried in TargetAddr's 64 bits as two's complement. View::Address must be
// the symbol's canonical address (what the program's GOT slot for it holds), not a PLT
// entry: the loader stores it in GOT slots and data, where function pointers are
// compared. View::TlsGotSlot and View::TlsGdPair: see the TLS policy above.
class SymbolResolver {
 public:
  virtual ~SymbolResolver() = default;
  virtual Result<TargetAddr> resolve(uint32_t update_symbol, View view) const = 0;
};

enum class Area { Code, ReadOnly, Writable };

struct Placement {
  uint32_t section = 0;      // index in the update
  uint64_t offset = 0;       // from the base
  uint64_t size = 0;
  Area area = Area::Code;
};

// A far stub is reserved for each distinct branch target; a GOT slot for each distinct
// symbol and kind of value.
struct StubKey {
  uint32_t symbol = 0;
  int64_t addend = 0;
  auto operator<=>(const StubKey&) const = default;
};
struct GotKey {
  uint32_t symbol = 0;
  bool tls = false;          // holds the TLS offset rather than the address
  auto operator<=>(const GotKey&) const = default;
};

struct Plan {
  uint64_t size = 0;         // bytes of the image; link() produces exactly this many
  uint64_t align = 0;        // the base must be a multiple of this (at least a page)
  uint64_t page_size = 4096;
  std::vector<Placement> sections;   // in layout order
  uint64_t stubs_offset = 0;
  std::vector<StubKey> stubs;        // reserved stubs, in order of first use
  uint64_t stub_size = 0;
  uint64_t got_offset = 0;
  std::vector<GotKey> got;           // reserved 8-byte slots, in order of first use
  uint64_t code_end = 0;             // [0, code_end): code and stubs
  uint64_t readonly_end = 0;         // [code_end, readonly_end): rodata and GOT
  uint64_t writable_offset = 0;      // page aligned; [writable_offset, size)
  // Undefined globals that the update defines: undefined symbol -> its definition.
  std::map<uint32_t, uint32_t> bound;   // Bindings::bound
};

// What check() found: undefined globals that the update defines, undefined symbol ->
// its definition (policy above).
struct Bindings {
  std::map<uint32_t, uint32_t> bound;
};

// Whether `sections` (indices into the update) can be loaded together, and the update's
// own bindings among them. Fails, naming every place, for a section that cannot be
// loaded (thread-local, not allocated, 2 GiB or more), a relocation kind the loader
// does not handle, a relocation naming a section outside the image or a common
// symbol, or a size relocation against a run symbol. A run symbol the manifest calls
// file-local is never bound to the update's global of that name.
Result<Bindings> check(const update::Contents& update, const std::vector<uint32_t>& sections);

// check(), then lays out `post_sections` (typically update.post_sections) and reserves
// stubs and GOT slots. Fails as check() does, or for an image of 2 GiB or more.
Result<Plan> plan(Context& ctx, const update::Contents& update, const std::vector<uint32_t>& post_sections);

struct Image {
  TargetAddr base;
  std::vector<uint8_t> bytes;                 // exactly Plan::size
  std::map<uint32_t, TargetAddr> section_at;  // post section -> its address
  std::map<uint32_t, TargetAddr> symbol_at;   // named symbols defined in post sections
  TargetRange code;                           // map read+exec
  TargetRange readonly;                       // map read (or read+exec, see above)
  TargetRange writable;                       // map read+write; starts on a page boundary
  size_t stubs_used = 0;
  size_t got_used = 0;
};

// Links the planned image to run at `base`. Every failure is reported at once, one per
// line: each field that overflows (`update:(section)+offset`, the instruction, the
// symbol and the value), each run symbol the resolver cannot answer (with the object
// and source file the manifest gives for it), each unsupported code sequence.
Result<Image> link(Context& ctx, const update::Contents& update, const Plan& plan, TargetAddr base,
                   const SymbolResolver& resolver);

}  // namespace ls::load
