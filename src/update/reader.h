// `livesplice info`: an update file shown to a person, or its manifest as JSON, once
// the file has passed every check of manifest.h.
#pragma once

#include <string>

#include "base/diag.h"

namespace ls::update {

// `livesplice info UPDATE [--json]`; returns the exit code.
Exit run_info(Context& ctx, const std::string& path);

}  // namespace ls::update
