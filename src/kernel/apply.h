// `livesplice apply | undo | view --kernel`: live updates of the running Linux kernel.
//
// apply = load the update → check it is for this kernel (release) → load livesplice.ko
// if it is not → run-pre match every replaced function against /proc/kcore (candidates
// from /proc/kallsyms, or the newest replacement of an applied update; the kernel's own
// rewrites tolerated) → write the new code as a kernel module (kernel/module.h; run
// symbols from matching, then kallsyms, as absolute symbols) and load it: the kernel's
// loader registers its tables → redirect every replaced function as one set inside
// stop_machine after a stack check, with bounded retries → report the pause. Nothing
// the running code does changes before the last step, and the module is unloaded again
// if that step is refused. undo = restore the set, then unload its module.
// An update of a module that is not loaded is left pending instead (pending.h): a
// waiting process applies it when the module loads, before its code runs.
#pragma once

#include <string>
#include <vector>

#include "base/diag.h"
#include "kernel/core_module.h"

namespace ls::kernel {

struct KernelApplyOptions {
  std::string update;
  std::string core;             // livesplice.ko to load when /dev/livesplice is missing
  unsigned retries = 20;        // further attempts after a blocked one
  unsigned retry_delay_ms = 20;
  std::string coming;           // the waiter of a pending update: its module, loading now
  std::string* failure = nullptr;   // if set, why the apply failed
};

struct KernelUndoOptions {
  std::string id;               // prefix of an applied update's id; empty: the newest
  unsigned retries = 20;
  unsigned retry_delay_ms = 20;
};

// A set livesplice.ko holds applied, with the names of the functions it redirects
// (kallsyms names, or addresses when no symbols were given).
struct AppliedSet {
  std::string id;
  std::vector<std::string> functions;
  std::string module;           // the module holding its new code
  TargetAddr code;
  uint64_t code_size = 0;
  uint64_t pause_ns = 0;
};

// What livesplice.ko holds: the applied sets, newest first, and the pending updates;
// both empty when it is not loaded. Read by view --kernel and the update manager. The
// functions are named from /proc/kallsyms (addresses when it cannot be read).
struct CoreState {
  std::vector<AppliedSet> sets;
  std::vector<Pending> pending;
};
Result<CoreState> read_core_state();

// uname -r: what an update's kernel.release must be.
std::string running_release();

Exit run_kernel_apply(Context& ctx, const KernelApplyOptions& options);
Exit run_kernel_undo(Context& ctx, const KernelUndoOptions& options);
Exit run_kernel_view(Context& ctx);

}  // namespace ls::kernel
