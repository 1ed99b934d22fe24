// Run-time rewrites supplied by the target (match::Rewrites): code built as the kernel is
// (-pg -mfentry, return and indirect-branch thunks; real gcc and ld, a real update), run
// bytes taken from the linked file and then rewritten by hand the way a kernel rewrites
// itself at boot. A rewrite is accepted only at a site naming the symbol it is listed
// for; any other difference is still refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "elf/object.h"
#include "arch/target.h"
#include "support.h"

namespace mt {
namespace {

using ls::TargetAddr;
using ls::View;
using ls::match::Rewrites;
using ls::match::RunForm;

const char* kThunks = R"(	.text
	.globl __fentry__
__fentry__:
	ret
	.globl __x86_return_thunk
__x86_return_thunk:
	ret
	int3
	.globl __x86_indirect_thunk_rax
__x86_indirect_thunk_rax:
	jmp *%rax
	.globl trampoline
trampoline:
	ret
)";

std::string work_c(const std::string& k) {
  return R"(int (*hook)(int);
__attribute__((noinline)) int helper(int x) { return x * 3 + 1; }
int work(int x) { return helper(x) + hook(x) + )" + k + R"(; }
)";
}

std::map<std::string, std::string> files() {
  return {{"main.c", "int work(int);\nint main(void) { return work(1) & 0; }\n"},
          {"thunks.S", kThunks},
          {"work.c", work_c("0x10")},
          {"Makefile",
           "CFLAGS = -O2 -fno-pie -fcf-protection=none -pg -mfentry -mfunction-return=thunk-extern "
           "-mindirect-branch=thunk-extern\nLDFLAGS = -no-pie\n"
           "app: main.o work.o thunks.o\n\t$(CC) $(LDFLAGS) -o $@ $^\n"
           "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n%.o: %.S\n\t$(CC) -c -o $@ $<\n"}};
}

struct Fixture : BuiltWork {
  std::map<std::string, uint64_t> sites;   // symbol -> run address of its instruction in work
  uint64_t work_size = 0;                   // of its pre code
  uint64_t constant = 0;                    // run address of the byte holding 0x10 (pre's constant)
  Fixture() : BuiltWork(files(), work_c("0x20")) {
    ls::elf::Object u = ls::elf::Object::load(update);
    for (const auto& rel : u.section(r.list[work].pre_section).relocs) {
      const std::string& name = u.symbol(rel.symbol).name;
      // opcode: one byte before the field (call/jmp rel32), two for a jcc
      uint64_t op = rel.offset - (rel.offset >= 2 && u.section(r.list[work].pre_section).bytes[rel.offset - 2] == 0x0f ? 2 : 1);
      sites.emplace(name, work_at + op);
    }
    // The patched constant: a 0x10 byte of pre code outside every relocated field.
    const auto& sec = u.section(r.list[work].pre_section);
    work_size = sec.bytes.size();
    for (uint64_t k = 0; k < sec.bytes.size() && !constant; ++k) {
      bool field = std::any_of(sec.relocs.begin(), sec.relocs.end(),
                               [&](const auto& rel) { return k >= rel.offset && k < rel.offset + rel.width; });
      if (sec.bytes[k] == 0x10 && !field) constant = work_at + k;
    }
    EXPECT_NE(constant, 0u) << "work's pre code has no 0x10 outside its relocations";
  }
  ls::Result<ls::match::Match> match(const ls::match::CodeSource& run, const Rewrites& rw = {}) {
    ls::Context ctx = quiet_context();
    return ls::match::match(ctx, run, ls::update::Contents::load(update), r.list, rw);
  }
  uint64_t site(const std::string& name) {
    EXPECT_TRUE(sites.count(name)) << "no site naming " << name << " in work's pre code";
    return sites.count(name) ? sites.at(name) : 0;
  }
};

// The table a test gives: the forms of the kernel that these sites can take.
Rewrites table() {
  Rewrites rw;
  rw.by_symbol["__fentry__"] = {RunForm{"ftrace NOP", {0xe8}, {0x0f, 0x1f, 0x44, 0x00, 0x00}},
                                RunForm{"ftrace call", {0xe8}, {0xe8}, RunForm::Branch::Outside}};
  rw.by_symbol["__x86_return_thunk"] = {RunForm{"ret; int3", {0xe9}, {0xc3, 0xcc, 0xcc, 0xcc, 0xcc}}};
  rw.by_symbol["__x86_indirect_thunk_rax"] = {RunForm{"call *%rax", {0xe8}, {0xff, 0xd0, 0x0f, 0x1f, 0x00}},
                                              RunForm{"jmp *%rax", {0xe9}, {0xff, 0xe0, 0xcc, 0x66, 0x90}}};
  return rw;
}

std::vector<uint8_t> rel32_call(uint64_t from, uint64_t to) {
  int32_t rel = static_cast<int32_t>(static_cast<int64_t>(to - (from + 5)));
  std::vector<uint8_t> b{0xe8, 0, 0, 0, 0};
  std::memcpy(b.data() + 1, &rel, 4);
  return b;
}

const std::vector<uint8_t> kNop5{0x0f, 0x1f, 0x44, 0x00, 0x00};
const std::vector<uint8_t> kRet{0xc3, 0xcc, 0xcc, 0xcc, 0xcc};

