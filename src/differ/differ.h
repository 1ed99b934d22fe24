// The pre-post differ: which functions and data of one compilation unit changed.
//
// Input is one object compiled twice (pre and post) with -ffunction-sections
// -fdata-sections. Output classifies every function and data object as same / changed /
// new / removed, says why, marks what an update must carry (changed functions and the
// new functions, data and literals they need), and lists the changes that cannot be
// applied to a running program safely.
//
// The stages are separate files: correlate.cc pairs pre and post symbols (GCC clone
// suffixes, static locals by owner, aliases), compare.cc decides equality (bytes outside
// relocation sites plus relocations compared by what they point at), layout.cc compares
// struct layouts and enum values from DWARF, and differ.cc runs them and computes what to include.
#pragma once

#include <string>
#include <vector>

#include "base/diag.h"
#include "elf/object.h"

namespace ls::diff {

enum class Status { Same, Changed, New, Removed };
std::string_view to_string(Status s);

enum class UnitKind { Func, Object };
std::string_view to_string(UnitKind k);

// One function or data object, with its pre and post symbol (either may be absent).
struct SymbolDiff {
  std::string name;             // post name when it exists, else pre name
  UnitKind kind = UnitKind::Func;
  Status status = Status::Same;
  std::string reason;           // why it is changed/new ("", for same)
  bool local = false;
  bool included = false;        // the update carries its post code/data
  int pre_symbol = -1;          // index into pre.symbols(), or -1
  int post_symbol = -1;         // index into post.symbols(), or -1
  uint64_t pre_size = 0;
  uint64_t post_size = 0;
  std::string pre_section;      // e.g. ".text.foo"
  std::string post_section;
  std::string parent;           // for .cold/.part pieces: the function they belong to
};

struct Unsafe {
  std::string symbol;
  std::string object;
  std::string reason;
  // A change of data the running program holds (an initialiser, a size, a layout, an
  // enum's values): what a patch's LIVESPLICE_APPLY hook can convert (hooks.cc).
  bool data = false;
};

// Entries of the kernel's special tables (special_sections.h) owned by carried code:
// [offset, size) ranges of post section `section`, in table order.
struct CarriedEntries {
  uint32_t section = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
};

// A hook the patch declares (include/livesplice/patch.h): a function recorded in
// section `.livesplice.hooks.<kind>`, run inside the target at that point of apply or
// undo. The update carries it (and what it calls that is new) as new code.
struct Hook {
  std::string kind;             // "pre_apply", "apply", "post_apply", "pre_undo", "undo", "post_undo"
  std::string name;             // the author's function (`fix_counts`)
  std::string function;         // the function the section points at (the header's wrapper)
  int post_symbol = -1;         // that function's symbol in the post object
};

struct ObjectDiff {
  std::string pre_path;
  std::string post_path;
  std::string source_file;
  std::vector<SymbolDiff> symbols;
  std::vector<Unsafe> unsafe;
  // Post sections that carry no symbol of their own but that included code needs:
  // literal pools (.rodata.*.str1.1, .rodata.cst16) and jump tables (.rodata.foo).
  std::vector<uint32_t> included_anonymous_sections;
  std::vector<std::string> notes;   // policy remarks worth showing (e.g. __LINE__-only)
  std::vector<CarriedEntries> special;   // kernel tables: entries of included code
  std::vector<Hook> hooks;          // in section order, then entry order
  // Functions the patch says need not change live (LIVESPLICE_IGNORE_FUNCTION): changed,
  // yet left out of the update; how each changed.
  struct Ignored {
    std::string name, reason;
  };
  std::vector<Ignored> ignored;

  bool has_changes() const;         // anything changed or new among functions
  bool safe() const { return unsafe.empty(); }
};

struct DiffOptions {
  bool check_layouts = true;        // compare struct layouts and enum values (DWARF, when present)
};

// Throws ls::Error for malformed input or objects that are not a pre/post pair of
// the same architecture. Unsafe changes are reported in ObjectDiff::unsafe, not thrown.
ObjectDiff diff_objects(Context& ctx, const elf::Object& pre, const elf::Object& post,
                        const DiffOptions& options = {});

}  // namespace ls::diff
