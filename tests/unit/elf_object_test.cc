// The ELF reader against binutils: real objects compiled by gcc with several flag sets,
// and every section, symbol and relocation compared with what readelf and objcopy say.
#include <gtest/gtest.h>

#include <algorithm>
#include <elf.h>
#include <set>

#include "elf/object.h"
#include "support/readelf.h"
#include "support/support.h"

namespace ls::elf {
namespace {

using lstest::TempDir;

// Something of every kind the reader meets: functions of each binding and visibility,
// data in each section kind, literals, a jump table, TLS, calls to undefined functions.
const char* const kVariety = R"(
#include <stddef.h>
int counter = 5;
static int hidden_state;
const char *greeting = "hello, world";
const int table[4] = {1, 2, 3, 4};
extern int ext_var;
extern int ext_fn(int);
__thread int tls_var = 3;
static __thread int tls_local;
extern __thread int tls_ext;

__attribute__((weak)) int weak_fn(int x) { return x + 1; }
__attribute__((visibility("hidden"))) int hidden_fn(void) { return hidden_state++; }
__attribute__((visibility("protected"))) int protected_fn(void) { return 7; }
static __attribute__((noinline)) int local_fn(int x) { return x * counter + ext_var; }

int big_switch(int x)
{
	switch (x) {
	case 0: return ext_fn(10);
	case 1: return ext_fn(21);
	case 2: return ext_fn(32);
	case 3: return ext_fn(43);
	case 4: return ext_fn(54);
	case 5: return ext_fn(65);
	case 6: return ext_fn(76);
	default: return -1;
	}
}

const char *pick(int i)
{
	static const char *const names[] = {"zero", "one", "two"};
	static int calls;
	calls++;
	return i >= 0 && i < 3 ? names[i] : greeting;
}

int use_all(int x)
{
	tls_local += x;
	return local_fn(x) + table[x & 3] + tls_var + tls_local + tls_ext + weak_fn(x) +
	       hidden_fn() + (int)(size_t)pick(x)[0];
}
)";

struct FlagSet {
  const char* name;
  const char* flags;
};

const FlagSet kFlagSets[] = {
    {"O2_sections_nopie", "-O2 -ffunction-sections -fdata-sections -fno-pie"},
    {"O2_sections_pic_g", "-O2 -g -ffunction-sections -fdata-sections -fPIC"},
    {"O2_pic_noplt", "-O2 -fPIC -fno-plt"},
    {"O0_g_pie", "-O0 -g -fpie"},
    {"Os_sections_pie", "-Os -ffunction-sections -fdata-sections -fpie"},
    {"O2_common", "-O2 -fcommon -fno-pie -DCOMMON"},
};

std::ostream& operator<<(std::ostream& os, const FlagSet& f) { return os << f.name; }

SymbolType expected_type(const std::string& t) {
  if (t == "NOTYPE") return SymbolType::NoType;
  if (t == "OBJECT") return SymbolType::Object;
  if (t == "FUNC") return SymbolType::Func;
  if (t == "SECTION") return SymbolType::Section;
  if (t == "FILE") return SymbolType::File;
  if (t == "TLS") return SymbolType::Tls;
  return SymbolType::Other;
}

Binding expected_binding(const std::string& b) {
  if (b == "LOCAL") return Binding::Local;
  if (b == "GLOBAL") return Binding::Global;
  if (b == "WEAK") return Binding::Weak;
  ADD_FAILURE() << "unexpected binding " << b;
  return Binding::Local;
}

uint8_t expected_visibility(const std::string& v) {
  if (v == "DEFAULT") return STV_DEFAULT;
  if (v == "INTERNAL") return STV_INTERNAL;
  if (v == "HIDDEN") return STV_HIDDEN;
  if (v == "PROTECTED") return STV_PROTECTED;
  ADD_FAILURE() << "unexpected visibility " << v;
  return 0;
}

uint32_t expected_shndx(const std::string& ndx) {
  if (ndx == "UND") return kUndef;
  if (ndx == "ABS") return kAbs;
  if (ndx == "COM") return kCommon;
  return static_cast<uint32_t>(std::stoul(ndx));
}

std::optional<uint32_t> expected_sh_type(const std::string& t) {
  static const std::map<std::string, uint32_t> types = {
      {"NULL", SHT_NULL},           {"PROGBITS", SHT_PROGBITS}, {"SYMTAB", SHT_SYMTAB},
      {"STRTAB", SHT_STRTAB},       {"RELA", SHT_RELA},         {"NOBITS", SHT_NOBITS},
      {"NOTE", SHT_NOTE},           {"GROUP", SHT_GROUP},       {"INIT_ARRAY", SHT_INIT_ARRAY},
      {"FINI_ARRAY", SHT_FINI_ARRAY}, {"X86_64_UNWIND", SHT_X86_64_UNWIND},
  };
  auto it = types.find(t);
  if (it == types.end()) return std::nullopt;
  return it->second;
}

struct ExpectedKind {
  RelocKind kind;
  unsigned width;
};

ExpectedKind expected_kind(const std::string& name) {
  static const std::map<std::string, ExpectedKind> kinds = {
      {"R_X86_64_NONE", {RelocKind::None, 0}},
      {"R_X86_64_64", {RelocKind::Abs64, 8}},
      {"R_X86_64_PC32", {RelocKind::PcRel32, 4}},
      {"R_X86_64_PLT32", {RelocKind::Plt32, 4}},
      {"R_X86_64_32", {RelocKind::Abs32, 4}},
      {"R_X86_64_32S", {RelocKind::Abs32S, 4}},
      {"R_X86_64_PC64", {RelocKind::PcRel64, 8}},
      {"R_X86_64_GOTPCREL", {RelocKind::GotPcRel, 4}},
      {"R_X86_64_GOTPCRELX", {RelocKind::GotPcRel, 4}},
      {"R_X86_64_REX_GOTPCRELX", {RelocKind::GotPcRel, 4}},
      {"R_X86_64_GOTOFF64", {RelocKind::GotOff64, 8}},
      {"R_X86_64_GOTPC32", {RelocKind::GotPc32, 4}},
      {"R_X86_64_TLSGD", {RelocKind::TlsGd, 4}},
      {"R_X86_64_TLSLD", {RelocKind::TlsLd, 4}},
      {"R_X86_64_DTPOFF32", {RelocKind::DtpOff32, 4}},
      {"R_X86_64_DTPOFF64", {RelocKind::DtpOff64, 8}},
      {"R_X86_64_GOTTPOFF", {RelocKind::GotTpOff, 4}},
      {"R_X86_64_TPOFF32", {RelocKind::TpOff32, 4}},
      {"R_X86_64_TPOFF64", {RelocKind::TpOff64, 8}},
      {"R_X86_64_SIZE32", {RelocKind::Size32, 4}},
      {"R_X86_64_SIZE64", {RelocKind::Size64, 8}},
  };
  auto it = kinds.find(name);
  if (it == kinds.end()) {
    ADD_FAILURE() << "test does not know relocation type " << name;
    return {RelocKind::Other, 0};
  }
  return it->second;
}

class ElfObjectTest : public ::testing::TestWithParam<FlagSet> {
 protected:
  void SetUp() override {
    std::string src = kVariety;
    if (std::string(GetParam().flags).find("-DCOMMON") != std::string::npos)
      src += "int common_var;\nint *common_user(void) { return &common_var; }\n";
    path_ = lstest::compile_c(dir_, "variety", src, GetParam().flags);
    obj_ = std::make_unique<Object>(Object::load(path_));
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<Object> obj_;
};

TEST_P(ElfObjectTest, SectionsMatchReadelf) {
  auto expected = lstest::readelf_sections(path_);
  auto image = lstest::read_bytes(path_);
  const auto& sections = obj_->sections();
  ASSERT_EQ(sections.size(), expected.size());
  for (size_t i = 0; i < sections.size(); i++) {
    const Section& s = sections[i];
    const auto& e = expected[i];
    SCOPED_TRACE("section [" + std::to_string(i) + "] " + e.name);
    EXPECT_EQ(s.index, i);
    EXPECT_EQ(s.name, e.name);
    if (auto t = expected_sh_type(e.type)) {
      EXPECT_EQ(s.type, *t);
    }
    EXPECT_EQ(lstest::flag_letters(s.flags), e.flags);
    EXPECT_EQ(s.size, e.size);
    EXPECT_EQ(s.entsize, e.entsize);
    EXPECT_EQ(s.link, e.link);
    EXPECT_EQ(s.info, e.info);
    EXPECT_EQ(s.align, e.align);
    EXPECT_EQ(s.alloc(), e.flags.find('A') != std::string::npos);
    EXPECT_EQ(s.exec(), e.flags.find('X') != std::string::npos);
    EXPECT_EQ(s.write(), e.flags.find('W') != std::string::npos);
    EXPECT_EQ(s.tls(), e.flags.find('T') != std::string::npos);
    EXPECT_EQ(s.nobits(), e.type == "NOBITS");
    if (e.type == "NOBITS" || i == 0) {
      EXPECT_TRUE(s.bytes.empty());
    } else {
      ASSERT_LE(e.offset + e.size, image.size());
      std::vector<uint8_t> want(image.begin() + static_cast<long>(e.offset),
                                image.begin() + static_cast<long>(e.offset + e.size));
      EXPECT_EQ(s.bytes, want);
    }
  }
}

TEST_P(ElfObjectTest, AllocatedBytesMatchObjcopy) {
  auto expected = lstest::readelf_sections(path_);
  std::multiset<std::string> names;
  for (const auto& e : expected) names.insert(e.name);
  int compared = 0;
  for (const auto& e : expected) {
    if (e.type != "PROGBITS" || e.flags.find('A') == std::string::npos || e.size == 0) continue;
    if (names.count(e.name) != 1) continue;   // --only-section needs a unique name
    SCOPED_TRACE(e.name);
    std::string out = dir_ / "section.bin";
    lstest::sh_stdout("objcopy -O binary --only-section=" + lstest::quote(e.name) + " " +
                      lstest::quote(path_) + " " + lstest::quote(out));
    const Section* s = obj_->find_section(e.name);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->bytes, lstest::read_bytes(out));
    compared++;
  }
  EXPECT_GT(compared, 0);
}

TEST_P(ElfObjectTest, SymbolsMatchReadelf) {
  auto expected = lstest::readelf_symbols(path_);
  const auto& symbols = obj_->symbols();
  ASSERT_EQ(symbols.size(), expected.size());
  for (size_t i = 0; i < symbols.size(); i++) {
    const Symbol& s = symbols[i];
    const auto& e = expected[i];
    SCOPED_TRACE("symbol " + std::to_string(i) + " " + e.name);
    EXPECT_EQ(s.index, i);
    EXPECT_EQ(s.type, expected_type(e.type));
    EXPECT_EQ(s.binding, expected_binding(e.bind));
    EXPECT_EQ(s.visibility, expected_visibility(e.visibility));
    EXPECT_EQ(s.section, expected_shndx(e.ndx));
    EXPECT_EQ(s.value, e.value);
    EXPECT_EQ(s.size, e.size);
    // readelf shows a section symbol by its section's name; the reader may name it so too
    // or leave it empty.
    if (e.type != "SECTION") {
      EXPECT_EQ(s.name, e.name);
    }
    EXPECT_EQ(s.defined(), e.ndx != "UND");
  }
  EXPECT_EQ(obj_->source_file(), "variety.c");
}

TEST_P(ElfObjectTest, RelocationsMatchReadelf) {
  auto sections = lstest::readelf_sections(path_);
  auto relocs = lstest::readelf_relocs(path_);
  std::set<uint32_t> targets;
  int compared = 0;
  for (const auto& rs : sections) {
    if (rs.type != "RELA") continue;
    SCOPED_TRACE("relocation section " + rs.name);
    ASSERT_LT(rs.info, obj_->sections().size());
    const Section& target = obj_->section(rs.info);
    targets.insert(rs.info);
    EXPECT_EQ(target.rela_section, rs.index);
    // Relocations of allocated sections are converted; those of debug sections may be
    // left raw (nothing interprets them and there are very many).
    if (!target.alloc() && target.relocs.empty()) continue;
    auto want = relocs[rs.offset];
    std::stable_sort(want.begin(), want.end(),
                     [](const auto& a, const auto& b) { return a.offset < b.offset; });
    ASSERT_EQ(target.relocs.size(), want.size());
    for (size_t i = 0; i < want.size(); i++) {
      const Reloc& r = target.relocs[i];
      const auto& w = want[i];
      SCOPED_TRACE(w.type_name + " at " + std::to_string(w.offset));
      EXPECT_EQ(r.offset, w.offset);
      EXPECT_EQ(r.type, w.type);
      EXPECT_EQ(r.symbol, w.symbol);
      EXPECT_EQ(r.addend, w.addend);
      auto k = expected_kind(w.type_name);
      EXPECT_EQ(r.kind, k.kind) << to_string(r.kind);
      if (k.kind != RelocKind::None) {
        EXPECT_EQ(r.width, k.width);
      }
      compared++;
    }
  }
  EXPECT_GT(compared, 0);
  for (const Section& s : obj_->sections()) {
    if (targets.count(s.index)) continue;
    EXPECT_TRUE(s.relocs.empty()) << s.name;
    EXPECT_EQ(s.rela_section, 0u) << s.name;
  }
}

TEST_P(ElfObjectTest, LoadAndFromMemoryAgree) {
  Object m = Object::from_memory(lstest::read_bytes(path_), "in-memory.o");
  EXPECT_EQ(m.path(), "in-memory.o");
  EXPECT_EQ(obj_->path(), path_);
  EXPECT_EQ(m.machine(), Machine::X86_64);
  ASSERT_EQ(m.sections().size(), obj_->sections().size());
  ASSERT_EQ(m.symbols().size(), obj_->symbols().size());
  for (size_t i = 0; i < m.sections().size(); i++) {
    EXPECT_EQ(m.sections()[i].name, obj_->sections()[i].name);
    EXPECT_EQ(m.sections()[i].bytes, obj_->sections()[i].bytes);
    EXPECT_EQ(m.sections()[i].relocs.size(), obj_->sections()[i].relocs.size());
  }
}

TEST_P(ElfObjectTest, Lookups) {
  const Symbol* f = obj_->find_symbol("use_all");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->type, SymbolType::Func);
  EXPECT_EQ(f->binding, Binding::Global);
  EXPECT_TRUE(f->in_section());
  EXPECT_FALSE(f->local());
  EXPECT_EQ(obj_->find_symbol("no_such_symbol"), nullptr);
  // An undefined reference is not a definition.
  EXPECT_EQ(obj_->find_symbol("ext_fn"), nullptr);
  EXPECT_EQ(obj_->find_section(".no.such.section"), nullptr);
  const Section& text = obj_->section(f->section);
  EXPECT_EQ(obj_->find_section(text.name), &text);
  EXPECT_EQ(obj_->where(text, 0x12), ls::where(path_, text.name, 0x12));
  EXPECT_NE(obj_->where(text, 0x12).find(path_), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Gcc, ElfObjectTest, ::testing::ValuesIn(kFlagSets),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Relocation kinds: each produced by the code that needs it. ----

struct KindCase {
  const char* name;
  const char* flags;
  const char* source;
  const char* symbol;        // the relocation's symbol
  const char* raw_type;      // what readelf calls it
  RelocKind kind;
};

std::ostream& operator<<(std::ostream& os, const KindCase& c) { return os << c.name; }

const KindCase kKindCases[] = {
    {"Plt32", "-O2 -fno-pie", "extern void ext(void); void f(void) { ext(); ext(); }", "ext",
     "R_X86_64_PLT32", RelocKind::Plt32},
    {"PcRel32", "-O2 -fno-pie", "extern int g; int f(void) { return g; }", "g",
     "R_X86_64_PC32", RelocKind::PcRel32},
    {"Abs64", "-O2 -fno-pie", "extern int g; int *p = &g;", "g", "R_X86_64_64",
     RelocKind::Abs64},
    {"Abs32", "-O2 -fno-pie", "extern int g; unsigned long f(void) { return (unsigned long)&g; }",
     "g", "R_X86_64_32", RelocKind::Abs32},
    {"Abs32S", "-O2 -fno-pie", "extern int arr[]; int f(long i) { return arr[i]; }", "arr",
     "R_X86_64_32S", RelocKind::Abs32S},
    {"RexGotPcRelX", "-O2 -fPIC", "extern int g; int f(void) { return g; }", "g",
     "R_X86_64_REX_GOTPCRELX", RelocKind::GotPcRel},
    {"GotPcRelX", "-O2 -fPIC -fno-plt", "extern void ext(void); void f(void) { ext(); ext(); }",
     "ext", "R_X86_64_GOTPCRELX", RelocKind::GotPcRel},
    {"GotPcRel", "-O2 -fPIC -Wa,-mrelax-relocations=no", "extern int g; int f(void) { return g; }",
     "g", "R_X86_64_GOTPCREL", RelocKind::GotPcRel},
    {"TlsGd", "-O2 -fPIC", "extern __thread int t; int f(void) { return t; }", "t",
     "R_X86_64_TLSGD", RelocKind::TlsGd},
    {"TlsLd", "-O2 -fPIC", "static __thread int t; int f(int x) { t += x; return t; }",
     "", "R_X86_64_TLSLD", RelocKind::TlsLd},
    {"DtpOff32", "-O2 -fPIC", "static __thread int t; int f(int x) { t += x; return t; }", "t",
     "R_X86_64_DTPOFF32", RelocKind::DtpOff32},
    {"GotTpOff", "-O2 -fno-pie", "extern __thread int t; int f(void) { return t; }", "t",
     "R_X86_64_GOTTPOFF", RelocKind::GotTpOff},
    {"TpOff32", "-O2 -fno-pie", "__thread int t = 4; int f(void) { return t; }", "t",
     "R_X86_64_TPOFF32", RelocKind::TpOff32},
    {"PlainPc32InEhFrame", "-O2 -fno-pie", "int f(int x) { return x * 3; }", "",
     "R_X86_64_PC32", RelocKind::PcRel32},
};

class RelocKindTest : public ::testing::TestWithParam<KindCase> {};

TEST_P(RelocKindTest, Classified) {
  const KindCase& c = GetParam();
  TempDir dir;
  std::string path = lstest::compile_c(dir, "k", c.source, c.flags);
  Object obj = Object::load(path);
  int found = 0;
  for (const Section& s : obj.sections())
    for (const Reloc& r : s.relocs) {
      const Symbol& sym = obj.symbol(r.symbol);
      if (r.kind == c.kind && (*c.symbol == 0 || sym.name == c.symbol)) found++;
    }
  EXPECT_GT(found, 0) << "no " << to_string(c.kind) << " relocation against '" << c.symbol
                      << "'; readelf:\n"
                      << lstest::sh_stdout("readelf -rW " + path);
  // And readelf agrees that the object has the raw type we meant to produce.
  EXPECT_NE(lstest::sh_stdout("readelf -rW " + path).find(c.raw_type), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(X86_64, RelocKindTest, ::testing::ValuesIn(kKindCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RelocKind, NamesAndPcRelative) {
  EXPECT_FALSE(to_string(RelocKind::Plt32).empty());
  EXPECT_NE(to_string(RelocKind::Plt32), to_string(RelocKind::PcRel32));
  EXPECT_TRUE(is_pc_relative(RelocKind::PcRel32));
  EXPECT_TRUE(is_pc_relative(RelocKind::Plt32));
  EXPECT_FALSE(is_pc_relative(RelocKind::Abs64));
  EXPECT_FALSE(is_pc_relative(RelocKind::Abs32S));
}

}  // namespace
}  // namespace ls::elf
