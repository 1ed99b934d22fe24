// What binutils says about an object, to compare with what the ELF layer reads: the
// rows of `readelf -SW`, `-sW` and `-rW`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lstest {

// `readelf -SW`, one row per section header.
struct ReadelfSection {
  uint32_t index = 0;
  std::string name;
  std::string type;       // PROGBITS, NOBITS, RELA, ...
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t entsize = 0;
  std::string flags;      // readelf's letters, sorted
  uint32_t link = 0;
  uint32_t info = 0;
  uint64_t align = 0;
};
std::vector<ReadelfSection> readelf_sections(const std::string& path);

// `readelf -sW`, the .symtab rows.
struct ReadelfSymbol {
  uint32_t index = 0;
  uint64_t value = 0;
  uint64_t size = 0;
  std::string type;       // NOTYPE, OBJECT, FUNC, SECTION, FILE, TLS, ...
  std::string bind;       // LOCAL, GLOBAL, WEAK
  std::string visibility; // DEFAULT, HIDDEN, ...
  std::string ndx;        // UND, ABS, COM or a number
  std::string name;
};
std::vector<ReadelfSymbol> readelf_symbols(const std::string& path);

// `readelf -rW`: relocations, grouped by the file offset of their SHT_RELA section.
struct ReadelfReloc {
  uint64_t offset = 0;
  uint32_t symbol = 0;
  uint32_t type = 0;
  std::string type_name;  // R_X86_64_PLT32, ...
  int64_t addend = 0;
};
std::map<uint64_t, std::vector<ReadelfReloc>> readelf_relocs(const std::string& path);

// Readelf's flag letters for SHF_* bits, sorted, so they compare with ReadelfSection::flags.
std::string flag_letters(uint64_t flags);

}  // namespace lstest
