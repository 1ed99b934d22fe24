// Types from DWARF that running data depends on: which struct/union layouts and which
// enum values differ between pre and post.
//
// Why: a patch that adds or moves a member changes code that uses the type, and the
// differ would happily replace that code — but the running program's existing objects
// keep the old layout, so the new code would read the wrong bytes. An enum renumbered
// is the same trap without any layout change: data holds the old numbers, and the new
// code reads them with the new meanings (busybox awk's CVE-2023-42364 fix moves OC_DONE
// from 0x2800 to 0x2900 and gives 0x2800 to a new opcode; the running parse tree still
// holds 0x2800). Detection is per compilation unit: every named struct/union (or
// typedef'd anonymous one) in the pre and post DWARF is reduced to (size, members: name,
// offset, bit position, type name, type size) and compared by name; every enum to its
// enumerators' name -> value, compared by its name, its typedef's, or (anonymous) by the
// enumerator names it shares with its post twin. An enumerator added is safe; one whose
// value changed, or one removed (data may still hold it), is not. libdwfl reads the
// objects because DWARF in an ET_REL file is only meaningful after its relocations are
// applied, which libdwfl does.
//
// Not detected: structs without any name; types that only pre or only post emits (GCC
// emits an enum only when the unit uses it); changes in headers whose users the patch
// did not rebuild (create only diffs rebuilt objects); anything when an object has no
// DWARF (the create wrapper adds -g, which never changes generated code).
#include <dwarf.h>
#include <elf.h>
#include <elfutils/libdw.h>
#include <libelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <cstring>
#include <map>
#include <set>
#include <optional>

#include "elf/relocs.h"
#include "differ/units.h"

