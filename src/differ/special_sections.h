// The kernel's special sections, described as data.
//
// A kernel object keeps, beside its code, tables that the kernel (or its module loader)
// reads to find places in that code: the WARN/BUG sites (`__bug_table`), the faulting
// instructions and their fixups (`__ex_table`), the instructions rewritten at boot
// (`.altinstructions`, `.parainstructions`, `.smp_locks`, `.return_sites`,
// `.retpoline_sites`, `.static_call_sites`, `__jump_table`, `__mcount_loc`) and the ORC
// unwind data. None of these has a symbol per entry, so to the generic differ they
// would be anonymous data whose "initial value changed" whenever any function moved.
//
// Each table is one row of kSpecialSections: how entries are delimited (a fixed size),
// which field's relocation names the code an entry belongs to (its *owner*), and what
// an update does with it:
//   Carry   the entries owned by functions the update carries travel with them, so the
//           new code gets its exception fixups, alternatives, jump labels and unwind
//           data from the same loader that handles any module's tables;
//   Ignore  nothing in it matters to a live update (assembler/objtool annotations);
//   Refuse  a new, changed or removed item, or carried code that refers to one, cannot
//           be applied to a running kernel (code freed after boot, exports, tracepoint
//           and event definitions registered at boot or module load).
// What is hard is deciding "the same entry" across pre and post: entries are compared
// per owner, in order, by their bytes outside relocation fields (minus fields that only
// carry diagnostics, such as a WARN's line number) and by what their other relocations
// point at. A function whose code is equal but whose exception-table or jump-label
// entries differ is changed; one whose entries merely moved in the table is not.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "differ/differ.h"

namespace ls::diff {

class Units;

enum class SpecialPolicy { Carry, Ignore, Refuse };
std::string_view to_string(SpecialPolicy p);

struct SpecialSection {
  std::string_view name;        // exact name, or a prefix when it ends in '*'
  SpecialPolicy policy = SpecialPolicy::Ignore;
  uint32_t entry_size = 0;      // fixed-size entries (Carry tables); 0: not a table
  int owner_field = -1;         // offset of the relocation naming the owning code
  // Bytes compared for nothing (diagnostic payload such as bug_entry::line).
  uint32_t ignore_offset = 0, ignore_size = 0;
  // Whether entry differences make an otherwise equal owner changed. Tables derived
  // from the code itself (ORC, call sites) follow the code and need no comparison.
  bool compare = false;
  // Entries parallel to another table's, index by index (`.orc_unwind` to
  // `.orc_unwind_ip`): the owner is the other table's entry at the same index.
  std::string_view parallel_to;
  // A piece of another section each entry points at and that travels with the entry
  // (`.altinstructions` -> its replacement bytes in `.altinstr_replacement`): the
  // field holding the relocation to the piece and the 1-byte field holding its length.
  int piece_field = -1;
  int piece_length_field = -1;
  std::string_view what;        // one line, for messages and docs
  // Carry: what the kernel's module loader does with the table, found by this name in
  // the module apply --kernel loads the new code as (src/kernel/module.h); every carried
  // table travels there under its own name, so describing a table is all it takes.
  std::string_view loader;
  // Whether the kernel rewrites the code at each entry's place while it runs (an
  // alternative, a jump label): the entries owned by a replaced function's pre code then
  // travel with it, so that run-pre matching knows those sites
  // (arch::Target::kernel_table_sites).
  bool pre_sites = false;
};

// The table. Sections not listed are ordinary code and data to the differ.
std::span<const SpecialSection> special_sections();
// The row describing section `name`, or nullptr.
const SpecialSection* find_special(std::string_view name);
// Sections that are a special table or companion data (never units of their own).
bool is_special_table(std::string_view name);

// Sections of small code pieces that functions jump into and that jump back
// (`.altinstr_aux`, static_cpu_has's run-time test): split into one unit per referenced
// piece and paired by contents like a literal pool, so that a piece moving is no change
// and a changed function takes its own piece along.
bool is_code_pool(std::string_view name);

// Runs after units are compared: entries compared per owner (marking owners changed),
// Refuse policies checked (into out.unsafe).
void compare_special(const Units& pre, Units& post, ObjectDiff& out);
// Runs after inclusion: the entries (and pieces) owned by included post code, into
// out.special. Throws ls::Error for a table whose entries do not fit its description.
void carry_special(const Units& post, ObjectDiff& out);
// The entries of pre_sites tables owned by code in sections `code` of `obj` (the pre
// code of replaced functions), and their pieces; as carry_special's, ranges per section.
std::vector<CarriedEntries> pre_site_entries(const elf::Object& obj, const std::set<uint32_t>& code);

}  // namespace ls::diff
