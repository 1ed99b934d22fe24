// `livesplice watch`: the daemon that patches processes as they start, and libraries as
// they are loaded, before any of the code it replaces can run.
//
// The kernel tells us in time only one way: a permission event of fanotify, where the
// thread opening a watched file waits in open() until we answer. (The process
// connector's exec events come after the fact, while the new program already runs.) So
// every file a stored update is for — found by build-id through the updates' own
// targets and what running processes map — is marked: a program for
// FAN_OPEN_EXEC_PERM (opened by execve itself, in the thread that becomes the new
// program), a library for FAN_OPEN_PERM (opened by ld.so, at start or in dlopen, in the
// thread that will map it). For an open by execve, or by ld.so's own code, the thread is
// seized before we answer and held at the moment ld.so has mapped everything (hold.h);
// the stored updates that fit the process are applied there by the manager's one path
// (converge_process, the same apply `sync` runs); then it is released. Any other open
// (a copy, a backup, `livesplice` itself reading build-ids) is answered at once and
// nothing else is done.
//
// Shape: one event loop, never blocking on anything but poll — it must answer every
// open, including those of our own apply children reading the files it marks — and one
// forked child per hold (a "holder") that seizes, answers, holds, takes the store's
// lock (as sync does: concurrent sync, install and watch wait for each other), applies,
// releases and exits. A holder ignores SIGTERM and finishes (its work is bounded), so a
// watch stopped or killed never leaves a process held. Marks are computed by another
// child under the store's shared lock, again whenever the store changes and every 30 s.
// An apply that fails in a held process (a thread in the way) is retried on the running
// process with a growing delay; each failure is in the store's attempts, for `status`.
//
// SIGTERM or SIGINT: the fanotify group is closed (the kernel answers what is pending
// with allow, and the marks go), the holders finish, the daemon exits 0.
#pragma once

#include "base/diag.h"
#include "manager/manager.h"

namespace ls::manager {

struct WatchOptions {
  ManagerOptions manager;
  int hold_limit_ms = 10000;     // longest a thread is held before ld.so has mapped
  int rescan_s = 30;             // marks computed again at least this often
};

Exit run_watch(Context& ctx, const WatchOptions& options);

}  // namespace ls::manager
