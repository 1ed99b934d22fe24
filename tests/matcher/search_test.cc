// Content search: a stripped executable gives no candidates, so functions are found by
// their bytes in the executable mappings of a running process — uniquely, or reported as
// ambiguous with every address, or not at all with the closest miss disassembled. And
// it must be fast: several MB of real machine code are searched per function.
#include <gtest/gtest.h>

#include <cstdio>

#include <chrono>

#include "support.h"
#include "svc.h"

namespace mt {
namespace {

using ls::TargetAddr;

// The service plus `copies` times the machine code of the livesplice binary itself in
// .text: real code for the search to wade through.
std::map<std::string, std::string> big_service(const std::string& delta, int copies) {
  auto files = svc_files("-O2 -fcf-protection", "", delta);
  std::string s = ".section .text.filler,\"ax\",@progbits\n";
  for (int k = 0; k < copies; ++k) s += ".incbin \"filler.bin\"\n";
  files["filler.S"] = s;
  files["Makefile"] =
      "CFLAGS = -O2 -fcf-protection\n"
      "app: main.o srv.o util.o filler.o\n\t$(CC) -o $@ $^\n"
      "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
      "filler.o: filler.S filler.bin\n\t$(CC) -c -o $@ filler.S\n";
  return files;
}

struct Stripped {
  std::string app, stripped;
  std::vector<Sym> syms;   // of the unstripped file: where things really are
};

Stripped build(const Project& p) {
  must("objcopy -O binary -j .text " + lstest::livesplice() + " filler.bin", p.dir.path());
  p.make();
  Stripped s{p / "app", p.work / "app.stripped", {}};
  s.syms = symbols(s.app);
  must("strip -o " + s.stripped + " " + s.app);
  EXPECT_EQ(sh("readelf -S " + s.stripped + " | grep -c '.symtab'").out, "0\n") << "strip left a .symtab";
  return s;
}

TEST(ContentSearch, StrippedExecutableIsMatchedByContentQuickly) {
  Project p(big_service("0x10", 4));
  Stripped s = build(p);
  std::string update = p.create("util.c", svc_util("2", "2", "1"));
  Program prog(s.stripped);
  int64_t bias = static_cast<int64_t>(prog.base(s.stripped) - first_load_vaddr(s.stripped));
  auto ranges = prog.exec_ranges(s.stripped);
  uint64_t searched = 0;
  for (const auto& r : ranges) searched += r.size();
  ASSERT_GT(searched, 4u << 20) << "the filler did not make the code large";

  Requests r = requests(update, {}, bias, ranges, /*with_candidates=*/false);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto t0 = std::chrono::steady_clock::now();
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto where = [&](const std::string& name, const std::string& file) {
    return TargetAddr(symbol(s.syms, name, file) + static_cast<uint64_t>(bias));
  };
  // util_twice and scale are unique by content (scale may also come from util_twice's
  // call); bump's two copies are identical and util.c's `hits` decides.
  EXPECT_EQ(m->function_at[index_of(r, "util_twice")], where("util_twice", ""));
  EXPECT_EQ(m->function_at[index_of(r, "scale")], where("scale", "util.c"));
  EXPECT_EQ(m->function_at[index_of(r, "bump")], where("bump", "util.c"));
  double mb = static_cast<double>(searched) / (1 << 20);
  RecordProperty("searched_mb", std::to_string(mb));
  RecordProperty("seconds", std::to_string(secs));
  std::printf("content search: %zu functions in %.1f MB of code: %.3f s\n", r.list.size(), mb, secs);
  // Linear and cheap: a few functions over several MB take well under a second.
  EXPECT_LT(secs, 2.0) << mb << " MB";
}

TEST(ContentSearch, IdenticalCopiesWithNothingToTellThemApartAreAmbiguous) {
  Project p(big_service("0x10", 1));
  Stripped s = build(p);
  std::string update = p.create("util.c", svc_util("1", "2", "0"));   // only bump changes
  Program prog(s.stripped);
  int64_t bias = static_cast<int64_t>(prog.base(s.stripped) - first_load_vaddr(s.stripped));
  Requests r = requests(update, {}, bias, prog.exec_ranges(s.stripped), false);
  ASSERT_EQ(r.names, std::vector<std::string>{"bump"});
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(m.ok());
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  EXPECT_NE(msg.find("util.o:bump: ambiguous"), std::string::npos) << msg;
  for (uint64_t a : all_named(s.syms, "bump"))
    EXPECT_NE(msg.find(fmt::format("{:#x} (content search)", a + static_cast<uint64_t>(bias))), std::string::npos) << msg;
}

TEST(ContentSearch, StrippedProgramFromOtherSourceReportsTheClosestMiss) {
  Project made_from(big_service("0x10", 1));
  build(made_from);
  std::string update = made_from.create("srv.c", svc_srv("0x20", "2"));
  Project running(big_service("0x11", 1));
  Stripped s = build(running);
  Program prog(s.stripped);
  int64_t bias = static_cast<int64_t>(prog.base(s.stripped) - first_load_vaddr(s.stripped));
  Requests r = requests(update, {}, bias, prog.exec_ranges(s.stripped), false);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(m.ok());
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  // handle differs in one constant; its closest place in the code is where it really is.
  std::string at = fmt::format("srv.o:handle at {:#x}+0x", symbol(s.syms, "handle") + static_cast<uint64_t>(bias));
  EXPECT_NE(msg.find(at), std::string::npos) << msg;
  EXPECT_NE(msg.find("run code differs from pre: expected '"), std::string::npos) << msg;
  EXPECT_NE(msg.find("content search, closest"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found by content in"), std::string::npos) << msg;
  // handle_tail is the same in both: found, so not reported.
  EXPECT_EQ(msg.find("handle_tail"), std::string::npos) << msg;
}

}  // namespace
}  // namespace mt
