// Rewritten sites (match::Rewrites::sites): places a target rewrites whole, known from its
// own tables rather than from a relocation (the kernel's alternatives and jump labels).
// The code is real (gcc, ld, a real update) with an alternative-like site (three
// single-byte NOPs, as gas pads an empty original) and a jump-label-like site (a 5-byte
// jmp to a label of the function); the site lists are made by hand, the run bytes taken
// from the linked file and rewritten by hand. A site takes any of its listed forms and
// nothing else; bytes outside the sites are still compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "elf/object.h"
#include "arch/target.h"
#include "support.h"

namespace mt {
namespace {

using ls::TargetAddr;
using ls::match::Rewrites;
using ls::match::RewrittenSite;
using ls::match::SiteForm;

std::string work_c(const std::string& k) {
  return R"c(__attribute__((noinline)) int helper(int x) { return x * 3 + 1; }
int work(int x) {
  int r = helper(x) * 5;
  asm goto("nop; nop; nop\n\t.byte 0xe9\n\t.long %l[slow] - (. + 4)" :::: slow);
  return r + )c" + k + R"c(;
slow:
  return helper(r) + 0x77;
}
)c";
}

std::map<std::string, std::string> files() {
  return {{"main.c", "int work(int);\nint main(void) { return work(1) & 0; }\n"},
          {"work.c", work_c("0x10")},
          {"Makefile",
           "CFLAGS = -O2 -fno-pie -fcf-protection=none\nLDFLAGS = -no-pie\n"
           "app: main.o work.o\n\t$(CC) $(LDFLAGS) -o $@ $^\n"
           "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"}};
}

const std::vector<uint8_t> kStac{0x0f, 0x01, 0xcb}, kClac{0x0f, 0x01, 0xca}, kNop3{0x0f, 0x1f, 0x00};
const std::vector<uint8_t> kNop5{0x0f, 0x1f, 0x44, 0x00, 0x00};

struct Fixture : BuiltWork {
  uint32_t section = 0;
  uint64_t alt = 0, label = 0;   // pre offsets of the two sites
  int64_t slow = 0;              // pre offset of the label's target
  uint64_t size = 0;
  Fixture() : BuiltWork(files(), work_c("0x20")) {
    section = r.list[work].pre_section;
    ls::elf::Object u = ls::elf::Object::load(update);
    auto pre = u.section(section).bytes;
    size = pre.size();
    const std::vector<uint8_t> mark{0x90, 0x90, 0x90, 0xe9};
    auto it = std::search(pre.begin(), pre.end(), mark.begin(), mark.end());
    EXPECT_NE(it, pre.end()) << "work's pre code has no `nop; nop; nop; jmp`";
    alt = static_cast<uint64_t>(it - pre.begin());
    label = alt + 3;
    int32_t rel = 0;
    std::memcpy(&rel, pre.data() + label + 1, 4);
    slow = static_cast<int64_t>(label + 5) + rel;
  }
  ls::Result<ls::match::Match> match(const ls::match::CodeSource& run, const Rewrites& rw = {}) {
    ls::Context ctx = quiet_context();
    return ls::match::match(ctx, run, ls::update::Contents::load(update), r.list, rw);
  }
  // The sites as a kernel's tables would list them: an alternative whose original is the
  // three NOPs (or them merged) and whose replacement is `stac`; a jump label at the jmp.
  Rewrites sites() const {
    Rewrites rw;
    RewrittenSite a{"alternative", alt, 3, {}};
    a.forms = {SiteForm{"original", {0x90, 0x90, 0x90}, {}}, SiteForm{"original, NOPs merged", kNop3, {}},
               SiteForm{"replacement", kStac, {}}};
    RewrittenSite j{"jump label", label, 5, {}};
    j.forms = {SiteForm{"NOP", kNop5, {}}, SiteForm{"jmp", {0xe9, 0, 0, 0, 0}, {SiteForm::Field{1, 4, 0, slow}}}};
    rw.sites[section] = {a, j};
    return rw;
  }
  std::vector<uint8_t> jmp_to(int64_t target) const {
    std::vector<uint8_t> b{0xe9, 0, 0, 0, 0};
    auto rel = static_cast<int32_t>(target - static_cast<int64_t>(label + 5));
    std::memcpy(b.data() + 1, &rel, 4);
    return b;
  }
};

TEST(RewrittenSites, AnAlternativeRunsAsAssembledOrAsItsReplacementAndNothingElse) {
  Fixture f;
  FileImage file(f.app);
  auto as_linked = f.match(file, f.sites());
  ASSERT_TRUE(as_linked.ok()) << as_linked.status().message();
  EXPECT_EQ(as_linked->function_at[f.work], TargetAddr(f.work_at));

  for (const auto& [name, bytes] : {std::pair{"stac", kStac}, std::pair{"merged NOPs", kNop3}}) {
    Rewritten run(file);
    run.put(f.work_at + f.alt, bytes);
    if (bytes == kStac) {   // without the site list: a difference (NOPs are padding to any walk)
      auto plain = f.match(run);
      ASSERT_FALSE(plain.ok()) << name;
      EXPECT_EQ(plain.status().code(), ls::Exit::Unsafe) << name;
    }
    auto m = f.match(run, f.sites());
    ASSERT_TRUE(m.ok()) << name << ": " << m.status().message();
    EXPECT_EQ(m->function_at[f.work], TargetAddr(f.work_at)) << name;
  }
  // A third form (clac where the replacement is stac) is refused, and so is a form
  // outside its site (stac one byte on).
  Rewritten clac(file);
  clac.put(f.work_at + f.alt, kClac);
  auto c = f.match(clac, f.sites());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), ls::Exit::Unsafe);
  EXPECT_NE(c.status().message().find("work"), std::string::npos) << c.status().message();
  Rewritten shifted(file);
  shifted.put(f.work_at + f.alt + 1, {0x0f, 0x01});
  EXPECT_FALSE(f.match(shifted, f.sites()).ok());
}

