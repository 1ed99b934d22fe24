// The update manager: `livesplice install | remove | sync | status`.
//
// The engine (process/apply.h) patches one process with one update; the manager keeps a
// machine patched. It holds the updates a machine should have in a store (store.h),
// finds every running process each one fits by the build-id of what it maps (fit.h), and
// the running kernel when a kernel update was made for its release (kernel.h), and
// converges: every stored update applied wherever it fits, every update it applied that
// is no longer stored undone, newest first.
//
//   install = store.add → converge(apply the new updates)
//   remove  = store.remove → converge(undo the removed updates)
//   sync    = converge(apply every stored update; undo every unstored one it applied)
//   converge = scan processes and the kernel → plan (read ledgers and livesplice.ko: what
//              is applied where) → hold back what failed before and is not due (sync) →
//              undo, then apply, each in a child (child.h) → retry what failed, with
//              backoff → keep the failures (kind, next attempt) → report (report.h)
//
// What is hard: many processes, any of which may refuse (a thread always busy in a
// replaced function, a build that does not match) or end meanwhile. So nothing stops at
// the first failure: every target gets one line (applied, already applied, undone,
// failed and why), failures are retried in later rounds with a growing delay and kept
// in the store for status, and the exit code says whether everything that fits is done.
// The ledger of each process (process/ledger.h) is the truth of what is applied; the
// store is the truth of what should be. Updates applied by hand (`apply`) or from
// another store are never undone by sync: only those whose recorded path is this
// store's. A removed update leaves the store before it is undone, so a remove killed
// half way is finished by the next sync, never reverted by it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/diag.h"

namespace ls::manager {

struct ManagerOptions {
  std::string root;              // --root; "" for $LIVESPLICE_ROOT or the default
  int retries = 20;              // per apply/undo, as for `apply`
  int retry_delay_ms = 10;
  int hot_wait_ms = 250;
  int rounds = 3;                // further passes over what failed; delay 0.2 s, then ×4
  std::string core;              // livesplice.ko for kernel updates; "" for default_core (kernel.h)
  int backoff_s = 60;            // sync: the first wait before an apply that failed is tried
                                 // again by a later sync; ×4 after each further failure
};

Exit run_install(Context& ctx, const ManagerOptions& options, const std::vector<std::string>& files);
Exit run_remove(Context& ctx, const ManagerOptions& options, const std::vector<std::string>& ids, bool all);
Exit run_sync(Context& ctx, const ManagerOptions& options, bool dry_run);
Exit run_status(Context& ctx, const ManagerOptions& options);

class Store;
// watch (watch.h): every stored update that fits process `pid` and is not applied there,
// applied (one line each; failures retried for options.rounds and recorded for status).
// The caller holds the store open, exclusive.
Exit converge_process(Context& ctx, Store& store, const ManagerOptions& options, pid_t pid);

}  // namespace ls::manager
