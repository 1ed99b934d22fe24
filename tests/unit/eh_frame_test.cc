// The carried `.eh_frame` (update/eh_frame.h) of objects g++ compiled: only the FDEs of
// carried code, each after its CIE with its CIE pointer recomputed, a terminator; and
// the LSDA and DW.ref words those FDEs need.
#include <gtest/gtest.h>

#include <set>

#include "base/diag.h"
#include "elf/object.h"
#include "support/support.h"
#include "update/eh_frame.h"

namespace ls::update::eh {
namespace {

using lstest::TempDir;

// Three functions: one with a landing pad and a catch (an LSDA naming typeinfo through
// a DW.ref word), two without.
const char* const kSource = R"(
#include <stdexcept>
#include <string>
int plain(int x) { return x * 3; }
int other(int x) { return x + 7; }
int guarded(int x) {
  try {
    std::string s(static_cast<size_t>(x), 'a');
    if (x > 3) throw std::out_of_range(s);
    return static_cast<int>(s.size());
  } catch (const std::out_of_range& e) {
    return -1;
  }
}
)";

uint32_t section_of(const elf::Object& o, const std::string& name) {
  for (const auto& s : o.sections())
    if (s.name == name) return s.index;
  throw Error("no section " + name);
}

uint32_t le32(const std::vector<uint8_t>& b, size_t at) {
  return b[at] | b[at + 1] << 8 | b[at + 2] << 16 | static_cast<uint32_t>(b[at + 3]) << 24;
}

class EhFrame : public ::testing::Test {
 protected:
  void SetUp() override {
    path = lstest::compile_c(dir, "eh", kSource, "-x c++ -O2 -ffunction-sections -fdata-sections");
    obj = std::make_unique<elf::Object>(elf::Object::load(path));
  }
  TempDir dir;
  std::string path;
  std::unique_ptr<elf::Object> obj;
};

TEST_F(EhFrame, OnlyTheCarriedCodesFdesEachAfterItsCie) {
  std::set<uint32_t> carried{section_of(*obj, ".text._Z5otheri")};
  CarriedFrames f = carried_frames(*obj, carried);
  ASSERT_EQ(f.fdes, 1u);
  // CIE, FDE, terminator; the FDE's CIE pointer leads back to offset 0.
  const uint32_t cie_len = le32(f.bytes, 0);
  EXPECT_EQ(le32(f.bytes, 4), 0u) << "the CIE comes first";
  const size_t fde = 4 + cie_len;
  EXPECT_EQ(le32(f.bytes, fde + 4), fde + 4) << "the FDE's CIE pointer must lead to offset 0";
  EXPECT_EQ(fde + 4 + le32(f.bytes, fde) + 4, f.bytes.size()) << "one FDE, then the terminator";
  EXPECT_EQ(le32(f.bytes, f.bytes.size() - 4), 0u);
  // Its start address is relocated against the carried code.
  bool start_found = false;
  for (auto [offset, r] : f.relocs)
    if (offset == fde + 8) start_found = obj->symbol(r->symbol).section == *carried.begin();
  EXPECT_TRUE(start_found);
  EXPECT_TRUE(unwind_sections(*obj, carried).empty()) << "a function without landing pads needs no LSDA";
}

TEST_F(EhFrame, TheLsdaAndItsDwRefWordsTravelWithTheirFunction) {
  std::set<uint32_t> carried{section_of(*obj, ".text._Z7guardedi")};
  std::set<uint32_t> extra = unwind_sections(*obj, carried);
  std::set<std::string> names;
  for (uint32_t s : extra) names.insert(obj->section(s).name);
  EXPECT_TRUE(names.count(".gcc_except_table._Z7guardedi")) << ::testing::PrintToString(names);
  EXPECT_TRUE(names.count(".data.rel.local.DW.ref.__gxx_personality_v0")) << ::testing::PrintToString(names);
  EXPECT_TRUE(names.count(".data.rel.local.DW.ref._ZTISt12out_of_range")) << ::testing::PrintToString(names);
  CarriedFrames f = carried_frames(*obj, carried);
  EXPECT_GE(f.fdes, 1u);
  EXPECT_EQ(carried_frames(*obj, {}).fdes, 0u) << "nothing carried, nothing kept";
}

}  // namespace
}  // namespace ls::update::eh
