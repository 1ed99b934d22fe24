// The loader on hand-written objects: each test assembles the few instructions it is
// about with gcc into sections named like an update's post sections, resolves run
// symbols from a table, and checks the bytes the loader produced — and, for stubs and
// TLS rewrites, runs them in this process.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "loader/link.h"
#include "support.h"

using ls::TargetAddr;
using ls::View;
using lstest::get32;
using lstest::get64;

extern "C" __attribute__((noinline)) int loader_test_target(int x) { return x * 7 + 1; }
thread_local int loader_test_tls = 41;

namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

class Link : public ::testing::Test {
 protected:
  ls::elf::Object object(const std::string& source) { return lstest::assemble(tmp, "update", source); }

  // The hand-made objects are not sealed updates: read as such (update/contents.h).
  static ls::update::Contents contents(const ls::elf::Object& u) { return ls::update::Contents::unsealed(u); }

  ls::load::Plan plan_ok(const ls::elf::Object& u) {
    auto c = contents(u);
    auto p = ls::load::plan(ctx, c, c.post_sections);
    EXPECT_TRUE(p.ok()) << p.status().message();
    return p.ok() ? p.value() : ls::load::Plan{};
  }

  ls::load::Image link_ok(const ls::elf::Object& u, const ls::load::Plan& p, uint64_t base,
                          const ls::load::SymbolResolver& r) {
    auto img = ls::load::link(ctx, contents(u), p, TargetAddr(base), r);
    EXPECT_TRUE(img.ok()) << img.status().message();
    return img.ok() ? img.value() : ls::load::Image{};
  }

  std::string link_error(const ls::elf::Object& u, uint64_t base, const ls::load::SymbolResolver& r) {
    auto c = contents(u);
    auto p = ls::load::plan(ctx, c, c.post_sections);
    if (!p.ok()) return p.status().message();
    auto img = ls::load::link(ctx, c, *p, TargetAddr(base), r);
    EXPECT_FALSE(img.ok()) << "linking was expected to fail";
    return img.ok() ? std::string() : img.status().message();
  }

  uint64_t section_offset(const ls::elf::Object& u, const ls::load::Image& img, const std::string& name) {
    const auto* s = u.find_section(name);
    EXPECT_NE(s, nullptr) << name;
    return s ? img.section_at.at(s->index) - img.base : 0;
  }

  // Where the rel32 branch whose field is at image offset `field` lands.
  static uint64_t branch_target(const ls::load::Image& img, uint64_t field) {
    return img.base.value() + field + 4 + static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(get32(img.bytes, field))));
  }

  ls::Context ctx;
  lstest::TempDir tmp;
};

