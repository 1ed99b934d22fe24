// The ELF layer: a relocatable object read once into plain records.
//
// What is hard: inputs come from builds we do not control and from fuzzers, so every
// index (section, symbol, string, link) and every range is validated while loading;
// after load() the records are self-consistent and the rest of the program may index
// them freely. Relocations are converted here, once, into the arch-neutral RelocKind
// (through the machine's table, elf/relocs.h) so that the differ and the matcher never
// see R_X86_64_* numbers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"

namespace ls::elf {

enum class Machine { X86_64, AArch64 };

// What a relocation computes, independent of the architecture's numbering.
enum class RelocKind {
  None,
  Abs64,        // S + A, 64-bit
  Abs32,        // S + A, zero-extended 32-bit
  Abs32S,       // S + A, sign-extended 32-bit
  PcRel32,      // S + A - P
  PcRel64,
  Plt32,        // L + A - P (a call/jmp to a function)
  GotPcRel,     // G + GOT + A - P (incl. relaxable variants)
  GotOff64,
  GotPc32,
  TlsGd,        // general-dynamic TLS
  TlsLd,        // local-dynamic TLS
  DtpOff32,
  DtpOff64,
  GotTpOff,     // initial-exec TLS
  TpOff32,      // local-exec TLS
  TpOff64,
  Size32,
  Size64,
  Other,        // known to the arch but not to us; the differ refuses to reason about it
};
std::string_view to_string(RelocKind k);
bool is_pc_relative(RelocKind k);

struct Reloc {
  uint64_t offset = 0;     // within the section it applies to
  RelocKind kind = RelocKind::None;
  uint32_t type = 0;       // the raw arch number, kept for writing updates back out
  uint32_t symbol = 0;     // index into Object::symbols
  int64_t addend = 0;
  unsigned width = 0;      // bytes patched at offset
};

enum class SymbolType { NoType, Object, Func, Section, File, Tls, Other };
enum class Binding { Local, Global, Weak };

inline constexpr uint32_t kUndef = 0;
inline constexpr uint32_t kAbs = 0xfff1;
inline constexpr uint32_t kCommon = 0xfff2;

struct Symbol {
  uint32_t index = 0;
  std::string name;
  SymbolType type = SymbolType::NoType;
  Binding binding = Binding::Local;
  uint8_t visibility = 0;
  uint32_t section = kUndef;   // section index, or kUndef/kAbs/kCommon
  uint64_t value = 0;
  uint64_t size = 0;

  bool defined() const { return section != kUndef; }
  bool in_section() const { return section != kUndef && section < 0xff00; }
  bool local() const { return binding == Binding::Local; }
};

struct Section {
  uint32_t index = 0;
  std::string name;
  uint32_t type = 0;        // SHT_*
  uint64_t flags = 0;       // SHF_*
  uint64_t size = 0;
  uint64_t align = 0;
  uint64_t entsize = 0;
  uint32_t link = 0;
  uint32_t info = 0;
  Bytes bytes;                    // empty for SHT_NOBITS; points into the Object's image
  std::vector<Reloc> relocs;      // sorted by offset
  uint32_t rela_section = 0;      // index of the SHT_RELA section applying here, or 0

  bool alloc() const;
  bool exec() const;
  bool write() const;
  bool nobits() const;
  bool merge_strings() const;     // SHF_MERGE|SHF_STRINGS: literals, compared by content
  bool merge_constants() const;   // SHF_MERGE only: fixed-size constants
  bool tls() const;
  ByteView view(std::string_view file) const { return ByteView(bytes, file); }
};

class Object {
 public:
  // Reads and validates an ELF64 relocatable object. Throws ls::Error naming the file.
  static Object load(const std::string& path);
  static Object from_memory(std::vector<uint8_t> image, std::string name);

  const std::string& path() const { return path_; }
  Machine machine() const { return machine_; }
  const std::vector<Section>& sections() const { return sections_; }
  const std::vector<Symbol>& symbols() const { return symbols_; }
  const Section& section(uint32_t i) const { return sections_.at(i); }
  const Symbol& symbol(uint32_t i) const { return symbols_.at(i); }
  // The first STT_FILE symbol's name: the source file the object was compiled from.
  const std::string& source_file() const { return source_file_; }
  const std::vector<uint8_t>& image() const { return *image_; }

  // `file.o:(.text.foo)+0x12`
  std::string where(const Section& s, int64_t offset = -1) const;

  const Section* find_section(std::string_view name) const;
  const Symbol* find_symbol(std::string_view name) const;   // first defined match

 private:
  void parse();

  std::string path_;
  Machine machine_ = Machine::X86_64;
  // Shared so that copies of an Object keep their sections' byte windows valid.
  std::shared_ptr<const std::vector<uint8_t>> image_;
  std::vector<Section> sections_;
  std::vector<Symbol> symbols_;
  std::string source_file_;
};

}  // namespace ls::elf
