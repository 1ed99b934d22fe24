// src/kernel's readers on inputs made here: kallsyms text in the kernel's own format, and
// ELF core files laid out like /proc/kcore. The live kernel's tables are read by the
// guest tests (guest/boot.sh); these cover what a guest cannot easily produce: aliases,
// duplicates, hidden addresses, holes, malformed files.
#include <gtest/gtest.h>

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernel/kallsyms.h"
#include "kernel/kcore.h"

namespace ls::kernel {
namespace {

const char* const kTable =
    "0000000000000000 A fixed_percpu_data\n"
    "ffffffff81000000 T _stext\n"
    "ffffffff81000000 T _text\n"
    "ffffffff81000040 t cmdline_proc_show\n"
    "ffffffff81000070 t show_one\n"
    "ffffffff81000070 t show_one.alias\n"
    "ffffffff810000a0 T _etext\n"
    "ffffffffc0001000 t show_one\t[ext4]\n"
    "ffffffffc0001030 t ext4_fill\t[ext4]\n"
    "ffffffffc0002000 t show_one\t[jbd2]\n";

TEST(Kallsyms, SizesRunToTheNextSymbolOfTheSameModule) {
  auto k = Kallsyms::parse(kTable, "test");
  ASSERT_TRUE(k.ok()) << k.status().message();
  auto cmd = k->unique("cmdline_proc_show");
  ASSERT_TRUE(cmd.ok());
  EXPECT_EQ((*cmd)->addr, TargetAddr(0xffffffff81000040));
  EXPECT_EQ((*cmd)->size, 0x30u);
  EXPECT_TRUE((*cmd)->text());
  // Aliases share the extent of their address; _text and _stext both span 0x40.
  EXPECT_EQ((*k->unique("show_one.alias"))->size, 0x30u);
  EXPECT_EQ((*k->unique("_text"))->size, 0x40u);
  // ext4's first symbol ends at ext4's next one, not at jbd2's.
  auto in_ext4 = k->unique("show_one", "ext4");
  ASSERT_TRUE(in_ext4.ok());
  EXPECT_EQ((*in_ext4)->module, "ext4");
  EXPECT_EQ((*in_ext4)->size, 0x30u);
}

TEST(Kallsyms, DuplicatesAreAmbiguousUntilAModuleIsNamed) {
  auto k = Kallsyms::parse(kTable, "test");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->named("show_one").size(), 3u);
  auto any = k->unique("show_one");
  ASSERT_FALSE(any.ok());
  EXPECT_NE(any.status().message().find("ambiguous"), std::string::npos) << any.status().message();
  EXPECT_EQ((*k->unique("show_one", "vmlinux"))->addr, TargetAddr(0xffffffff81000070));
  EXPECT_EQ((*k->unique("show_one", "jbd2"))->addr, TargetAddr(0xffffffffc0002000));
  EXPECT_FALSE(k->unique("no_such_symbol").ok());
}

TEST(Kallsyms, ContainingFindsTheEnclosingSymbol) {
  auto k = Kallsyms::parse(kTable, "test");
  ASSERT_TRUE(k.ok());
  const KSymbol* s = k->containing(TargetAddr(0xffffffff81000045));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name, "cmdline_proc_show");
  s = k->containing(TargetAddr(0xffffffffc0001001));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name, "show_one");
  EXPECT_EQ(s->module, "ext4");
  // A module's last symbol has no known end: nothing is claimed to be inside it.
  EXPECT_EQ(k->containing(TargetAddr(0xffffffffc0001031)), nullptr);
  EXPECT_EQ(k->containing(TargetAddr(0x1000)), nullptr);
  // at_or_below does not need an extent.
  s = k->at_or_below(TargetAddr(0xffffffffc0001031));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name, "ext4_fill");
}