TEST_F(Link, LayoutPutsCodeFirstAlignsSectionsAndStartsWritableDataOnAPage) {
  auto u = object(R"(
	.section .livesplice.post.rodata.k,"a",@progbits
	.balign 32
k:	.quad 1
	.section .livesplice.post.text.f,"ax",@progbits
	.balign 16
f:	ret
	.section .livesplice.post.data.x,"aw",@progbits
	.balign 8
x:	.quad k
	.section .livesplice.post.text.g,"ax",@progbits
	.balign 64
g:	nop
	ret
	.section .livesplice.post.bss.y,"aw",@nobits
	.balign 16
y:	.zero 100
	.section .text.not_loaded,"ax",@progbits
h:	ret
)");
  auto secs = contents(u).post_sections;
  ASSERT_EQ(secs.size(), 5u);   // .text.not_loaded is not a post section
  auto p = plan_ok(u);
  ASSERT_EQ(p.sections.size(), 5u);
  std::vector<std::string> order;
  for (const auto& pl : p.sections) {
    order.push_back(u.section(pl.section).name);
    EXPECT_EQ(pl.offset % u.section(pl.section).align, 0u) << order.back();
  }
  EXPECT_EQ(order, (std::vector<std::string>{".livesplice.post.text.f", ".livesplice.post.text.g",
                                             ".livesplice.post.rodata.k", ".livesplice.post.data.x",
                                             ".livesplice.post.bss.y"}));
  EXPECT_EQ(p.sections[0].offset, 0u);
  EXPECT_EQ(p.sections[1].offset, 64u);
  EXPECT_LE(p.code_end, p.sections[2].offset);
  EXPECT_EQ(p.writable_offset % 4096, 0u);
  EXPECT_EQ(p.sections[3].offset, p.writable_offset);
  EXPECT_GE(p.writable_offset, p.readonly_end);
  EXPECT_EQ(p.size, p.sections[4].offset + 100);
  EXPECT_EQ(p.align, 4096u);

  lstest::TableResolver none(u);
  const uint64_t base = 0x7000'0000'0000;
  auto img = link_ok(u, p, base, none);
  ASSERT_EQ(img.bytes.size(), p.size);
  EXPECT_EQ(img.code.start.value(), base);
  EXPECT_EQ(img.code.end.value(), base + p.code_end);
  EXPECT_EQ(img.writable.start.value(), base + p.writable_offset);
  EXPECT_EQ(img.writable.end.value(), base + p.size);
  EXPECT_EQ(img.bytes[p.sections[0].offset], 0xc3);                    // f: ret
  EXPECT_EQ(img.bytes[p.sections[0].offset + 1], 0xcc);                // padding traps
  EXPECT_EQ(get64(img.bytes, p.sections[3].offset), base + p.sections[2].offset);   // x: .quad k
  for (uint64_t i = 0; i < 100; ++i) ASSERT_EQ(img.bytes[p.sections[4].offset + i], 0);
  EXPECT_EQ(img.symbol_at.size(), 5u);   // f g k x y

  auto misaligned = ls::load::link(ctx, contents(u), p, TargetAddr(base + 0x800), none);
  ASSERT_FALSE(misaligned.ok());
  EXPECT_NE(misaligned.status().message().find("not aligned"), std::string::npos) << misaligned.status().message();
}

TEST_F(Link, FarBranchesShareOneStubAndNearOnesStayDirect) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
	.globl f
f:	call far_fn
	jmp far_fn
	jne far_fn
	call near_fn
	ret
)");
  auto p = plan_ok(u);
  ASSERT_EQ(p.stubs.size(), 2u);   // reserved for both: reach is unknown at plan time
  EXPECT_EQ(p.stubs_offset % 16, 0u);
  const uint64_t base = 0x7000'0000'0000;
  lstest::TableResolver r(u);
  r.set("far_fn", View::Address, base + 16 * kGiB + 0x123);
  r.set("near_fn", View::Address, base - 0x1000);
  auto img = link_ok(u, p, base, r);
  EXPECT_EQ(img.stubs_used, 1u);
  uint64_t stub = base + p.stubs_offset;
  for (uint64_t field : {1u, 6u, 12u}) EXPECT_EQ(branch_target(img, field), stub) << field;
  EXPECT_EQ(branch_target(img, 17), base - 0x1000);
  const std::vector<uint8_t> jmp{0xff, 0x25, 0, 0, 0, 0};
  EXPECT_TRUE(std::equal(jmp.begin(), jmp.end(), img.bytes.begin() + static_cast<ptrdiff_t>(p.stubs_offset)));
  EXPECT_EQ(get64(img.bytes, p.stubs_offset + 6), base + 16 * kGiB + 0x123);
  // The second reserved stub is unused and traps.
  for (uint64_t i = 0; i < 16; ++i) EXPECT_EQ(img.bytes[p.stubs_offset + 16 + i], 0xcc);
}

TEST_F(Link, StubsRunInThisProcess) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
	.globl f, g
f:	sub $8, %rsp
	mov $5, %edi
	call far_fn
	add $8, %rsp
	ret
g:	mov $6, %edi
	jmp far_fn
)");
  auto p = plan_ok(u);
  auto target = reinterpret_cast<uint64_t>(&loader_test_target);
  for (bool far : {true, false}) {
    SCOPED_TRACE(far ? "far" : "near");
    // Far: 64 GiB above this binary and climbing. Near: just below it.
    lstest::Mapping m(far ? target + 64 * kGiB : target - 64 * 1024 * 1024,
                      far ? static_cast<int64_t>(kGiB) : -(1 << 20), p.size);
    ASSERT_TRUE(m.ok()) << "no free address range found";
    lstest::TableResolver r(u);
    r.set("far_fn", View::Address, target);
    auto img = link_ok(u, p, m.address(), r);
    EXPECT_EQ(img.stubs_used, far ? 1u : 0u);
    m.install(img);
    auto f = reinterpret_cast<int (*)()>(img.symbol_at.at(u.find_symbol("f")->index).value());
    auto g = reinterpret_cast<int (*)()>(img.symbol_at.at(u.find_symbol("g")->index).value());
    EXPECT_EQ(f(), 36);
    EXPECT_EQ(g(), 43);
  }
}

