// Malformed inputs: a real object with one field broken at a time, truncated copies,
// and files that are not ELF64 relocatables at all. Each must be refused with an
// ls::Error that names the file; none may crash or be accepted.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <elf.h>
#include <functional>
#include <regex>

#include "base/diag.h"
#include "elf/object.h"
#include "support/readelf.h"
#include "support/support.h"

namespace ls::elf {
namespace {

using Bytes = std::vector<uint8_t>;
using lstest::TempDir;

const char* const kSource = R"(
extern int ext(int);
static int counter;
const char *name = "broken";
int f(int x) { counter += x; return ext(x) + counter + name[0]; }
int g(int x) { return f(x) * 2; }
)";

const char* const kName = "broken-input.o";

template <typename T>
T get(const Bytes& b, uint64_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

template <typename T>
void put(Bytes& b, uint64_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

// Just enough of an ELF reader to find the fields to break, independent of the one
// under test.
struct Layout {
  Elf64_Ehdr eh;
  std::vector<Elf64_Shdr> sh;

  explicit Layout(const Bytes& b) : eh(get<Elf64_Ehdr>(b, 0)) {
    for (unsigned i = 0; i < eh.e_shnum; i++)
      sh.push_back(get<Elf64_Shdr>(b, eh.e_shoff + i * sizeof(Elf64_Shdr)));
  }
  uint64_t shdr_offset(unsigned i) const { return eh.e_shoff + i * sizeof(Elf64_Shdr); }
  std::string name(const Bytes& b, unsigned i) const {
    return reinterpret_cast<const char*>(b.data() + sh[eh.e_shstrndx].sh_offset + sh[i].sh_name);
  }
  unsigned find(const Bytes& b, const std::string& n) const {
    for (unsigned i = 0; i < sh.size(); i++)
      if (name(b, i) == n) return i;
    throw std::runtime_error("no section " + n);
  }
  unsigned find_type(uint32_t type) const {
    for (unsigned i = 0; i < sh.size(); i++)
      if (sh[i].sh_type == type) return i;
    throw std::runtime_error("no section of type " + std::to_string(type));
  }
};

class ElfBrokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    good_ = new Bytes(lstest::read_bytes(
        lstest::compile_c(*dir_, "good", kSource, "-O2 -fPIC -ffunction-sections -fdata-sections")));
  }
  static void TearDownTestSuite() {
    delete good_;
    delete dir_;
  }

  // The input must be refused with an ls::Error naming it and, when `problem` is given,
  // saying what is wrong (an ECMAScript regex, searched case-insensitively). Returns the
  // message.
  static std::string expect_refused(const Bytes& bytes, const std::string& what,
                                    const std::string& problem = "") {
    try {
      Object::from_memory(bytes, kName);
    } catch (const ls::Error& e) {
      std::string msg = e.what();
      if (std::getenv("LIVESPLICE_SHOW_ERRORS")) std::fprintf(stderr, "%s -> %s\n", what.c_str(), msg.c_str());
      EXPECT_NE(msg.find(kName), std::string::npos)
          << what << ": the message does not name the file: " << msg;
      EXPECT_GT(msg.size(), std::strlen(kName) + 8) << what << ": the message says nothing: " << msg;
      if (!problem.empty()) {
        EXPECT_TRUE(std::regex_search(msg, std::regex(problem, std::regex::icase)))
            << what << ": the message does not say what is wrong (expected /" << problem
            << "/): " << msg;
      }
      return msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": threw a non-ls::Error exception: " << e.what();
      return {};
    }
    ADD_FAILURE() << what << ": the malformed object was accepted";
    return {};
  }

  // Either accepted or refused with an ls::Error: inputs that are odd but that a reader
  // may tolerate. Never a crash or another exception.
  static void expect_no_crash(const Bytes& bytes, const std::string& what) {
    try {
      Object::from_memory(bytes, kName);
    } catch (const ls::Error& e) {
      EXPECT_NE(std::string(e.what()).find(kName), std::string::npos) << what << ": " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": threw a non-ls::Error exception: " << e.what();
    }
  }

  static Bytes mutated(const std::function<void(Bytes&, const Layout&)>& f) {
    Bytes b = *good_;
    Layout l(b);
    f(b, l);
    return b;
  }

  static inline TempDir* dir_ = nullptr;
  static inline Bytes* good_ = nullptr;
};

TEST_F(ElfBrokenTest, TheUnbrokenObjectLoads) {
  Object o = Object::from_memory(*good_, kName);
  EXPECT_NE(o.find_symbol("f"), nullptr);
}

TEST_F(ElfBrokenTest, TruncatedAtEveryLength) {
  // The section header table is at the end, so every proper prefix lacks part of it.
  Layout l(*good_);
  ASSERT_GT(l.eh.e_shoff, 0u);
  for (size_t len = 0; len < good_->size(); len++) {
    Bytes b(good_->begin(), good_->begin() + static_cast<long>(len));
    expect_refused(b, "truncated to " + std::to_string(len) + " bytes");
    if (HasFailure()) break;
  }
}

TEST_F(ElfBrokenTest, SectionHeadersPastEof) {
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint64_t>(b, offsetof(Elf64_Ehdr, e_shoff), b.size());
                 }),
                 "e_shoff at EOF");
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint64_t>(b, offsetof(Elf64_Ehdr, e_shoff), b.size() - 10);
                 }),
                 "e_shoff 10 bytes before EOF");
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint64_t>(b, offsetof(Elf64_Ehdr, e_shoff), ~uint64_t{0} - 0x20);
                 }),
                 "e_shoff near 2^64");
}

