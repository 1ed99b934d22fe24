// Writing the update file (layout in format.h).
//
// What is hard is the symbol table. Each carried section comes from one of two worlds:
// pre code describes the running program, so every reference it makes — even to a
// function this update also replaces, even to a string literal — must resolve to the
// running program's copy: those become run symbols. Post code refers to the update's
// own copy when the target travels with it (the post section of a changed callee, a new
// function, the new literal pool) and to the running program otherwise. References
// through section symbols (`.rodata.str1.1+0x10`, or `.bss.counter`, which is how gas
// refers to static data) are turned into the named symbol at that place when there is
// one, since a running program has no section symbols to match against; an anonymous
// section that stays behind keeps its section name, flagged "kind": "section".
//
// The one exception is literal pools (SHF_MERGE: strings, constants). The linker merges
// them, so a running program has no symbol for a literal; but its contents are what pre
// code means. So the pools pre code refers to travel as pre sections too (never loaded),
// and pre relocations name them: the matcher compares the running literal at each site
// with the carried one.
//
// The ELF image itself is laid out by elf/writer.h.
#include <elf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "update/writer.h"
#include "update/manifest.h"

#include "differ/special_sections.h"
#include "elf/writer.h"
#include "update/eh_frame.h"

namespace ls::update {
namespace {

// The differ's verdict in the manifest's words (Same units are never written).
UnitStatus unit_status(diff::Status s) {
  return s == diff::Status::New ? UnitStatus::New : s == diff::Status::Removed ? UnitStatus::Removed : UnitStatus::Changed;
}

using Json = nlohmann::ordered_json;

using elf::SymbolRef;

// A pool of string literals or constants that the linker merges across objects.
bool literal_pool(const elf::Section& s) {
  return s.alloc() && !s.exec() && !s.write() && !s.nobits() && (s.merge_strings() || s.merge_constants()) &&
         s.entsize > 0;
}

bool named_definition(const elf::Symbol& s) {
  return !s.name.empty() && s.type != elf::SymbolType::Section && s.type != elf::SymbolType::File;
}

std::string iso_time() {
  std::time_t now = std::time(nullptr);
  // Reproducible builds: honour SOURCE_DATE_EPOCH like compilers and packagers do.
  if (const char* epoch = getenv("SOURCE_DATE_EPOCH")) now = static_cast<std::time_t>(std::strtoll(epoch, nullptr, 10));
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json optional_index(bool present, uint32_t v) { return present ? Json(v) : Json(nullptr); }

// A section carried in pieces (the entries of a table, the pre code's sites): which
// ranges of the original went where in the output section.
struct Moved {
  uint32_t out = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;   // original [offset, size)
  std::vector<uint64_t> at;                            // their offsets in the output

  // Where original offset `off` landed, if it was carried: inside a range first, then at
  // the end of one (an empty replacement, a label after the last instruction of a piece).
  std::optional<int64_t> landed(int64_t off) const {
    for (bool at_end : {false, true})
      for (size_t i = 0; i < ranges.size(); ++i) {
        auto start = static_cast<int64_t>(ranges[i].first);
        auto end = start + static_cast<int64_t>(ranges[i].second);
        if (at_end ? off == end : off >= start && off < end) return static_cast<int64_t>(at[i]) + off - start;
      }
    return std::nullopt;
  }
  // f(offset in the output, relocation) for each relocation of `from` in a carried range.
  template <typename F>
  void each_reloc(const elf::Section& from, F f) const {
    for (size_t i = 0; i < ranges.size(); ++i)
      for (const auto& r : from.relocs)
        if (r.offset >= ranges[i].first && r.offset < ranges[i].first + ranges[i].second)
          f(at[i] + (r.offset - ranges[i].first), r);
  }
};

class Builder {
 public:
  Builder(Context& ctx, const UpdateInput& in) : ctx_(ctx), in_(in), w_(in.units.front().post->machine()) {
    elf::NewSection manifest;   // section 1; its text is written last
    manifest.name = std::string(kManifestSection);
    w_.add_section(std::move(manifest));
  }

  void add_unit(size_t k);
  void add_special(size_t k);   // kernel tables: entries of carried code (see below)
  void add_pre_sites(size_t k, const std::set<uint32_t>& pre_secs);   // kernel tables of pre code
  void add_eh_frame(size_t k);   // process updates: the carried code's FDEs (eh_frame.h)
  std::vector<uint8_t> finish(WriteSummary& summary);

 private:
  struct UnitMap {
    std::map<uint32_t, uint32_t> pre_out, post_out;       // original section -> out section
    std::map<uint32_t, SymbolRef> pre_def, post_def;         // original symbol -> out symbol
    std::map<uint32_t, SymbolRef> pre_section_symbol, post_section_symbol;   // original section -> its STT_SECTION
  };
  struct RunSymbol {
    SymbolRef ref;
    std::string name;
    bool local = false;
    bool section = false;
    size_t unit = 0;
    bool hidden = false;   // a global of hidden or internal visibility
  };

  uint32_t copy_section(const elf::Section& s, std::string_view prefix, bool pre);
  // Entries `c` of a kernel table of `obj`, back to back as `.livesplice.{pre,post}<table>`.
  Moved carry_entries(size_t k, const elf::Object& obj, const diff::CarriedEntries& c, bool pre);
  // A section symbol for each carried section, by its original index.
  std::map<uint32_t, SymbolRef> section_symbols(const std::map<uint32_t, Moved>& moved);
  // What post relocation `r` (in section `from` of unit k) names: the update's own copy
  // when it travels with the update, else the running program's.
  SymbolRef post_target(size_t k, const elf::Section& from, const elf::Reloc& r, int64_t& addend);
  SymbolRef run_symbol(size_t k, const elf::Object& obj, const elf::Section& from, const elf::Reloc& r,
                    int64_t& addend);
  Json manifest(const WriteSummary& summary) const;
  Json hooks() const;   // the patch's hooks (differ.h), by their carried symbols

  Context& ctx_;
  const UpdateInput& in_;
  elf::Writer w_;
  std::map<std::string, size_t> run_by_key_;
  std::map<size_t, std::map<int, std::string>> pre_name_of_post_;   // per unit, built on first use
  std::vector<RunSymbol> run_symbols_;
  std::vector<UnitMap> maps_;
  std::vector<Json> section_notes_;
  uint32_t kernel_module_ = 0;   // the skeleton module's section, once added
};

std::map<uint32_t, SymbolRef> Builder::section_symbols(const std::map<uint32_t, Moved>& moved) {
  std::map<uint32_t, SymbolRef> out;
  for (const auto& [orig, mv] : moved) out[orig] = w_.section_symbol(mv.out);
  return out;
}

uint32_t Builder::copy_section(const elf::Section& s, std::string_view prefix, bool pre) {
  elf::NewSection o;
  o.name = carried_name(prefix, s.name);
  o.type = s.type;
  // Pre code is data for the matcher: it is never loaded, so it is not SHF_ALLOC.
  o.flags = elf::copied_flags(s.flags);
  if (pre) o.flags &= ~static_cast<uint64_t>(SHF_ALLOC);
  o.align = s.align ? s.align : 1;
  o.entsize = s.entsize;
  o.size = s.size;
  if (!s.nobits()) o.data.assign(s.bytes.begin(), s.bytes.end());
  return w_.add_section(std::move(o));
}

Moved Builder::carry_entries(size_t k, const elf::Object& obj, const diff::CarriedEntries& c, bool pre) {
  const auto& sec = obj.section(c.section);
  elf::NewSection o;
  o.name = carried_name(pre ? kPrePrefix : kPostPrefix, sec.name);
  o.type = sec.type;
  o.flags = elf::copied_flags(sec.flags) & ~static_cast<uint64_t>(pre ? SHF_ALLOC : 0);
  o.align = sec.align ? sec.align : 1;
  o.entsize = sec.entsize;
  Moved mv;
  for (auto [off, size] : c.ranges) {
    mv.ranges.push_back({off, size});
    mv.at.push_back(o.data.size());
    o.data.insert(o.data.end(), sec.bytes.begin() + off, sec.bytes.begin() + off + size);
  }
  mv.out = w_.add_section(std::move(o));
  section_notes_.push_back(Json{{"index", mv.out}, {"name", w_.section(mv.out).name}, {"role", pre ? "pre" : "special"},
                                {"object", k}, {"original", sec.name}});
  return mv;
}

// The running program's copy of what relocation `r` (in section `from` of `obj`) names.
SymbolRef Builder::run_symbol(size_t k, const elf::Object& obj, const elf::Section& from,
                           const elf::Reloc& r, int64_t& addend) {
  const elf::Symbol& t = obj.symbol(r.symbol);
  const elf::Symbol* named = &t;   // the symbol `name` comes from
  std::string name = t.name;
  bool local = t.local() && t.defined();
  bool section = false;
  unsigned char type = elf::st_type(t.type);
  unsigned char bind = t.binding == elf::Binding::Weak && !t.defined() ? STB_WEAK : STB_GLOBAL;
  uint8_t visibility = t.visibility;
  // Assembler labels (`.LC0`, kept in the symbol table for mergeable literal pools)
  // exist in no running program: refer to the literal by its place in the section.
  if (t.in_section() && t.local() && t.name.rfind(".L", 0) == 0) {
    name = obj.section(t.section).name;
    section = true;
    local = true;
    type = STT_NOTYPE;
    addend += static_cast<int64_t>(t.value);
  } else if (t.type == elf::SymbolType::Section && t.in_section()) {
    // As the differ does: a PC-relative field's addend is biased by the distance to the
    // end of the instruction, approximated by the field's width.
    int64_t bias = elf::is_pc_relative(r.kind) && from.exec() ? static_cast<int64_t>(r.width) : 0;
    int64_t eff = static_cast<int64_t>(t.value) + addend + bias;
    // The symbol covering that place; failing that, the section's first symbol (with
    // -fdata-sections a section holds one datum, so the two agree but for odd addends).
    const elf::Symbol* covering = nullptr;
    const elf::Symbol* lowest = nullptr;
    for (const auto& c : obj.symbols()) {
      if (c.section != t.section || !named_definition(c)) continue;
      auto v = static_cast<int64_t>(c.value);
      if (v <= eff && eff < v + static_cast<int64_t>(std::max<uint64_t>(c.size, 1)) &&
          (!covering || (covering->local() && !c.local())))
        covering = &c;
      if (!lowest || c.value < lowest->value || (c.value == lowest->value && lowest->local() && !c.local()))
        lowest = &c;
    }
    const elf::Symbol* best = covering ? covering : lowest;
    if (best) {
      named = best;
      name = best->name;
      local = best->local();
      type = elf::st_type(best->type);
      visibility = best->visibility;
      addend = static_cast<int64_t>(t.value) + addend - static_cast<int64_t>(best->value);
    } else {
      name = obj.section(t.section).name;
      local = true;
      section = true;
      type = STT_NOTYPE;
      addend += static_cast<int64_t>(t.value);
    }
  }
  // GCC numbers file-local statics (`__PRETTY_FUNCTION__.6`, `buf.3`) in the order it
  // meets them, so a patch that adds one renumbers the rest: post code names a datum by
  // its post name, the running program has the pre name. A local datum the differ paired
  // with one in pre is named as pre names it; pre code's references to it then resolve
  // the very same run symbol.
  if (local && !section && &obj == in_.units[k].post && in_.units[k].diff) {
    auto [pairs, fresh] = pre_name_of_post_.try_emplace(k);
    if (fresh)   // once per unit: post symbol index -> the name of its pre twin
      for (const auto& d : in_.units[k].diff->symbols)
        if (d.post_symbol >= 0 && d.pre_symbol >= 0 && d.status == diff::Status::Same)
          pairs->second.emplace(d.post_symbol, in_.units[k].pre->symbol(static_cast<uint32_t>(d.pre_symbol)).name);
    if (auto it = pairs->second.find(static_cast<int>(named - obj.symbols().data())); it != pairs->second.end())
      name = it->second;
  }
  std::string key = local ? fmt::format("{}\n{}\n{}", k, section ? "section" : "symbol", name) : name;
  if (auto it = run_by_key_.find(key); it != run_by_key_.end()) return run_symbols_[it->second].ref;
  elf::NewSymbol s;
  s.name = name;
  s.bind = bind;
  s.type = type;
  SymbolRef ref = w_.add_symbol(std::move(s));
  run_by_key_[key] = run_symbols_.size();
  // The linker turns a hidden global into a local of the binary it links: the
  // resolver must know to look for it there, and only there.
  bool hidden = !local && (visibility == STV_HIDDEN || visibility == STV_INTERNAL);
  run_symbols_.push_back({ref, name, local, section, k, hidden});
  return ref;
}

SymbolRef Builder::post_target(size_t k, const elf::Section& from, const elf::Reloc& r, int64_t& addend) {
  const elf::Object& post = *in_.units[k].post;
  const UnitMap& m = maps_[k];
  const auto& t = post.symbol(r.symbol);
  if (r.symbol == 0) return {};
  if (t.in_section() && m.post_out.count(t.section))
    return t.type == elf::SymbolType::Section ? m.post_section_symbol.at(t.section) : m.post_def.at(r.symbol);
  return run_symbol(k, post, from, r, addend);
}

void Builder::add_unit(size_t k) {
  const Unit& u = in_.units[k];
  const elf::Object& pre = *u.pre;
  const elf::Object& post = *u.post;
  const diff::ObjectDiff& d = *u.diff;
  maps_.emplace_back();
  UnitMap& m = maps_.back();

  std::set<uint32_t> pre_secs, post_secs;
  for (const auto& s : d.symbols) {
    if (s.included && s.post_symbol >= 0) {
      const auto& sym = post.symbol(static_cast<uint32_t>(s.post_symbol));
      if (sym.in_section()) post_secs.insert(sym.section);
      else ctx_.warn(fmt::format("{}: {}: included but not in a section (common symbol?); not carried",
                                 u.path, s.name));
    }
    if (s.kind == diff::UnitKind::Func && s.status == diff::Status::Changed && s.pre_symbol >= 0) {
      const auto& sym = pre.symbol(static_cast<uint32_t>(s.pre_symbol));
      if (sym.in_section()) pre_secs.insert(sym.section);
    }
  }
  for (uint32_t a : d.included_anonymous_sections) post_secs.insert(a);
  // A process's unwinder needs the LSDAs and DW.ref words of the carried code (the
  // kernel's module loader has ORC instead).
  if (in_.kernel_release.empty())
    for (uint32_t s : eh::unwind_sections(post, post_secs)) post_secs.insert(s);
  // The literal pools pre code refers to (see the top of this file).
  std::set<uint32_t> pre_pools;
  for (uint32_t s : pre_secs)
    for (const auto& r : pre.section(s).relocs) {
      if (r.symbol == 0) continue;
      const auto& t = pre.symbol(r.symbol);
      if (t.in_section() && literal_pool(pre.section(t.section))) pre_pools.insert(t.section);
    }

  // Sections, each followed by its relocation section.
  std::map<uint32_t, uint32_t> pre_rela, post_rela;
  auto lay_out = [&](const elf::Object& obj, const std::set<uint32_t>& secs, bool is_pre) {
    for (uint32_t s : secs) {
      const auto& sec = obj.section(s);
      uint32_t out = copy_section(sec, is_pre ? kPrePrefix : kPostPrefix, is_pre);
      (is_pre ? m.pre_out : m.post_out)[s] = out;
      section_notes_.push_back(Json{{"index", out},
                                    {"name", w_.section(out).name},
                                    {"role", is_pre ? "pre" : "post"},
                                    {"object", k},
                                    {"original", sec.name}});
      if (!sec.relocs.empty()) (is_pre ? pre_rela : post_rela)[s] = w_.add_rela(out);
    }
  };
  lay_out(pre, pre_secs, true);
  lay_out(pre, pre_pools, true);
  lay_out(post, post_secs, false);

  // Local symbols of this object: its file, its section symbols, pre definitions (local:
  // they name code being matched, not code to link against), then post definitions.
  elf::NewSymbol file;
  file.name = fmt::format("{}", u.source.empty() ? post.source_file() : u.source);
  file.type = STT_FILE;
  file.shndx = SHN_ABS;
  w_.add_symbol(file);
  for (auto [orig, out] : m.pre_out) m.pre_section_symbol[orig] = w_.section_symbol(out);
  for (auto [orig, out] : m.post_out) m.post_section_symbol[orig] = w_.section_symbol(out);
  auto define = [&](const elf::Object& obj, const std::map<uint32_t, uint32_t>& outs,
                    std::map<uint32_t, SymbolRef>& defs, bool is_pre) {
    for (const auto& sym : obj.symbols()) {
      if (!sym.in_section() || !named_definition(sym)) continue;
      auto it = outs.find(sym.section);
      if (it == outs.end()) continue;
      elf::NewSymbol s;
      s.name = sym.name;
      s.type = elf::st_type(sym.type);
      s.bind = is_pre || sym.local() ? STB_LOCAL : sym.binding == elf::Binding::Weak ? STB_WEAK : STB_GLOBAL;
      s.other = sym.visibility;
      s.shndx = static_cast<uint16_t>(it->second);
      s.value = sym.value;
      s.size = sym.size;
      defs[sym.index] = w_.add_symbol(std::move(s));
    }
  };
  define(pre, m.pre_out, m.pre_def, true);
  define(post, m.post_out, m.post_def, false);

  // Relocations.
  for (auto [orig, rela] : pre_rela) {
    const auto& sec = pre.section(orig);
    for (const auto& r : sec.relocs) {
      int64_t addend = r.addend;
      SymbolRef ref;
      const auto& t = pre.symbol(r.symbol);
      if (r.symbol == 0) {
      } else if (t.in_section() && pre_pools.count(t.section)) {
        // A literal: the carried pool's section symbol, at the literal's offset in it.
        ref = m.pre_section_symbol.at(t.section);
        addend += static_cast<int64_t>(t.value);
      } else {
        ref = run_symbol(k, pre, sec, r, addend);
      }
      w_.section(rela).relocs.push_back({r.offset, r.type, ref, addend});
    }
  }
  for (auto [orig, rela] : post_rela) {
    const auto& sec = post.section(orig);
    for (const auto& r : sec.relocs) {
      int64_t addend = r.addend;
      SymbolRef ref = post_target(k, sec, r, addend);
      w_.section(rela).relocs.push_back({r.offset, r.type, ref, addend});
    }
  }
  if (!in_.kernel_release.empty()) add_pre_sites(k, pre_secs);
  else add_eh_frame(k);
  add_special(k);
}

// `.livesplice.post.eh_frame`: the FDEs of this object's carried code, relocated like
// any post section (against the update's own code and LSDAs), and after it the storage
// its registration in the target needs (format.h).
void Builder::add_eh_frame(size_t k) {
  const elf::Object& post = *in_.units[k].post;
  std::set<uint32_t> code;
  for (auto [orig, out] : maps_[k].post_out)
    if (post.section(orig).exec()) code.insert(orig);
  eh::CarriedFrames frames = eh::carried_frames(post, code);
  if (frames.fdes == 0) return;
  const elf::Section& from = post.section(frames.section);
  elf::NewSection o;
  o.name = carried_name(kPostPrefix, kEhFrame);
  o.type = from.type;
  o.flags = SHF_ALLOC;
  o.align = 8;
  o.data = std::move(frames.bytes);
  uint32_t out = w_.add_section(std::move(o));
  section_notes_.push_back(Json{{"index", out}, {"name", w_.section(out).name}, {"role", "post"}, {"object", k},
                                {"original", kEhFrame}});
  std::vector<elf::NewReloc> relocs;
  for (auto [offset, r] : frames.relocs) {
    int64_t addend = r->addend;
    SymbolRef ref = post_target(k, from, *r, addend);
    relocs.push_back({offset, r->type, ref, addend});
  }
  w_.add_rela(out, std::move(relocs));
  elf::NewSection storage;
  storage.name = carried_name(kPostPrefix, kEhFrameObject);
  storage.type = SHT_NOBITS;
  storage.flags = SHF_ALLOC | SHF_WRITE;
  storage.align = 8;
  storage.size = kEhFrameObjectSize;
  uint32_t obj = w_.add_section(std::move(storage));
  section_notes_.push_back(Json{{"index", obj}, {"name", w_.section(obj).name}, {"role", "post"}, {"object", k},
                                {"original", kEhFrameObject}});
}

// The kernel's tables of run-time rewrites (`.altinstructions` with its replacement
// pieces, `__jump_table`: special_sections.h, pre_sites) for the pre code of replaced
// functions: `.livesplice.pre<table>`, entries compacted, role "pre", never loaded. Their
// relocations point into the carried pre code and pieces; replacement code's other
// relocations name run symbols (revealed when a site runs the replacement). Anything
// else an entry names (a jump label's key) matters to no match and is dropped.
void Builder::add_pre_sites(size_t k, const std::set<uint32_t>& pre_secs) {
  const Unit& u = in_.units[k];
  const elf::Object& pre = *u.pre;
  UnitMap& m = maps_[k];
  auto entries = diff::pre_site_entries(pre, pre_secs);
  if (entries.empty()) return;
  std::map<uint32_t, Moved> moved;
  for (const auto& c : entries) moved[c.section] = carry_entries(k, pre, c, true);
  std::map<uint32_t, SymbolRef> moved_symbol = section_symbols(moved);
  auto relocate = [&](uint32_t sec, int64_t off) -> std::optional<int64_t> {
    auto it = moved.find(sec);
    return it == moved.end() ? std::nullopt : it->second.landed(off);
  };
  for (auto& [orig, mv] : moved) {
    const auto& sec = pre.section(orig);
    const bool table = diff::find_special(sec.name) && diff::find_special(sec.name)->entry_size > 0;
    std::vector<elf::NewReloc> relocs;
    mv.each_reloc(sec, [&](uint64_t offset, const elf::Reloc& r) {
      int64_t addend = r.addend;
      SymbolRef ref;
      const auto& t = pre.symbol(r.symbol);
      if (r.symbol == 0) return;
      if (t.in_section() && m.pre_out.count(t.section)) {
        ref = m.pre_section_symbol.at(t.section);
        addend += static_cast<int64_t>(t.value);
      } else if (auto to = t.in_section() ? relocate(t.section, static_cast<int64_t>(t.value) + r.addend)
                                          : std::nullopt) {
        ref = moved_symbol.at(t.section);
        addend = *to;
      } else if (!table) {
        ref = run_symbol(k, pre, sec, r, addend);
      } else {
        return;
      }
      relocs.push_back({offset, r.type, ref, addend});
    });
    if (!relocs.empty()) w_.add_rela(mv.out, std::move(relocs));
  }
}

// ---- kernel special sections ----------------------------------------------------------
// The differ names, per kernel table (`__bug_table`, `__ex_table`, `.altinstructions`,
// ORC...), the entries owned by carried code (differ/special_sections.h). Each table
// travels as `.livesplice.post.<table>` holding just those entries, back to back, with
// their relocations moved along: to the carried code, to the compacted replacement
// pieces (`.altinstr_replacement`), or to run symbols. Role "special" in the manifest:
// the kernel module built from the update turns them back into the kernel's tables.
void Builder::add_special(size_t k) {
  const Unit& u = in_.units[k];
  const elf::Object& post = *u.post;
  UnitMap& m = maps_[k];
  if (u.diff->special.empty()) return;
  std::map<uint32_t, Moved> moved;
  for (const auto& c : u.diff->special) {
    moved[c.section] = carry_entries(k, post, c, false);
    section_notes_.back()["entries"] = c.ranges.size();
  }
  std::map<uint32_t, SymbolRef> moved_symbol = section_symbols(moved);
  auto relocate = [&](uint32_t sec, int64_t off) -> std::optional<int64_t> {
    auto it = moved.find(sec);
    return it == moved.end() ? std::nullopt : it->second.landed(off);
  };
  for (auto& [orig, mv] : moved) {
    const auto& sec = post.section(orig);
    std::vector<elf::NewReloc> relocs;
    mv.each_reloc(sec, [&](uint64_t offset, const elf::Reloc& r) {
      int64_t addend = r.addend;
      SymbolRef ref;
      const auto& t = post.symbol(r.symbol);
      if (r.symbol == 0 || !t.in_section() || !moved.count(t.section) || m.post_out.count(t.section)) {
        ref = post_target(k, sec, r, addend);
      } else if (auto to = relocate(t.section, static_cast<int64_t>(t.value) + r.addend)) {
        ref = moved_symbol.at(t.section);
        addend = *to;
      } else {
        fail("{}: a carried entry points at {}+{:#x}, which was not carried", post.where(sec, r.offset),
             post.section(t.section).name, static_cast<int64_t>(t.value) + r.addend);
      }
      relocs.push_back({offset, r.type, ref, addend});
    });
    if (!relocs.empty()) w_.add_rela(mv.out, std::move(relocs));
  }
}

Json Builder::manifest(const WriteSummary& summary) const {
  Json j;
  j["format"] = kFormatName;
  j["version"] = kFormatVersion;
  j["livesplice_version"] = kToolVersion;
  j["created"] = iso_time();
  j["arch"] = "x86_64";
  j["build_system"] = in_.build_system;
  if (!in_.label.empty()) j["label"] = in_.label;   // absent rather than "": files without one stay as they were
  if (!in_.kernel_release.empty()) {
    j["kernel"] = Json{{"release", in_.kernel_release}, {"version", in_.kernel_version}};
    if (kernel_module_ != 0) j["kernel"]["module_section"] = kernel_module_;
  }
  Json targets = Json::array();
  for (const auto& t : in_.targets) {
    auto id = [](const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); };
    targets.push_back(Json{{"name", t.name},
                           {"path", t.path},
                           {"kind", t.kind},
                           {"build_id", id(t.build_id)},
                           {"original_build_id", id(t.original_build_id)},
                           {"pre_build_id", id(t.pre_build_id)}});
  }
  j["targets"] = targets;
  j["patch"] = Json{{"name", in_.patch_name}, {"files", in_.patch_files}, {"text", in_.patch_text}};
  std::set<std::string> sources;
  for (const auto& u : in_.units) sources.insert(u.source);
  j["sources"] = sources;

  Json objects = Json::array(), functions = Json::array(), data = Json::array();
  for (size_t k = 0; k < in_.units.size(); ++k) {
    const Unit& u = in_.units[k];
    const UnitMap& m = maps_[k];
    objects.push_back(Json{{"path", u.path},
                           {"source", u.source},
                           {"targets", u.targets},
                           {"pre", to_string(u.pre_origin)},
                           {"notes", u.diff->notes}});
    for (const auto& s : u.diff->symbols) {
      if (s.status == diff::Status::Same) continue;
      auto pre_sec = s.pre_symbol >= 0 ? m.pre_out.find(u.pre->symbol(s.pre_symbol).section) : m.pre_out.end();
      auto post_sec = s.post_symbol >= 0 ? m.post_out.find(u.post->symbol(s.post_symbol).section) : m.post_out.end();
      auto pre_sym = s.pre_symbol >= 0 ? m.pre_def.find(s.pre_symbol) : m.pre_def.end();
      auto post_sym = s.post_symbol >= 0 ? m.post_def.find(s.post_symbol) : m.post_def.end();
      Json e{{"name", s.name}, {"object", k}, {"status", to_string(unit_status(s.status))}, {"reason", s.reason},
             {"local", s.local}};
      if (s.kind == diff::UnitKind::Func) {
        e["parent"] = s.parent.empty() ? Json(nullptr) : Json(s.parent);
        // Pieces (.cold) are reached from their parent's new code; only whole functions
        // get a trampoline.
        e["replace"] = s.status == diff::Status::Changed && s.parent.empty();
        e["pre_size"] = s.pre_symbol >= 0 ? Json(s.pre_size) : Json(nullptr);
        e["post_size"] = s.post_symbol >= 0 ? Json(s.post_size) : Json(nullptr);
        e["pre_section"] = optional_index(pre_sec != m.pre_out.end(), pre_sec != m.pre_out.end() ? pre_sec->second : 0);
        e["post_section"] = optional_index(post_sec != m.post_out.end(), post_sec != m.post_out.end() ? post_sec->second : 0);
        e["pre_symbol"] = optional_index(pre_sym != m.pre_def.end(), pre_sym != m.pre_def.end() ? w_.index(pre_sym->second) : 0);
        e["post_symbol"] = optional_index(post_sym != m.post_def.end(), post_sym != m.post_def.end() ? w_.index(post_sym->second) : 0);
        functions.push_back(std::move(e));
      } else {
        e["size"] = s.post_symbol >= 0 ? s.post_size : s.pre_size;
        e["carried"] = s.included;
        e["post_section"] = optional_index(post_sec != m.post_out.end(), post_sec != m.post_out.end() ? post_sec->second : 0);
        e["post_symbol"] = optional_index(post_sym != m.post_def.end(), post_sym != m.post_def.end() ? w_.index(post_sym->second) : 0);
        data.push_back(std::move(e));
      }
    }
  }
  j["objects"] = objects;
  j["functions"] = functions;
  j["data"] = data;
  j["sections"] = section_notes_;
  Json run = Json::array();
  for (const auto& r : run_symbols_) {
    Json e{{"index", w_.index(r.ref)}, {"name", r.name}, {"local", r.local},
           {"kind", r.section ? "section" : "symbol"}};
    if (r.local) {
      e["object"] = r.unit;
      e["source"] = in_.units[r.unit].source;
    }
    if (r.hidden) e["hidden"] = true;
    run.push_back(std::move(e));
  }
  j["run_symbols"] = run;
  j["hooks"] = hooks();
  Json ignored = Json::array();
  for (size_t k = 0; k < in_.units.size(); ++k)
    for (const auto& i : in_.units[k].diff->ignored)
      ignored.push_back(Json{{"name", i.name}, {"object", k}, {"reason", i.reason}});
  j["ignored"] = ignored;
  j["summary"] = Json{{"functions_changed", summary.functions_changed},
                      {"functions_new", summary.functions_new},
                      {"data_new", summary.data_new}};
  return j;
}

Json Builder::hooks() const {
  Json out = Json::array();
  for (size_t k = 0; k < in_.units.size(); ++k)
    for (const auto& h : in_.units[k].diff->hooks) {
      auto sym = maps_[k].post_def.find(static_cast<uint32_t>(h.post_symbol));
      if (sym == maps_[k].post_def.end()) fail("{}: hook {} was not carried", in_.units[k].path, h.name);
      out.push_back(Json{{"kind", h.kind}, {"name", h.name}, {"object", k}, {"function", h.function},
                         {"post_symbol", w_.index(sym->second)}});
    }
  return out;
}

std::vector<uint8_t> Builder::finish(WriteSummary& summary) {
  for (const auto& u : in_.units)
    for (const auto& s : u.diff->symbols) {
      if (!s.parent.empty()) continue;
      if (s.kind == diff::UnitKind::Func && s.status == diff::Status::Changed) ++summary.functions_changed;
      if (s.kind == diff::UnitKind::Func && s.status == diff::Status::New && s.included) ++summary.functions_new;
      if (s.kind == diff::UnitKind::Object && s.status == diff::Status::New && s.included) ++summary.data_new;
    }
  for (const auto& n : section_notes_) (n["role"] == "pre" ? summary.pre_sections : summary.post_sections)++;
  summary.run_symbols = run_symbols_.size();

  if (!in_.kernel_module.empty()) {
    elf::NewSection ko;
    ko.name = std::string(kKernelModuleSection);
    ko.align = 8;
    ko.data = in_.kernel_module;
    kernel_module_ = w_.add_section(std::move(ko));
  }

  // Last of the sections: zeros until the image is sealed.
  elf::NewSection digest;
  digest.name = std::string(kDigestSection);
  digest.data.assign(kDigestSize, 0);
  w_.add_section(std::move(digest));

  summary.relocations = w_.relocation_count();
  // Every section and symbol is in, so the manifest's indices are final.
  std::string manifest_text = manifest(summary).dump(2) + "\n";
  w_.section(1).data.assign(manifest_text.begin(), manifest_text.end());
  auto image = w_.write();
  if (!image) fail("cannot write the update: {}", image.status().message());
  summary.bytes = image->size();
  std::vector<uint8_t> bytes = std::move(image).value();
  seal(bytes, "the update being written");
  return bytes;
}

}  // namespace

std::string_view to_string(PreOrigin o) {
  switch (o) {
    case PreOrigin::PreBuild: return "pre-build";
    case PreOrigin::Recompiled: return "recompiled";
    case PreOrigin::None: return "none";
  }
  return "?";
}

WriteSummary write_update(Context& ctx, const UpdateInput& input, const std::string& path) {
  if (input.units.empty()) fail("internal: an update with no object to carry");
  for (const auto& u : input.units) {
    if (!u.pre || !u.post || !u.diff) fail("internal: update unit {} lacks its objects or diff", u.path);
    if (u.post->machine() != elf::Machine::X86_64) fail("{}: only x86-64 updates are written so far", u.path);
  }
  Builder b(ctx, input);
  for (size_t k = 0; k < input.units.size(); ++k) b.add_unit(k);
  WriteSummary summary;
  std::vector<uint8_t> image = b.finish(summary);

  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write {}: {}", tmp, strerror(errno));
    out.write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
    if (!out) fail("writing {}: {}", tmp, strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    fail("cannot write {}: {}", path, ec.message());
  }
  return summary;
}

}  // namespace ls::update