TEST(Rewrites, TheKernelsFormsAreAcceptedAtTheirOwnSitesAndRevealNothing) {
  Fixture f;
  FileImage file(f.app);
  {  // as linked: matches with or without the table
    auto m = f.match(file, table());
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m->function_at[f.work], TargetAddr(f.work_at));
  }
  Rewritten run(file);
  run.put(f.site("__fentry__"), kNop5);
  run.put(f.site("__x86_return_thunk"), kRet);
  run.put(f.site("__x86_indirect_thunk_rax"), {0xff, 0xd0, 0x0f, 0x1f, 0x00});
  auto plain = f.match(run);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.status().code(), ls::Exit::Unsafe);
  EXPECT_NE(plain.status().message().find("__fentry__"), std::string::npos) << plain.status().message();

  auto m = f.match(run, table());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[f.work], TargetAddr(f.work_at));
  // helper is still read from its call; the rewritten sites name nothing any more
  EXPECT_EQ(resolved(*m, run_symbol(f.update, "helper"), View::Address), TargetAddr(symbol(f.syms, "helper")));
  for (const char* gone : {"__fentry__", "__x86_return_thunk", "__x86_indirect_thunk_rax"})
    EXPECT_EQ(m->symbols.count({run_symbol(f.update, gone), View::Address}), 0u) << gone;

  // ftrace's trampoline: a call out of the function, accepted; into the function, not
  Rewritten traced(file);
  traced.put(f.site("__fentry__"), rel32_call(f.site("__fentry__"), symbol(f.syms, "trampoline")));
  EXPECT_TRUE(f.match(traced, table()).ok());
  Rewritten inward(file);
  inward.put(f.site("__fentry__"), rel32_call(f.site("__fentry__"), f.work_at + 8));
  EXPECT_FALSE(f.match(inward, table()).ok());
}

TEST(Rewrites, AFormIsRefusedAtASiteOfAnotherSymbolAndRealDifferencesStay) {
  Fixture f;
  FileImage file(f.app);
  auto refused = [&](const Rewritten& run, const std::string& what) {
    auto m = f.match(run, table());
    ASSERT_FALSE(m.ok()) << what;
    EXPECT_EQ(m.status().code(), ls::Exit::Unsafe) << what;
  };
  Rewritten nop_at_helper(file);
  nop_at_helper.put(f.site("helper"), kNop5);
  refused(nop_at_helper, "a NOP where pre calls helper");
  Rewritten ret_at_fentry(file);
  ret_at_fentry.put(f.site("__fentry__"), kRet);
  refused(ret_at_fentry, "ret; int3 at the fentry site");
  Rewritten nop_at_return(file);
  nop_at_return.put(f.site("__x86_return_thunk"), kNop5);
  refused(nop_at_return, "the fentry NOP at the return thunk site");
  // A real difference beside rewritten sites: the constant of another build.
  Rewritten other(file);
  other.put(f.site("__fentry__"), kNop5);
  other.put(f.site("__x86_return_thunk"), kRet);
  other.put(f.constant, {0x30});
  refused(other, "another constant");
}

TEST(Rewrites, TheKernelTableAcceptsItsFormsAndRejectsMalformedOnes) {
  Fixture f;
  FileImage file(f.app);
  Rewrites kernel = ls::arch::target(ls::elf::Machine::X86_64).kernel_rewrites();
  Rewritten run(file);
  run.put(f.site("__fentry__"), kNop5);
  run.put(f.site("__x86_return_thunk"), kRet);
  run.put(f.site("__x86_indirect_thunk_rax"), {0xff, 0xd0, 0x0f, 0x1f, 0x00});
  auto m = f.match(run, kernel);
  ASSERT_TRUE(m.ok()) << m.status().message();
  Rewritten lfence(file);
  lfence.put(f.site("__x86_indirect_thunk_rax"), {0x0f, 0xae, 0xe8, 0xff, 0xd0});
  EXPECT_TRUE(f.match(lfence, kernel).ok());
  Rewritten wrong_reg(file);   // call *%rcx is the rcx thunk's form, not rax's
  wrong_reg.put(f.site("__x86_indirect_thunk_rax"), {0xff, 0xd1, 0x0f, 0x1f, 0x00});
  EXPECT_FALSE(f.match(wrong_reg, kernel).ok());

  // static_cpu_has: `jmp .altinstr_aux` runs as a jump to one of the function's own
  // labels; that form is listed for .altinstr_aux only, so here a table lists it for the
  // return thunk site: `jmp rel8` + NOP3 into the function matches, out of it does not.
  Rewrites inside;
  inside.by_symbol["__x86_return_thunk"] = {
      RunForm{"short jump home", {0xe9}, {0xeb}, RunForm::Branch::Inside, 1, {0x0f, 0x1f, 0x00}}};
  uint64_t at = f.site("__x86_return_thunk");
  auto short_jump = [&](uint64_t to) {
    return std::vector<uint8_t>{0xeb, static_cast<uint8_t>(static_cast<int8_t>(static_cast<int64_t>(to - (at + 2)))),
                                0x0f, 0x1f, 0x00};
  };
  Rewritten home(file), away(file);
  home.put(at, short_jump(f.work_at + 5));
  uint64_t past = f.work_at + f.work_size + 8;
  ASSERT_LT(past - (at + 2), 128u) << "work is too long for a rel8 past its end";
  away.put(at, short_jump(past));
  auto h = f.match(home, inside);
  EXPECT_TRUE(h.ok()) << h.status().message();
  EXPECT_FALSE(f.match(away, inside).ok());

  Rewrites bad;
  bad.by_symbol["__fentry__"] = {RunForm{"short", {0xe8}, {0x90}}};
  auto b = f.match(file, bad);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), ls::Exit::ToolError);
}

}  // namespace
}  // namespace mt