TEST(RewrittenSites, AJumpLabelIsItsJmpOrTheNopAndAJmpElsewhereIsRefused) {
  Fixture f;
  FileImage file(f.app);
  Rewritten nop(file);
  nop.put(f.work_at + f.label, kNop5);
  auto plain = f.match(nop);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.status().code(), ls::Exit::Unsafe);
  auto m = f.match(nop, f.sites());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[f.work], TargetAddr(f.work_at));

  Rewritten jmp(file);   // the jmp as the kernel writes it back: the same bytes as built
  jmp.put(f.work_at + f.label, f.jmp_to(f.slow));
  EXPECT_TRUE(f.match(jmp, f.sites()).ok());

  // A jmp to another place of the function, or out of it, is no state of the label.
  for (int64_t target : {f.slow + 1, static_cast<int64_t>(f.size) + 64}) {
    Rewritten elsewhere(file);
    elsewhere.put(f.work_at + f.label, f.jmp_to(target));
    auto e = f.match(elsewhere, f.sites());
    ASSERT_FALSE(e.ok()) << target;
    EXPECT_EQ(e.status().code(), ls::Exit::Unsafe);
  }
  // A NOP where there is no site is still a difference.
  Rewritten stray(file);
  stray.put(f.work_at + f.label, kNop5);
  Rewrites only_alt = f.sites();
  only_alt.sites[f.section].pop_back();
  EXPECT_FALSE(f.match(stray, only_alt).ok());
}

TEST(RewrittenSites, AMalformedSiteListIsAToolError) {
  Fixture f;
  FileImage file(f.app);
  Rewrites bad = f.sites();
  bad.sites[f.section][0].forms.push_back(SiteForm{"too long", kNop5, {}});
  auto b = f.match(file, bad);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), ls::Exit::ToolError);
  Rewrites overlapping = f.sites();
  overlapping.sites[f.section][1].offset = f.alt + 1;
  auto o = f.match(file, overlapping);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), ls::Exit::ToolError);
}

// The kernel's reading of its tables (arch::Target::kernel_table_sites) on an object laid out
// as `create --kernel` writes an update's pre code and pre tables, assembled by gas:
//   +0x01  7 bytes: 7 single-byte NOPs, replaced by `stac` (3 bytes)
//   +0x08  5 bytes: 5 single-byte NOPs, replaced by `call alt_fn` (a lone call: recomputed)
//   +0x0d  5 bytes: 5 single-byte NOPs, replaced by `jmp home` (a leading jmp: recomputed,
//                   2 bytes + NOP3 since home is ahead within reach)
//   +0x12  a jump label: the 5-byte NOP, its target `home`
//   +0x17  5 bytes: `call orig_fn`, replaced by `call alt2_fn` (ALTERNATIVE_CALL): a call
//          there is either, so it reveals neither
const char* kPreTables = R"(
	.section .livesplice.pre.text.f,"ax",@progbits
f:	push %rbp
1:	.byte 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90
2:	.byte 0x90, 0x90, 0x90, 0x90, 0x90
3:	.byte 0x90, 0x90, 0x90, 0x90, 0x90
4:	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00
8:	call orig_fn
	pop %rbp
home:	ret
	.section .livesplice.pre.altinstr_replacement,"ax",@progbits
5:	stac
6:	call alt_fn
7:	jmp home
9:	call alt2_fn
	.section .livesplice.pre.altinstructions,"a",@progbits
	.long 1b - ., 5b - .
	.word 9*32+20
	.byte 7, 3
	.long 2b - ., 6b - .
	.word 3*32+1
	.byte 5, 5
	.long 3b - ., 7b - .
	.word 3*32+2
	.byte 5, 5
	.long 8b - ., 9b - .
	.word 3*32+3
	.byte 5, 5
	.section .livesplice.pre__jump_table,"aw",@progbits
	.long 4b - ., home - .
	.quad 0
)";

class Bytes : public ls::match::CodeSource {
 public:
  Bytes(uint64_t at, std::vector<uint8_t> b) : at_(at), b_(std::move(b)) {}
  ls::Status read(TargetAddr at, std::span<uint8_t> out) const override {
    if (at.value() < at_ || at.value() + out.size() > at_ + b_.size()) return ls::error("unmapped {}", at);
    std::copy_n(b_.begin() + static_cast<ptrdiff_t>(at.value() - at_), out.size(), out.begin());
    return {};
  }

