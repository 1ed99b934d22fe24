// The source patch: reading it (which files it touches), checking that it applies, and
// applying it with GNU patch. Shared by the userspace and kernel create pipelines.
#pragma once

#include <string>
#include <vector>

#include "base/diag.h"

namespace ls::create {

struct Patch {
  std::string path;
  std::string name;
  std::string text;
  std::vector<std::string> files;   // relative to the source directory (-p1 applied)
};

// Throws Error for an unreadable patch, one that names no file, or one that reaches
// outside the source tree.
Patch read_patch(const std::string& path);
// The same for a patch's text (`path` names it in messages); every name in `files` is
// then relative, non-empty, and inside the source tree.
Patch parse_patch(std::string text, const std::string& path);
// `patch --dry-run` in `source`; throws Error quoting why each hunk failed.
void check_patch(Context& ctx, const std::string& source, const Patch& patch);
void apply_patch(const std::string& source, const Patch& patch);

}  // namespace ls::create