TEST_F(Link, OverflowsAreAllReportedWithPlaceInstructionSymbolAndValue) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	lea data(%rip), %rax
	movl $data, %eax
	movq $low, %rax
	ret
	.section .livesplice.post.data.t,"aw",@progbits
	.long data
	.long low
)");
  const uint64_t base = 0x7000'0000'0000;
  lstest::TableResolver r(u);
  r.set("data", View::Address, base + 3 * kGiB);
  r.set("low", View::Address, 0x1000);
  std::string e = link_error(u, base, r);
  EXPECT_NE(e.find("update.o:(.livesplice.post.text.f)+0x3: 'lea"), std::string::npos) << e;
  EXPECT_NE(e.find("pcrel32 against 'data'"), std::string::npos) << e;
  EXPECT_NE(e.find("beyond ±2 GiB"), std::string::npos) << e;
  EXPECT_NE(e.find(fmt::format("{:#x}", base + 3 * kGiB)), std::string::npos) << e;
  EXPECT_NE(e.find("(.livesplice.post.text.f)+0x8: 'mov $0x"), std::string::npos) << e;
  EXPECT_NE(e.find("abs32 against 'data': value 0x7000c0000000 does not fit in a zero-extended 32-bit field"),
            std::string::npos) << e;
  EXPECT_NE(e.find("update.o:(.livesplice.post.data.t)+0x0: abs32 against 'data'"), std::string::npos) << e;
  // Fields that fit are not reported.
  EXPECT_EQ(e.find("'low'"), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 3) << e;

  // All in reach: the same object links.
  r.set("data", View::Address, 0x2000);
  auto p = plan_ok(u);
  auto img = link_ok(u, p, 0x40000000, r);
  uint64_t t = section_offset(u, img, ".livesplice.post.data.t");
  EXPECT_EQ(get32(img.bytes, t), 0x2000u);
  EXPECT_EQ(get32(img.bytes, t + 4), 0x1000u);
}

TEST_F(Link, UnresolvedSymbolsAreNamedTogetherWithTheViewsTried) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	call lost_fn
	call lost_fn
	mov lost_var@GOTPCREL(%rip), %rax
	call found_fn
	ret
)");
  lstest::TableResolver r(u);
  r.set("found_fn", View::Address, 0x7000'0000'1000);
  std::string e = link_error(u, 0x7000'0000'0000, r);
  EXPECT_NE(e.find("undefined run symbol 'lost_fn': the resolver knows no address for it; needed at "),
            std::string::npos) << e;
  EXPECT_NE(e.find("update.o:(.livesplice.post.text.f)+0x1 and 1 more places: test table has no address for 'lost_fn'"),
            std::string::npos) << e;
  EXPECT_NE(e.find("undefined run symbol 'lost_var': the resolver knows no address or GOT slot for it"), std::string::npos)
      << e;
  EXPECT_EQ(e.find("found_fn"), std::string::npos) << e;
}

TEST_F(Link, GotAccessesUseOneOwnSlotOrTheProgramsSlotInReach) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	mov var@GOTPCREL(%rip), %rax
	mov var@GOTPCREL(%rip), %rcx
	mov only_slot@GOTPCREL(%rip), %rdx
	mov mine@GOTPCREL(%rip), %rdx
	ret
	.section .livesplice.post.data.mine,"aw",@progbits
