/* livesplice/patch.h: what a patch may say to livesplice, beside the fix itself.
 *
 * `livesplice create` puts this header's directory on the include path of the build of
 * the patched tree (the post build), so a patch may add `#include <livesplice/patch.h>`
 * to any file it changes. Nothing here changes the program when it is built normally
 * without livesplice: the hooks are functions kept in sections of their own, which a
 * program never calls.
 *
 * Hooks. Code of the update run inside the target at fixed points of apply and undo:
 *
 *   LIVESPLICE_PRE_APPLY(fn)   int fn(void): before the stop, every thread running. A
 *                              nonzero result aborts the apply with nothing changed
 *                              (exit 2, the value reported).
 *   LIVESPLICE_APPLY(fn)       void fn(void): while every thread of the process is
 *                              stopped, after the safety check and before the jumps are
 *                              written: the place to transform data that already exists.
 *   LIVESPLICE_POST_APPLY(fn)  void fn(void): after every thread runs again, the jumps
 *                              in place.
 *   LIVESPLICE_PRE_UNDO(fn), LIVESPLICE_UNDO(fn), LIVESPLICE_POST_UNDO(fn): the same for
 *                              undo (POST_UNDO runs before the update's code is unmapped).
 *
 * A hook is new code the update carries (create refuses a hook that already exists in
 * the running program, or that calls a function the same update replaces: that
 * function's entry is closed while hooks run). It runs in the target on one of the
 * program's own threads, borrowed for the call as a signal handler borrows it: that
 * thread's stack (below its red zone) and thread-local storage; errno is saved and put
 * back around the call. So a hook obeys the rules of a signal handler and more:
 *
 *  - No lock another thread may hold. An APPLY or UNDO hook runs while every other
 *    thread is stopped wherever it was, and the borrowed thread itself was stopped
 *    wherever it was (inside malloc, holding a mutex): taking such a lock never returns.
 *    Before the stop (PRE_*) and after it (POST_*) the other threads run, so locks may be
 *    waited for, but not one the borrowed thread already holds.
 *  - No blocking, no sleeping, no waiting for another thread, no new threads or
 *    processes, no exit(), no longjmp out of the hook, no signals sent to the process.
 *  - Short: a hook that has not returned within the time limit (apply --hook-timeout,
 *    1000 ms by default) is abandoned — its thread is put back as it was and the apply
 *    (or undo) fails with nothing changed. A hook that faults (SIGSEGV, SIGBUS, SIGILL,
 *    SIGFPE, SIGABRT, a trap) is abandoned the same way: the fault is never delivered.
 *    Whatever an abandoned hook had locked or half written stays so: keep each write
 *    that matters last and whole.
 * malloc and free are usable in POST_* and PRE_* hooks (and in APPLY/UNDO hooks only if
 * no thread can have been stopped inside the allocator: in general, do not).
 */
#ifndef LIVESPLICE_PATCH_H
#define LIVESPLICE_PATCH_H

#ifndef __KERNEL__
#include <errno.h>
#endif

#ifdef __cplusplus
#define LIVESPLICE_EXTERN_C_ extern "C"
#else
#define LIVESPLICE_EXTERN_C_
#endif

#ifndef __KERNEL__
#define LIVESPLICE_SAVE_ERRNO_ int livesplice_errno_ = errno;
#define LIVESPLICE_RESTORE_ERRNO_ errno = livesplice_errno_;
#else
#define LIVESPLICE_SAVE_ERRNO_
#define LIVESPLICE_RESTORE_ERRNO_
#endif

/* Each hook is a wrapper, livesplice_hook_<kind>__<fn>, whose address is recorded in
 * section .livesplice.hooks.<kind> of the object: create finds the hooks there (the
 * wrapper's name says the kind and the author's function). Every wrapper returns int. */
#define LIVESPLICE_HOOK_ENTRY_(kind, fn)                                                  \
  static int (*const livesplice_hook_entry_##kind##__##fn)(void)                          \
      __attribute__((used, section(".livesplice.hooks." #kind))) = livesplice_hook_##kind##__##fn

#define LIVESPLICE_INT_HOOK_(kind, fn)                                                    \
  static int livesplice_hook_##kind##__##fn(void) {                                       \
    LIVESPLICE_SAVE_ERRNO_ int livesplice_result_ = (fn)();                               \
    LIVESPLICE_RESTORE_ERRNO_ return livesplice_result_;                                  \
  }                                                                                       \
  LIVESPLICE_HOOK_ENTRY_(kind, fn)

#define LIVESPLICE_VOID_HOOK_(kind, fn)                                                   \
  static int livesplice_hook_##kind##__##fn(void) {                                       \
    LIVESPLICE_SAVE_ERRNO_(fn)();                                                         \
    LIVESPLICE_RESTORE_ERRNO_ return 0;                                                   \
  }                                                                                       \
  LIVESPLICE_HOOK_ENTRY_(kind, fn)

#define LIVESPLICE_PRE_APPLY(fn) LIVESPLICE_INT_HOOK_(pre_apply, fn)
#define LIVESPLICE_APPLY(fn) LIVESPLICE_VOID_HOOK_(apply, fn)
#define LIVESPLICE_POST_APPLY(fn) LIVESPLICE_VOID_HOOK_(post_apply, fn)
#define LIVESPLICE_PRE_UNDO(fn) LIVESPLICE_INT_HOOK_(pre_undo, fn)
#define LIVESPLICE_UNDO(fn) LIVESPLICE_VOID_HOOK_(undo, fn)
#define LIVESPLICE_POST_UNDO(fn) LIVESPLICE_VOID_HOOK_(post_undo, fn)

/* LIVESPLICE_IGNORE_FUNCTION(fn): the change the patch makes to fn need not be live
 * (a check in main() at start-up, while main() is on a stack for ever). create leaves fn
 * out of the update — the running program keeps its fn, and the update's new code calls
 * that one — and lists it; info shows it. */
#define LIVESPLICE_IGNORE_FUNCTION(fn)                                                    \
  static void *const livesplice_ignore__##fn __attribute__((used, section(".livesplice.ignore"))) = \
      (void *)&fn

/* LIVESPLICE_CONVERTED("name"): create refuses a change of data the running program
 * holds (a variable's initial value or size, the layout of "struct name", an enum's
 * values): the new code would meet the old data. A patch whose LIVESPLICE_APPLY hook (in
 * the same file) converts that data says so with this, naming it as create's refusal
 * does; create then lists it as converted instead of refusing. */
#define LIVESPLICE_CONVERTED_NAME2_(line) livesplice_converted__##line
#define LIVESPLICE_CONVERTED_NAME_(line) LIVESPLICE_CONVERTED_NAME2_(line)
#define LIVESPLICE_CONVERTED(what)                                                        \
  static const char LIVESPLICE_CONVERTED_NAME_(__LINE__)[]                                \
      __attribute__((used, section(".livesplice.converted"))) = what

#endif /* LIVESPLICE_PATCH_H */
