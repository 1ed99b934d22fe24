// Struct layouts from DWARF: which named structs/unions differ between pre and post.
//
// Why: a patch that adds or moves a member changes code that uses the type, and the
// differ would happily replace that code — but the running program's existing objects
// keep the old layout, so the new code would read the wrong bytes. Detection is per
// compilation unit: every named struct/union (or typedef'd anonymous one) in the pre
// and post DWARF is reduced to (size, members: name, offset, bit position, type name,
// type size) and compared by name. libdwfl reads the objects because DWARF in an ET_REL
// file is only meaningful after its relocations are applied, which libdwfl does.
//
// Not detected: types without any name; layout changes in headers whose users the patch
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

std::string type_name(Dwarf_Die* die) {
  Dwarf_Die t = *die, next;
  std::string prefix;
  for (int depth = 0; depth < 16; ++depth) {
    const char* n = dwarf_diename(&t);
    int tag = dwarf_tag(&t);
    if (n) return prefix + n;
    if (tag == DW_TAG_pointer_type) prefix += "*";
    else if (tag == DW_TAG_array_type) prefix += "[]";
    Dwarf_Attribute a;
    if (!dwarf_attr_integrate(&t, DW_AT_type, &a) || !dwarf_formref_die(&a, &next)) return prefix + "void";
    t = next;
  }
  return prefix + "?";
}

uint64_t udata(Dwarf_Die* die, unsigned attr, uint64_t dflt = 0) {
  Dwarf_Attribute a;
  Dwarf_Word v;
  if (dwarf_attr_integrate(die, attr, &a) && dwarf_formudata(&a, &v) == 0) return v;
  return dflt;
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

void collect(Dwarf_Die* die, std::map<std::string, Layout>& out, int depth) {
  if (depth > 64) return;
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    int tag = dwarf_tag(&child);
    if ((tag == DW_TAG_structure_type || tag == DW_TAG_union_type || tag == DW_TAG_class_type) &&
        !dwarf_hasattr(&child, DW_AT_declaration)) {
      if (const char* n = dwarf_diename(&child)) {
        auto l = read_layout(&child);
        out.emplace(l.kind + " " + n, std::move(l));
      }
    } else if (tag == DW_TAG_typedef) {
      Dwarf_Attribute a;
      Dwarf_Die t;
      const char* n = dwarf_diename(&child);
      if (n && dwarf_attr(&child, DW_AT_type, &a) && dwarf_formref_die(&a, &t) && !dwarf_diename(&t)) {
        int tt = dwarf_tag(&t);
        if ((tt == DW_TAG_structure_type || tt == DW_TAG_union_type) && !dwarf_hasattr(&t, DW_AT_declaration))
          out.emplace(std::string("typedef ") + n, read_layout(&t));
      }
    }
    if (tag == DW_TAG_subprogram || tag == DW_TAG_lexical_block || tag == DW_TAG_namespace)
      collect(&child, out, depth + 1);
  } while (dwarf_siblingof(&child, &child) == 0);
}

struct DwflCloser {
  void operator()(Dwfl* d) const { dwfl_end(d); }
};

// Layouts of every named aggregate in the object; empty when it has no DWARF.
std::map<std::string, Layout> layouts_of(Context& ctx, const std::string& path) {
  std::map<std::string, Layout> out;
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
    ctx.note(fmt::format("{}: no DWARF read ({}); struct layouts not compared", path, dwfl_errmsg(-1)));
    return out;
  }
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = nullptr;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias)) != nullptr) collect(cu, out, 0);
  return out;
}

// The fast path: DWARF of a relocatable object is only meaningful with its relocations
// applied (names are .debug_str offsets held in addends). Applying the .debug_info ones
// to a copy of the image ourselves and reading that with plain libdw is several times
// faster than libdwfl's general relocation machinery. nullopt: fall back to libdwfl.
std::optional<std::map<std::string, Layout>> layouts_fast(const elf::Object& obj) {
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
      unsigned width = type == R_X86_64_32 ? 4 : type == R_X86_64_64 ? 8 : 0;
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
  std::map<std::string, Layout> out;
  Dwarf_Off off = 0, next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dw, off + header, &cu)) collect(&cu, out, 0);
    off = next;
  }
  dwarf_end(dw);
  elf_end(elf);
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

}  // namespace

std::vector<std::string> changed_layouts(Context& ctx, const elf::Object& pre, const elf::Object& post) {
  // The two reads are independent and dominated by libdwfl relocating DWARF: overlap them.
  auto read = [&](const elf::Object& o) {
    if (auto fast = layouts_fast(o)) return std::move(*fast);
    ctx.note(fmt::format("{}: DWARF read through libdwfl", o.path()));
    return layouts_of(ctx, o.path());
  };
  auto pending = std::async(std::launch::async, [&] { return read(pre); });
  auto b = read(post);
  auto a = pending.get();
  std::vector<std::string> out;
  for (const auto& [name, la] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second == la) continue;
    out.push_back(name + ": " + explain(la, it->second));
  }
  return out;
}

}  // namespace ls::diff
