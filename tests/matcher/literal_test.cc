// Literals in run-pre matching: a running build whose only difference from the update's
// pre tree is a string literal, or a floating-point constant, has the same code bytes
// (the literal lives in a merged pool the code points into). The update carries the pre
// pools, and the matcher compares the literal each site points at: such a build is
// refused, with the function, the site and both literals; the same build is accepted.
#include <gtest/gtest.h>

#include <cstdio>

#include "support.h"
#include "svc.h"

namespace mt {
namespace {

using ls::TargetAddr;

// The update's pre literal pools: carried, never loaded, still SHF_MERGE.
std::vector<const ls::elf::Section*> pre_pools(const ls::elf::Object& u) {
  std::vector<const ls::elf::Section*> v;
  for (const auto& s : u.sections())
    if (s.name.starts_with(".livesplice.pre.") && (s.merge_strings() || s.merge_constants())) v.push_back(&s);
  return v;
}

// Starts `app`, matches the update against it; `handle_at` gets handle()'s run address.
ls::Result<ls::match::Match> match_running(const std::string& app, const ls::update::Contents& u, const std::string& update,
                                           uint64_t& handle_at) {
  auto syms = symbols(app);
  Program prog(app);
  int64_t bias = static_cast<int64_t>(prog.base(app) - first_load_vaddr(app));
  handle_at = symbol(syms, "handle") + static_cast<uint64_t>(bias);
  Requests r = requests(update, syms, bias);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  return ls::match::match(ctx, mem, u, r.list);
}

TEST(Literals, StringLiteralThatDiffersIsRefusedAndTheSameIsAccepted) {
  Project made_from(svc_files("-O2", ""));
  made_from.make();
  std::string update = made_from.create("srv.c", svc_srv("0x20", "2"));
  auto u = ls::update::Contents::load(update);
  ASSERT_FALSE(pre_pools(u.file).empty()) << "the pre literal pools were not carried";
  for (const auto* s : pre_pools(u.file)) EXPECT_FALSE(s->alloc()) << s->name;

  // Built from the same tree: accepted.
  uint64_t handle_at = 0;
  auto same = match_running(made_from / "app", u, update, handle_at);
  ASSERT_TRUE(same.ok()) << same.status().message();

  // Built from a tree where handle() prints "Handling!": the same code, another string.
  Project running(svc_files("-O2", "", "0x10", "Handling!"));
  running.make();
  auto m = match_running(running / "app", u, update, handle_at);
  ASSERT_FALSE(m.ok()) << "a build with another string literal was accepted";
  EXPECT_EQ(m.status().code(), ls::Exit::Unsafe);
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  EXPECT_NE(msg.find(fmt::format("srv.o:handle at {:#x}+0x", handle_at)), std::string::npos) << msg;
  EXPECT_NE(msg.find("string literal differs from pre: expected \"handling\", found \"Handling!\""), std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("handle_tail"), std::string::npos) << "handle_tail uses no literal\n" << msg;
}

// A function whose floating-point constants come from a `.rodata.cst8` pool.
std::string calc_c(const std::string& factor, const std::string& offset) {
  return "__attribute__((noinline)) double calc(double x) { return x * " + factor + " + " + offset + "; }\n";
}

std::map<std::string, std::string> calc_files(const std::string& factor) {
  return {{"main.c", R"(#include <stdio.h>
#include <unistd.h>
double calc(double x);
int main(void) {
  printf("ready %f\n", calc(2.0));
  fflush(stdout);
  for (;;) pause();
}
)"},
          {"calc.c", calc_c(factor, "3.0")},
          {"Makefile", "CFLAGS = -O2 -fno-pie\nLDFLAGS = -no-pie\n"
                       "app: main.o calc.o\n\t$(CC) $(LDFLAGS) -o $@ $^\n"
                       "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"}};
}

TEST(Literals, ConstantThatDiffersIsRefusedWithBothValuesBytes) {
  Project made_from(calc_files("1.25"));
  made_from.make();
  std::string update = made_from.create("calc.c", calc_c("1.25", "4.0"));
  auto u = ls::update::Contents::load(update);
  bool constants = false;
  for (const auto* s : pre_pools(u.file)) constants |= s->merge_constants();
  ASSERT_TRUE(constants) << "no pre constant pool was carried";

  // Matched against the linked file at its link addresses (non-PIE).
  auto match_file = [&](const std::string& app) {
    FileImage file(app);
    Requests r = requests(update, symbols(app), 0);
    ls::Context ctx = quiet_context();
    return ls::match::match(ctx, file, u, r.list);
  };
  auto same = match_file(made_from / "app");
  ASSERT_TRUE(same.ok()) << same.status().message();

  Project running(calc_files("1.75"));
  running.make();
  auto m = match_file(running / "app");
  ASSERT_FALSE(m.ok()) << "a build with another constant was accepted";
  EXPECT_EQ(m.status().code(), ls::Exit::Unsafe);
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  EXPECT_NE(msg.find(fmt::format("calc.o:calc at {:#x}+0x", symbol(symbols(running / "app"), "calc"))), std::string::npos)
      << msg;
  // 1.25 and 1.75 as little-endian doubles.
  EXPECT_NE(msg.find("constant (8 bytes) differs from pre: expected 00 00 00 00 00 00 f4 3f, found 00 00 00 00 00 00 fc 3f"),
            std::string::npos)
      << msg;
}

TEST(Literals, ReportsShowTheLiteralAnInstructionUses) {
  // Pre code loads "hello"; the running build loads a pointer from a global instead.
  auto files = [](const std::string& arg) {
    return std::map<std::string, std::string>{
        {"a.c", "#include <stdio.h>\nconst char *g_str = \"other\";\n"
                "__attribute__((noinline)) int f(int k) { return puts(" + arg + ") + k; }\n"
                "int main(void) { return f(1); }\n"},
        {"Makefile", "CFLAGS = -O2\napp: a.o\n\t$(CC) -o $@ $^\n%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"}};
  };
  Project made_from(files("\"hello\""));
  made_from.make();
  std::string patched = files("\"hello\"").at("a.c");
  patched.replace(patched.find(") + k;"), 6, ") + k + 1;");
  std::string update = made_from.create("a.c", patched);
  Project running(files("g_str"));
  running.make();
  std::string app = running / "app";
  FileImage file(app);   // a PIE at its link addresses: enough to compare code
  Requests r = requests(update, symbols(app), 0);
  ls::Context ctx = quiet_context();
  auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(m.ok());
  std::string msg = m.status().message();
  std::printf("report: %s\n", msg.c_str());
  size_t expected = msg.find("expected '"), found = msg.find("', found '");
  ASSERT_NE(found, std::string::npos) << msg;
  EXPECT_NE(msg.substr(expected, found - expected).find("\"hello\""), std::string::npos) << msg;
}

}  // namespace
}  // namespace mt
