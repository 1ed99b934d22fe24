// Run-pre matching against running processes (/proc/PID/mem): position-independent
// executables as distributions build them, with and without -fno-plt, a shared library,
// and a program built from other source than the update (refused, with the
// instructions that differ).
#include <gtest/gtest.h>

#include <cstdio>

#include "support.h"
#include "svc.h"

namespace mt {
namespace {

using ls::TargetAddr;
using ls::View;
using ls::match::Match;

TargetAddr at(uint64_t link, int64_t bias) { return TargetAddr(link + static_cast<uint64_t>(bias)); }

// The handler patch: handle() adds another constant, handle_tail() another offset.
std::string handler_update(const Project& p) { return p.create("srv.c", svc_srv("0x20", "2")); }

TEST(ProcessMatch, PieWithCetMatchesEveryFunctionAndResolvesItsReferences) {
  Project p(svc_files("-O2 -fcf-protection", ""));
  p.make();
  std::string update = handler_update(p);
  std::string app = p / "app";
  auto syms = symbols(app);
  Program prog(app);
  int64_t bias = static_cast<int64_t>(prog.base(app) - first_load_vaddr(app));

  Requests r = requests(update, syms, bias);
  ASSERT_EQ(r.names.size(), 2u);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();

  EXPECT_EQ(m->function_at[index_of(r, "handle")], at(symbol(syms, "handle"), bias));
  EXPECT_EQ(m->function_at[index_of(r, "handle_tail")], at(symbol(syms, "handle_tail"), bias));
  // Static functions: the srv.c copies, although util.c has functions of the same names.
  EXPECT_EQ(resolved(*m, run_symbol(update, "scale", "srv.c"), View::Address), at(symbol(syms, "scale", "srv.c"), bias));
  EXPECT_EQ(resolved(*m, run_symbol(update, "bump", "srv.c"), View::Address), at(symbol(syms, "bump", "srv.c"), bias));
  EXPECT_EQ(resolved(*m, run_symbol(update, "table"), View::Address), at(symbol(syms, "table"), bias));
  EXPECT_EQ(resolved(*m, run_symbol(update, "util_id"), View::Address), at(symbol(syms, "util_id"), bias));
  // libc through the PLT (.plt.sec with CET): the call lands in the PLT entry.
  EXPECT_EQ(resolved(*m, run_symbol(update, "puts"), View::Address), at(plt_entry(app, "puts"), bias));
  EXPECT_EQ(resolved(*m, run_symbol(update, "printf"), View::Address), at(plt_entry(app, "printf"), bias));
  // Local-exec TLS: thread-pointer offsets.
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_hits"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_hits")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_local", "srv.c"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_local")));
  // Evidence names the function and the offset of the site.
  auto ev = m->symbols.at({run_symbol(update, "table"), View::Address}).evidence;
  EXPECT_TRUE(ev.starts_with("srv.o:handle+0x")) << ev;
}

TEST(ProcessMatch, PicNoPltPieReadsGotRelaxationsAndTlsTransitions) {
  // -fPIC objects in a PIE: ld turns GOT loads of local symbols into lea, GOT calls and
  // tail calls into direct ones, and general/local-dynamic TLS into local-exec.
  Project p(svc_files("-O2 -fPIC -fno-plt", "-pie"));
  p.make();
  std::string update = handler_update(p);
  std::string app = p / "app";
  std::string disasm = must("objdump -d --no-show-raw-insn " + app);
  ASSERT_NE(disasm.find("addr32 call"), std::string::npos) << "ld did not relax a GOT call";
  auto syms = symbols(app);
  Program prog(app);
  int64_t bias = static_cast<int64_t>(prog.base(app) - first_load_vaddr(app));

  Requests r = requests(update, syms, bias);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[index_of(r, "handle")], at(symbol(syms, "handle"), bias));
  EXPECT_EQ(m->function_at[index_of(r, "handle_tail")], at(symbol(syms, "handle_tail"), bias));

  // mov table@GOTPCREL -> lea: the address itself.
  uint32_t table = run_symbol(update, "table");
  EXPECT_EQ(resolved(*m, table, View::Address), at(symbol(syms, "table"), bias));
  EXPECT_TRUE(m->symbols.at({table, View::Address}).evidence.find("mov from GOT to lea") != std::string::npos)
      << m->symbols.at({table, View::Address}).evidence;
  // call *util_id@GOTPCREL -> addr32 call; jmp *util_id@GOTPCREL -> jmp; nop (handle_tail).
  EXPECT_EQ(resolved(*m, run_symbol(update, "util_id"), View::Address), at(symbol(syms, "util_id"), bias));
  // puts stays behind its GOT slot (libc is another module).
  EXPECT_EQ(resolved(*m, run_symbol(update, "puts"), View::GotSlot),
            at(got_slot(app, "R_X86_64_GLOB_DAT", "puts"), bias));
  // General-dynamic (tls_hits) and local-dynamic (tls_local) both became local-exec.
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_hits"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_hits")));
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_local", "srv.c"), View::TlsOffset).value(),
            static_cast<uint64_t>(tp_offset(app, syms, "tls_local")));
}

