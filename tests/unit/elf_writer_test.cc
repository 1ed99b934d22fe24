// The ELF writer: objects written by elf::Writer read back with libelf (an independent
// reader), with our own reader, and with binutils.
#include <gtest/gtest.h>

#include <gelf.h>
#include <libelf.h>

#include <cstring>
#include <string>
#include <vector>

#include "elf/object.h"
#include "elf/writer.h"
#include "support/readelf.h"
#include "support/support.h"

namespace ls::elf {
namespace {

using lstest::TempDir;

// Text and data with relocations, a section of no bits, symbols added with locals and
// globals interleaved (as callers meet them), a section symbol asked for twice.
struct Sample {
  Writer w{Machine::X86_64};
  uint32_t text = 0, data = 0, bss = 0, rela_text = 0, rela_data = 0;
  SymbolRef text_sym, ext, counter, local_fn, abs;

  Sample() {
    NewSection t;
    t.name = ".text.f";
    t.flags = SHF_ALLOC | SHF_EXECINSTR;
    t.align = 16;
    t.data = {0xe8, 0, 0, 0, 0, 0xc3, 0x90, 0x90};   // call ext; ret
    text = w.add_section(std::move(t));
    rela_text = w.add_rela(text);
    NewSection d;
    d.name = ".data.counter";
    d.flags = SHF_ALLOC | SHF_WRITE;
    d.align = 8;
    d.data.assign(16, 0);
    data = w.add_section(std::move(d));
    NewSection b;
    b.name = ".bss.buf";
    b.type = SHT_NOBITS;
    b.flags = SHF_ALLOC | SHF_WRITE;
    b.align = 32;
    b.size = 4096;
    bss = w.add_section(std::move(b));

    ext = w.add_symbol({.name = "ext", .bind = STB_GLOBAL});
    text_sym = w.section_symbol(text);
    counter = w.add_symbol({.name = "counter", .bind = STB_GLOBAL, .type = STT_OBJECT, .other = STV_HIDDEN,
                            .shndx = static_cast<uint16_t>(data), .value = 0, .size = 8});
    local_fn = w.add_symbol({.name = "f", .type = STT_FUNC, .shndx = static_cast<uint16_t>(text), .size = 6});
    abs = w.add_symbol({.name = "run_thing", .bind = STB_WEAK, .shndx = SHN_ABS, .value = 0xffffffff81000000});
    EXPECT_EQ(w.section_symbol(text).index, text_sym.index);   // made once

    w.section(rela_text).relocs.push_back({1, R_X86_64_PLT32, ext, -4});
    rela_data = w.add_rela(data, {{0, R_X86_64_64, text_sym, 5}, {8, R_X86_64_64, abs, 0}});
  }
};

struct LibElf {
  std::vector<uint8_t> image;
  Elf* elf = nullptr;
  explicit LibElf(std::vector<uint8_t> bytes) : image(std::move(bytes)) {
    elf_version(EV_CURRENT);
    elf = elf_memory(reinterpret_cast<char*>(image.data()), image.size());
  }
  ~LibElf() { elf_end(elf); }
  GElf_Shdr shdr(size_t i) {
    GElf_Shdr h{};
    EXPECT_NE(gelf_getshdr(elf_getscn(elf, i), &h), nullptr) << elf_errmsg(-1);
    return h;
  }
  std::string section_name(size_t i) {
    size_t shstrndx = 0;
    EXPECT_EQ(elf_getshdrstrndx(elf, &shstrndx), 0);
    return elf_strptr(elf, shstrndx, shdr(i).sh_name);
  }
  Elf_Data* data(size_t i) { return elf_getdata(elf_getscn(elf, i), nullptr); }
};

TEST(ElfWriter, RoundTripThroughLibelf) {
  Sample s;
  auto bytes = s.w.write();
  ASSERT_TRUE(bytes) << bytes.status().message();
  LibElf e(std::move(*bytes));
  ASSERT_NE(e.elf, nullptr) << elf_errmsg(-1);
  ASSERT_EQ(elf_kind(e.elf), ELF_K_ELF);
  GElf_Ehdr eh{};
  ASSERT_NE(gelf_getehdr(e.elf, &eh), nullptr);
  EXPECT_EQ(eh.e_type, ET_REL);
  EXPECT_EQ(eh.e_machine, EM_X86_64);
  EXPECT_EQ(gelf_getclass(e.elf), ELFCLASS64);

  size_t n = 0;
  ASSERT_EQ(elf_getshdrnum(e.elf, &n), 0);
  ASSERT_EQ(n, 9u);   // null, text, rela, data, bss, rela, symtab, strtab, shstrtab
  const char* names[] = {"", ".text.f", ".rela.text.f", ".data.counter", ".bss.buf", ".rela.data.counter",
                         ".symtab", ".strtab", ".shstrtab"};
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(e.section_name(i), names[i]) << i;

  GElf_Shdr text = e.shdr(s.text);
  EXPECT_EQ(text.sh_flags, SHF_ALLOC | SHF_EXECINSTR);
  EXPECT_EQ(text.sh_addralign, 16u);
  EXPECT_EQ(text.sh_offset % 16, 0u);
  EXPECT_EQ(text.sh_size, 8u);
  EXPECT_EQ(std::memcmp(e.data(s.text)->d_buf, "\xe8\0\0\0\0\xc3\x90\x90", 8), 0);
  GElf_Shdr bss = e.shdr(s.bss);
  EXPECT_EQ(bss.sh_type, SHT_NOBITS);
  EXPECT_EQ(bss.sh_size, 4096u);
  EXPECT_EQ(bss.sh_addralign, 32u);

  // Locals first: null, the section symbol, f; then ext, counter, run_thing.
  GElf_Shdr symtab = e.shdr(6);
  EXPECT_EQ(symtab.sh_type, SHT_SYMTAB);
  EXPECT_EQ(symtab.sh_link, 7u);
  EXPECT_EQ(symtab.sh_info, 3u);
  EXPECT_EQ(s.w.index(s.text_sym), 1u);
  EXPECT_EQ(s.w.index(s.local_fn), 2u);
  EXPECT_EQ(s.w.index(s.ext), 3u);
  EXPECT_EQ(s.w.index(s.counter), 4u);
  EXPECT_EQ(s.w.index(s.abs), 5u);
  Elf_Data* syms = e.data(6);
  ASSERT_EQ(syms->d_size, 6 * sizeof(Elf64_Sym));
  auto sym = [&](int i) {
    GElf_Sym y{};
    EXPECT_NE(gelf_getsym(syms, i, &y), nullptr);
    return y;
  };
  auto sym_name = [&](int i) { return std::string(elf_strptr(e.elf, 7, sym(i).st_name)); };
  EXPECT_EQ(GELF_ST_TYPE(sym(1).st_info), STT_SECTION);
  EXPECT_EQ(sym(1).st_shndx, s.text);
  EXPECT_EQ(sym_name(2), "f");
  EXPECT_EQ(GELF_ST_TYPE(sym(2).st_info), STT_FUNC);
  EXPECT_EQ(GELF_ST_BIND(sym(2).st_info), STB_LOCAL);
  EXPECT_EQ(sym(2).st_size, 6u);
  EXPECT_EQ(sym_name(3), "ext");
  EXPECT_EQ(sym(3).st_shndx, SHN_UNDEF);
  EXPECT_EQ(sym_name(4), "counter");
  EXPECT_EQ(GELF_ST_VISIBILITY(sym(4).st_other), STV_HIDDEN);
  EXPECT_EQ(sym(4).st_shndx, s.data);
  EXPECT_EQ(sym_name(5), "run_thing");
  EXPECT_EQ(GELF_ST_BIND(sym(5).st_info), STB_WEAK);
  EXPECT_EQ(sym(5).st_shndx, SHN_ABS);
  EXPECT_EQ(sym(5).st_value, 0xffffffff81000000u);

  // Relocations name the final indices, whatever order their symbols came in.
  GElf_Shdr rela = e.shdr(s.rela_data);
  EXPECT_EQ(rela.sh_type, SHT_RELA);
  EXPECT_EQ(rela.sh_link, 6u);
  EXPECT_EQ(rela.sh_info, s.data);
  EXPECT_EQ(rela.sh_flags, SHF_INFO_LINK);
  EXPECT_EQ(rela.sh_entsize, sizeof(Elf64_Rela));
  Elf_Data* relocs = e.data(s.rela_data);
  ASSERT_EQ(relocs->d_size, 2 * sizeof(Elf64_Rela));
  GElf_Rela r{};
  ASSERT_NE(gelf_getrela(relocs, 0, &r), nullptr);
  EXPECT_EQ(r.r_offset, 0u);
  EXPECT_EQ(GELF_R_SYM(r.r_info), 1u);
  EXPECT_EQ(GELF_R_TYPE(r.r_info), R_X86_64_64);
  EXPECT_EQ(r.r_addend, 5);
  ASSERT_NE(gelf_getrela(relocs, 1, &r), nullptr);
  EXPECT_EQ(GELF_R_SYM(r.r_info), 5u);
  ASSERT_NE(gelf_getrela(e.data(s.rela_text), 0, &r), nullptr);
  EXPECT_EQ(r.r_offset, 1u);
  EXPECT_EQ(GELF_R_SYM(r.r_info), 3u);
  EXPECT_EQ(GELF_R_TYPE(r.r_info), R_X86_64_PLT32);
  EXPECT_EQ(r.r_addend, -4);
  EXPECT_EQ(s.w.relocation_count(), 3u);
}

TEST(ElfWriter, OurReaderAndBinutilsAgree) {
  Sample s;
  auto bytes = s.w.write();
  ASSERT_TRUE(bytes) << bytes.status().message();
  Object o = Object::from_memory(*bytes, "sample.o");
  const Section* text = o.find_section(".text.f");
  ASSERT_NE(text, nullptr);
  ASSERT_EQ(text->relocs.size(), 1u);
  EXPECT_EQ(text->relocs[0].kind, RelocKind::Plt32);
  EXPECT_EQ(o.symbol(text->relocs[0].symbol).name, "ext");
  const Symbol* counter = o.find_symbol("counter");
  ASSERT_NE(counter, nullptr);
  EXPECT_EQ(counter->section, s.data);
  EXPECT_EQ(counter->binding, Binding::Global);

  // readelf validates what libelf does not (e.g. symbols' ordering against sh_info).
  TempDir dir;
  std::string path = dir / "sample.o";
  lstest::write_bytes(path, *bytes);
  std::string out = lstest::sh_stdout("LC_ALL=C readelf -W -a " + lstest::quote(path) + " 2>&1");
  EXPECT_EQ(out.find("Warning"), std::string::npos) << out;
  EXPECT_EQ(out.find("Error"), std::string::npos) << out;
  EXPECT_NE(out.find("R_X86_64_PLT32         0000000000000000 ext - 4"), std::string::npos) << out;
}

TEST(ElfWriter, RefusesExtendedSectionNumbering) {
  Writer w(Machine::X86_64);
  for (int i = 0; w.section_count() + 3 < SHN_LORESERVE; ++i) w.add_section({.name = ".s" + std::to_string(i)});
  auto bytes = w.write();
  ASSERT_FALSE(bytes);
  EXPECT_NE(bytes.status().message().find("extended numbering"), std::string::npos) << bytes.status().message();
  Writer fits(Machine::X86_64);
  for (int i = 0; fits.section_count() + 4 < SHN_LORESERVE; ++i) fits.add_section({.name = ".s" + std::to_string(i)});
  EXPECT_TRUE(fits.write());
}

}  // namespace
}  // namespace ls::elf