namespace ls::diff {

namespace {

struct Member {
  std::string name;
  uint64_t offset = 0;
  int64_t bit_offset = -1;
  int64_t bit_size = -1;
  std::string type;
  uint64_t type_size = 0;
};

// Member names do not matter to running data: a renamed member at the same offset with
// the same type reads the same bytes. Only the shape is compared.
bool same_shape(const Member& a, const Member& b) {
  return a.offset == b.offset && a.bit_offset == b.bit_offset && a.bit_size == b.bit_size && a.type == b.type &&
         a.type_size == b.type_size;
}

struct Layout {
  std::string kind;   // "struct" / "union"
  uint64_t size = 0;
  std::vector<Member> members;
  bool operator==(const Layout& o) const {
    if (size != o.size || members.size() != o.members.size()) return false;
    for (size_t i = 0; i < members.size(); ++i)
      if (!same_shape(members[i], o.members[i])) return false;
    return true;
  }
};

// One enumerator's value, compared as its 64-bit pattern and shown as DWARF gave it
// (signed values arrive as sdata, the rest as unsigned data of some width).
struct Enumerator {
  std::string name;
  uint64_t bits = 0;
  std::string shown;   // "0x2800", "-0x1"
};

struct Enum {
  std::string key;     // "enum mode", "typedef mode_t", "enum <anon: OC_A,...>"
  uint64_t size = 0;
  std::vector<Enumerator> values;   // in declaration order
};

// Everything about one object's types that running data depends on.
struct Types {
  std::map<std::string, Layout> layouts;
  std::map<std::string, Enum> enums;          // named, or named through a typedef
  std::map<Dwarf_Off, Enum> anonymous_enums;  // by DIE offset, until typedefs are known
  std::set<Dwarf_Off> typedefed;              // anonymous enums a typedef names
};

uint64_t udata(Dwarf_Die* die, unsigned attr, uint64_t dflt = 0) {
  Dwarf_Attribute a;
  Dwarf_Word v;
  if (dwarf_attr_integrate(die, attr, &a) && dwarf_formudata(&a, &v) == 0) return v;
  return dflt;
}

// "[16][4]" for a (possibly multi-dimensional) array type; "[]" for a dimension without
// a constant bound (a flexible member, a VLA).
std::string array_bounds(Dwarf_Die* array) {
  std::string out;
  Dwarf_Die sub;
  if (dwarf_child(array, &sub) != 0) return "[]";
  do {
    if (dwarf_tag(&sub) != DW_TAG_subrange_type) continue;
    Dwarf_Attribute a;
    Dwarf_Word v;
    if (dwarf_attr_integrate(&sub, DW_AT_count, &a) && dwarf_formudata(&a, &v) == 0)
      out += fmt::format("[{}]", v);
    else if (dwarf_attr_integrate(&sub, DW_AT_upper_bound, &a) && dwarf_formudata(&a, &v) == 0)
      out += fmt::format("[{}]", v + 1 - udata(&sub, DW_AT_lower_bound, 0));
    else
      out += "[]";
  } while (dwarf_siblingof(&sub, &sub) == 0);
  return out.empty() ? "[]" : out;
}

// A readable name for a type: the first named type down the chain, followed by what
// leads to it, innermost first ("char*[16]": sixteen pointers to char). Qualifiers are
// dropped; array bounds are kept, because a refusal that says "char[] to char[]" does
// not tell the reader what changed.
std::string type_name(Dwarf_Die* die) {
  Dwarf_Die t = *die, next;
  std::vector<std::string> outer;   // outermost first
  auto with_suffix = [&](std::string base) {
    for (auto it = outer.rbegin(); it != outer.rend(); ++it) base += *it;
    return base;
  };
  for (int depth = 0; depth < 16; ++depth) {
    const char* n = dwarf_diename(&t);
    int tag = dwarf_tag(&t);
    if (n) return with_suffix(n);
    if (tag == DW_TAG_pointer_type) outer.push_back("*");
    else if (tag == DW_TAG_array_type) outer.push_back(array_bounds(&t));
    Dwarf_Attribute a;
    if (!dwarf_attr_integrate(&t, DW_AT_type, &a) || !dwarf_formref_die(&a, &next)) return with_suffix("void");
    t = next;
  }
  return with_suffix("?");
}

Layout read_layout(Dwarf_Die* die) {
  Layout l;
  l.kind = dwarf_tag(die) == DW_TAG_union_type ? "union" : "struct";
  l.size = udata(die, DW_AT_byte_size);
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return l;
  do {
    if (dwarf_tag(&child) != DW_TAG_member) continue;
    Member m;
    const char* n = dwarf_diename(&child);
    m.name = n ? n : "<anonymous>";
    m.offset = udata(&child, DW_AT_data_member_location);
    if (dwarf_hasattr(&child, DW_AT_data_bit_offset)) m.bit_offset = udata(&child, DW_AT_data_bit_offset);
    if (dwarf_hasattr(&child, DW_AT_bit_size)) m.bit_size = udata(&child, DW_AT_bit_size);
    Dwarf_Attribute a;
    Dwarf_Die t;
    if (dwarf_attr_integrate(&child, DW_AT_type, &a) && dwarf_formref_die(&a, &t)) {
      m.type = type_name(&t);
      Dwarf_Word sz;
      if (dwarf_aggregate_size(&t, &sz) == 0) m.type_size = sz;
    }
    l.members.push_back(std::move(m));
  } while (dwarf_siblingof(&child, &child) == 0);
  return l;
}

Enum read_enum(Dwarf_Die* die, std::string key) {
  Enum e;
  e.size = udata(die, DW_AT_byte_size);
  Dwarf_Die child;
  if (dwarf_child(die, &child) == 0) do {
      if (dwarf_tag(&child) != DW_TAG_enumerator) continue;
      const char* n = dwarf_diename(&child);
      Dwarf_Attribute a;
      if (!n || !dwarf_attr_integrate(&child, DW_AT_const_value, &a)) continue;
      Enumerator v{n};
      Dwarf_Sword sv;
      Dwarf_Word uv;
      if (dwarf_whatform(&a) == DW_FORM_sdata && dwarf_formsdata(&a, &sv) == 0) {
        v.bits = static_cast<uint64_t>(sv);
        v.shown = sv < 0 ? fmt::format("-{:#x}", -static_cast<uint64_t>(sv)) : fmt::format("{:#x}", sv);
      } else if (dwarf_formudata(&a, &uv) == 0) {
        v.bits = uv;
        v.shown = fmt::format("{:#x}", uv);
      } else {
        continue;
      }
      e.values.push_back(std::move(v));
    } while (dwarf_siblingof(&child, &child) == 0);
  // An anonymous enum is known by its enumerators: they are unique in their scope.
  e.key = key.empty() ? fmt::format("enum <anon: {}{}>", e.values.empty() ? "" : e.values.front().name,
                                    e.values.size() > 1 ? ",..." : "")
                      : std::move(key);
  return e;
}

bool is_definition(Dwarf_Die* die) { return !dwarf_hasattr(die, DW_AT_declaration); }

void collect_typedef(Dwarf_Die* td, Types& out) {
  Dwarf_Attribute a;
  Dwarf_Die t;
  const char* n = dwarf_diename(td);
  if (!n || !dwarf_attr(td, DW_AT_type, &a) || !dwarf_formref_die(&a, &t) || dwarf_diename(&t) ||
      !is_definition(&t))
    return;
  int tag = dwarf_tag(&t);
  if (tag == DW_TAG_structure_type || tag == DW_TAG_union_type)
    out.layouts.emplace(std::string("typedef ") + n, read_layout(&t));
  if (tag == DW_TAG_enumeration_type) {
    out.enums.emplace(std::string("typedef ") + n, read_enum(&t, std::string("typedef ") + n));
    out.typedefed.insert(dwarf_dieoffset(&t));
  }
}

void collect(Dwarf_Die* die, Types& out, int depth) {
  if (depth > 64) return;
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    int tag = dwarf_tag(&child);
    const char* n = dwarf_diename(&child);
    if ((tag == DW_TAG_structure_type || tag == DW_TAG_union_type || tag == DW_TAG_class_type) &&
        is_definition(&child)) {
      if (n) {
        auto l = read_layout(&child);
        out.layouts.emplace(l.kind + " " + n, std::move(l));
      }
    } else if (tag == DW_TAG_enumeration_type && is_definition(&child)) {
      if (n) out.enums.emplace(std::string("enum ") + n, read_enum(&child, std::string("enum ") + n));
      else out.anonymous_enums.emplace(dwarf_dieoffset(&child), read_enum(&child, ""));
    } else if (tag == DW_TAG_typedef) {
      collect_typedef(&child, out);
    }
    if (tag == DW_TAG_subprogram || tag == DW_TAG_lexical_block || tag == DW_TAG_namespace)
      collect(&child, out, depth + 1);
  } while (dwarf_siblingof(&child, &child) == 0);
}

// Anonymous enums a typedef names are compared under the typedef's name only.
void drop_typedefed(Types& t) {
  for (Dwarf_Off off : t.typedefed) t.anonymous_enums.erase(off);
  t.typedefed.clear();
}

struct DwflCloser {
  void operator()(Dwfl* d) const { dwfl_end(d); }
};

// The types of the object; empty when it has no DWARF.
Types types_of(Context& ctx, const std::string& path) {
  Types out;
  if (!std::filesystem::exists(path)) return out;
  static const Dwfl_Callbacks callbacks = {
      .find_elf = nullptr,
      .find_debuginfo = dwfl_standard_find_debuginfo,
      .section_address = dwfl_offline_section_address,
      .debuginfo_path = nullptr,
  };
  std::unique_ptr<Dwfl, DwflCloser> dwfl(dwfl_begin(&callbacks));
  if (!dwfl) return out;
  dwfl_report_begin(dwfl.get());
  Dwfl_Module* mod = dwfl_report_offline(dwfl.get(), path.c_str(), path.c_str(), -1);
  dwfl_report_end(dwfl.get(), nullptr, nullptr);
  if (!mod) {
    ctx.note(fmt::format("{}: no DWARF read ({}); struct layouts and enums not compared", path, dwfl_errmsg(-1)));
    return out;
  }
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = nullptr;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias)) != nullptr) collect(cu, out, 0);
  drop_typedefed(out);
  return out;
}