TEST(ProcessMatch, SharedLibraryFunctionsMatchAtTheLibrarysLoadAddress) {
  std::map<std::string, std::string> files{
      {"main.c", svc_main()},
      {"srv.c", svc_srv()},
      {"util.c", svc_util()},
      {"Makefile",
       "CFLAGS = -O2 -fPIC\n"
       "app: main.o libsvc.so\n\t$(CC) -o $@ main.o -L. -lsvc -Wl,-rpath,'$$ORIGIN'\n"
       "libsvc.so: srv.o util.o\n\t$(CC) -shared -o $@ $^\n"
       "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"}};
  Project p(files);
  p.make();
  std::string update = handler_update(p);
  std::string lib = p / "libsvc.so";
  auto syms = symbols(lib);
  Program prog(p / "app");
  int64_t bias = static_cast<int64_t>(prog.base(lib) - first_load_vaddr(lib));

  Requests r = requests(update, syms, bias);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->function_at[index_of(r, "handle")], at(symbol(syms, "handle"), bias));
  EXPECT_EQ(resolved(*m, run_symbol(update, "scale", "srv.c"), View::Address), at(symbol(syms, "scale", "srv.c"), bias));
  // In a shared library, exported data stays behind the GOT (it can be interposed) and
  // TLS stays general-dynamic: the GOT slot, and the GOT pair of tls_hits.
  EXPECT_EQ(resolved(*m, run_symbol(update, "table"), View::GotSlot), at(got_slot(lib, "R_X86_64_GLOB_DAT", "table"), bias));
  EXPECT_EQ(resolved(*m, run_symbol(update, "tls_hits"), View::TlsGdPair),
            at(got_slot(lib, "R_X86_64_DTPMOD64", "tls_hits"), bias));
  EXPECT_EQ(m->symbols.count({run_symbol(update, "tls_hits"), View::TlsGotSlot}), 0u) << "a GD pair is no IE slot";
  // A call to an exported function of the library itself goes through its PLT.
  EXPECT_EQ(resolved(*m, run_symbol(update, "util_id"), View::Address), at(plt_entry(lib, "util_id"), bias));
}

TEST(ProcessMatch, ProgramBuiltFromOtherSourceIsRefusedWithBothInstructions) {
  // The update is made from a tree where handle() adds 0x10; the running program was
  // built from one where it adds 0x11.
  Project made_from(svc_files("-O2", ""));
  made_from.make();
  std::string update = handler_update(made_from);
  Project running(svc_files("-O2", "", "0x11"));
  running.make();
  std::string app = running / "app";
  auto syms = symbols(app);
  Program prog(app);
  int64_t bias = static_cast<int64_t>(prog.base(app) - first_load_vaddr(app));

  Requests r = requests(update, syms, bias);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ls::Exit::Unsafe);
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  std::string where = fmt::format("srv.o:handle at {:#x}+0x", symbol(syms, "handle") + static_cast<uint64_t>(bias));
  EXPECT_NE(msg.find(where), std::string::npos) << msg;
  EXPECT_NE(msg.find("run code differs from pre: expected '"), std::string::npos) << msg;
  // The first difference, disassembled on both sides (gcc folds the constant into a lea).
  size_t expected = msg.find("expected '"), found = msg.find("', found '");
  ASSERT_NE(found, std::string::npos) << msg;
  EXPECT_NE(msg.substr(expected, found - expected).find("0x10"), std::string::npos) << msg;
  EXPECT_NE(msg.substr(found).find("0x11"), std::string::npos) << msg;
  // handle_tail is the same in both trees: only handle is reported.
  EXPECT_EQ(msg.find("handle_tail"), std::string::npos) << msg;
}

}  // namespace
}  // namespace mt
