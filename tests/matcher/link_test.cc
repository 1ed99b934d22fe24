// Run-pre matching against linked files read at their link addresses (non-PIE
// executables: absolute fields, GOT loads rewritten to immediates), and how the matcher
// decides *where* a function is: static names that repeat across files, byte-identical
// copies told apart by the data they touch, a function found only because a matched
// caller calls it, and sites it must refuse to interpret.
#include <gtest/gtest.h>

#include <cstdio>

#include "support.h"
#include "svc.h"

namespace mt {
namespace {

using ls::TargetAddr;
using ls::View;

TargetAddr addr(uint64_t v) { return TargetAddr(v); }

TEST(LinkedFileMatch, NonPieReadsAbsoluteFields) {
  Project p(svc_files("-O2 -fno-pie -fcf-protection", "-no-pie"));
  p.make();
  std::string update = p.create("srv.c", svc_srv("0x20", "2"));
  std::string app = p / "app";
  auto syms = symbols(app);
  FileImage file(app);
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[index_of(r, "handle")], addr(symbol(syms, "handle")));
  EXPECT_EQ(m->function_at[index_of(r, "handle_tail")], addr(symbol(syms, "handle_tail")));
  // `table(,%rax,4)`: an absolute, sign-extended 32-bit field with an addend.
  EXPECT_EQ(resolved(*m, run_symbol(update, "table"), View::Address), addr(symbol(syms, "table")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "scale", "srv.c"), View::Address), addr(symbol(syms, "scale", "srv.c")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "puts"), View::Address), addr(plt_entry(app, "puts")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_hits"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_hits")));
}

TEST(LinkedFileMatch, PicObjectsInNonPieExecutableReadGotLoadsTurnedIntoImmediates) {
  // -fPIC code linked into a non-PIE executable: `mov table@GOTPCREL(%rip),%rax`
  // becomes `mov $table,%rax`; GOT calls become direct; TLS becomes local-exec.
  Project p(svc_files("-O2 -fPIC -fno-plt", "-no-pie"));
  p.make();
  std::string update = p.create("srv.c", svc_srv("0x20", "2"));
  std::string app = p / "app";
  auto syms = symbols(app);
  FileImage file(app);
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[index_of(r, "handle")], addr(symbol(syms, "handle")));
  uint32_t table = run_symbol(update, "table");
  EXPECT_EQ(resolved(*m, table, View::Address), addr(symbol(syms, "table")));
  std::string ev = m->symbols.at({table, View::Address}).evidence;
  EXPECT_NE(ev.find("mov from GOT to mov immediate"), std::string::npos) << ev;
  EXPECT_EQ(resolved(*m, run_symbol(update, "util_id"), View::Address), addr(symbol(syms, "util_id")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "puts"), View::GotSlot), addr(got_slot(app, "R_X86_64_GLOB_DAT", "puts")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_hits"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_hits")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_local", "srv.c"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_local")));
}

// The utilities patch replaces util.c's scale, bump and util_twice. scale and bump have
// namesakes in srv.c; bump's namesake is byte for byte the same code.
std::string utility_update(const Project& p) { return p.create("util.c", svc_util("2", "2", "1")); }

TEST(LinkedFileMatch, RepeatedStaticNamesAreToldApartByContentAndByTheDataTheyUse) {
  Project p(svc_files("-O2", "-no-pie -fno-pie"));
  p.make();
  std::string update = utility_update(p);
  std::string app = p / "app";
  auto syms = symbols(app);
  ASSERT_EQ(all_named(syms, "scale").size(), 2u);
  ASSERT_EQ(all_named(syms, "bump").size(), 2u);
  std::string bumps = must("objdump -d --no-show-raw-insn " + app + " | grep -A4 '<bump>:'");
  FileImage file(app);
  // Every function of the name is a candidate, as a symbol table without file names
  // would give them.
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[index_of(r, "scale")], addr(symbol(syms, "scale", "util.c")));
  EXPECT_EQ(m->function_at[index_of(r, "bump")], addr(symbol(syms, "bump", "util.c"))) << bumps;
  EXPECT_EQ(m->function_at[index_of(r, "util_twice")], addr(symbol(syms, "util_twice")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "hits", "util.c"), View::Address), addr(symbol(syms, "hits", "util.c")));

  // Alone, bump cannot be placed: both copies match, and only util_twice's use of
  // util.c's `hits` told them apart above.
  std::vector<ls::match::Request> alone{r.list[index_of(r, "bump")]};
  auto ambiguous = ls::match::match(ctx, file, ls::update::Contents::load(update), alone);
  ASSERT_FALSE(ambiguous.ok());
  std::string msg = ambiguous.status().message();
  std::printf("report: %s\n", msg.c_str());
  EXPECT_NE(msg.find("util.o:bump: ambiguous"), std::string::npos) << msg;
  for (uint64_t a : all_named(syms, "bump")) EXPECT_NE(msg.find(fmt::format("{:#x}", a)), std::string::npos) << msg;
}

