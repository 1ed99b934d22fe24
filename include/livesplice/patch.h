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

/* Shadow data (processes). A variable of `size` bytes attached to an existing object
 * (any address: `obj`) under a number the patch chooses (`id`), without changing the
 * object's layout: the place for the field a fix adds to a struct that running code
 * already holds.
 *
 *   livesplice_shadow_get(obj, id)               the variable, or NULL if none.
 *   livesplice_shadow_alloc(obj, id, size)       a new zeroed variable; NULL if one
 *                                                exists already or memory is short.
 *   livesplice_shadow_get_or_alloc(obj, id, size) the existing one, else a new zeroed one.
 *   livesplice_shadow_free(obj, id)              frees the variable, if any.
 *   livesplice_shadow_free_all(id)               frees every variable of that id.
 *
 * One table per process, shared by every update applied to it: two stacked updates
 * using the same id see the same variables, and an update finds what an earlier one
 * (already undone, even) left. The table is a mapping the first user makes at a fixed
 * address (LIVESPLICE_SHADOW_ANCHOR_), found again by every later one from its header;
 * it holds the hash table and the variables' memory (taken with mmap, never with
 * malloc), so the functions may be called from new code on any thread and from every
 * hook, the APPLY and UNDO hooks included. They take one spin lock, held only while
 * the table is walked: an APPLY or UNDO hook that meets it held by a stopped thread
 * waits until the hook time limit abandons it. The table and the variables outlive
 * undo: an update frees what it allocated in an UNDO or POST_UNDO hook
 * (livesplice_shadow_free_all is the usual way), else the variables stay, for the
 * process's life, for a later update to find. If the anchor's address is taken by a
 * mapping of the program, every function fails (NULL). Not available in the kernel.
 */
#ifndef __KERNEL__
#include <stddef.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

/* What a strict -std= or no _GNU_SOURCE hides (Linux's values, the same on every arch). */
#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS 0x20
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#if !defined(__cplusplus) && !defined(_GNU_SOURCE)
extern ssize_t process_vm_readv(pid_t, const struct iovec *, unsigned long, const struct iovec *, unsigned long,
                                unsigned long);
#endif

#define LIVESPLICE_SHADOW_ANCHOR_ 0x2e5d00000000UL   /* far from a program's, its heap's and mmap's */
#define LIVESPLICE_SHADOW_MAGIC_ 0x776f646168732d6cUL  /* "l-shadow" */
#define LIVESPLICE_SHADOW_BUCKETS_ 1024
#define LIVESPLICE_SHADOW_CLASSES_ 256       /* free lists of 16-byte multiples, up to 4 KiB */
#define LIVESPLICE_SHADOW_CHUNK_ (1UL << 20) /* the arena grows by this much */

struct livesplice_shadow_var_ {
  struct livesplice_shadow_var_ *next;
  void *obj;
  unsigned long id;
  unsigned long bytes;   /* the whole block, this header included */
};

/* The anchor mapping: all zeros is an empty table, so the magic is its only set-up. */
struct livesplice_shadow_table_ {
  unsigned long magic;
  int lock;
  char *arena, *arena_end;
  struct livesplice_shadow_var_ *free_lists[LIVESPLICE_SHADOW_CLASSES_ + 1];
  struct livesplice_shadow_var_ *buckets[LIVESPLICE_SHADOW_BUCKETS_];
};

/* Whether the word at `at` reads as `want`, without faulting on memory that is not
 * ours (a mapping of the program at the anchor's address). */
static inline int livesplice_shadow_reads_(unsigned long at, unsigned long want) {
  unsigned long got = 0;
  struct iovec local = {&got, sizeof got}, remote = {(void *)at, sizeof got};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)sizeof got && got == want;
}

/* The table, made or found by the first call (of this object of the update) and cached:
 * once there, it stays. */
