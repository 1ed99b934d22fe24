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

class Rewritten : public ls::match::CodeSource {
 public:
  explicit Rewritten(const FileImage& file) : file_(file) {}
  void put(uint64_t at, std::vector<uint8_t> b) { over_[at] = std::move(b); }
  ls::Status read(TargetAddr at, std::span<uint8_t> out) const override {
    LS_TRY(file_.read(at, out));
    for (const auto& [a, b] : over_)
      for (size_t k = 0; k < b.size(); ++k)
        if (a + k >= at.value() && a + k < at.value() + out.size()) out[a + k - at.value()] = b[k];
    return {};
  }

 private:
  const FileImage& file_;
  std::map<uint64_t, std::vector<uint8_t>> over_;
};

const std::vector<uint8_t> kStac{0x0f, 0x01, 0xcb}, kClac{0x0f, 0x01, 0xca}, kNop3{0x0f, 0x1f, 0x00};
const std::vector<uint8_t> kNop5{0x0f, 0x1f, 0x44, 0x00, 0x00};

struct Fixture {
  Project p{files()};
  std::string update, app;
  std::vector<Sym> syms;
  Requests r;
  size_t work = 0;
  uint64_t work_at = 0;
  uint32_t section = 0;
  uint64_t alt = 0, label = 0;   // pre offsets of the two sites
  int64_t slow = 0;              // pre offset of the label's target
  uint64_t size = 0;
  Fixture() {
    p.make();
    update = p.create("work.c", work_c("0x20"));
    app = p / "app";
    syms = symbols(app);
    r = requests(update, syms, 0);
    work = index_of(r, "work");
    work_at = symbol(syms, "work");
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
    return ls::match::match(ctx, run, ls::elf::Object::load(update), r.list, rw);
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

}  // namespace
}  // namespace mt
