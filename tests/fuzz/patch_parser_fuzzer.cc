// libFuzzer target for the patch parser (create/patch.h): any text must either be
// refused with ls::Error or give a Patch whose files are what create relies on:
// at least one, each relative, non-empty and inside the source tree once `..` is
// resolved. Anything else is a finding.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/diag.h"
#include "create/patch.h"

namespace {

[[noreturn]] void broken_promise(const char* what, const std::string& file) {
  std::fprintf(stderr, "patch_parser_fuzzer: accepted patch breaks the parser's contract: %s: '%s'\n", what,
               file.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ls::create::Patch p =
        ls::create::parse_patch(std::string(reinterpret_cast<const char*>(data), size), "fuzz.patch");
    if (p.files.empty()) broken_promise("no file", "");
    for (const auto& f : p.files) {
      if (f.empty()) broken_promise("empty file name", f);
      if (f.front() == '/') broken_promise("absolute file name", f);
      auto normal = std::filesystem::path(f).lexically_normal();
      if (!normal.empty() && *normal.begin() == "..") broken_promise("file outside the source tree", f);
    }
  } catch (const ls::Error&) {
    // Refusing what is not a usable patch is the expected outcome.
  }
  return 0;
}