mine:	.quad 0
)");
  auto p = plan_ok(u);
  ASSERT_EQ(p.got.size(), 3u);
  const uint64_t base = 0x7000'0000'0000;
  lstest::TableResolver r(u);
  r.set("var", View::Address, 0x1234'5678'9abc);   // far: the slot makes it reachable
  r.set("only_slot", View::GotSlot, base - 0x10000);
  auto img = link_ok(u, p, base, r);
  EXPECT_EQ(img.got_used, 2u);
  uint64_t slot = base + p.got_offset;
  EXPECT_EQ(branch_target(img, 3), slot);     // the 4-byte field ends each instruction here
  EXPECT_EQ(branch_target(img, 10), slot);
  EXPECT_EQ(get64(img.bytes, p.got_offset), 0x1234'5678'9abcu);
  EXPECT_EQ(branch_target(img, 17), base - 0x10000);
  uint64_t mine = img.symbol_at.at(u.find_symbol("mine")->index).value();
  EXPECT_EQ(get64(img.bytes, branch_target(img, 24) - base), mine);
  EXPECT_TRUE(img.readonly.contains(TargetAddr(slot))) << "GOT slots are not writable by the new code";

  lstest::TableResolver far(u);
  far.set("var", View::Address, 1);
  far.set("only_slot", View::GotSlot, base + 8 * kGiB);
  std::string e = link_error(u, base, far);
  EXPECT_NE(e.find("gotpcrel against 'only_slot': only the program's GOT slot at 0x" ), std::string::npos) << e;
}

TEST_F(Link, TlsLocalExecAndInitialExecTakeTheOffset) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	mov %fs:0, %rax
	lea x@tpoff(%rax), %rax
	mov x@gottpoff(%rip), %rcx
	mov y@gottpoff(%rip), %rdx
	ret
)");
  auto p = plan_ok(u);
  const uint64_t base = 0x7000'0000'0000;
  lstest::TableResolver r(u);
  r.set("x", View::TlsOffset, static_cast<uint64_t>(-0x40));
  r.set("y", View::TlsGotSlot, base - 0x2000);
  auto img = link_ok(u, p, base, r);
  EXPECT_EQ(static_cast<int32_t>(get32(img.bytes, 12)), -0x40);
  EXPECT_EQ(get64(img.bytes, branch_target(img, 19) - base), static_cast<uint64_t>(-0x40));
  EXPECT_EQ(branch_target(img, 26), base - 0x2000);

  lstest::TableResolver none(u);
  std::string e = link_error(u, base, none);
  EXPECT_NE(e.find("undefined run symbol 'x': the resolver knows no TLS offset"), std::string::npos) << e;
  EXPECT_NE(e.find("undefined run symbol 'y': the resolver knows no TLS offset or TLS GOT slot"), std::string::npos) << e;

  // A general-dynamic pair is not an initial-exec slot: it holds a module id, not the offset.
  lstest::TableResolver pair_only(u);
  pair_only.set("x", View::TlsOffset, static_cast<uint64_t>(-0x40));
  pair_only.set("y", View::TlsGdPair, base - 0x2000);
  e = link_error(u, base, pair_only);
  EXPECT_NE(e.find("undefined run symbol 'y': the resolver knows no TLS offset or TLS GOT slot"), std::string::npos) << e;
}

constexpr const char* kGeneralDynamic = R"(
	.section .livesplice.post.text.f,"ax",@progbits
	.globl f
f:	sub $8, %rsp
	.byte 0x66
	lea x@tlsgd(%rip), %rdi
	.value 0x6666
	rex64 call __tls_get_addr@PLT
	mov (%rax), %eax
	add $8, %rsp
	ret
)";

TEST_F(Link, GeneralDynamicBecomesLocalExecAndRuns) {
  auto u = object(kGeneralDynamic);
  auto p = plan_ok(u);
  uint64_t tp;
  asm("mov %%fs:0, %0" : "=r"(tp));
  auto tpoff = reinterpret_cast<uint64_t>(&loader_test_tls) - tp;   // the executable's TLS is static
  lstest::Mapping m(reinterpret_cast<uint64_t>(&loader_test_target) + 64 * kGiB, static_cast<int64_t>(kGiB), p.size);
  ASSERT_TRUE(m.ok());
  lstest::TableResolver r(u);
  r.set("x", View::TlsOffset, tpoff);
  auto img = link_ok(u, p, m.address(), r);
  EXPECT_FALSE(r.asked("__tls_get_addr")) << "the call is rewritten away";
  const std::vector<uint8_t> le{0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x8d, 0x80};
  EXPECT_TRUE(std::equal(le.begin(), le.end(), img.bytes.begin() + 4));
  EXPECT_EQ(get32(img.bytes, 16), static_cast<uint32_t>(tpoff));
  m.install(img);
  loader_test_tls = 41;
  EXPECT_EQ(reinterpret_cast<int (*)()>(m.address())(), 41);
  loader_test_tls = 42;
  EXPECT_EQ(reinterpret_cast<int (*)()>(m.address())(), 42);
}

