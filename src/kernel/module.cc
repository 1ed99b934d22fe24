// The new code of a kernel update written as a .ko and loaded (see module.h).
#include "kernel/module.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/ranges.h>

#include "arch/target.h"
#include "differ/special_sections.h"
#include "elf/writer.h"
#include "update/format.h"

namespace ls::kernel {
namespace {

constexpr size_t kModuleNameLen = 56;   // MODULE_NAME_LEN on 64-bit
constexpr size_t kMaxReported = 40;

uint64_t align_up(uint64_t v, uint64_t a) { return a <= 1 ? v : (v + a - 1) / a * a; }

// `.modinfo` of the skeleton with its name= entry replaced.
Result<std::vector<uint8_t>> rename_modinfo(const elf::Section& s, const std::string& name, std::string& old) {
  std::vector<uint8_t> out;
  std::string all(reinterpret_cast<const char*>(s.bytes.data()), s.bytes.size());
  size_t at = 0;
  while (at < all.size()) {
    size_t end = all.find('\0', at);
    if (end == std::string::npos) end = all.size();
    std::string entry = all.substr(at, end - at);
    at = end + 1;
    if (entry.empty()) continue;
    if (entry.starts_with("name=")) {
      old = entry.substr(5);
      entry = "name=" + name;
    }
    out.insert(out.end(), entry.begin(), entry.end());
    out.push_back(0);
  }
  if (old.empty()) return error("the skeleton module's .modinfo has no name= entry");
  return out;
}

// The steps of build_module, in its order, sharing the module being written. Failures
// of the identity and of the sections stop at once (the skeleton or the update is not
// what this writer expects); those of symbols and relocations are gathered, so that one
// message names every run symbol the resolver lacks and every relocation refused.
class ModuleWriter {
 public:
  ModuleWriter(Context& ctx, const update::Contents& u, std::string name)
      : ctx_(ctx), u_(u), f_(u.file), w_(u.file.machine()) {
    m_.name = std::move(name);
  }

  Status take_identity(const elf::Object& skel);
  Status merge_sections(const std::vector<uint32_t>& loaded);
  void name_definitions();
  void relocate(const std::vector<uint32_t>& loaded, const load::Bindings& own, const load::SymbolResolver& resolver);
  Result<ModuleFile> finish();

 private:
  std::optional<elf::SymbolRef> run_symbol(uint32_t sym, const load::SymbolResolver& resolver);

