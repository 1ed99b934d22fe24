// `livesplice apply | undo | view --kernel`: live updates of the running Linux kernel.
//
// apply = load the update → check it is for this kernel (release) and carries only
// kernel tables this loader honours → load livesplice.ko if it is not → run-pre match
// every replaced function against /proc/kcore (candidates from /proc/kallsyms, or the
// newest replacement of an applied update; the kernel's own rewrites tolerated) →
// allocate code memory near kernel text through the core → link the post code there
// (src/loader; run symbols from matching, then kallsyms) → fill it, read-only and
// executable → redirect every replaced function as one set inside stop_machine after a
// stack check, with bounded retries → report the pause. Nothing in the kernel changes
// before the last step, and the code memory goes away with the device file if that
// step is refused.
#pragma once

#include <string>

#include "core/diag.h"

namespace ls::kernel {

struct KernelApplyOptions {
  std::string update;
  std::string core;             // livesplice.ko to load when /dev/livesplice is missing
  unsigned retries = 20;        // further attempts after a blocked one
  unsigned retry_delay_ms = 20;
};

struct KernelUndoOptions {
  std::string id;               // prefix of an applied update's id; empty: the newest
  unsigned retries = 20;
  unsigned retry_delay_ms = 20;
};

Exit run_kernel_apply(Context& ctx, const KernelApplyOptions& options);
Exit run_kernel_undo(Context& ctx, const KernelUndoOptions& options);
Exit run_kernel_view(Context& ctx);

}  // namespace ls::kernel