TEST(Kallsyms, HiddenAddressesAndBadLinesAreErrors) {
  auto hidden = Kallsyms::parse("0000000000000000 T _stext\n0000000000000000 t foo\n", "k");
  ASSERT_FALSE(hidden.ok());
  EXPECT_NE(hidden.status().message().find("kptr_restrict"), std::string::npos);
  auto bad = Kallsyms::parse("ffffffff81000000 T _stext\nnot a line\n", "k");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("k:2:"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(Kallsyms::parse("ffffffff81000000 t foo\t[ext4\n", "k").ok());
}

// An ELF core file with the given PT_LOAD segments (vaddr, bytes), like /proc/kcore.
class CoreFile {
 public:
  explicit CoreFile(const std::vector<std::pair<uint64_t, std::string>>& segs) {
    char tmpl[] = "/tmp/ls-kcore-XXXXXX";
    int fd = mkstemp(tmpl);
    path_ = tmpl;
    Elf64_Ehdr eh{};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_CORE;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = sizeof(eh);
    eh.e_ehsize = sizeof(eh);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(segs.size() + 1);
    std::string out(reinterpret_cast<char*>(&eh), sizeof(eh));
    uint64_t data = sizeof(eh) + eh.e_phnum * sizeof(Elf64_Phdr);
    Elf64_Phdr note{};
    note.p_type = PT_NOTE;
    out.append(reinterpret_cast<char*>(&note), sizeof(note));
    for (const auto& [vaddr, bytes] : segs) {
      Elf64_Phdr ph{};
      ph.p_type = PT_LOAD;
      ph.p_vaddr = vaddr;
      ph.p_offset = data;
      ph.p_filesz = ph.p_memsz = bytes.size();
      out.append(reinterpret_cast<char*>(&ph), sizeof(ph));
      data += bytes.size();
    }
    for (const auto& seg : segs) out += seg.second;
    EXPECT_EQ(write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
    close(fd);
  }
  ~CoreFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Kcore, ReadsWithinASegment) {
  const char code[] = "\x0f\x1f\x44\x00\x00\xe8\x01\x02";  // NULs inside
  CoreFile f({{0xffffffff81000000, std::string(code, sizeof(code) - 1)}, {0xffffffffc0000000, "module"}});
  auto k = Kcore::open(f.path());
  ASSERT_TRUE(k.ok()) << k.status().message();
  EXPECT_EQ(k->segments().size(), 2u);
  uint8_t b[5];
  ASSERT_TRUE(k->read(TargetAddr(0xffffffff81000000), b).ok());
  EXPECT_EQ(0, memcmp(b, "\x0f\x1f\x44\x00\x00", 5));
  uint8_t m[3];
  ASSERT_TRUE(k->read(TargetAddr(0xffffffffc0000003), m).ok());
  EXPECT_EQ(0, memcmp(m, "ule", 3));
}

TEST(Kcore, ReadsOutsideOrAcrossSegmentsFail) {
  CoreFile f({{0xffffffff81000000, "12345678"}, {0xffffffff81000008, "abcdefgh"}});
  auto k = Kcore::open(f.path());
  ASSERT_TRUE(k.ok());
  uint8_t b[4];
  Status across = k->read(TargetAddr(0xffffffff81000006), b);
  ASSERT_FALSE(across.ok());
  EXPECT_NE(across.message().find("0xffffffff81000006"), std::string::npos) << across.message();
  EXPECT_FALSE(k->read(TargetAddr(0x1000), b).ok());
}

TEST(Kcore, NotACoreFileIsAnError) {
  char tmpl[] = "/tmp/ls-kcore-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_EQ(write(fd, "hello, this is not an ELF file at all, not even close....................", 72), 72);
  close(fd);
  auto k = Kcore::open(tmpl);
  unlink(tmpl);
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("not a 64-bit ELF core"), std::string::npos) << k.status().message();
  EXPECT_FALSE(Kcore::open("/nonexistent/kcore").ok());
}

}  // namespace
}  // namespace ls::kernel