TEST_F(Link, GeneralDynamicUsesTheProgramsPairWhenTheOffsetIsUnknown) {
  auto u = object(kGeneralDynamic);
  auto p = plan_ok(u);
  const uint64_t base = 0x7000'0000'0000;
  lstest::TableResolver r(u);
  r.set("x", View::TlsGdPair, base - 0x3000);
  r.set("__tls_get_addr", View::Address, base - 0x8000);
  auto img = link_ok(u, p, base, r);
  EXPECT_EQ(img.bytes[4], 0x66);   // not rewritten
  EXPECT_EQ(branch_target(img, 8), base - 0x3000);
  EXPECT_EQ(branch_target(img, 16), base - 0x8000);

  lstest::TableResolver none(u);
  none.set("__tls_get_addr", View::Address, base - 0x8000);
  std::string e = link_error(u, base, none);
  EXPECT_NE(e.find("undefined run symbol 'x': the resolver knows no TLS offset or TLS GD pair"), std::string::npos) << e;

  // An initial-exec slot is not a GD pair: __tls_get_addr would read its offset as a module id.
  lstest::TableResolver slot_only(u);
  slot_only.set("x", View::TlsGotSlot, base - 0x3000);
  slot_only.set("__tls_get_addr", View::Address, base - 0x8000);
  e = link_error(u, base, slot_only);
  EXPECT_NE(e.find("undefined run symbol 'x': the resolver knows no TLS offset or TLS GD pair"), std::string::npos) << e;
}

TEST_F(Link, LocalDynamicBecomesLocalExec) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	lea y@tlsld(%rip), %rdi
	call __tls_get_addr@PLT
	mov y@dtpoff(%rax), %eax
	mov z@dtpoff(%rax), %ecx
	ret
)");
  auto p = plan_ok(u);
  lstest::TableResolver r(u);
  r.set("y", View::TlsOffset, static_cast<uint64_t>(-0x20));
  r.set("z", View::TlsOffset, static_cast<uint64_t>(-0x1c));
  auto img = link_ok(u, p, 0x7000'0000'0000, r);
  const std::vector<uint8_t> le{0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0};
  EXPECT_TRUE(std::equal(le.begin(), le.end(), img.bytes.begin()));
  EXPECT_EQ(static_cast<int32_t>(get32(img.bytes, 14)), -0x20);
  EXPECT_EQ(static_cast<int32_t>(get32(img.bytes, 20)), -0x1c);

  lstest::TableResolver none(u);
  std::string e = link_error(u, 0x7000'0000'0000, none);
  EXPECT_NE(e.find("undefined run symbol 'y': the resolver knows no TLS offset"), std::string::npos) << e;
}

TEST_F(Link, TlsSequencesWithGotCallsAreRewrittenToo) {
  // -fno-plt calls __tls_get_addr through the GOT: the GD sequence keeps its length,
  // the LD one is a byte longer and gets one more prefix.
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	.byte 0x66
	lea x@tlsgd(%rip), %rdi
	.byte 0x66
	rex64 call *__tls_get_addr@GOTPCREL(%rip)
	lea y@tlsld(%rip), %rdi
	call *__tls_get_addr@GOTPCREL(%rip)
	mov y@dtpoff(%rax), %eax
	ret
)");
  auto p = plan_ok(u);
  lstest::TableResolver r(u);
  r.set("x", View::TlsOffset, static_cast<uint64_t>(-0x30));
  r.set("y", View::TlsOffset, static_cast<uint64_t>(-0x20));
  auto img = link_ok(u, p, 0x7000'0000'0000, r);
  EXPECT_FALSE(r.asked("__tls_get_addr"));
  EXPECT_EQ(img.got_used, 0u);
  const std::vector<uint8_t> gd{0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x8d, 0x80, 0xd0, 0xff, 0xff, 0xff};
  const std::vector<uint8_t> ld{0x66, 0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0};
  EXPECT_TRUE(std::equal(gd.begin(), gd.end(), img.bytes.begin()));
  EXPECT_TRUE(std::equal(ld.begin(), ld.end(), img.bytes.begin() + 16));
  EXPECT_EQ(static_cast<int32_t>(get32(img.bytes, 31)), -0x20);
}

