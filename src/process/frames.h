// The new code's unwind tables registered with the target's unwinder, so that an
// exception, a thread cancellation, backtrace() or a profiler unwinds through new code
// as through the code it replaced (the tables travel in the update: update/eh_frame.h).
//
// The mechanism is libgcc's own registry of frame tables that no loaded object owns
// (what JIT compilers use): `__register_frame_info(table, storage)` when applied,
// `__deregister_frame_info(table)` before the code is unmapped, each called in the
// target by one of its threads. Why not make the new code an object the dynamic loader
// knows, so that dl_iterate_phdr finds it: libgcc 12 on glibc 2.35 and later does not
// ask dl_iterate_phdr at all but _dl_find_object, whose table glibc keeps in its own
// lock-free, versioned memory, written only by dlopen and dlclose; adding an entry from
// outside means writing glibc's private data under its own protocol (and rtld's
// `dl_load_write_lock` for dl_iterate_phdr's list), per glibc version. The registry is a
// public interface, stable since GCC 3, and libgcc searches it before the loader's
// objects.
//
// What is hard:
//  - A call made in the target runs its code on one of its threads, with that thread's
//    TLS (glibc's mutexes read the thread's id; deregistering frees libgcc's sorted
//    copy of the table, and free() uses the thread's tcache). So the call is made by
//    a thread of the program (the quietest, as for system calls, regions.h), never by
//    livesplice's parked thread, which has no TLS of its own; every other thread runs.
//  - Locks. Registration takes libgcc's object mutex. A thread of the program may hold
//    it (it is unwinding); it runs, so the call waits for it. The borrowed thread itself
//    may hold it (stopped inside the unwinder): the call would never return, so it is
//    given a time limit, after which the thread is interrupted and given its registers
//    back (a waiter leaving a futex changes nothing of the lock), and the apply fails,
//    nothing changed. Storage comes from the update (`struct object`, format.h), so
//    registration allocates nothing; only deregistration frees (what libgcc allocated).
//  - Where the call returns: to an int3 found in the target's code, whose trap stops the
//    thread; no signal of the call's is ever delivered to the program.
//  - Deregistering what was never registered makes libgcc abort. The storage says
//    whether it is registered (libgcc writes it; zeros mean not), and livesplice
//    zeroes it again once deregistered, so a retried undo or a repair never asks twice.
//  - A process with no libgcc unwinder loaded (a C program that never threw, cancelled
//    a thread or called backtrace(): glibc loads libgcc_s on first use) has nothing to
//    register with: the apply says so with -v and goes on; the tables stay unused.
#pragma once

#include <vector>

#include "base/diag.h"
#include "base/result.h"
#include "loader/link.h"
#include "process/ledger.h"
#include "process/target.h"
#include "update/contents.h"

namespace ls::proc {

// Each carried `.eh_frame` of the update and its storage, where `image` put them.
std::vector<UnwindTable> unwind_tables(const update::Contents& u, const load::Image& image);

// Registers every table with the target's unwinder (see top). Fails, naming why, when a
// call does not complete; tables registered before a failure stay registered (the
// storage says so, for deregister_unwind). A process without the unwinder: a note, ok.
Status register_unwind(Context& ctx, const Target& target, const std::vector<UnwindTable>& tables);
// Deregisters every table its storage says is registered, then zeroes the storage.
Status deregister_unwind(const Target& target, const std::vector<UnwindTable>& tables);

}  // namespace ls::proc
