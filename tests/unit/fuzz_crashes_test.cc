// Replays every input the fuzzer ever found a problem with (tests/fuzz/crashes/*.hex,
// plain hex as `xxd -p` writes it). Each must now be refused with an ls::Error naming
// the file, or accepted — never a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "core/diag.h"
#include "elf/object.h"

namespace {

std::vector<uint8_t> read_hex(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string digits;
  for (char c; in.get(c);)
    if (std::isxdigit(static_cast<unsigned char>(c))) digits += c;
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
  return out;
}

TEST(FuzzCrashes, EveryRecordedInputIsHandled) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(LIVESPLICE_FUZZ_CRASHES_DIR))
    if (e.path().extension() == ".hex") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    SCOPED_TRACE(f.filename().string());
    std::string name = f.stem().string() + ".o";
    try {
      ls::elf::Object::from_memory(read_hex(f), name);
    } catch (const ls::Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

}  // namespace