TEST_F(Link, UndefinedGlobalsBindToTheUpdatesOwnDefinitions) {
  // As the update writer emits a new function of one object called from another: an
  // undefined global and a defined global of the same name in one symbol table. gas
  // cannot write that, so the reference is renamed afterwards.
  lstest::assemble(tmp, "update", R"(
	.section .livesplice.post.text.caller,"ax",@progbits
caller:	call helper_ref
	ret
	.section .livesplice.post.data.table,"aw",@progbits
	.quad helper_ref
	.section .livesplice.post.text.helper,"ax",@progbits
	.globl helper
helper:	ret
)");
  auto renamed = lstest::run({"objcopy", "--redefine-sym", "helper_ref=helper", tmp / "update.o"});
  ASSERT_EQ(renamed.status, 0) << renamed.output();
  auto u = ls::elf::Object::load(tmp / "update.o");
  int named = 0;
  for (const auto& s : u.symbols()) named += s.name == "helper";
  ASSERT_EQ(named, 2);
  auto p = plan_ok(u);
  EXPECT_TRUE(p.stubs.empty()) << "a call into the image never needs a stub";
  lstest::TableResolver r(u);
  auto img = link_ok(u, p, 0x7000'0000'0000, r);
  EXPECT_FALSE(r.asked("helper"));
  uint64_t helper = img.symbol_at.at(u.find_symbol("helper")->index).value();
  uint64_t caller = section_offset(u, img, ".livesplice.post.text.caller");
  EXPECT_EQ(branch_target(img, caller + 1), helper);
  EXPECT_EQ(get64(img.bytes, section_offset(u, img, ".livesplice.post.data.table")), helper);
}

TEST_F(Link, FileLocalRunSymbolsNeverBindToTheUpdatesGlobals) {
  // The caller's object has a static helper of its own; another object of the update
  // adds a global helper. The manifest marks the reference file-local: it must resolve
  // to the running program's static, not to the new global.
  lstest::assemble(tmp, "update", R"(
	.section .livesplice.post.text.caller,"ax",@progbits
caller:	call helper_ref
	ret
	.section .livesplice.post.text.helper,"ax",@progbits
	.globl helper
helper:	ret
)");
  ASSERT_EQ(lstest::run({"objcopy", "--redefine-sym", "helper_ref=helper", tmp / "update.o"}).status, 0);
  uint32_t undef = 0;
  const auto renamed = ls::elf::Object::load(tmp / "update.o");
  for (const auto& s : renamed.symbols())
    if (s.name == "helper" && !s.defined()) undef = s.index;
  ASSERT_NE(undef, 0u);
  // A whole manifest: the loader reads it through the schema like every reader.
  auto manifest = [&](const std::string& local) {
    return fmt::format(R"({{"format": "livesplice-update", "version": 3,
    "livesplice_version": "0.1.0", "created": "2024-01-01T00:00:00Z", "arch": "x86_64", "build_system": "make",
    "targets": [], "patch": {{"name": "fix.patch", "files": ["src/a.c"], "text": ""}}, "sources": ["src/a.c"],
    "objects": [{{"path": "src/a.o", "source": "src/a.c", "targets": [], "pre": "pre-build", "notes": []}}],
    "functions": [], "data": [], "sections": [], "run_symbols": [
    {{"index": {}, "name": "helper", "local": {}, "kind": "symbol", "object": 0, "source": "src/a.c"}}], "hooks": [], "ignored": [],
    "summary": {{"functions_changed": 0, "functions_new": 0, "data_new": 0}}}})", undef, local);
  };
  lstest::write_file(tmp / "manifest.json", manifest("true"));
  auto added = lstest::run({"objcopy", "--add-section", ".livesplice.manifest=" + tmp / "manifest.json", tmp / "update.o"});
  ASSERT_EQ(added.status, 0) << added.output();
  auto u = ls::elf::Object::load(tmp / "update.o");
  ASSERT_EQ(u.symbol(undef).name, "helper");
  ASSERT_FALSE(u.symbol(undef).defined());

  auto p = plan_ok(u);
  EXPECT_TRUE(p.bound.empty());
  ASSERT_EQ(p.stubs.size(), 1u);
  lstest::TableResolver r(u);
  r.set("helper", View::Address, 0x7000'0000'0000 - 0x4000);
  auto img = link_ok(u, p, 0x7000'0000'0000, r);
  EXPECT_EQ(branch_target(img, section_offset(u, img, ".livesplice.post.text.caller") + 1), 0x7000'0000'0000u - 0x4000);

  lstest::TableResolver none(u);
  std::string e = link_error(u, 0x7000'0000'0000, none);
  EXPECT_NE(e.find("undefined run symbol 'helper' (file-local symbol in src/a.c, object src/a.o)"), std::string::npos) << e;

  // A manifest that breaks the schema is refused, never read around.
  lstest::write_file(tmp / "manifest.json", manifest("\"yes\""));
  auto updated = lstest::run({"objcopy", "--update-section", ".livesplice.manifest=" + tmp / "manifest.json",
                              tmp / "update.o"});
  ASSERT_EQ(updated.status, 0) << updated.output();
  auto broken = ls::elf::Object::load(tmp / "update.o");
  std::string refused;
  try {
    auto c = contents(broken);
    auto q = ls::load::plan(ctx, c, c.post_sections);
    if (!q.ok()) refused = q.status().message();
  } catch (const ls::Error& x) {
    refused = x.what();
  }
  ASSERT_FALSE(refused.empty());
  EXPECT_NE(refused.find("manifest field /run_symbols/0/local: is string, must be true or false"),
            std::string::npos) << refused;
}

