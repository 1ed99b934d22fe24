// Replays every input a fuzz target ever found a problem with
// (tests/fuzz/crashes/TARGET/*.hex, plain hex as `xxd -p` writes it), through the reader
// that target fuzzes. Each must now be refused with an ls::Error naming the file, or
// accepted — never a crash or another exception.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "base/diag.h"
#include "create/patch.h"
#include "elf/object.h"
#include "update/contents.h"

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

// The recorded inputs of one fuzz target; f(bytes, name) must not throw anything but
// an ls::Error that names the input.
template <typename F>
void replay(const std::string& target, const std::string& ext, F f) {
  std::filesystem::path dir = std::filesystem::path(LIVESPLICE_FUZZ_CRASHES_DIR) / target;
  std::vector<std::filesystem::path> files;
  if (std::filesystem::exists(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".hex") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& p : files) {
    SCOPED_TRACE(p.filename().string());
    std::string name = p.stem().string() + ext;
    try {
      f(read_hex(p), name);
    } catch (const ls::Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST(FuzzCrashes, ElfObject) {
  replay("elf_object", ".o", [](std::vector<uint8_t> b, const std::string& n) { ls::elf::Object::from_memory(b, n); });
}

// As the fuzz target reads them: as they are, and re-sealed (through the schema).
TEST(FuzzCrashes, UpdateReader) {
  replay("update_reader", ".lsu", [](std::vector<uint8_t> b, const std::string& n) {
    try {
      ls::update::Contents::from(ls::elf::Object::from_memory(b, n));
    } catch (const ls::Error&) {
    }
    ls::update::seal(b, n);
    ls::update::Contents::from(ls::elf::Object::from_memory(b, n));
  });
}

TEST(FuzzCrashes, PatchParser) {
  replay("patch_parser", ".patch", [](std::vector<uint8_t> b, const std::string& n) {
    for (const auto& f : ls::create::parse_patch(std::string(b.begin(), b.end()), n).files) {
      auto normal = std::filesystem::path(f).lexically_normal();
      EXPECT_TRUE(!f.empty() && f.front() != '/' && (normal.empty() || *normal.begin() != "..")) << f;
    }
  });
}

}  // namespace
