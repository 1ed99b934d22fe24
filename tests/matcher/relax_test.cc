// The rarer rewrites ld makes, each produced for real: initial-exec TLS relaxed to
// local-exec (mov and add forms, including the %r12 special case), general-dynamic TLS
// relaxed to initial-exec for a variable of a shared library, GOT operands of cmp and
// test turned into immediates, and the -z call-nop variants of a relaxed GOT call. The
// add/cmp/test forms are written with inline assembly because GCC does not emit them
// on its own; ld sees them as it would any compiler's.
#include <gtest/gtest.h>

#include <cstring>

#include "support.h"
#include "svc.h"

namespace mt {
namespace {

using ls::TargetAddr;
using ls::View;

std::string use_c(const std::string& k) {
  return R"(extern __thread int lib_tls, exe_tls;
extern int table[4];
int use(int x) { lib_tls += x; exe_tls += 2 * x; return lib_tls * exe_tls + )" +
         k + R"(; }
long tp_add(void) {
  long p = 0;
  __asm__ volatile("addq exe_tls@gottpoff(%%rip), %0" : "+r"(p));
  register long q __asm__("r12") = 0;
  __asm__ volatile("addq exe_tls@gottpoff(%%rip), %0" : "+r"(q));
  return p + q + )" +
         k + R"(;
}
long got_ops(long v) {
  long r = 0, s = 0;
  __asm__ volatile("cmpq table@GOTPCREL(%%rip), %1\n\tsete %b0" : "+q"(r) : "r"(v));
  __asm__ volatile("testq %1, table@GOTPCREL(%%rip)\n\tsetne %b0" : "+q"(s) : "r"(v));
  return r + s + )" +
         k + R"(;
}
)";
}

// An executable using a TLS variable of its own (exe_tls, other.c) and one of a shared
// library (lib_tls), compiled with `cflags`, linked with `ldflags`.
Project tls_project(const std::string& cflags, const std::string& ldflags) {
  return Project({{"lib.c", "__thread int lib_tls = 5;\n"},
                  {"other.c", "__thread int exe_tls = 6;\nint table[4] = {1, 2, 3, 4};\n"},
                  {"use.c", use_c("1")},
                  {"main.c",
                   "#include <stdio.h>\n#include <unistd.h>\nint use(int);\nlong tp_add(void);\nlong got_ops(long);\n"
                   "int main(void) { printf(\"ready %d %ld %ld\\n\", use(2), tp_add(), got_ops(3)); fflush(stdout);"
                   " for (;;) pause(); }\n"},
                  {"Makefile", "app: main.o use.o other.o liblib.so\n"
                               "\t$(CC) " + ldflags + " -o $@ main.o use.o other.o -L. -llib -Wl,-rpath,'$$ORIGIN'\n"
                               "liblib.so: lib.c\n\t$(CC) -O2 -fPIC -shared -o $@ lib.c\n"
                               "use.o: use.c\n\t$(CC) -O2 " + cflags + " -c -o $@ use.c\n"
                               "%.o: %.c\n\t$(CC) -O2 -c -o $@ $<\n"}});
}

