// `livesplice apply | undo | view --pid PID`: live updates of a running process.
//
// apply = load the update → read the process (maps, modules, ledger) → repair what
// killed commands left → run-pre match every replaced function → place the new code
// near its module and link it → compute the trampolines and what the safety check
// guards → record the entry, map the code, stop every thread, check, write the
// trampolines, resume, confirm (in a guardian child; a check that keeps failing gives up
// with nothing changed) → report. Everything slow happens before the stop.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/diag.h"
#include "process/safety.h"
#include "process/target.h"
#include "update/contents.h"

namespace ls::proc {

struct ApplyOptions {
  pid_t pid = 0;
  std::string update;
  int retries = 20;            // further attempts after the first
  int retry_delay_ms = 10;
  int hot_wait_ms = 250;       // how long an attempt waits, entries trapped, for threads to leave
  int hook_timeout_ms = 1000;  // how long a hook of the update may run (hooks.h)

  StopPolicy stop_policy() const { return {retries, retry_delay_ms, hot_wait_ms, hook_timeout_ms}; }
};

struct UndoOptions {
  pid_t pid = 0;
  std::string id;              // prefix of an update id; empty with all
  bool all = false;
  int retries = 20;
  int retry_delay_ms = 10;
  int hot_wait_ms = 250;       // how long an attempt waits, entries trapped, for threads to leave
  int hook_timeout_ms = 1000;  // how long a hook of the update may run (hooks.h)

  StopPolicy stop_policy() const { return {retries, retry_delay_ms, hot_wait_ms, hook_timeout_ms}; }
};

// The commands as the CLI gives them: the process opened (Target::open), then the same
// as below.
Exit run_apply(Context& ctx, const ApplyOptions& options);
Exit run_undo(Context& ctx, const UndoOptions& options);
Exit run_view(Context& ctx, pid_t pid, bool with_patch);

// The commands on a target already open (the update manager holds one per process).
// Each takes the target's lock for its length (view shared, the others exclusive) and
// reads what it needs afresh; each prints its outcome (JSON with ctx.json) and returns
// the exit code. `update_path` is what the ledger records; `id` a prefix of an applied
// update's id, or empty: the newest (or every one, with `all`).
Exit apply_update(Context& ctx, Target& target, const update::Contents& u, const std::string& update_path,
                  const StopPolicy& policy);
Exit undo_updates(Context& ctx, Target& target, const std::string& id, bool all, const StopPolicy& policy);
Exit view_updates(Context& ctx, Target& target, bool with_patch);

}  // namespace ls::proc
