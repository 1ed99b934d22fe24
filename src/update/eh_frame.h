// The new code's unwind tables, carried in the update so that it unwinds like the code
// it replaces: the call frame information (`.eh_frame`: CIEs and FDEs) of the carried
// functions, their language-specific data (`.gcc_except_table.*`: the LSDA, C++'s
// landing pads and catch clauses) and the `DW.ref.*` words the two refer to (hidden
// pointers to the personality routine and to typeinfo objects).
//
// What is hard:
//  - `.eh_frame` is one section per object, not per function. Only the FDEs of carried
//    code may travel (an FDE of code that stays behind would describe an address the
//    image does not have), so the section is rebuilt: each kept FDE after the CIE it
//    names, each CIE once, and the FDE's CIE pointer — a distance, not a relocation —
//    recomputed for the new layout. A zero terminator ends it, as the registration
//    call (libgcc's __register_frame_info) reads up to one.
//  - The LSDA and the DW.ref words are no units of the differ (only `.eh_frame` names
//    them), so they are added to the carried sections here, before the writer lays
//    them out; the generic relocation of post sections then points the FDE at the
//    update's own LSDA and the LSDA at the update's own DW.ref words, which the loader
//    fills with the running program's personality routine and typeinfo.
#pragma once

#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "elf/object.h"

namespace ls::update::eh {

// The rebuilt `.eh_frame` of one object: bytes, and where each kept relocation of the
// original landed (output offset, the original relocation).
struct CarriedFrames {
  uint32_t section = 0;   // the object's .eh_frame
  std::vector<uint8_t> bytes;
  std::vector<std::pair<uint64_t, const elf::Reloc*>> relocs;
  size_t fdes = 0;
};

// Sections of `post` the FDEs of `carried` code need (their LSDAs, and the DW.ref
// words those and their CIEs name), to be carried beside it.
std::set<uint32_t> unwind_sections(const elf::Object& post, const std::set<uint32_t>& carried);

// `.eh_frame` of `post` reduced to the FDEs of `carried` code. fdes == 0 when the
// object has no FDE for any of it (nothing to carry). Throws ls::Error, naming the
// place, for a table it cannot read (a record past the section's end, a 64-bit
// length, an FDE whose CIE pointer or start address cannot be followed).
CarriedFrames carried_frames(const elf::Object& post, const std::set<uint32_t>& carried);

}  // namespace ls::update::eh
