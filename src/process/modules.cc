#include "process/modules.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <type_traits>

#include "elf/relocs.h"

namespace ls::proc {

namespace {

std::string basename_of(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += fmt::format("{:02x}", p[i]);
  return s;
}

// The slots of one relocation section that the dynamic loader fills with an address at
// load time (link addresses; the caller applies the bias): IRELATIVE ones by resolver,
// GLOB_DAT and JUMP_SLOT ones by the name of the dynamic symbol they import.
void read_dynamic_slots(Elf* elf, elf::Machine machine, Elf_Scn* scn, const GElf_Shdr& sh, Module& m) {
  Elf_Scn* symscn = elf_getscn(elf, sh.sh_link);
  GElf_Shdr symsh;
  if (!symscn || !gelf_getshdr(symscn, &symsh) || symsh.sh_type != SHT_DYNSYM) return;
  Elf_Data* rel = elf_getdata(scn, nullptr);
  Elf_Data* syms = elf_getdata(symscn, nullptr);
  if (!rel || !syms || sh.sh_entsize == 0) return;
  for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
    GElf_Rela r;
    if (!gelf_getrela(rel, static_cast<int>(i), &r)) continue;
    elf::DynamicSlot slot = elf::dynamic_slot(machine, GELF_R_TYPE(r.r_info));
    if (slot == elf::DynamicSlot::ResolverResult) {
      m.irelative_slots.emplace(TargetAddr(static_cast<uint64_t>(r.r_addend)), TargetAddr(r.r_offset));
    } else if (slot == elf::DynamicSlot::SymbolAddress) {
      GElf_Sym s;
      if (!gelf_getsym(syms, static_cast<int>(GELF_R_SYM(r.r_info)), &s)) continue;
      const char* name = elf_strptr(elf, symsh.sh_link, s.st_name);
      if (name && *name) m.import_slots.emplace(name, TargetAddr(r.r_offset));
    }
  }
}

// Reads symbols, build-id and the link address of the segment mapped at file offset
// `first_offset`. Returns false when the file is not a usable ELF.
bool read_elf(const std::string& file, uint64_t first_offset, Module& m, uint64_t& link_addr_of_first) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  bool ok = false;
  if (elf && elf_kind(elf) == ELF_K_ELF) {
    size_t phnum = 0;
    elf_getphdrnum(elf, &phnum);
    bool found = false;
    for (size_t i = 0; i < phnum; ++i) {
      GElf_Phdr ph;
      if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD) continue;
      uint64_t page_off = ph.p_offset & ~uint64_t{0xfff};
      if (!found && page_off == first_offset) {
        link_addr_of_first = ph.p_vaddr & ~uint64_t{0xfff};
        found = true;
      }
    }
    GElf_Ehdr eh;
    std::optional<elf::Machine> machine = gelf_getehdr(elf, &eh) ? elf::machine_of(eh.e_machine) : std::nullopt;
    ok = found && machine;
    Elf_Scn* scn = nullptr;
    while ((scn = elf_nextscn(elf, scn)) != nullptr) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh)) continue;
      if (sh.sh_type == SHT_NOTE) {
        Elf_Data* d = elf_getdata(scn, nullptr);
        size_t off = 0, name_off, desc_off;
        GElf_Nhdr nh;
        while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0)
          if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
              std::memcmp(static_cast<char*>(d->d_buf) + name_off, "GNU", 4) == 0)
            m.build_id = hex(static_cast<uint8_t*>(d->d_buf) + desc_off, nh.n_descsz);
      }
      if (sh.sh_type == SHT_RELA) {
        if (machine) read_dynamic_slots(elf, *machine, scn, sh, m);
        continue;
      }
      if (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) continue;
      if (sh.sh_type == SHT_SYMTAB) m.has_symtab = true;
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (!d || sh.sh_entsize == 0) continue;
      size_t n = sh.sh_size / sh.sh_entsize;
      std::string file_group;
      for (size_t i = 0; i < n; ++i) {
        GElf_Sym s;
        if (!gelf_getsym(d, i, &s)) continue;
        const char* name = elf_strptr(elf, sh.sh_link, s.st_name);
        if (!name) continue;
        int type = GELF_ST_TYPE(s.st_info);
        if (type == STT_FILE) {
          file_group = name;
          continue;
        }
        if (s.st_shndx == SHN_UNDEF || (type != STT_FUNC && type != STT_OBJECT && type != STT_TLS &&
                                        type != STT_GNU_IFUNC && type != STT_NOTYPE))
          continue;
        if (*name == 0) continue;
        ModuleSymbol ms;
        ms.name = name;
        ms.address = TargetAddr(s.st_value);   // bias applied by the caller
        ms.size = s.st_size;
        ms.func = type == STT_FUNC || type == STT_GNU_IFUNC;
        ms.ifunc = type == STT_GNU_IFUNC;
        ms.local = GELF_ST_BIND(s.st_info) == STB_LOCAL;
        if (ms.local) ms.file = file_group;
        if (type == STT_TLS) continue;   // a TLS symbol's value is an offset, not an address
        m.symbols.push_back(std::move(ms));
      }
    }
  }
  if (elf) elf_end(elf);
  ::close(fd);
  return ok;
}

template <typename Key>
std::multimap<Key, TargetAddr> rebias(const std::multimap<Key, TargetAddr>& slots, int64_t bias, bool key_too) {
  std::multimap<Key, TargetAddr> out;
  for (const auto& [key, slot] : slots) {
    if constexpr (std::is_same_v<Key, TargetAddr>)
      out.emplace(key_too ? key + bias : key, slot + bias);
    else
      out.emplace(key, slot + bias);
  }
  return out;
}