// Known problem, reported to the ELF layer's owner: when the section header table lies
// (partly) outside the file, libelf reports zero sections and the reader says
// "no sections" instead of naming the problem. Enable once fixed.
TEST_F(ElfBrokenTest, SectionHeaderTableOutsideFileIsNamed) {
  const char* problem = "section header|outside the file|truncated|past the end";
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint64_t>(b, offsetof(Elf64_Ehdr, e_shoff), b.size() - 10);
                 }),
                 "e_shoff 10 bytes before EOF", problem);
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shnum), l.eh.e_shnum + 1);
                 }),
                 "e_shnum one too many", problem);
  Bytes cut(good_->begin(), good_->end() - 1);
  expect_refused(cut, "last byte missing", problem);
}

TEST_F(ElfBrokenTest, TooManySections) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shnum), l.eh.e_shnum + 1);
                 }),
                 "e_shnum one too many");
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shnum), 0xfeff);
                 }),
                 "e_shnum 0xfeff");
}

TEST_F(ElfBrokenTest, SectionNameTableOutOfRange) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shstrndx), l.eh.e_shnum + 3);
                 }),
                 "e_shstrndx out of range", "section.name table|shstrndx");
}

TEST_F(ElfBrokenTest, SectionNamePastStringTable) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".text.f");
                   put<uint32_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_name), 0x7fffff);
                 }),
                 "sh_name past .shstrtab", "name");
}

TEST_F(ElfBrokenTest, SectionDataPastEof) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".text.f");
                   put<uint64_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_offset), b.size() + 16);
                 }),
                 "sh_offset past EOF", "outside the file|past the end|truncated");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".text.f");
                   put<uint64_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_size), b.size());
                 }),
                 "sh_size past EOF", "outside the file|past the end|truncated");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".text.f");
                   put<uint64_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_size),
                                 ~uint64_t{0} - l.sh[i].sh_offset + 2);
                 }),
                 "sh_offset + sh_size wraps around", "outside the file|past the end|overflow");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find_type(SHT_SYMTAB);
                   put<uint64_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_size), b.size() * 24);
                 }),
                 "symbol table past EOF", "outside the file|past the end|truncated");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".rela.text.f");
                   put<uint64_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_offset), b.size() - 8);
                 }),
                 "relocation section past EOF", "outside the file|past the end|truncated");
}

TEST_F(ElfBrokenTest, LinkOutOfRange) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find_type(SHT_SYMTAB);
                   put<uint32_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_link), l.eh.e_shnum + 5);
                 }),
                 ".symtab sh_link out of range", "link");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".rela.text.f");
                   put<uint32_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_link), 999);
                 }),
                 ".rela sh_link out of range", "link");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned i = l.find(b, ".rela.text.f");
                   put<uint32_t>(b, l.shdr_offset(i) + offsetof(Elf64_Shdr, sh_info), 999);
                 }),
                 ".rela sh_info out of range", "applies to|sh_info|does not exist");
}

TEST_F(ElfBrokenTest, SymbolSectionIndexOutOfRange) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned s = l.find_type(SHT_SYMTAB);
                   // The last symbol is global and defined or undefined; either way give it
                   // a section that does not exist.
                   uint64_t last = l.sh[s].sh_offset + l.sh[s].sh_size - sizeof(Elf64_Sym);
                   put<uint16_t>(b, last + offsetof(Elf64_Sym, st_shndx), l.eh.e_shnum + 7);
                 }),
                 "st_shndx out of range", "section");
}

