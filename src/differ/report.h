// Human and JSON renderings of a diff, and the `livesplice diff` command.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "differ/differ.h"

namespace ls::diff {

nlohmann::json to_json(const ObjectDiff& d);
std::string to_text(const ObjectDiff& d);
// The exit status a diff implies: Unsafe if anything is unsafe, NoChange if nothing
// changed, Ok otherwise.
Exit exit_status(const ObjectDiff& d);

Exit run_diff(Context& ctx, const std::string& pre, const std::string& post);

}  // namespace ls::diff
