// libFuzzer target for the ELF reader: any bytes must either load into self-consistent
// records or be refused with ls::Error. A crash, a sanitizer report, any other exception,
// or records that break the reader's promises are findings.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "base/diag.h"
#include "elf/object.h"

namespace {

[[noreturn]] void broken_promise(const char* what) {
  std::fprintf(stderr, "elf_object_fuzzer: loaded object breaks the reader's contract: %s\n", what);
  std::abort();
}

// object.h: "after load() the records are self-consistent and the rest of the program
// may index them freely". Check what the differ relies on.
void check(const ls::elf::Object& o) {
  const auto& sections = o.sections();
  const auto& symbols = o.symbols();
  for (size_t i = 0; i < sections.size(); i++) {
    const auto& s = sections[i];
    if (s.index != i) broken_promise("section index differs from its position");
    // Section 0 is the reserved null entry; its fields are not links.
    if (i != 0 && s.type != 0 && s.link >= sections.size()) broken_promise("sh_link out of range");
    if (i != 0 && s.type != 0 && !s.nobits() && s.bytes.size() != s.size)
      broken_promise("section bytes differ from its size");
    if (s.rela_section >= sections.size()) broken_promise("rela_section out of range");
    uint64_t last = 0;
    for (const auto& r : s.relocs) {
      if (r.symbol >= symbols.size()) broken_promise("relocation symbol out of range");
      if (r.offset > s.size || r.width > s.size - r.offset)
        broken_promise("relocation outside its section");
      if (r.offset < last) broken_promise("relocations not sorted by offset");
      last = r.offset;
      (void)o.where(s, static_cast<int64_t>(r.offset));
      (void)ls::elf::to_string(r.kind);
    }
  }
  for (size_t i = 0; i < symbols.size(); i++) {
    const auto& y = symbols[i];
    if (y.index != i) broken_promise("symbol index differs from its position");
    if (y.in_section() && y.section >= sections.size()) broken_promise("symbol section out of range");
  }
  (void)o.find_symbol("main");
  (void)o.find_section(".text");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ls::elf::Object o = ls::elf::Object::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.o");
    check(o);
  } catch (const ls::Error&) {
    // Refusing malformed input is the expected outcome.
  }
  return 0;
}