bool inside(const Module& m, TargetAddr a) {
  for (const auto& r : m.exec)
    if (r.start <= a && a < r.end) return true;
  return false;
}

}  // namespace

Result<TargetAddr> resolved_ifunc(const Memory& mem, const std::vector<Module>& modules, const Module& owner,
                                  const std::string& name, TargetAddr resolver) {
  // A filled slot holds an address inside the owner's code other than the resolver; an
  // unfilled lazy JUMP_SLOT still points at its own module's PLT and is not taken.
  auto filled = [&](TargetAddr slot) -> std::optional<TargetAddr> {
    auto v = mem.read_value<uint64_t>(slot);
    if (!v || TargetAddr(*v) == resolver || !inside(owner, TargetAddr(*v))) return std::nullopt;
    return TargetAddr(*v);
  };
  auto [first, last] = owner.irelative_slots.equal_range(resolver);
  for (auto it = first; it != last; ++it)
    if (auto v = filled(it->second)) return *v;
  for (const auto& mod : modules) {
    auto [b, e] = mod.import_slots.equal_range(name);
    for (auto it = b; it != e; ++it)
      if (auto v = filled(it->second)) return *v;
  }
  return error("'{}' in {} is a GNU indirect function (IFUNC) and no slot in the process holds the implementation "
               "its resolver chose; the new code cannot be bound to it",
               name, owner.name);
}

std::vector<TargetAddr> Module::lookup(const std::string& name, bool local, const std::string& source_file) const {
  std::vector<TargetAddr> all, same_file;
  std::string want = basename_of(source_file);
  for (const auto& s : symbols) {
    if (s.name != name || s.local != local) continue;
    if (std::find(all.begin(), all.end(), s.address) == all.end()) all.push_back(s.address);
    if (local && !want.empty() && basename_of(s.file) == want) same_file.push_back(s.address);
  }
  return !same_file.empty() ? same_file : all;
}

std::vector<TargetAddr> Module::lookup_localized(const std::string& name) const {
  std::vector<TargetAddr> out;
  for (const auto& s : symbols)
    if (s.local && s.name == name && s.file.empty() && std::find(out.begin(), out.end(), s.address) == out.end())
      out.push_back(s.address);
  return out;
}

Result<std::vector<Module>> read_modules(pid_t pid, const std::vector<Mapping>& maps) {
  std::vector<Module> out;
  std::map<std::string, size_t> index;
  for (const auto& m : maps) {
    if (!m.file_backed()) continue;
    auto it = index.find(m.path);
    if (it == index.end()) {
      Module mod;
      mod.path = m.path;
      mod.name = basename_of(m.path);
      mod.span = m.range;
      // The first mapping of a file is at its lowest file offset; compute the bias there.
      std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.range.start.value(), m.range.end.value());
      uint64_t link = 0;
      if (!read_elf(via, m.file_offset, mod, link)) {
        mod.symbols.clear();
        mod.has_symtab = false;
        if (!read_elf(m.path, m.file_offset, mod, link)) continue;
      }
      mod.bias = static_cast<int64_t>(m.range.start.value() - link);
      for (auto& s : mod.symbols) s.address = TargetAddr(s.address.value() + mod.bias);
      mod.irelative_slots = rebias(mod.irelative_slots, mod.bias, true);
      mod.import_slots = rebias(mod.import_slots, mod.bias, false);
      index[m.path] = out.size();
      out.push_back(std::move(mod));
      it = index.find(m.path);
    }
    Module& mod = out[it->second];
    mod.span.start = std::min(mod.span.start, m.range.start);
    mod.span.end = std::max(mod.span.end, m.range.end);
    if (m.exec) mod.exec.push_back(m.range);
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const Module& m) { return m.exec.empty(); }), out.end());
  if (out.empty()) return error("process {}: no executable ELF mappings found", pid);
  return out;
}

const Module* find_module(const std::vector<Module>& modules, const std::string& name) {
  for (const auto& m : modules)
    if (m.name == name) return &m;
  return nullptr;
}

Status check_build_ids(Context& ctx, const std::vector<update::ManifestTarget>& targets,
                       const std::vector<Module>& modules) {
  for (const auto& t : targets) {
    if (t.kind != "executable" && t.kind != "shared-library") continue;
    const Module* mod = find_module(modules, t.name);
    if (!mod) continue;   // the update's object is in other binaries too; this one is not mapped
    if (mod->build_id.empty()) {
      ctx.note(fmt::format("{}: the mapped file has no build-id; run-pre matching alone decides", mod->path));
    } else if (!t.original_build_id.empty() && mod->build_id != t.original_build_id) {
      return Status::error(fmt::format("{}: build-id {} is not the one the update was made for ({} {}): this is "
                                       "another build of {}; nothing changed",
                                       mod->path, mod->build_id, t.name, t.original_build_id, t.path),
                           Exit::Unsafe);
    } else if (t.original_build_id.empty() && !t.pre_build_id.empty() && mod->build_id != t.pre_build_id) {
      ctx.warn(fmt::format("{}: build-id {} differs from the one create's own pre build made ({}); {} did not exist "
                           "before create, so run-pre matching decides",
                           mod->path, mod->build_id, t.pre_build_id, t.path));
    } else {
      ctx.note(fmt::format("{}: build-id {} as the update expects", mod->path, mod->build_id));
    }
  }
  return {};
}

}  // namespace ls::proc
