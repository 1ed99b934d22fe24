#include "core/diag.h"

#include <cstdio>

namespace ls {

std::string where(std::string_view file, std::string_view section, int64_t offset) {
  std::string s(file);
  if (!section.empty()) s += fmt::format(":({})", section);
  if (offset >= 0) s += fmt::format("+{:#x}", offset);
  return s;
}

void Context::progress(std::string_view msg) const {
  if (!quiet) fmt::print(stderr, "==> {}\n", msg);
}

void Context::note(std::string_view msg) const {
  if (verbose > 0) fmt::print(stderr, "    {}\n", msg);
}

void Context::warn(std::string_view msg) const { fmt::print(stderr, "warning: {}\n", msg); }

}  // namespace ls