TEST_F(Link, PlanRefusesWhatCannotBeLoaded) {
  auto u = object(R"(
	.section .livesplice.post.tbss.t,"awT",@nobits
t:	.zero 4
	.section .livesplice.post.text.f,"ax",@progbits
f:	movabs $g@GOTOFF, %rax
	lea elsewhere(%rip), %rax
	ret
	.section .text.elsewhere,"ax",@progbits
elsewhere: ret
)");
  auto c = contents(u);
  auto p = ls::load::plan(ctx, c, c.post_sections);
  ASSERT_FALSE(p.ok());
  std::string e = p.status().message();
  EXPECT_NE(e.find("update.o:(.livesplice.post.tbss.t): thread-local data cannot be added"), std::string::npos) << e;

  std::vector<uint32_t> code_only{u.find_section(".livesplice.post.text.f")->index};
  auto q = ls::load::plan(ctx, c, code_only);
  ASSERT_FALSE(q.ok());
  e = q.status().message();
  EXPECT_NE(e.find("+0x2: relocation type 25 (gotoff64) against 'g' is not supported"), std::string::npos) << e;
  EXPECT_NE(e.find("+0xd: refers to '.text.elsewhere' in .text.elsewhere, which is not part of the image"),
            std::string::npos) << e;
}

TEST_F(Link, OutputIsDeterministic) {
  auto u = object(R"(
	.section .livesplice.post.text.f,"ax",@progbits
f:	call a
	call b
	mov c@GOTPCREL(%rip), %rax
	lea .LC0(%rip), %rdi
	ret
	.section .livesplice.post.rodata.str,"aMS",@progbits,1
.LC0:	.string "hello"
	.section .livesplice.post.data.fp,"aw",@progbits
	.quad a, b, f
)");
  const uint64_t base = 0x7000'0000'0000;
  lstest::TableResolver r(u);
  r.set("a", View::Address, base + 40 * kGiB);
  r.set("b", View::Address, base - 0x5000);
  r.set("c", View::Address, base + 0x1000'0000);
  auto p1 = plan_ok(u), p2 = plan_ok(u);
  auto i1 = link_ok(u, p1, base, r), i2 = link_ok(u, p2, base, r);
  EXPECT_EQ(i1.bytes, i2.bytes);
  EXPECT_EQ(i1.symbol_at, i2.symbol_at);
  uint64_t fp = section_offset(u, i1, ".livesplice.post.data.fp");
  EXPECT_EQ(get64(i1.bytes, fp), base + 40 * kGiB);   // function pointers in data are plain
  EXPECT_EQ(get64(i1.bytes, fp + 8), base - 0x5000);
  EXPECT_EQ(get64(i1.bytes, fp + 16), base);
}

}  // namespace
