// Writing a relocatable ELF object (see writer.h).
#include "elf/writer.h"

#include <cstring>

#include "elf/relocs.h"

namespace ls::elf {
namespace {

void put(std::vector<uint8_t>& out, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

void align_to(std::vector<uint8_t>& out, uint64_t a) {
  if (a > 1) out.resize((out.size() + a - 1) / a * a, 0);
}

}  // namespace

unsigned char st_type(SymbolType t) {
  switch (t) {
    case SymbolType::Func: return STT_FUNC;
    case SymbolType::Object: return STT_OBJECT;
    case SymbolType::Tls: return STT_TLS;
    case SymbolType::Section: return STT_SECTION;
    case SymbolType::File: return STT_FILE;
    default: return STT_NOTYPE;
  }
}

unsigned char st_bind(Binding b) {
  switch (b) {
    case Binding::Local: return STB_LOCAL;
    case Binding::Weak: return STB_WEAK;
    default: return STB_GLOBAL;
  }
}

Writer::Writer(Machine machine) : machine_(machine) {
  sections_.emplace_back();
  locals_.emplace_back();
}

uint32_t Writer::add_section(NewSection s) {
  sections_.push_back(std::move(s));
  return section_count() - 1;
}

uint32_t Writer::add_rela(uint32_t target, std::vector<NewReloc> relocs) {
  NewSection rela;
  rela.name = ".rela" + sections_.at(target).name;
  rela.type = SHT_RELA;
  rela.flags = SHF_INFO_LINK;
  rela.align = 8;
  rela.entsize = sizeof(Elf64_Rela);
  rela.info = target;
  rela.relocs = std::move(relocs);
  return add_section(std::move(rela));
}

SymbolRef Writer::add_symbol(NewSymbol s) {
  auto& list = s.bind == STB_LOCAL ? locals_ : globals_;
  list.push_back(std::move(s));
  return {&list == &globals_, static_cast<uint32_t>(list.size() - 1)};
}

SymbolRef Writer::section_symbol(uint32_t i) {
  if (auto it = section_symbols_.find(i); it != section_symbols_.end()) return it->second;
  NewSymbol s;
  s.type = STT_SECTION;
  s.shndx = static_cast<uint16_t>(i);
  return section_symbols_[i] = add_symbol(std::move(s));
}

size_t Writer::relocation_count() const {
  size_t n = 0;
  for (const auto& s : sections_) n += s.relocs.size();
  return n;
}

Result<std::vector<uint8_t>> Writer::write() const {
  auto symtab_index = section_count();
  auto total = symtab_index + 3;   // .symtab, .strtab, .shstrtab
  if (total >= SHN_LORESERVE)
    return error("the object would need {} sections, more than ELF's {} without extended numbering", total,
                 SHN_LORESERVE);

  std::string strtab(1, '\0');
  std::vector<uint8_t> symdata;
  for (const auto* list : {&locals_, &globals_})
    for (const NewSymbol& s : *list) {
      Elf64_Sym e{};
      if (!s.name.empty()) {
        e.st_name = static_cast<uint32_t>(strtab.size());
        strtab += s.name;
        strtab += '\0';
      }
      e.st_info = ELF64_ST_INFO(s.bind, s.type);
      e.st_other = s.other;
      e.st_shndx = s.shndx;
      e.st_value = s.value;
      e.st_size = s.size;
      put(symdata, &e, sizeof e);
    }

  // Every section's header fields and bytes, the tables included.
  std::vector<const NewSection*> all;
  for (const auto& s : sections_) all.push_back(&s);
  NewSection symtab, str, shstr;
  symtab.name = ".symtab";
  symtab.type = SHT_SYMTAB;
  symtab.align = 8;
  symtab.entsize = sizeof(Elf64_Sym);
  symtab.link = symtab_index + 1;
  symtab.info = static_cast<uint32_t>(locals_.size());
  symtab.data = std::move(symdata);
  str.name = ".strtab";
  str.type = SHT_STRTAB;
  str.data.assign(strtab.begin(), strtab.end());
  shstr.name = ".shstrtab";
  shstr.type = SHT_STRTAB;
  shstr.data.push_back(0);
  std::vector<uint32_t> name_off(total, 0);
  for (auto* s : {&symtab, &str, &shstr}) all.push_back(s);
  for (uint32_t i = 1; i < total; ++i) {
    name_off[i] = static_cast<uint32_t>(shstr.data.size());
    shstr.data.insert(shstr.data.end(), all[i]->name.begin(), all[i]->name.end());
    shstr.data.push_back(0);
  }

  std::vector<uint8_t> out(sizeof(Elf64_Ehdr), 0);
  std::vector<Elf64_Shdr> headers(total);
  for (uint32_t i = 1; i < total; ++i) {
    const NewSection& s = *all[i];
    Elf64_Shdr& h = headers[i];
    align_to(out, s.align);
    h.sh_name = name_off[i];
    h.sh_type = s.type;
    h.sh_flags = s.flags;
    h.sh_offset = out.size();
    h.sh_link = s.type == SHT_RELA ? symtab_index : s.link;
    h.sh_info = s.info;
    h.sh_addralign = s.align;
    h.sh_entsize = s.entsize;
    if (s.type == SHT_NOBITS) {
      h.sh_size = s.size;
      continue;
    }
    put(out, s.data.data(), s.data.size());
    for (const NewReloc& r : s.relocs) {
      Elf64_Rela e{};
      e.r_offset = r.offset;
      e.r_info = ELF64_R_INFO(index(r.symbol), r.type);
      e.r_addend = r.addend;
      put(out, &e, sizeof e);
    }
    h.sh_size = out.size() - h.sh_offset;
  }
  align_to(out, 8);
  uint64_t shoff = out.size();
  put(out, headers.data(), headers.size() * sizeof(Elf64_Shdr));

  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_SYSV;
  eh.e_type = ET_REL;
  eh.e_machine = e_machine(machine_);
  eh.e_version = EV_CURRENT;
  eh.e_shoff = shoff;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = static_cast<uint16_t>(total);
  eh.e_shstrndx = static_cast<uint16_t>(total - 1);
  std::memcpy(out.data(), &eh, sizeof eh);
  return out;
}

}  // namespace ls::elf