// The fast path: DWARF of a relocatable object is only meaningful with its relocations
// applied (names are .debug_str offsets held in addends). Applying the .debug_info ones
// to a copy of the image ourselves and reading that with plain libdw is several times
// faster than libdwfl's general relocation machinery. nullopt: fall back to libdwfl.
std::optional<Types> types_fast(const elf::Object& obj) {
  const auto& image = obj.image();
  std::vector<uint8_t> img(image);
  bool any = false;
  for (const auto& rs : obj.sections()) {
    if (rs.type != SHT_RELA || rs.info >= obj.sections().size()) continue;
    const auto& target = obj.section(rs.info);
    if (target.name != ".debug_info") continue;
    any = true;
    size_t target_off = target.bytes.data() - image.data();
    size_t rela_off = rs.bytes.data() - image.data();
    size_t n = rs.bytes.size() / sizeof(Elf64_Rela);
    for (size_t i = 0; i < n; ++i) {
      Elf64_Rela r;
      std::memcpy(&r, image.data() + rela_off + i * sizeof r, sizeof r);
      uint32_t sym = ELF64_R_SYM(r.r_info), type = ELF64_R_TYPE(r.r_info);
      if (sym >= obj.symbols().size()) return std::nullopt;
      uint64_t value = obj.symbol(sym).value + r.r_addend;
      auto info = elf::reloc_info(obj.machine(), type);
      unsigned width = info && (info->kind == elf::RelocKind::Abs32 || info->kind == elf::RelocKind::Abs64) ? info->width : 0;
      if (width == 0) return std::nullopt;   // something we do not model: let libdwfl do it
      if (r.r_offset > target.size || width > target.size - r.r_offset) return std::nullopt;
      std::memcpy(img.data() + target_off + r.r_offset, &value, width);
    }
  }
  if (!any) return std::nullopt;
  elf_version(EV_CURRENT);
  Elf* elf = elf_memory(reinterpret_cast<char*>(img.data()), img.size());
  if (!elf) return std::nullopt;
  Dwarf* dw = dwarf_begin_elf(elf, DWARF_C_READ, nullptr);
  if (!dw) {
    elf_end(elf);
    return std::nullopt;
  }
  Types out;
  Dwarf_Off off = 0, next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dw, off + header, &cu)) collect(&cu, out, 0);
    off = next;
  }
  dwarf_end(dw);
  elf_end(elf);
  drop_typedefed(out);
  return out;
}

