// One object linked into two binaries: util.o is part of the program `app` and of the
// library libutil.so that another program, `tool`, loads. The update made from a patch
// to util.c must say both (update::Contents keeps every target of a function and the
// object of each file-local run symbol), so that apply can match the function in
// whichever of them a process has mapped: here both, each in its own process.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "support.h"
#include "update/contents.h"

namespace mt {
namespace {

using ls::TargetAddr;

std::string util_c(const std::string& k) {
  return "static int hits;\n"
         "__attribute__((noinline)) static int bump(void) { return ++hits; }\n"
         "int util_id(int x) { return (x ^ " + k + ") + bump(); }\n";
}

std::string main_c() {
  return R"(#include <stdio.h>
#include <unistd.h>
int util_id(int x);
int main(void) {
  printf("ready %d\n", util_id(1));
  fflush(stdout);
  for (;;) pause();
}
)";
}

TEST(Targets, AnObjectInTwoBinariesIsMatchedInEach) {
  Project p({{"main.c", main_c()},
             {"tool.c", main_c()},
             {"util.c", util_c("0x5a")},
             {"Makefile", "CFLAGS = -O2 -fPIC\n"
                          "all: app tool\n"
                          "app: main.o util.o\n\t$(CC) -o $@ $^\n"
                          "libutil.so: util.o\n\t$(CC) -shared -o $@ $^\n"
                          "tool: tool.o libutil.so\n\t$(CC) -o $@ tool.o -L. -lutil -Wl,-rpath,'$$ORIGIN'\n"
                          "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"}});
  p.make();
  std::string update = p.create("util.c", util_c("0x5b"));

  auto u = ls::update::Contents::load(update);
  auto f = std::find_if(u.functions.begin(), u.functions.end(), [](const auto& f) { return f.name == "util_id"; });
  ASSERT_NE(f, u.functions.end());
  ASSERT_TRUE(f->replace);
  std::vector<std::string> targets = f->targets;
  std::sort(targets.begin(), targets.end());
  EXPECT_EQ(targets, (std::vector<std::string>{"app", "libutil.so"}));
  // The file-local run symbols pre code names carry their object, and its binaries.
  bool saw_local = false;
  for (const auto& rs : u.run_symbols) {
    if (!rs.local) {
      EXPECT_EQ(rs.object, "") << rs.name;
      continue;
    }
    saw_local = true;
    EXPECT_EQ(rs.object, "util.o") << rs.name;
    EXPECT_EQ(rs.source, "util.c") << rs.name;
    std::vector<std::string> t = rs.targets;
    std::sort(t.begin(), t.end());
    EXPECT_EQ(t, targets) << rs.name;
  }
  EXPECT_TRUE(saw_local) << "util_id calls the static bump";

  // Each process has one of the two mapped: the first of the function's targets that is
  // mapped is where it is matched, as apply chooses.
  for (std::string program : {"app", "tool"}) {
    SCOPED_TRACE(program);
    Program prog(p / program);
    std::string binary;
    for (const auto& t : f->targets) {
      std::string maps = read_file("/proc/" + std::to_string(prog.pid()) + "/maps");
      if (maps.find(std::filesystem::canonical(p / t).string()) != std::string::npos) {
        binary = p / t;
        break;
      }
    }
    ASSERT_EQ(binary, p / (program == "app" ? "app" : "libutil.so"));
    auto syms = symbols(binary);
    int64_t bias = static_cast<int64_t>(prog.base(binary) - first_load_vaddr(binary));
    Requests r = requests(update, syms, bias);
    ls::Context ctx = quiet_context();
    ProcessMemory mem(prog.pid());
    auto m = ls::match::match(ctx, mem, u, r.list);
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m->function_at.at(0), TargetAddr(symbol(syms, "util_id") + static_cast<uint64_t>(bias)));
  }
}

}  // namespace
}  // namespace mt