TEST_F(ElfBrokenTest, SymbolNamePastStringTable) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned s = l.find_type(SHT_SYMTAB);
                   uint64_t last = l.sh[s].sh_offset + l.sh[s].sh_size - sizeof(Elf64_Sym);
                   put<uint32_t>(b, last + offsetof(Elf64_Sym, st_name),
                                 static_cast<uint32_t>(l.sh[l.sh[s].sh_link].sh_size + 100));
                 }),
                 "st_name past .strtab", "name|string");
}

TEST_F(ElfBrokenTest, UnterminatedStringTable) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned s = l.find_type(SHT_SYMTAB);
                   const Elf64_Shdr& str = l.sh[l.sh[s].sh_link];
                   // Overwrite the table's final NUL and point the last symbol at its last
                   // name, which now runs off the end.
                   b[str.sh_offset + str.sh_size - 1] = 'x';
                   uint64_t last = l.sh[s].sh_offset + l.sh[s].sh_size - sizeof(Elf64_Sym);
                   put<uint32_t>(b, last + offsetof(Elf64_Sym, st_name),
                                 static_cast<uint32_t>(str.sh_size - 2));
                 }),
                 "unterminated .strtab", "string|unterminated");
}

TEST_F(ElfBrokenTest, RelocationSymbolOutOfRange) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned r = l.find(b, ".rela.text.f");
                   auto rela = get<Elf64_Rela>(b, l.sh[r].sh_offset);
                   rela.r_info = ELF64_R_INFO(100000, ELF64_R_TYPE(rela.r_info));
                   put(b, l.sh[r].sh_offset, rela);
                 }),
                 "relocation symbol out of range", "symbol");
}

TEST_F(ElfBrokenTest, RelocationOffsetPastSection) {
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned r = l.find(b, ".rela.text.f");
                   auto rela = get<Elf64_Rela>(b, l.sh[r].sh_offset);
                   rela.r_offset = l.sh[l.sh[r].sh_info].sh_size + 0x100;
                   put(b, l.sh[r].sh_offset, rela);
                 }),
                 "relocation offset past its section", "past the end|outside");
  expect_refused(mutated([](Bytes& b, const Layout& l) {
                   unsigned r = l.find(b, ".rela.text.f");
                   auto rela = get<Elf64_Rela>(b, l.sh[r].sh_offset);
                   // A 4-byte field starting two bytes before the end.
                   rela.r_offset = l.sh[l.sh[r].sh_info].sh_size - 2;
                   put(b, l.sh[r].sh_offset, rela);
                 }),
                 "relocation field straddling the end of its section", "past the end|outside");
}

TEST_F(ElfBrokenTest, NotElf) {
  std::string text = "this is not an object file\n";
  expect_refused(Bytes(text.begin(), text.end()), "text file", "not an ELF");
  expect_refused(Bytes{}, "empty file", "not an ELF|empty|truncated");
  expect_refused(Bytes{0x7f, 'E', 'L'}, "three bytes of magic", "not an ELF|truncated");
  expect_refused(mutated([](Bytes& b, const Layout&) { b[1] = 'X'; }), "bad magic", "not an ELF");
}

TEST_F(ElfBrokenTest, Elf32) {
  // A minimal, well-formed ELF32 relocatable header for i386 and nothing else.
  Bytes b(sizeof(Elf32_Ehdr), 0);
  Elf32_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_REL;
  eh.e_machine = EM_386;
  eh.e_version = EV_CURRENT;
  eh.e_ehsize = sizeof(Elf32_Ehdr);
  eh.e_shentsize = sizeof(Elf32_Shdr);
  put(b, 0, eh);
  expect_refused(b, "ELF32 i386 header", "64-bit|ELFCLASS|32-bit");
  // And a real ELF64 object relabelled as ELF32.
  expect_refused(mutated([](Bytes& b, const Layout&) { b[EI_CLASS] = ELFCLASS32; }),
                 "ELF64 object claiming to be ELF32", "64-bit|ELFCLASS|32-bit");
}

TEST_F(ElfBrokenTest, BigEndian) {
  expect_refused(mutated([](Bytes& b, const Layout&) { b[EI_DATA] = ELFDATA2MSB; }),
                 "big-endian flag", "endian");
}

TEST_F(ElfBrokenTest, UnsupportedMachine) {
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint16_t>(b, offsetof(Elf64_Ehdr, e_machine), EM_SPARCV9);
                 }),
                 "SPARC v9 machine", "machine");
}

