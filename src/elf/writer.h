// Writing a relocatable ELF object (ET_REL, x86-64): the one place livesplice lays out
// an ELF file — the update (update/writer.cc) and the kernel module apply --kernel
// builds from it (kernel/module.cc). Callers decide which sections and symbols there
// are; this knows only ELF.
//
// What is hard is symbol numbering. ELF wants every local symbol before the first
// global, but callers add symbols in the order their own logic meets them, and refer to
// a symbol (from a relocation, from a manifest) long before the table is complete. So a
// symbol is named by a SymbolRef (which list, and its place there); index() turns it
// into the final index once no more symbols will be added.
//
// The layout is hand-written, not libelf's: it is fixed and small (sections in the order
// added, each at its alignment; .symtab, .strtab, .shstrtab last; section headers at the
// end), and writing it directly keeps the output deterministic byte for byte.
#pragma once

#include <elf.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "elf/object.h"

namespace ls::elf {

// A symbol of the object being written. The default is the null symbol (index 0).
struct SymbolRef {
  bool global = false;    // STB_GLOBAL or STB_WEAK: numbered after every local
  uint32_t index = 0;     // place in its list
};

struct NewSymbol {
  std::string name;
  unsigned char bind = STB_LOCAL;
  unsigned char type = STT_NOTYPE;
  unsigned char other = 0;        // visibility
  uint16_t shndx = SHN_UNDEF;     // a section index of this object, or SHN_ABS...
  uint64_t value = 0;
  uint64_t size = 0;
};

struct NewReloc {
  uint64_t offset = 0;
  uint32_t type = 0;              // the machine's number (elf/relocs.h)
  SymbolRef symbol;
  int64_t addend = 0;
};

struct NewSection {
  std::string name;
  uint32_t type = SHT_PROGBITS;
  uint64_t flags = 0;
  uint64_t align = 1;
  uint64_t entsize = 0;
  uint64_t size = 0;              // SHT_NOBITS only; any other section is as long as its data
  uint32_t link = 0;
  uint32_t info = 0;
  std::vector<uint8_t> data;
  std::vector<NewReloc> relocs;   // SHT_RELA only (add_rela); encoded by write()
};

// ELF's numbers for the reader's symbol types and bindings.
unsigned char st_type(SymbolType t);
unsigned char st_bind(Binding b);

// The flags of a section copied alone into a new object, less those that name other
// sections of its old one (its group, link-order and info-link).
inline uint64_t copied_flags(uint64_t flags) {
  return flags & ~static_cast<uint64_t>(SHF_GROUP | SHF_LINK_ORDER | SHF_INFO_LINK);
}

class Writer {
 public:
  explicit Writer(Machine machine);   // the null section and the null symbol; e_machine

  // Adds a section after those added so far; returns its index.
  uint32_t add_section(NewSection s);
  // Adds `.rela<name of target>` applying to section `target`, with `relocs`.
  uint32_t add_rela(uint32_t target, std::vector<NewReloc> relocs = {});
  NewSection& section(uint32_t i) { return sections_.at(i); }
  const NewSection& section(uint32_t i) const { return sections_.at(i); }
  uint32_t section_count() const { return static_cast<uint32_t>(sections_.size()); }

  SymbolRef add_symbol(NewSymbol s);
  // Section `i`'s STT_SECTION symbol, added on first use.
  SymbolRef section_symbol(uint32_t i);
  // A symbol's index in the written table: final once every symbol has been added.
  uint32_t index(SymbolRef r) const {
    return r.global ? static_cast<uint32_t>(locals_.size()) + r.index : r.index;
  }
  size_t relocation_count() const;

  // The object file: the sections added, then .symtab, .strtab and .shstrtab (each RELA
  // section linked to .symtab). Fails if the sections would need extended numbering.
  Result<std::vector<uint8_t>> write() const;

 private:
  Machine machine_;
  std::vector<NewSection> sections_;
  std::vector<NewSymbol> locals_, globals_;
  std::map<uint32_t, SymbolRef> section_symbols_;
};

}  // namespace ls::elf