TEST(Relaxations, InitialExecTlsInAPieBecomesLocalExecInEveryForm) {
  Project p = tls_project("-fPIE", "-pie");
  p.make();
  std::string update = p.create("use.c", use_c("2"));
  std::string app = p / "app";
  std::string code = must("objdump -d --no-show-raw-insn " + app);
  auto syms = symbols(app);
  Program prog(app, {{"LD_LIBRARY_PATH", p.dir.path()}});
  int64_t bias = static_cast<int64_t>(prog.base(app) - first_load_vaddr(app));
  Requests r = requests(update, syms, bias);
  ASSERT_EQ(r.names.size(), 3u);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message() << "\n" << code;
  for (size_t i = 0; i < r.names.size(); ++i)
    EXPECT_EQ(m->function_at[i], TargetAddr(symbol(syms, r.names[i]) + static_cast<uint64_t>(bias))) << r.names[i];

  // exe_tls: every initial-exec access (mov, add to %rax-like registers, add to %r12)
  // was rewritten and reveals the tp offset; all sites agree.
  const auto& exe = resolution(*m, run_symbol(update, "exe_tls"), View::TlsOffset);
  EXPECT_EQ(exe.value.value(), static_cast<uint64_t>(tp_offset(app, syms, "exe_tls")));
  EXPECT_NE(exe.evidence.find("initial-exec to local-exec"), std::string::npos) << exe.evidence;
  // lib_tls lives in the library: its initial-exec GOT slot stays.
  EXPECT_EQ(resolution(*m, run_symbol(update, "lib_tls"), View::TlsGotSlot).value,
            TargetAddr(got_slot(app, "R_X86_64_TPOFF64", "lib_tls") + static_cast<uint64_t>(bias)));
  // In a PIE, cmp/test cannot take an immediate address: the GOT slot stays, and it
  // holds table's address once ld.so has relocated it.
  TargetAddr slot = resolution(*m, run_symbol(update, "table"), View::GotSlot).value;
  uint64_t held = 0;
  ASSERT_TRUE(mem.read(slot, {reinterpret_cast<uint8_t*>(&held), 8}).ok());
  EXPECT_EQ(held, symbol(syms, "table") + static_cast<uint64_t>(bias));
}

TEST(Relaxations, GeneralDynamicTlsAndGotOperandsInANonPieExecutable) {
  Project p = tls_project("-fPIC", "-no-pie");
  p.make();
  std::string update = p.create("use.c", use_c("2"));
  std::string app = p / "app";
  std::string code = must("objdump -d --no-show-raw-insn " + app);
  auto syms = symbols(app);
  FileImage file(app);
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message() << "\n" << code;
  for (size_t i = 0; i < r.names.size(); ++i)
    EXPECT_EQ(m->function_at[i], TargetAddr(symbol(syms, r.names[i]))) << r.names[i];

  const auto& lib = resolution(*m, run_symbol(update, "lib_tls"), View::TlsGotSlot);
  EXPECT_EQ(lib.value, TargetAddr(got_slot(app, "R_X86_64_TPOFF64", "lib_tls")));
  EXPECT_NE(lib.evidence.find("general-dynamic to initial-exec"), std::string::npos) << lib.evidence;
  const auto& exe = resolution(*m, run_symbol(update, "exe_tls"), View::TlsOffset);
  EXPECT_EQ(exe.value.value(), static_cast<uint64_t>(tp_offset(app, syms, "exe_tls")));
  // cmpq/testq table@GOTPCREL(%rip) became cmp/test with $table.
  const auto& table = resolution(*m, run_symbol(update, "table"), View::Address);
  EXPECT_EQ(table.value, TargetAddr(symbol(syms, "table")));
  EXPECT_NE(table.evidence.find("GOT operand to immediate"), std::string::npos) << table.evidence;
}

class CallNop : public testing::TestWithParam<std::string> {};

TEST_P(CallNop, RelaxedGotCallsMatchWhateverPaddingLdWasToldToUse) {
  Project p(svc_files("-O2 -fPIC -fno-plt", "-no-pie -Wl,-z,call-nop=" + GetParam()));
  p.make();
  std::string update = p.create("srv.c", svc_srv("0x20", "2"));
  std::string app = p / "app";
  auto syms = symbols(app);
  FileImage file(app);
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message() << "\n" << must("objdump -d --no-show-raw-insn " + app);
  EXPECT_EQ(m->function_at[index_of(r, "handle")], TargetAddr(symbol(syms, "handle")));
  const auto& id = resolution(*m, run_symbol(update, "util_id"), View::Address);
  EXPECT_EQ(id.value, TargetAddr(symbol(syms, "util_id")));
}

INSTANTIATE_TEST_SUITE_P(Ld, CallNop, testing::Values("prefix-addr", "prefix-0x90", "prefix-0x3e", "suffix-nop", "suffix-0x90"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string n;
                           for (char c : info.param) n += isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

}  // namespace
}  // namespace mt