TEST(LinkedFileMatch, AFunctionWithoutCandidatesIsFoundThroughAMatchedCaller) {
  Project p(svc_files("-O2", "-no-pie -fno-pie"));
  p.make();
  std::string update = utility_update(p);
  std::string app = p / "app";
  auto syms = symbols(app);
  FileImage file(app);
  Requests r = requests(update, syms, 0);
  r.list[index_of(r, "scale")].candidates.clear();   // util_twice calls it
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[index_of(r, "scale")], addr(symbol(syms, "scale", "util.c")));

  // bump is called by no replaced function: without candidates and without ranges to
  // search it cannot be found, and the report says so.
  r.list[index_of(r, "bump")].candidates.clear();
  auto failed = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("util.o:bump: no candidate address and nothing to search"), std::string::npos)
      << failed.status().message();
}

TEST(LinkedFileMatch, TlsDescriptorsAreRefusedNamingTheSite) {
  Project p(svc_files("-O2 -fPIC -mtls-dialect=gnu2", "-no-pie"));
  p.make();
  std::string update = p.create("srv.c", svc_srv("0x20", "2"));
  std::string app = p / "app";
  FileImage file(app);
  Requests r = requests(update, symbols(app), 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ls::Exit::ToolError);
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  EXPECT_TRUE(msg.starts_with("srv.o:handle+0x")) << msg;
  EXPECT_NE(msg.find("cannot match R_X86_64_GOTPC32_TLSDESC against 'tls_"), std::string::npos) << msg;
  EXPECT_NE(msg.find("TLS descriptors (-mtls-dialect=gnu2) are not supported"), std::string::npos) << msg;
}

// Shapes of code GCC makes at every optimisation level: a jump table, a cold piece,
// a static local, string pools, a const table, recursion, frame pointers or not.
std::string zoo(const std::string& first_case) {
  return R"(#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static const char *names[] = {"zero", "one", "two", "three"};
int shape(int x, int y) {
  static int calls;
  calls++;
  switch (x & 7) {
    case 0: return y + )" + first_case + R"(;
    case 1: return y * 3 - 2;
    case 2: return y ^ 0x55;
    case 3: return y << 2;
    case 4: return (y * 7) / 3;
    case 5: return y - calls;
    case 6: return names[y & 3][0];
    default: break;
  }
  if (__builtin_expect(y < -1000, 0)) {
    fprintf(stderr, "bad %d %s\n", y, names[x & 3]);
    abort();
  }
  return y + x + 1;
}
int fact(int n) { return n <= 1 ? 1 : n * fact(n - 1) + )" + first_case + R"(; }
int main(void) { printf("ready %d %d\n", shape(3, 4), fact(5)); fflush(stdout); for (;;) pause(); }
)";
}

class Shapes : public testing::TestWithParam<std::string> {};

TEST_P(Shapes, EveryReplacedFunctionMatchesInTheRunningProgram) {
  Project p({{"zoo.c", zoo("11")},
             {"Makefile", "CFLAGS = " + GetParam() + "\nzoo: zoo.o\n\t$(CC) $(CFLAGS) -o $@ $^\n"}});
  p.make();
  std::string update = p.create("zoo.c", zoo("12"));
  std::string app = p / "zoo";
  auto syms = symbols(app);
  Program prog(app);
  int64_t bias = static_cast<int64_t>(prog.base(app) - first_load_vaddr(app));
  Requests r = requests(update, syms, bias);
  ASSERT_GE(r.names.size(), 2u);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  for (size_t i = 0; i < r.names.size(); ++i)
    EXPECT_EQ(m->function_at[i], addr(symbol(syms, r.names[i]) + static_cast<uint64_t>(bias))) << r.names[i];
  // fact's run symbol (its recursive call at -O0/-O1; GCC makes a loop of it above)
  // names the very address it was matched at.
  auto mf = manifest(update);
  for (const auto& rs : mf["run_symbols"]) {
    if (rs["name"] != "fact") continue;
    EXPECT_EQ(m->symbols.at({rs["index"].get<uint32_t>(), View::Address}).value, m->function_at[index_of(r, "fact")]);
  }
}

INSTANTIATE_TEST_SUITE_P(Flags, Shapes,
                         testing::Values("-O0", "-O1", "-O2", "-O3", "-Os", "-O2 -fno-omit-frame-pointer",
                                         "-O2 -fPIC -fno-plt", "-O3 -fcf-protection -fno-pie -no-pie"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string n;
                           for (char c : info.param) n += isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

}  // namespace
}  // namespace mt