// The first few member changes (post's order, then removals) and how many more there
// are. A member counts as removed only when post has no member of that name at all.
std::string explain(const Layout& a, const Layout& b) {
  constexpr size_t kShown = 4;
  std::vector<std::string> changes;
  std::map<std::string, const Member*> old_members;
  for (const auto& m : a.members) old_members[m.name] = &m;
  std::set<std::string> new_names;
  for (const auto& m : b.members) {
    new_names.insert(m.name);
    auto it = old_members.find(m.name);
    if (it == old_members.end()) {
      changes.push_back(fmt::format("member '{}' added at +{}", m.name, m.offset));
      continue;
    }
    const Member& o = *it->second;
    if (o.offset != m.offset || o.bit_offset != m.bit_offset)
      changes.push_back(fmt::format("member '{}' moved from +{} to +{}", m.name, o.offset, m.offset));
    else if (o.type != m.type || o.type_size != m.type_size || o.bit_size != m.bit_size)
      changes.push_back(fmt::format("member '{}' changed type from {} to {}", m.name, o.type, m.type));
  }
  for (const auto& m : a.members)
    if (!new_names.count(m.name)) changes.push_back(fmt::format("member '{}' removed", m.name));
  std::vector<std::string> parts(changes.begin(), changes.begin() + std::min(changes.size(), kShown));
  if (changes.size() > kShown) parts.push_back(fmt::format("{} more member changes", changes.size() - kShown));
  if (a.size != b.size) parts.push_back(fmt::format("size {} -> {} bytes", a.size, b.size));
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s.empty() ? "members reordered" : s;
}