static inline struct livesplice_shadow_table_ *livesplice_shadow_table_(void) {
  static struct livesplice_shadow_table_ *known;
  struct livesplice_shadow_table_ *t = (struct livesplice_shadow_table_ *)LIVESPLICE_SHADOW_ANCHOR_;
  size_t size = (sizeof *t + 4095) & ~4095UL;
  void *at;
  if (__atomic_load_n(&known, __ATOMIC_ACQUIRE)) return t;
  at = mmap((void *)LIVESPLICE_SHADOW_ANCHOR_, size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (at == (void *)LIVESPLICE_SHADOW_ANCHOR_) {
    __atomic_store_n(&t->magic, LIVESPLICE_SHADOW_MAGIC_, __ATOMIC_RELEASE);
    __atomic_store_n(&known, t, __ATOMIC_RELEASE);
    return t;
  }
  if (at != MAP_FAILED) { /* a kernel that took the address as a hint only */
    munmap(at, size);
    return NULL;
  }
  /* Mapped already: ours if it carries the magic, which its maker writes at once. */
  for (int tries = 0; tries < 1000; ++tries) {
    if (livesplice_shadow_reads_(LIVESPLICE_SHADOW_ANCHOR_, LIVESPLICE_SHADOW_MAGIC_)) {
      __atomic_store_n(&known, t, __ATOMIC_RELEASE);
      return t;
    }
    sched_yield();
  }
  return NULL;
}

static inline struct livesplice_shadow_table_ *livesplice_shadow_lock_(void) {
  struct livesplice_shadow_table_ *t = livesplice_shadow_table_();
  if (!t) return NULL;
  while (__atomic_exchange_n(&t->lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
  return t;
}

static inline void livesplice_shadow_unlock_(struct livesplice_shadow_table_ *t) {
  __atomic_store_n(&t->lock, 0, __ATOMIC_RELEASE);
}

static inline struct livesplice_shadow_var_ **livesplice_shadow_slot_(struct livesplice_shadow_table_ *t,
                                                                      void *obj, unsigned long id) {
  unsigned long h = ((unsigned long)obj >> 3) * 0x9e3779b97f4a7c15UL ^ id * 0xc2b2ae3d27d4eb4fUL;
  struct livesplice_shadow_var_ **p = &t->buckets[(h >> 32) % LIVESPLICE_SHADOW_BUCKETS_];
  while (*p && ((*p)->obj != obj || (*p)->id != id)) p = &(*p)->next;
  return p;
}

static inline struct livesplice_shadow_var_ *livesplice_shadow_block_(struct livesplice_shadow_table_ *t,
                                                                      unsigned long bytes) {
  struct livesplice_shadow_var_ *v;
  unsigned long cls = bytes / 16;
  if (cls > LIVESPLICE_SHADOW_CLASSES_) {
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : (struct livesplice_shadow_var_ *)m;
  }
  if ((v = t->free_lists[cls])) {
    t->free_lists[cls] = v->next;
    memset(v, 0, bytes);
    return v;
  }
  if ((unsigned long)(t->arena_end - t->arena) < bytes) {
    void *m = mmap(NULL, LIVESPLICE_SHADOW_CHUNK_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    t->arena = (char *)m;
    t->arena_end = t->arena + LIVESPLICE_SHADOW_CHUNK_;
  }
  v = (struct livesplice_shadow_var_ *)t->arena;
  t->arena += bytes;
  return v;
}

static inline void livesplice_shadow_release_(struct livesplice_shadow_table_ *t, struct livesplice_shadow_var_ *v) {
  unsigned long cls = v->bytes / 16;
  if (cls > LIVESPLICE_SHADOW_CLASSES_) {
    munmap(v, v->bytes);
    return;
  }
  v->next = t->free_lists[cls];
  t->free_lists[cls] = v;
}

static inline void *livesplice_shadow_get(void *obj, unsigned long id) {
  struct livesplice_shadow_table_ *t = livesplice_shadow_lock_();
  struct livesplice_shadow_var_ *v;
  if (!t) return NULL;
  v = *livesplice_shadow_slot_(t, obj, id);
  livesplice_shadow_unlock_(t);
  return v ? (void *)(v + 1) : NULL;
}

/* alloc and get_or_alloc in one: `existing` says what to return when there is one. */
static inline void *livesplice_shadow_make_(void *obj, unsigned long id, size_t size, int existing) {
  struct livesplice_shadow_table_ *t = livesplice_shadow_lock_();
  struct livesplice_shadow_var_ **slot, *v;
  unsigned long bytes = (sizeof *v + size + 15) & ~15UL;
  if (!t) return NULL;
  slot = livesplice_shadow_slot_(t, obj, id);
  if ((v = *slot)) {
    livesplice_shadow_unlock_(t);
    return existing ? (void *)(v + 1) : NULL;
  }
  if (bytes > LIVESPLICE_SHADOW_CLASSES_ * 16) bytes = (bytes + 4095) & ~4095UL;
  if (size < bytes && (v = livesplice_shadow_block_(t, bytes))) {
    v->next = NULL;
    v->obj = obj;
    v->id = id;
    v->bytes = bytes;
    *slot = v;
  }
  livesplice_shadow_unlock_(t);
  return v ? (void *)(v + 1) : NULL;
}

static inline void *livesplice_shadow_alloc(void *obj, unsigned long id, size_t size) {
  return livesplice_shadow_make_(obj, id, size, 0);
}

static inline void *livesplice_shadow_get_or_alloc(void *obj, unsigned long id, size_t size) {
  return livesplice_shadow_make_(obj, id, size, 1);
}

static inline void livesplice_shadow_free(void *obj, unsigned long id) {
  struct livesplice_shadow_table_ *t = livesplice_shadow_lock_();
  struct livesplice_shadow_var_ **slot, *v;
  if (!t) return;
  slot = livesplice_shadow_slot_(t, obj, id);
  if ((v = *slot)) {
    *slot = v->next;
    livesplice_shadow_release_(t, v);
  }
  livesplice_shadow_unlock_(t);
}

static inline void livesplice_shadow_free_all(unsigned long id) {
  struct livesplice_shadow_table_ *t = livesplice_shadow_lock_();
  if (!t) return;
  for (int b = 0; b < LIVESPLICE_SHADOW_BUCKETS_; ++b) {
    struct livesplice_shadow_var_ **p = &t->buckets[b], *v;
    while ((v = *p)) {
      if (v->id != id) {
        p = &v->next;
        continue;
      }
      *p = v->next;
      livesplice_shadow_release_(t, v);
    }
  }
  livesplice_shadow_unlock_(t);
}
#endif /* !__KERNEL__ */

#endif /* LIVESPLICE_PATCH_H */
