// The update file: one ELF relocatable object holding the post code of changed and new
// functions, the pre code of every replaced function (for run-pre matching), their
// relocations, and a JSON manifest in section `.livesplice.manifest`.
#pragma once

#include <string>

#include "core/diag.h"

namespace ls::update {

// `livesplice info UPDATE [--json]`; returns the exit code.
Exit run_info(Context& ctx, const std::string& path);

}  // namespace ls::update
