// Internal to the differ: an object seen as "units" — the functions and data objects the
// differ compares — and the correlation between a pre and a post object's units.
//
// A unit is a defined function or data symbol's byte range (aliases at the same place
// fold into one unit), or an anonymous allocated section that holds no symbol of its own
// (a jump table such as `.rodata.foo`, an unnamed compound literal). Literal pools in
// SHF_MERGE sections are not units: references into them are compared by content.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "arch/target.h"
#include "differ/differ.h"
#include "elf/object.h"

namespace ls::diff {

enum class Kind { Func, Object, Anon };

struct Unit {
  int id = 0;
  Kind kind = Kind::Func;
  std::string name;              // canonical symbol name, or the section name for Anon
  std::string norm;              // name with GCC's numeric suffixes dropped
  std::vector<uint32_t> symbols; // symbol indices; canonical first
  uint32_t section = 0;
  uint64_t start = 0;
  uint64_t size = 0;
  bool local = false;
  bool writable = false;
  bool nobits = false;
  bool chunk = false;                // one item of a split anonymous pool, paired by contents
  std::vector<std::string> owners;   // data: normalized names of functions referring to it
  int twin = -1;                     // the paired unit on the other side
  int64_t pair_id = 0;               // equal on both sides of a pair; unique otherwise
  std::vector<size_t> relocs;        // indices into the section's relocs inside the range
  Status status = Status::Same;
  std::string reason;
  bool included = false;
};

class Units {
 public:
  Units(const elf::Object& obj);

  const elf::Object& obj() const { return *obj_; }
  const arch::Target& target() const { return arch::target(obj_->machine()); }
  std::vector<Unit>& all() { return units_; }
  const std::vector<Unit>& all() const { return units_; }
  Unit& operator[](int i) { return units_[i]; }
  const Unit& operator[](int i) const { return units_[i]; }

  // The unit a symbol names (its own, or the one its section/offset falls in); -1 if none.
  int unit_of_symbol(uint32_t sym) const { return sym < by_symbol_.size() ? by_symbol_[sym] : -1; }
  // The unit covering `offset` in section `sec`; with one unit in the section, that unit.
  int unit_at(uint32_t sec, uint64_t offset) const;
  // Per read-only data section: the offsets relocations anywhere in the object point at.
  std::vector<std::vector<uint64_t>> referenced_offsets() const;
  // Operand fields of a code section, decoded once on first use.
  const std::vector<arch::OperandField>& operand_fields(uint32_t sec) const;

 private:
  const elf::Object* obj_;
  std::vector<Unit> units_;
  std::vector<int> by_symbol_;
  std::vector<std::vector<int>> by_section_;
  mutable std::map<uint32_t, std::vector<arch::OperandField>> fields_;
};

// GCC suffixes with their counters dropped: `foo.isra.0` -> `foo.isra`, `hits.3` -> `hits`.
std::string normalize_name(std::string_view name);
// The function a `.cold` piece belongs to (`foo.cold`, `foo.cold.3` -> `foo`), or "".
std::string cold_parent(std::string_view name);

// Units a unit's relocations point at (literal pools excepted), without itself.
std::vector<int> targets_of(const Units& side, const Unit& u);

// Hooks (hooks.cc): the hook sections of post read into `out.hooks`; returns the units
// of the hook functions, which inclusion starts from like changed functions. A hook
// section that names anything but a new function is refused in `out.unsafe`.
std::vector<int> find_hooks(const Units& post, ObjectDiff& out);
// After inclusion: a hook that reaches, through new code, a function this update
// replaces is refused (its entry is closed while hooks run).
void check_hooks(const Units& post, const std::vector<int>& roots, ObjectDiff& out);
// Whether a post section is one livesplice/patch.h makes (hooks, ignored functions,
// converted data): read by the differ, never reported as data nor carried.
bool is_patch_section(std::string_view name);
// LIVESPLICE_IGNORE_FUNCTION: the functions named are made same again (not carried, not
// replaced; new code calls the running program's) and listed in `out.ignored`.
void ignore_functions(Units& post, ObjectDiff& out);
// LIVESPLICE_CONVERTED: the refused data changes the patch says its LIVESPLICE_APPLY hook
// converts are lifted (a note says so); the others say how a hook would lift them.
void handle_converted_data(const Units& post, ObjectDiff& out);

// Pairs the units of pre and post (twin, pair_id) and records data owners.
void correlate(Units& pre, Units& post);

// What a relocation points at, in terms that are equal across pre and post when the
// target is "the same thing": a paired unit and offset, a literal's content, an external
// name. Compared field by field; rendered to text only for reasons.
struct Reference {
  enum class To { Unit, External, Absolute, String, Constant, Section };
  elf::RelocKind kind = elf::RelocKind::None;
  To to = To::Unit;
  int64_t id = 0;             // Unit: pair id
  int64_t offset = 0;         // from the unit / symbol / section start
  std::string_view text;      // External/Absolute: name; String/Constant: the bytes; Section: name
  bool operator==(const Reference& o) const {
    return kind == o.kind && to == o.to && id == o.id && offset == o.offset && text == o.text;
  }
};
Reference reference(const Units& side, const elf::Section& sec, const elf::Reloc& r);
std::string describe(const Units& side, const Reference& ref);

// nullopt when the units are equal (bytes outside relocation fields + symbolic
// relocations); otherwise why they differ.
std::optional<std::string> compare_units(const Units& pre, const Unit& a, const Units& post,
                                         const Unit& b);

// A type whose layout or values data in the running program depends on, changed
// between pre and post (from DWARF; layout.cc): "struct S" / "enum <anon: A,...>" and why.
struct TypeChange {
  std::string type;
  std::string reason;
};
std::vector<TypeChange> changed_types(Context& ctx, const elf::Object& pre, const elf::Object& post);

}  // namespace ls::diff
