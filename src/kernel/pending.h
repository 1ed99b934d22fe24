// Kernel updates of modules that are not loaded yet: applied when the module loads,
// before any of its code runs (the core's half: kernel/core/pending.c).
//
// apply --kernel of such an update records it as pending in livesplice.ko and leaves a
// waiter: a process of its own (own session, signals ignored, no terminal) blocked in
// /dev/livesplice until the module loads. The core's module notifier then holds the
// load (the module's code relocated and listed in kallsyms, its init not run) and wakes
// the waiter, which runs the ordinary apply against the module as it is now and exits;
// if that fails, the module's load fails, the reason in the kernel log.
//
// What is hard:
// - The waiter must be attached before apply returns: a module loaded right after
//   would otherwise find no one to apply its update, and fail to load.
// - The waiter must not keep the caller's stdout open (a `$(livesplice apply ...)`
//   would wait for it), nor any other file of the caller's (the update manager's store
//   lock would be held until the module loads), and must hold the update's file itself
//   (it may be removed).
#pragma once

#include <optional>
#include <set>
#include <string>

#include "kernel/apply.h"
#include "kernel/core_module.h"
#include "update/contents.h"

namespace ls::kernel {

// The update `u` replaces functions of `modules`, which are not loaded: record it as
// pending for that module (one at a time) and start its waiter. Exit::Ok once it waits.
Exit pend_kernel_apply(Context& ctx, const KernelApplyOptions& opt, const update::Contents& u,
                       CoreDevice& dev, const std::set<std::string>& modules);

// undo --kernel of a pending update: `id` a prefix of its id, or empty when no update
// is applied (then the newest pending one). Cancels it (its waiter exits); nullopt when
// no pending update is meant.
std::optional<Exit> cancel_kernel_pending(Context& ctx, CoreDevice& dev, const std::string& id, bool none_applied);

}  // namespace ls::kernel
