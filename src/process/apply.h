// `livesplice apply | undo | view --pid PID`: live updates of a running process.
//
// apply = load the update → read the process (maps, modules, ledger) → run-pre match
// every replaced function → plan and place the new code near its module → link it →
// stop every thread → safety check (retry, or give up with nothing changed) → write all
// trampolines → record in the ledger → resume. Everything slow happens before the stop.
#pragma once

#include <sys/types.h>

#include <string>

#include "core/diag.h"

namespace ls::proc {

struct ApplyOptions {
  pid_t pid = 0;
  std::string update;
  int retries = 20;            // further attempts after the first
  int retry_delay_ms = 10;
  int hot_wait_ms = 250;       // how long an attempt waits, entries trapped, for threads to leave
};

struct UndoOptions {
  pid_t pid = 0;
  std::string id;              // prefix of an update id; empty with all
  bool all = false;
  int retries = 20;
  int retry_delay_ms = 10;
  int hot_wait_ms = 250;       // how long an attempt waits, entries trapped, for threads to leave
};

Exit run_apply(Context& ctx, const ApplyOptions& options);
Exit run_undo(Context& ctx, const UndoOptions& options);
Exit run_view(Context& ctx, pid_t pid, bool with_patch);

}  // namespace ls::proc