 private:
  uint64_t at_;
  std::vector<uint8_t> b_;
};

TEST(RewrittenSites, TheKernelsTablesGiveTheFormsApplyAlternativesLeaves) {
  lstest::TempDir dir;
  write_file(dir / "pre.s", kPreTables);
  must("gcc -c -o pre.o pre.s", dir.path());
  ls::elf::Object u = ls::elf::Object::load(dir / "pre.o");
  Rewrites rw;
  ASSERT_TRUE(ls::arch::target(u.machine()).kernel_table_sites(u, rw).ok());
  const ls::elf::Section* fs = u.find_section(".livesplice.pre.text.f");
  ASSERT_NE(fs, nullptr);
  ASSERT_TRUE(rw.sites.count(fs->index));
  const auto& sites = rw.sites.at(fs->index);
  ASSERT_EQ(sites.size(), 5u);
  auto bytes = [](const RewrittenSite& s) {
    std::vector<std::vector<uint8_t>> out;
    for (const auto& f : s.forms) out.push_back(f.bytes);
    return out;
  };
  using V = std::vector<std::vector<uint8_t>>;
  EXPECT_EQ(sites[0].offset, 1u);
  EXPECT_EQ(bytes(sites[0]), (V{{0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90},
                                {0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
                                {0x0f, 0x01, 0xcb, 0x0f, 0x1f, 0x40, 0x00}}));
  EXPECT_EQ(sites[2].offset, 0xdu);
  EXPECT_EQ(bytes(sites[2]).back(), (std::vector<uint8_t>{0xeb, 0x00, 0x0f, 0x1f, 0x00}));
  EXPECT_EQ(sites[3].what, "jump label");
  const int64_t home = 0x1d;
  ASSERT_EQ(u.section(fs->index).bytes[home], 0xc3);

  // Run: every site as the kernel leaves it on a CPU with the features, the label on.
  const uint64_t base = 0x100000, alt_fn = 0x200000;
  std::vector<uint8_t> run(u.section(fs->index).bytes.begin(), u.section(fs->index).bytes.end());
  auto put = [&](uint64_t at, std::vector<uint8_t> b) { std::copy(b.begin(), b.end(), run.begin() + static_cast<ptrdiff_t>(at)); };
  auto rel32 = [](uint64_t from_end, uint64_t to) {
    auto r = static_cast<int32_t>(static_cast<int64_t>(to) - static_cast<int64_t>(from_end));
    std::vector<uint8_t> b(4);
    std::memcpy(b.data(), &r, 4);
    return b;
  };
  put(1, {0x0f, 0x01, 0xcb, 0x0f, 0x1f, 0x40, 0x00});
  put(8, {0xe8});
  put(9, rel32(base + 0xd, alt_fn));
  put(0xd, {0xeb, static_cast<uint8_t>(home - 0xf), 0x0f, 0x1f, 0x00});
  put(0x12, {0xe9});
  put(0x13, rel32(0x17, home));
  put(0x18, rel32(base + 0x1c, alt_fn + 0x40));
  const auto contents = ls::update::Contents::unsealed(u);
  ls::match::Request req{"pre.o:f", fs->index, {TargetAddr(base)}, {}};
  std::vector<ls::match::Request> reqs{req};
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, Bytes(base, run), contents, reqs, rw);
  ASSERT_TRUE(m.ok()) << m.status().message();
  // The recomputed call revealed alt_fn.
  std::map<std::string, uint32_t> sym;
  for (const auto& x : u.symbols()) sym[x.name] = x.index;
  ASSERT_TRUE(m->symbols.count({sym["alt_fn"], ls::View::Address}));
  EXPECT_EQ(m->symbols.at({sym["alt_fn"], ls::View::Address}).value, TargetAddr(alt_fn));
  EXPECT_EQ(m->symbols.count({sym["orig_fn"], ls::View::Address}), 0u);
  EXPECT_EQ(m->symbols.count({sym["alt2_fn"], ls::View::Address}), 0u);
  EXPECT_FALSE(ls::match::match(ctx, Bytes(base, run), contents, reqs, {}).ok()) << "matched without the sites";

  // What the kernel never leaves: the replacement's padding unmerged, the recomputed
  // jmp in its long form.
  for (auto [at, b] : {std::pair<uint64_t, std::vector<uint8_t>>{1, {0x0f, 0x01, 0xcb, 0x90, 0x90, 0x90, 0x90}},
                       {0xd, {0xe9, static_cast<uint8_t>(home - 0x12), 0, 0, 0}}}) {
    std::vector<uint8_t> other = run;
    std::copy(b.begin(), b.end(), other.begin() + static_cast<ptrdiff_t>(at));
    auto r = ls::match::match(ctx, Bytes(base, other), contents, reqs, rw);
    EXPECT_FALSE(r.ok()) << "+" << at;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), ls::Exit::Unsafe);
    }
  }
}

}  // namespace
}  // namespace mt
