// Run-pre matching when the running build was assembled otherwise than pre. A program
// built as a distribution builds it has one .text; create's pre has a section per
// function. gas then resolves a tail call to a nearby function itself (a short jump, no
// relocation), and everything after it moves: jumps across it may change width and loop
// padding its length. Real gcc and ld; run bytes from a running process, or from the
// linked file with a byte changed where a test needs a difference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "arch/target.h"
#include "support.h"

namespace mt {
namespace {

using ls::TargetAddr;
using ls::View;

// `busy` tail-calls `helper` (placed just before it: a short jump in one .text, a long
// one with a relocation in pre), followed by padding to an aligned label.
std::string busy_c(const std::string& weight) {
  return R"(#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) static int helper(int x) { return x * 3 + 1; }
__attribute__((noinline)) int busy(int n, const int *v) {
  if (__builtin_expect(n > 1000, 1)) return helper(n);
  int s = 0;
  for (int i = 0; i < n; ++i) s += v[i] * (i + )" + weight + R"();
  for (int i = 0; i < n; i += 2) if (v[i] > 2) s ^= v[i] << 3; else s -= 7;
  return s;
}
int main(void) {
  int v[4] = {1, 2, 3, 4};
  printf("ready %d %d\n", busy(4, v), busy(2000, v));
  fflush(stdout);
  for (;;) pause();
}
)";
}

std::map<std::string, std::string> files() {
  return {{"busy.c", busy_c("1")},
          {"Makefile", "CFLAGS = -O2 -fno-pie -fcf-protection=none\nLDFLAGS = -no-pie\n"
                       "busy: busy.o\n\t$(CC) $(LDFLAGS) -o $@ $^\n"}};
}

// The linked file with some bytes replaced.
class Changed : public ls::match::CodeSource {
 public:
  explicit Changed(const FileImage& file) : file_(file) {}
  void put(uint64_t at, uint8_t b) { over_[at] = b; }
  ls::Status read(TargetAddr at, std::span<uint8_t> out) const override {
    LS_TRY(file_.read(at, out));
    for (const auto& [a, b] : over_)
      if (a >= at.value() && a < at.value() + out.size()) out[a - at.value()] = b;
    return {};
  }

 private:
  const FileImage& file_;
  std::map<uint64_t, uint8_t> over_;
};

// Where `function` of the linked file jumps with a short jmp to `to`; none: 0.
uint64_t short_jump_to(const FileImage& file, uint64_t at, size_t size, uint64_t to) {
  std::vector<uint8_t> code(size);
  if (!file.read(TargetAddr(at), code).ok()) return 0;
  for (uint64_t off = 0; off < size;) {
    auto d = ls::arch::target(ls::elf::Machine::X86_64).decode(code, off);
    if (!d) return 0;
    if (d->branch && d->short_branch && code[off] == 0xeb && at + static_cast<uint64_t>(d->target) == to)
      return at + off;
    off += d->length;
  }
  return 0;
}

size_t symbol_size(const std::vector<Sym>& syms, const std::string& name) {
  for (const auto& s : syms)
    if (s.name == name) return s.size;
  return 0;
}

// busy built as a distribution would, and the update that changes its first loop.
struct Built {
  Project p{files()};
  std::string update, app;
  std::vector<Sym> syms;
  Built() {
    p.make();
    update = p.create("busy.c", busy_c("2"));
    app = p / "busy";
    syms = symbols(app);
  }
};

TEST(Encodings, ShortTailCallAndMovedPaddingStillMatchAndRevealTheCallee) {
  Built b;
  const auto& [update, app, syms] = std::tie(b.update, b.app, b.syms);
  // The premise: the running build's busy jumps to helper with a short jmp.
  FileImage file(app);
  ASSERT_NE(short_jump_to(file, symbol(syms, "busy"), symbol_size(syms, "busy"), symbol(syms, "helper")), 0u)
      << "gas encoded the tail call long; the test no longer covers what it is for";

  Program prog(app);
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  ProcessMemory mem(prog.pid());
  auto m = ls::match::match(ctx, mem, ls::update::Contents::load(update), r.list);
  ASSERT_TRUE(m.ok()) << m.status().message();
  size_t i = index_of(r, "busy");
  EXPECT_EQ(m->function_at[i], TargetAddr(symbol(syms, "busy")));
  EXPECT_EQ(m->function_size[i], symbol_size(syms, "busy")) << "the stack check must guard run's whole function";
  // The short jump told where helper is, as a long one would have.
  EXPECT_EQ(resolved(*m, run_symbol(update, "helper", "busy.c"), View::Address), TargetAddr(symbol(syms, "helper")));
}

TEST(Encodings, AJumpWhoseTargetDoesNotMapIsStillADifference) {
  Built b;
  const auto& [update, app, syms] = std::tie(b.update, b.app, b.syms);
  FileImage file(app);
  const uint64_t at = symbol(syms, "busy");
  const size_t size = symbol_size(syms, "busy");
  std::vector<uint8_t> code(size);
  ASSERT_TRUE(file.read(TargetAddr(at), code).ok());
  // The last short conditional jump inside busy, its displacement one byte further:
  // every instruction is the same kind, but the jump lands elsewhere.
  std::optional<uint64_t> jcc;
  for (uint64_t off = 0; off < size;) {
    auto d = ls::arch::target(ls::elf::Machine::X86_64).decode(code, off);
    ASSERT_TRUE(d) << "undecodable at +" << off;
    if (d->branch && d->short_branch && code[off] != 0xeb && d->target >= 0 &&
        static_cast<uint64_t>(d->target) < size)
      jcc = off;
    off += d->length;
  }
  ASSERT_TRUE(jcc) << "busy has no short conditional jump";
  Requests r = requests(update, syms, 0);
  ls::Context ctx = quiet_context();
  {
    auto m = ls::match::match(ctx, file, ls::update::Contents::load(update), r.list);
    ASSERT_TRUE(m.ok()) << m.status().message();
  }
  Changed run(file);
  run.put(at + *jcc + 1, static_cast<uint8_t>(code[*jcc + 1] + 1));
  auto m = ls::match::match(ctx, run, ls::update::Contents::load(update), r.list);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ls::Exit::Unsafe);
  EXPECT_NE(m.status().message().find("pre's target"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("busy.o:busy"), std::string::npos) << m.status().message();
}

}  // namespace
}  // namespace mt
