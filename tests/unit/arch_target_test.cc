// The machine interface: chosen by elf::Machine, a clear error for a machine without an
// implementation; the relocation tables below it, in src/elf.
#include <gtest/gtest.h>

#include <elf.h>

#include "arch/target.h"
#include "base/diag.h"
#include "elf/relocs.h"

namespace ls::arch {
namespace {

TEST(Target, ChosenByTheObjectsMachine) {
  const Target& t = target(elf::Machine::X86_64);
  EXPECT_EQ(t.machine, elf::Machine::X86_64);
  EXPECT_EQ(t.name, "x86-64");
  // This test runs where livesplice runs: on x86-64.
  EXPECT_EQ(&host(), &t);
}

TEST(Target, AMachineWithoutOneIsAClearError) {
  try {
    (void)target(elf::Machine::AArch64);
    FAIL() << "arm64 has no target, yet one was returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("arm64 is not supported yet"), std::string::npos) << e.what();
  }
  auto r = checked_target(elf::Machine::AArch64);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("arm64 is not supported yet"), std::string::npos) << r.status().message();
}

TEST(Target, TheTrampolineJumpIsTheShortestThatReaches) {
  const Target& t = target(elf::Machine::X86_64);
  // jmp rel32 within reach: e9 and the distance from the jump's end.
  EXPECT_EQ(t.jump(TargetAddr(0x1000), TargetAddr(0x2000)), (std::vector<uint8_t>{0xe9, 0xfb, 0x0f, 0x00, 0x00}));
  // Out of reach: jmp *0(%rip) and the absolute address.
  EXPECT_EQ(t.jump(TargetAddr(0x1000), TargetAddr(0x7f0000000000)),
            (std::vector<uint8_t>{0xff, 0x25, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00}));
  EXPECT_EQ(t.max_jump_size, 14u);
  // The jump goes after an endbr64, at the entry otherwise.
  EXPECT_EQ(t.entry_landing(std::vector<uint8_t>{0xf3, 0x0f, 0x1e, 0xfa}), 4u);
  EXPECT_EQ(t.entry_landing(std::vector<uint8_t>{0x55, 0x48, 0x89, 0xe5}), 0u);
}

}  // namespace
}  // namespace ls::arch

namespace ls::elf {
namespace {

TEST(RelocTable, NumbersToNamesKindsAndWidths) {
  EXPECT_EQ(reloc_name(Machine::X86_64, R_X86_64_PLT32), "R_X86_64_PLT32");
  EXPECT_EQ(reloc_name(Machine::X86_64, R_X86_64_REX_GOTPCRELX), "R_X86_64_REX_GOTPCRELX");
  EXPECT_EQ(reloc_name(Machine::X86_64, 250), "relocation type 250");
  auto got = reloc_info(Machine::X86_64, R_X86_64_REX_GOTPCRELX);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->kind, RelocKind::GotPcRel);
  EXPECT_EQ(got->width, 4u);
  auto abs = reloc_info(Machine::X86_64, R_X86_64_64);
  ASSERT_TRUE(abs);
  EXPECT_EQ(abs->kind, RelocKind::Abs64);
  EXPECT_EQ(abs->width, 8u);
  // Numbers only linked files hold are not read from objects.
  EXPECT_FALSE(reloc_info(Machine::X86_64, R_X86_64_GLOB_DAT));
  EXPECT_FALSE(reloc_info(Machine::X86_64, 250));
  // A machine without a table has no numbers.
  EXPECT_FALSE(reloc_info(Machine::AArch64, 1));
}

}  // namespace
}  // namespace ls::elf