TEST_F(ElfBrokenTest, ExecutableAndSharedLibrary) {
  TempDir dir;
  std::string c = dir / "main.c";
  lstest::write_bytes(c, Bytes(kSource, kSource + std::strlen(kSource)));
  {
    std::string src = "int ext(int x) { return x; }\nint main(void) { return 0; }\n";
    lstest::write_bytes(dir / "ext.c", Bytes(src.begin(), src.end()));
  }
  lstest::sh_stdout("cd " + lstest::quote(dir.path()) +
                    " && gcc -O2 -o prog main.c ext.c && gcc -O2 -shared -fPIC -o lib.so main.c ext.c");
  for (const char* f : {"prog", "lib.so"}) {
    SCOPED_TRACE(f);
    expect_refused(lstest::read_bytes(dir / f), std::string("linked file ") + f, "relocatable");
  }
  // Through load() too: the message names the path.
  try {
    Object::load(dir / "prog");
    ADD_FAILURE() << "an executable was accepted";
  } catch (const ls::Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "prog"), std::string::npos) << e.what();
  }
  // And e_type alone changed to ET_EXEC on a relocatable.
  expect_refused(mutated([](Bytes& b, const Layout&) {
                   put<uint16_t>(b, offsetof(Elf64_Ehdr, e_type), ET_EXEC);
                 }),
                 "e_type ET_EXEC", "relocatable");
}

TEST_F(ElfBrokenTest, MissingFile) {
  TempDir dir;
  std::string path = dir / "does-not-exist.o";
  try {
    Object::load(path);
    ADD_FAILURE() << "loading a missing file succeeded";
  } catch (const ls::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// Odd but not necessarily invalid: the reader may accept these or refuse them with an
// ls::Error, but must never crash.
TEST_F(ElfBrokenTest, OddInputsDoNotCrash) {
  expect_no_crash(mutated([](Bytes& b, const Layout&) {
                    put<uint16_t>(b, offsetof(Elf64_Ehdr, e_shentsize), 12);
                  }),
                  "e_shentsize 12");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned s = l.find_type(SHT_SYMTAB);
                    put<uint64_t>(b, l.shdr_offset(s) + offsetof(Elf64_Shdr, sh_entsize), 0);
                  }),
                  "symtab sh_entsize 0");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned s = l.find_type(SHT_SYMTAB);
                    put<uint64_t>(b, l.shdr_offset(s) + offsetof(Elf64_Shdr, sh_size),
                                  l.sh[s].sh_size - 5);
                  }),
                  "symtab size not a multiple of its entry size");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned r = l.find(b, ".rela.text.f");
                    put<uint64_t>(b, l.shdr_offset(r) + offsetof(Elf64_Shdr, sh_entsize), 0);
                  }),
                  "rela sh_entsize 0");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned r = l.find(b, ".rela.text.f");
                    put<uint32_t>(b, l.shdr_offset(r) + offsetof(Elf64_Shdr, sh_info), r);
                  }),
                  "rela applying to itself");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned r = l.find(b, ".rela.text.f");
                    put<uint32_t>(b, l.shdr_offset(r) + offsetof(Elf64_Shdr, sh_info), 0);
                  }),
                  "rela applying to section 0");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned r = l.find(b, ".rela.text.f");
                    unsigned t = l.find(b, ".text.f");
                    put<uint32_t>(b, l.shdr_offset(r) + offsetof(Elf64_Shdr, sh_link), t);
                  }),
                  "rela linked to a section that is not a symbol table");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned r = l.find(b, ".rela.text.f");
                    auto rela = get<Elf64_Rela>(b, l.sh[r].sh_offset);
                    rela.r_info = ELF64_R_INFO(ELF64_R_SYM(rela.r_info), 250);
                    put(b, l.sh[r].sh_offset, rela);
                  }),
                  "unknown relocation type");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned t = l.find(b, ".text.f");
                    put<uint32_t>(b, l.shdr_offset(t) + offsetof(Elf64_Shdr, sh_type), SHT_NOBITS);
                  }),
                  "code section turned NOBITS under its relocations");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    unsigned s = l.find_type(SHT_SYMTAB);
                    put<uint32_t>(b, l.shdr_offset(s) + offsetof(Elf64_Shdr, sh_info), 0xffffff);
                  }),
                  "symtab sh_info (first global) out of range");
  expect_no_crash(mutated([](Bytes& b, const Layout& l) {
                    put<uint16_t>(b, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
                    (void)l;
                  }),
                  "x86-64 object relabelled AArch64");
}

}  // namespace
}  // namespace ls::elf
