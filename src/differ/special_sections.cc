// The kernel's special sections: the table, per-owner comparison, refusals, carrying.
// See special_sections.h for what each policy means.
#include "differ/special_sections.h"

#include <algorithm>
#include <initializer_list>
#include <map>
#include <set>

#include <fmt/format.h>

#include "differ/units.h"

namespace ls::diff {

std::string_view to_string(SpecialPolicy p) {
  switch (p) {
    case SpecialPolicy::Carry: return "carry";
    case SpecialPolicy::Ignore: return "ignore";
    case SpecialPolicy::Refuse: return "refuse";
  }
  return "?";
}

namespace {

using P = SpecialPolicy;

// Layouts are those of Linux 6.1 on x86-64 (arch/x86/include/asm/*.h, objtool); every
// entry is checked against its description when read, so a kernel whose layout differs
// is an error message, not a wrong update.
constexpr SpecialSection kTable[] = {
    // name, policy, entry size, owner field, ignore offset/size, compare, parallel, piece, piece length, what,
    // what the kernel's module loader does with it (Carry)
    {"__bug_table", P::Carry, 12, 0, 8, 2, true, {}, -1, -1,
     "WARN/BUG sites: code PC32, file PC32, line u16 (diagnostic only), flags u16",
     "module_bug_finalize: on the list BUG/WARN search"},
    {"__ex_table", P::Carry, 12, 0, 0, 0, true, {}, -1, -1,
     "exception table: faulting insn PC32, fixup PC32, type/data i32",
     "sorted (post_relocation), searched by the page fault handler"},
    {".altinstructions", P::Carry, 12, 0, 0, 0, true, {}, 4, 11,
     "alternatives: insn PC32, replacement PC32, cpuid u16, lengths u8 u8",
     "module_finalize: apply_alternatives", true},
    {".altinstr_replacement", P::Carry, 0, -1, 0, 0, false, {}, -1, -1,
     "replacement code, carried piece by piece through .altinstructions",
     "code: copied from by apply_alternatives"},
    {".parainstructions", P::Carry, 16, 0, 0, 0, true, {}, -1, -1,
     "paravirt patch sites: insn ABS64, type u8, length u8",
     "module_finalize: apply_paravirt"},
    {"__jump_table", P::Carry, 16, 0, 0, 0, true, {}, -1, -1,
     "jump labels: code PC32, target PC32, key PC64 (+ flag bits)",
     "jump_label_add_module: linked under each key, set to the key's state", true},
    {".static_call_sites", P::Carry, 8, 0, 0, 0, true, {}, -1, -1,
     "static call sites: call PC32, key PC32 (+ tail flag)",
     "static_call_add_module: sites set to the key's function"},
    {".smp_locks", P::Carry, 4, 0, 0, 0, false, {}, -1, -1, "lock prefixes: PC32",
     "module_finalize: alternatives_smp_module_add (with a .text section)"},
    {".return_sites", P::Carry, 4, 0, 0, 0, false, {}, -1, -1, "return thunk jumps: PC32",
     "module_finalize: apply_returns"},
    {".retpoline_sites", P::Carry, 4, 0, 0, 0, false, {}, -1, -1, "indirect thunk calls: PC32",
     "module_finalize: apply_retpolines"},
    {".call_sites", P::Carry, 4, 0, 0, 0, false, {}, -1, -1, "call depth tracking sites: PC32",
     "module_finalize: call depth tracking, when configured"},
    {".ibt_endbr_seal", P::Carry, 4, 0, 0, 0, false, {}, -1, -1, "ENDBR instructions to seal: PC32",
     "module_finalize: apply_ibt_endbr"},
    {"__mcount_loc", P::Carry, 8, 0, 0, 0, false, {}, -1, -1, "ftrace call sites: ABS64",
     "ftrace_module_init: calls become NOPs, functions traceable"},
    {"__patchable_function_entries", P::Carry, 8, 0, 0, 0, false, {}, -1, -1, "patchable entries: ABS64",
     "unused on x86-64 (fentry)"},
    {".orc_unwind_ip", P::Carry, 4, 0, 0, 0, false, {}, -1, -1, "ORC: instruction PC32",
     "module_finalize: unwind_module_init (sorted with .orc_unwind)"},
    {".orc_unwind", P::Carry, 6, -1, 0, 0, false, ".orc_unwind_ip", -1, -1,
     "ORC: unwind rules, parallel to .orc_unwind_ip",
     "module_finalize: unwind_module_init"},
    {".discard.*", P::Ignore, 0, -1, 0, 0, false, {}, -1, -1, "objtool/compiler annotations, not linked"},
    {".modinfo", P::Ignore, 0, -1, 0, 0, false, {}, -1, -1, "module information strings, read at load"},
    {".init.*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "__init code and data: run at boot, then freed"},
    {".exit.*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "__exit code and data: run at unload only"},
    {".initcall*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "initcalls: run once at boot or load"},
    {".con_initcall.init", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "console initcalls"},
    {"__param", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "module/boot parameters: parsed at boot or load"},
    {"__ksymtab*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "exported symbol names"},
    {"___ksymtab*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "exported symbols: resolved at module load"},
    {"__kcrctab*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "exported symbol CRCs"},
    {"___kcrctab*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "exported symbol CRCs"},
    {"__tracepoints*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "tracepoint definitions: registered at boot or load"},
    {"_ftrace_events", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "trace event definitions"},
    {"_ftrace_eval_map", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "trace event enum maps"},
    {"__bpf_raw_tp_map", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "BPF raw tracepoint maps"},
    {".data..percpu*", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1,
     "per-CPU variables: their copies are allocated at boot or module load"},
    {"__syscalls_metadata", P::Refuse, 0, -1, 0, 0, false, {}, -1, -1, "syscall trace metadata"},
};

bool matches(std::string_view pattern, std::string_view name) {
  if (pattern.ends_with('*')) return name.starts_with(pattern.substr(0, pattern.size() - 1));
  return name == pattern;
}

bool is_freed_code(const SpecialSection& row) {
  return row.name == ".init.*" || row.name == ".exit.*";
}

// One entry of a table: where it is and which unit owns it.
struct Entry {
  uint64_t offset = 0;
  int owner = -1;               // unit index on its side, -1: code that is no unit
  int64_t owner_offset = 0;     // place inside the owner
};

const elf::Reloc* reloc_at(const elf::Section& sec, uint64_t offset) {
  auto it = std::lower_bound(sec.relocs.begin(), sec.relocs.end(), offset,
                             [](const elf::Reloc& r, uint64_t off) { return r.offset < off; });
  return it != sec.relocs.end() && it->offset == offset ? &*it : nullptr;
}

// The (section, offset) a data relocation points at: in a data table every PC-relative
// field is `target - .`, so the addend is the whole story (no instruction bias).
std::optional<std::pair<uint32_t, int64_t>> target_of(const elf::Object& obj, const elf::Reloc& r) {
  const auto& sym = obj.symbol(r.symbol);
  if (!sym.in_section()) return std::nullopt;
  return std::make_pair(sym.section, static_cast<int64_t>(sym.value) + r.addend);
}

std::vector<Entry> read_entries(const Units& side, const elf::Section& sec, const SpecialSection& row) {
  const auto& obj = side.obj();
  if (row.entry_size == 0 || sec.nobits()) return {};
  if (sec.size % row.entry_size != 0)
    throw Error(fmt::format("{}: size {:#x} is not a multiple of its {}-byte entries ({}); is this a Linux 6.1 "
                            "x86-64 object?", obj.where(sec), sec.size, row.entry_size, row.what));
  std::vector<Entry> out(sec.size / row.entry_size);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].offset = i * row.entry_size;
    if (row.owner_field < 0) continue;
    const elf::Reloc* r = reloc_at(sec, out[i].offset + row.owner_field);
    if (!r)
      throw Error(fmt::format("{}: entry {} has no relocation at its code field (+{}); expected {}",
                              obj.where(sec, out[i].offset), i, row.owner_field, row.what));
    int unit = side.unit_of_symbol(r->symbol);
    auto t = target_of(obj, *r);
    if (unit >= 0 && t) {
      out[i].owner = unit;
      out[i].owner_offset = t->second - static_cast<int64_t>(side[unit].start);
    } else if (t && t->second >= 0) {
      unit = side.unit_at(t->first, static_cast<uint64_t>(t->second));
      // Owners are code: functions, or pieces of a code pool (`.altinstr_aux`).
      if (unit >= 0 && side[unit].section == t->first && obj.section(t->first).exec()) {
        out[i].owner = unit;
        out[i].owner_offset = t->second - static_cast<int64_t>(side[unit].start);
      }
    }
  }
  return out;
}

// Entries of a parallel table take their owners from the table they run beside.
std::vector<Entry> read_parallel(const Units& side, const elf::Section& sec, const SpecialSection& row) {
  const auto& obj = side.obj();
  const elf::Section* other = obj.find_section(row.parallel_to);
  const SpecialSection* orow = find_special(row.parallel_to);
  if (!other || !orow)
    throw Error(fmt::format("{}: no {} beside it; its entries have no owners", obj.where(sec), row.parallel_to));
  auto owners = read_entries(side, *other, *orow);
  if (sec.size % row.entry_size != 0 || sec.size / row.entry_size != owners.size())
    throw Error(fmt::format("{}: {} entries of {} bytes, but {} has {} entries", obj.where(sec),
                            sec.size / row.entry_size, row.entry_size, row.parallel_to, owners.size()));
  for (size_t i = 0; i < owners.size(); ++i) owners[i].offset = i * row.entry_size;
  return owners;
}

std::vector<Entry> entries_of(const Units& side, const elf::Section& sec, const SpecialSection& row) {
  return row.parallel_to.empty() ? read_entries(side, sec, row) : read_parallel(side, sec, row);
}

// The piece an entry points at (`.altinstructions` -> replacement bytes): section,
// offset, length; nullopt when the entry has no piece.
struct Piece {
  uint32_t section = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};
std::optional<Piece> piece_of(const elf::Object& obj, const elf::Section& sec, const SpecialSection& row,
                              const Entry& e) {
  if (row.piece_field < 0) return std::nullopt;
  const elf::Reloc* r = reloc_at(sec, e.offset + row.piece_field);
  if (!r) return std::nullopt;
  auto t = target_of(obj, *r);
  if (!t || t->second < 0) return std::nullopt;
  Piece p;
  p.section = t->first;
  p.offset = static_cast<uint64_t>(t->second);
  p.size = sec.bytes[e.offset + row.piece_length_field];
  if (p.offset + p.size > obj.section(p.section).size)
    throw Error(fmt::format("{}: its piece {}+{:#x} ({} bytes) runs past the section's end", obj.where(sec, e.offset),
                            obj.section(p.section).name, p.offset, p.size));
  return p;
}

std::string reference_text(const Units& side, const elf::Section& sec, const elf::Reloc& r) {
  Reference ref = reference(side, sec, r);
  return fmt::format("{}:{}:{}:{}:{}", static_cast<int>(ref.kind), static_cast<int>(ref.to), ref.id, ref.offset,
                     ref.text);
}

// Contents of a range as a comparable string: bytes outside relocation fields and
// outside [skip, skip+skip_len), then what each relocation points at, but those at the
// `positional` fields (the owner, a piece: compared by place and contents instead).
std::string range_signature(const Units& side, const elf::Section& sec, uint64_t start, uint64_t size,
                            std::initializer_list<int64_t> positional, uint64_t skip, uint64_t skip_len) {
  std::string sig(reinterpret_cast<const char*>(sec.bytes.data()) + start, size);
  for (uint64_t k = skip; k < skip + skip_len && k < sig.size(); ++k) sig[k] = 0;
  auto it = std::lower_bound(sec.relocs.begin(), sec.relocs.end(), start,
                             [](const elf::Reloc& r, uint64_t off) { return r.offset < off; });
  for (; it != sec.relocs.end() && it->offset < start + size; ++it) {
    uint64_t rel = it->offset - start;
    for (unsigned w = 0; w < it->width && rel + w < sig.size(); ++w) sig[rel + w] = 0;
    if (std::find(positional.begin(), positional.end(), static_cast<int64_t>(rel)) != positional.end()) continue;
    sig += fmt::format("|{}:{}", rel, reference_text(side, sec, *it));
  }
  return sig;
}

std::string entry_signature(const Units& side, const elf::Section& sec, const SpecialSection& row, const Entry& e) {
  std::string sig = fmt::format("@{:#x}:", e.owner_offset);
  sig += range_signature(side, sec, e.offset, row.entry_size, {row.owner_field, row.piece_field},
                         row.ignore_offset, row.ignore_size);
  // The piece is compared by contents, not by where it sits in its section.
  if (auto p = piece_of(side.obj(), sec, row, e))
    sig += "|piece:" + range_signature(side, side.obj().section(p->section), p->offset, p->size, {}, 0, 0);
  return sig;
}

using Signatures = std::map<int64_t, std::vector<std::string>>;   // owner pair id -> entries

Signatures signatures(const Units& side, const elf::Section& sec, const SpecialSection& row) {
  Signatures out;
  for (const Entry& e : entries_of(side, sec, row))
    if (e.owner >= 0) out[side[e.owner].pair_id].push_back(entry_signature(side, sec, row, e));
  return out;
}

void refuse_units(const Units& pre, const Units& post, const elf::Section& sec, const SpecialSection& row,
                  ObjectDiff& out) {
  for (const Unit& u : post.all()) {
    if (u.section != sec.index || u.status == Status::Same) continue;
    std::string what = u.status == Status::New ? "new" : "changed";
    out.unsafe.push_back({u.name, post.obj().path(),
                          fmt::format("{} item in {} ({}): a running kernel cannot take it", what, sec.name, row.what)});
  }
  (void)pre;
}

}  // namespace

std::span<const SpecialSection> special_sections() { return kTable; }

const SpecialSection* find_special(std::string_view name) {
  for (const auto& row : kTable)
    if (matches(row.name, name)) return &row;
  return nullptr;
}

bool is_special_table(std::string_view name) {
  const SpecialSection* row = find_special(name);
  return row && row->policy != SpecialPolicy::Refuse;
}

bool is_code_pool(std::string_view name) { return name == ".altinstr_aux"; }

void compare_special(const Units& pre, Units& post, ObjectDiff& out) {
  const auto& pobj = pre.obj();
  const auto& qobj = post.obj();
  for (const auto& sec : qobj.sections()) {
    const SpecialSection* row = find_special(sec.name);
    if (!row) continue;
    if (row->policy == SpecialPolicy::Refuse) {
      refuse_units(pre, post, sec, *row, out);
      continue;
    }
    if (row->policy != SpecialPolicy::Carry || row->entry_size == 0) continue;
    // Validates the layout even when nothing is compared.
    entries_of(post, sec, *row);
    if (!row->compare) continue;
    const elf::Section* psec = pobj.find_section(sec.name);
    Signatures before = psec ? signatures(pre, *psec, *row) : Signatures{};
    Signatures after = signatures(post, sec, *row);
    for (Unit& u : post.all()) {
      if (u.kind != Kind::Func || u.status != Status::Same) continue;
      auto a = before.find(u.pair_id);
      auto b = after.find(u.pair_id);
      size_t na = a == before.end() ? 0 : a->second.size();
      size_t nb = b == after.end() ? 0 : b->second.size();
      if (na == 0 && nb == 0) continue;
      if (na == nb && a->second == b->second) continue;
      u.status = Status::Changed;
      u.reason = na != nb ? fmt::format("its {} entries changed ({} before, {} after)", sec.name, na, nb)
                          : fmt::format("its {} entries changed ({})", sec.name, row->what);
    }
  }
  // Removed items of refused sections (an export dropped, an initcall gone).
  for (const auto& u : pre.all()) {
    if (u.twin >= 0) continue;
    const SpecialSection* row = find_special(pobj.section(u.section).name);
    if (row && row->policy == SpecialPolicy::Refuse)
      out.unsafe.push_back({u.name, pobj.path(),
                            fmt::format("removed item of {} ({}): a running kernel cannot drop it",
                                        pobj.section(u.section).name, row->what)});
  }
}

void carry_special(const Units& post, ObjectDiff& out) {
  const auto& obj = post.obj();
  // Code the update carries must not call into code that is gone.
  for (const Unit& u : post.all()) {
    if (!u.included) continue;
    const auto& sec = obj.section(u.section);
    for (size_t ri : u.relocs) {
      auto t = target_of(obj, sec.relocs[ri]);
      if (!t) continue;
      const SpecialSection* row = find_special(obj.section(t->first).name);
      if (row && is_freed_code(*row))
        out.unsafe.push_back({u.name, obj.path(),
                              fmt::format("refers to {} ({}), which a running kernel no longer has",
                                          obj.section(t->first).name, row->what)});
    }
  }

  std::map<uint32_t, std::set<std::pair<uint64_t, uint64_t>>> carried;
  std::set<uint32_t> literals;
  auto add = [&](const elf::Section& sec, uint64_t start, uint64_t size) {
    carried[sec.index].insert({start, size});
    auto it = std::lower_bound(sec.relocs.begin(), sec.relocs.end(), start,
                               [](const elf::Reloc& r, uint64_t off) { return r.offset < off; });
    for (; it != sec.relocs.end() && it->offset < start + size; ++it) {
      const auto& sym = obj.symbol(it->symbol);
      if (!sym.in_section()) continue;
      const auto& ts = obj.section(sym.section);
      if (ts.merge_strings() || ts.merge_constants()) literals.insert(ts.index);
    }
  };
  for (const auto& sec : obj.sections()) {
    const SpecialSection* row = find_special(sec.name);
    if (!row || row->policy != SpecialPolicy::Carry || row->entry_size == 0) continue;
    for (const Entry& e : entries_of(post, sec, *row)) {
      if (e.owner < 0 || !post[e.owner].included) continue;
      add(sec, e.offset, row->entry_size);
      if (auto p = piece_of(obj, sec, *row, e)) add(obj.section(p->section), p->offset, p->size);
      // A jump label or static call whose key is new would need the key registered.
      for (int field : {row->name == "__jump_table" ? 8 : -1, row->name == ".static_call_sites" ? 4 : -1}) {
        if (field < 0) continue;
        const elf::Reloc* r = reloc_at(sec, e.offset + field);
        auto t = r ? target_of(obj, *r) : std::nullopt;
        if (!t || t->second < 0) continue;
        int key = post.unit_at(t->first, static_cast<uint64_t>(t->second));
        if (key >= 0 && post[key].section == t->first && post[key].status == Status::New)
          out.unsafe.push_back({post[key].name, obj.path(),
                                fmt::format("new key of {} used by {}: keys are registered when the kernel or "
                                            "its module initialises", sec.name, post[e.owner].name)});
      }
    }
  }
  for (auto& [sec, ranges] : carried) {
    CarriedEntries c;
    c.section = sec;
    c.ranges.assign(ranges.begin(), ranges.end());
    out.special.push_back(std::move(c));
  }
  for (uint32_t s : literals)
    if (std::find(out.included_anonymous_sections.begin(), out.included_anonymous_sections.end(), s) ==
        out.included_anonymous_sections.end())
      out.included_anonymous_sections.push_back(s);
  std::sort(out.included_anonymous_sections.begin(), out.included_anonymous_sections.end());
}

std::vector<CarriedEntries> pre_site_entries(const elf::Object& obj, const std::set<uint32_t>& code) {
  std::map<uint32_t, std::set<std::pair<uint64_t, uint64_t>>> carried;
  for (const auto& sec : obj.sections()) {
    const SpecialSection* row = find_special(sec.name);
    if (!row || !row->pre_sites || sec.nobits()) continue;
    if (sec.size % row->entry_size != 0)
      throw Error(fmt::format("{}: size {:#x} is not a multiple of its {}-byte entries ({})", obj.where(sec), sec.size,
                              row->entry_size, row->what));
    for (uint64_t off = 0; off < sec.size; off += row->entry_size) {
      const elf::Reloc* r = reloc_at(sec, off + static_cast<uint64_t>(row->owner_field));
      auto t = r ? target_of(obj, *r) : std::nullopt;
      if (!t || !code.count(t->first)) continue;
      carried[sec.index].insert({off, row->entry_size});
      if (auto p = piece_of(obj, sec, *row, Entry{off, -1, 0})) carried[p->section].insert({p->offset, p->size});
    }
  }
  std::vector<CarriedEntries> out;
  for (auto& [sec, ranges] : carried) out.push_back(CarriedEntries{sec, {ranges.begin(), ranges.end()}});
  return out;
}

}  // namespace ls::diff