// How an enum's values changed, or "" when every enumerator of pre keeps its value.
// Running data holds enum values, never names: an enumerator whose value changed would
// be read with the new meaning, and one removed may still be held (and the patched code
// no longer knows it). An added enumerator only gives a new value a name.
std::string explain(const Enum& a, const Enum& b) {
  constexpr size_t kShown = 4;
  std::map<std::string, const Enumerator*> now;
  std::map<uint64_t, const Enumerator*> by_value;
  for (const auto& v : b.values) {
    now[v.name] = &v;
    by_value.emplace(v.bits, &v);
  }
  std::vector<std::string> changes;
  for (const auto& v : a.values) {
    auto it = now.find(v.name);
    if (it == now.end()) {
      auto same = by_value.find(v.bits);
      changes.push_back(same == by_value.end()
                            ? fmt::format("{} ({}) removed", v.name, v.shown)
                            : fmt::format("{} ({}) removed, {} now named {}", v.name, v.shown, v.shown, same->second->name));
    } else if (it->second->bits != v.bits) {
      changes.push_back(fmt::format("{} changed value {} -> {}", v.name, v.shown, it->second->shown));
    }
  }
  if (changes.empty() && a.size == b.size) return "";
  std::vector<std::string> parts(changes.begin(), changes.begin() + std::min(changes.size(), kShown));
  if (changes.size() > kShown) parts.push_back(fmt::format("{} more enumerator changes", changes.size() - kShown));
  if (a.size != b.size) parts.push_back(fmt::format("size {} -> {} bytes", a.size, b.size));
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s + " (values held by running data would change meaning)";
}

// The post anonymous enum that is the pre one: the one sharing most enumerator names.
const Enum* twin_of(const Enum& a, const Types& post) {
  std::set<std::string> names;
  for (const auto& v : a.values) names.insert(v.name);
  const Enum* best = nullptr;
  size_t best_shared = 0;
  for (const auto& [off, e] : post.anonymous_enums) {
    size_t shared = 0;
    for (const auto& v : e.values) shared += names.count(v.name);
    if (shared > best_shared) best = &e, best_shared = shared;
  }
  return best;
}

std::vector<TypeChange> changed_enums(const Types& a, const Types& b) {
  std::vector<TypeChange> out;
  auto compare = [&](const Enum& ea, const Enum* eb) {
    if (!eb) return;   // post does not use the type: its code holds none of these values
    if (auto why = explain(ea, *eb); !why.empty()) out.push_back({ea.key, why});
  };
  for (const auto& [key, ea] : a.enums) {
    auto it = b.enums.find(key);
    compare(ea, it == b.enums.end() ? nullptr : &it->second);
  }
  for (const auto& [off, ea] : a.anonymous_enums) compare(ea, twin_of(ea, b));
  return out;
}

}  // namespace

std::vector<TypeChange> changed_types(Context& ctx, const elf::Object& pre, const elf::Object& post) {
  // The two reads are independent and dominated by libdwfl relocating DWARF: overlap them.
  auto read = [&](const elf::Object& o) {
    if (auto fast = types_fast(o)) return std::move(*fast);
    ctx.note(fmt::format("{}: DWARF read through libdwfl", o.path()));
    return types_of(ctx, o.path());
  };
  auto pending = std::async(std::launch::async, [&] { return read(pre); });
  auto b = read(post);
  auto a = pending.get();
  std::vector<TypeChange> out;
  for (const auto& [name, la] : a.layouts) {
    auto it = b.layouts.find(name);
    if (it == b.layouts.end() || it->second == la) continue;
    out.push_back({name, "layout of a type used by the patched code changed: " + explain(la, it->second) +
                             "; data of this type in the running program keeps the old layout"});
  }
  for (auto& c : changed_enums(a, b)) out.push_back(std::move(c));
  return out;
}

}  // namespace ls::diff