  Context& ctx_;
  const update::Contents& u_;
  const elf::Object& f_;   // u_.file
  ModuleFile m_;
  elf::Writer w_;
  std::vector<std::string> errors_;
  std::map<uint32_t, std::pair<uint32_t, uint64_t>> at_;   // update section -> (out section, offset)
  std::map<uint32_t, elf::SymbolRef> defined_;             // update symbol -> its named definition
  std::map<uint32_t, elf::SymbolRef> absolute_;            // run symbol -> its absolute symbol
  std::set<uint32_t> unresolved_;
  std::map<uint32_t, std::vector<elf::NewReloc>> relocs_;  // out section -> its relocations
};

// The skeleton's identity: .modinfo (renamed), struct module (renamed), __versions.
Status ModuleWriter::take_identity(const elf::Object& skel) {
  const std::string& name = m_.name;
  const elf::Section* modinfo = skel.find_section(".modinfo");
  const elf::Section* this_module = skel.find_section(".gnu.linkonce.this_module");
  if (!modinfo || !this_module) return error("{}: not a kernel module (no .modinfo or struct module)", skel.path());
  if (!this_module->relocs.empty())
    return error("{}: its struct module has relocations (an init or exit function); the skeleton must have none",
                 skel.path());
  std::string old_name;
  auto info = rename_modinfo(*modinfo, name, old_name);
  if (!info) return info.status();
  {
    elf::NewSection o;
    o.name = ".modinfo";
    o.flags = SHF_ALLOC;
    o.data = std::move(*info);
    w_.add_section(std::move(o));
  }
  {
    elf::NewSection o;
    o.name = this_module->name;
    o.flags = this_module->flags;
    o.align = std::max<uint64_t>(this_module->align, 1);
    o.data.assign(this_module->bytes.begin(), this_module->bytes.end());
    std::string needle = old_name + std::string(1, '\0');
    auto it = std::search(o.data.begin(), o.data.end(), needle.begin(), needle.end());
    auto at = static_cast<size_t>(it - o.data.begin());
    if (it == o.data.end() || at + kModuleNameLen > o.data.size())
      return error("{}: the name '{}' is not in its struct module", skel.path(), old_name);
    std::fill(o.data.begin() + at, o.data.begin() + at + kModuleNameLen, 0);
    std::copy(name.begin(), name.end(), o.data.begin() + at);
    w_.add_section(std::move(o));
  }
  if (const elf::Section* v = skel.find_section("__versions")) {
    elf::NewSection o;
    o.name = v->name;
    o.flags = v->flags;
    o.align = std::max<uint64_t>(v->align, 1);
    o.data.assign(v->bytes.begin(), v->bytes.end());
    w_.add_section(std::move(o));
  }
  return {};
}

// The update's sections, merged by name (the module loader takes the first of a name).
Status ModuleWriter::merge_sections(const std::vector<uint32_t>& loaded) {
  std::map<std::string, uint32_t> by_name;
  for (uint32_t i : loaded) {
    const elf::Section& s = f_.section(i);
    std::string out_name(update::original_name(s.name, update::kPostPrefix));
    if (out_name.empty() || out_name == ".modinfo" || out_name == ".gnu.linkonce.this_module" ||
        out_name == "__versions")
      return error("{}: would be the module's own {}", f_.where(s), out_name.empty() ? "(unnamed)" : out_name);
    auto [it, fresh] = by_name.emplace(out_name, w_.section_count());
    if (fresh) {
      elf::NewSection o;
      o.name = out_name;
      o.type = s.nobits() ? SHT_NOBITS : SHT_PROGBITS;
      o.flags = elf::copied_flags(s.flags);
      o.entsize = s.entsize;
      w_.add_section(std::move(o));
    }
    elf::NewSection& o = w_.section(it->second);
    const diff::SpecialSection* row = diff::find_special(out_name);
    bool table = std::any_of(u_.special_sections.begin(), u_.special_sections.end(),
                             [&](const auto& t) { return t.first == i; });
    if (table && (!row || row->policy != diff::SpecialPolicy::Carry))
      return error("{}: a kernel table with no description of what the kernel does with it", f_.where(s));
    // objtool writes some tables byte-aligned; in the module each entry is aligned as
    // its fields are, as vmlinux's linker script aligns them.
    if (row && row->entry_size)
      o.align = std::max<uint64_t>(o.align, row->entry_size % 8 == 0 ? 8 : row->entry_size % 4 == 0 ? 4 : 2);
    if (o.type == SHT_NOBITS && !s.nobits()) return error("{}: data in a section of no bits ({})", f_.where(s), out_name);
    o.align = std::max<uint64_t>(o.align, std::max<uint64_t>(s.align, 1));
    uint64_t off = align_up(o.size, s.align);
    if (!s.nobits()) {
      o.data.resize(off, 0);
      o.data.insert(o.data.end(), s.bytes.begin(), s.bytes.end());
    } else if (o.type != SHT_NOBITS) {
      o.data.resize(off + s.size, 0);   // zeroed data merged into a section with contents
    }
    o.size = off + s.size;
    at_[i] = {it->second, off};
    m_.placed[i] = {out_name, off};
  }
  return {};
}

// Named definitions keep their names: kallsyms lists them under the module.
void ModuleWriter::name_definitions() {
  for (const elf::Symbol& s : f_.symbols()) {
    if (!s.in_section() || !at_.count(s.section) || s.name.empty() || s.type == elf::SymbolType::Section ||
        s.type == elf::SymbolType::File)
      continue;
    auto [out, off] = at_.at(s.section);
    elf::NewSymbol o;
    o.name = s.name;
    o.type = elf::st_type(s.type);
    o.bind = elf::st_bind(s.binding);
    o.shndx = static_cast<uint16_t>(out);
    o.value = off + s.value;
    o.size = s.size;
    defined_[s.index] = w_.add_symbol(std::move(o));
  }
}

// A run symbol: absolute, with the value matching or kallsyms gave.
std::optional<elf::SymbolRef> ModuleWriter::run_symbol(uint32_t sym, const load::SymbolResolver& resolver) {
  if (auto it = absolute_.find(sym); it != absolute_.end()) return it->second;
  if (unresolved_.count(sym)) return std::nullopt;
  auto v = resolver.resolve(sym, View::Address);
  if (!v) {
    unresolved_.insert(sym);
    errors_.push_back(v.status().message());
    return std::nullopt;
  }
  elf::NewSymbol o;
  o.name = f_.symbol(sym).name;
  o.bind = STB_GLOBAL;
  o.shndx = SHN_ABS;
  o.value = v->value();
  return absolute_[sym] = w_.add_symbol(std::move(o));
}

// Each relocation moved along with its section, against the module's own definition,
// a section symbol, or a run symbol's absolute value; only types the kernel applies.
void ModuleWriter::relocate(const std::vector<uint32_t>& loaded, const load::Bindings& own,
                            const load::SymbolResolver& resolver) {
  auto& errors = errors_;
  auto& w = w_;
  const elf::Object& f = f_;
  auto arch = arch::checked_target(f.machine());   // which relocations the kernel's loader applies
  if (!arch) {
    errors.push_back(arch.status().message());
    return;
  }
  for (uint32_t i : loaded) {
    const elf::Section& s = f.section(i);
    auto [out, off] = at_.at(i);
    for (const elf::Reloc& r : s.relocs) {
      std::string where = f.where(s, static_cast<int64_t>(r.offset));
      std::optional<unsigned> applies = (*arch)->kernel_module_reloc_width(r.type);
      if (!applies) {
        errors.push_back(fmt::format("{}: relocation type {} ({}) is not one the kernel's module loader applies",
                                     where, r.type, elf::to_string(r.kind)));
        continue;
      }
      if (r.kind == elf::RelocKind::None) continue;
      const unsigned width = *applies;
      uint32_t sym = r.symbol;
      if (auto b = own.bound.find(sym); b != own.bound.end()) sym = b->second;
      const elf::Symbol& t = f.symbol(sym);
      int64_t addend = r.addend;
      std::optional<elf::SymbolRef> ref;
      if (sym == 0) {
        ref = elf::SymbolRef{};
      } else if (t.in_section()) {
        auto ts = at_.find(t.section);
        if (ts == at_.end()) {
          errors.push_back(fmt::format("{}: refers to {} in {}, which is not loaded", where, t.name,
                                       f.section(t.section).name));
          continue;
        }
        if (t.type == elf::SymbolType::Section || !defined_.count(sym)) {
          ref = w.section_symbol(ts->second.first);
          addend += static_cast<int64_t>(ts->second.second + (t.type == elf::SymbolType::Section ? 0 : t.value));
        } else {
          ref = defined_.at(sym);
        }
      } else if (t.section == elf::kAbs) {
        errors.push_back(fmt::format("{}: refers to absolute symbol {}", where, t.name));
        continue;
      } else {
        ref = run_symbol(sym, resolver);
        if (!ref) continue;
      }
      elf::NewSection& o = w.section(out);
      uint64_t field = off + r.offset;
      if (o.type != SHT_NOBITS) {
        if (field + width > o.data.size()) {
          errors.push_back(fmt::format("{}: relocation past the section's end", where));
          continue;
        }
        // The kernel writes only into zeroed fields; the addend travels in the relocation.
        std::fill(o.data.begin() + field, o.data.begin() + field + width, 0);
      }
      relocs_[out].push_back({field, r.type, *ref, addend});
    }
  }
}

// Every gathered failure at once, else the module's bytes; the relocation sections
// follow every section they apply to.
Result<ModuleFile> ModuleWriter::finish() {
  if (!errors_.empty()) {
    size_t n = errors_.size();
    if (n > kMaxReported) errors_.resize(kMaxReported);
    return error("cannot write the update's kernel module:\n  {}{}", fmt::join(errors_, "\n  "),
                 n > kMaxReported ? fmt::format("\n  ... and {} more", n - kMaxReported) : "");
  }
  for (auto& [out, list] : relocs_) w_.add_rela(out, std::move(list));
  auto image = w_.write();
  if (!image) return error("cannot write the update's kernel module: {}", image.status().message());
  m_.bytes = std::move(image).value();
  ctx_.note(fmt::format("module {}: {} bytes, {} sections, {} run symbols", m_.name, m_.bytes.size(),
                        w_.section_count() + 3, absolute_.size()));
  return std::move(m_);
}

// The skeleton module the update carries, read through the ELF layer.
Result<elf::Object> skeleton_of(const update::Contents& u) {
  const elf::Object& f = u.file;
  const elf::Section* skel = f.find_section(update::kKernelModuleSection);
  if (!skel)
    return error("{}: carries no skeleton kernel module ({}); make the update again with this version of "
                 "create --kernel",
                 f.path(), update::kKernelModuleSection);
  return elf::Object::from_memory(std::vector<uint8_t>(skel->bytes.begin(), skel->bytes.end()),
                                  f.path() + ":" + std::string(update::kKernelModuleSection));
}

// What goes into the module: the post sections and every kernel table the update carries.
std::vector<uint32_t> module_sections(const update::Contents& u) {
  std::vector<uint32_t> loaded = u.post_sections;
  for (const auto& [index, table] : u.special_sections) loaded.push_back(index);
  std::sort(loaded.begin(), loaded.end());
  loaded.erase(std::unique(loaded.begin(), loaded.end()), loaded.end());
  return loaded;
}

}  // namespace

std::string module_name(const std::string& id) { return "livesplice_" + id.substr(0, 16); }

Result<ModuleFile> build_module(Context& ctx, const update::Contents& u, const load::SymbolResolver& resolver,
                                const std::string& name) {
  if (name.size() >= kModuleNameLen) return error("module name '{}' is too long", name);
  auto skel = skeleton_of(u);
  if (!skel) return skel.status();
  std::vector<uint32_t> loaded = module_sections(u);
  // Loadable as the loader sees sections, and the update's own globals bound: the
  // kernel's module loader does the rest of what a linker does.
  auto own = load::check(u, loaded);
  if (!own) return own.status();

  ModuleWriter w(ctx, u, name);
  LS_TRY(w.take_identity(*skel));
  LS_TRY(w.merge_sections(loaded));
  w.name_definitions();
  w.relocate(loaded, *own, resolver);
  return w.finish();
}

Result<LoadedModule> LoadedModule::load(const ModuleFile& m) {
  if (syscall(SYS_init_module, m.bytes.data(), m.bytes.size(), "") != 0) {
    int err = errno;
    return error("loading the update's module {}: init_module: {} (the kernel log says more)", m.name,
                 strerror(err));
  }
  return LoadedModule(m.name);
}

LoadedModule::~LoadedModule() {
  if (!name_.empty() && !keep_) (void)unload_module(name_);
}

Result<TargetAddr> LoadedModule::section(const std::string& section) const {
  std::string path = fmt::format("/sys/module/{}/sections/{}", name_, section);
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return error("{}: cannot read it (is sysfs mounted?)", path);
  try {
    return TargetAddr(std::stoull(text, nullptr, 16));
  } catch (const std::exception&) {
    return error("{}: '{}' is not an address", path, text);
  }
}

Status unload_module(const std::string& name) {
  if (syscall(SYS_delete_module, name.c_str(), O_NONBLOCK) != 0)
    return error("unloading module {}: delete_module: {}", name, strerror(errno));
  return {};
}

}  // namespace ls::kernel
