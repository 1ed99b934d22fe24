// One process command (apply, undo) run by the manager in a child process of its own.
//
// The manager drives the same `apply` and `undo` a user runs by hand (process/apply.h),
// once per update and process. Each runs in a forked child with --json set, for two
// reasons: the command's JSON on stdout is the structured outcome the manager reports
// and keeps (applied, or the error saying why not), without a second way to say it; and
// one process's trouble — a crash of the tool on a strange target, a hang cut short by
// the caller's signal — ends that child, not the run over every other process. The
// child inherits the store's lock, so a manager killed mid-command still keeps the
// next command out until that child is done.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/diag.h"

namespace ls::manager {

// What kind of failure an apply or undo met: for status, --json and the backoff of the
// next sync. Read from the command's error, by the phrases the engine's refusals use
// (kKinds in child.cc); "other" when none says more.
struct FailureKind {
  std::string name;              // "busy", "mismatch", "seccomp", "not-running", "permission", "other"
  std::string text;              // for people: "busy thread", "run code differs", ...
};
FailureKind classify_failure(const std::string& error);

struct Outcome {
  Exit code = Exit::Ok;
  std::string error;             // why it failed ("" when it did not)
  FailureKind kind;              // of that failure (empty when it did not)
  nlohmann::json result;         // the command's JSON (null when it printed none)
  bool ok() const { return code == Exit::Ok; }
};

// Runs `command` in a forked child with a copy of `ctx` (json on, progress off), its
// stdout read as JSON and its stderr kept for the error (shown with -v).
Outcome run_in_child(Context& ctx, const std::function<Exit(Context&)>& command);

}  // namespace ls::manager
