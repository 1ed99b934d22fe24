/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between livesplice (userspace) and its kernel core module,
 * livesplice.ko. One misc device, /dev/livesplice, root only; one ioctl per
 * transaction, so a request is applied whole or not at all and its result
 * (pause, what blocked it) comes back in the same call.
 *
 * The core is generic: it knows nothing of updates, ELF or matching. It is
 * told "at old_addr+offset, these bytes are there now; make them a jump to
 * new_addr", for a set of functions at once, and it does that at one instant
 * inside stop_machine after checking every task's kernel stack. Addresses of
 * function entries are what /proc/kallsyms lists; the core checks each one
 * against kallsyms itself (it must be the start of a symbol) and takes the
 * function's extent from there.
 *
 * The replacement code lives in a module already loaded: the module the tool
 * built and loaded for the update (ls_k_apply.code names it), which the set
 * pins while applied. Undoing such a set checks every stack against all of
 * that module's text, since the tool unloads it afterwards.
 *
 * Non-exported kernel functions the core needs (text_poke, text_mutex,
 * stop_machine_cpuslocked, __module_address, idle_task) are module
 * parameters, given by the tool from /proc/kallsyms when it loads the core;
 * the core refuses to load unless each one names the symbol it claims to.
 *
 * Shared by kernel/core/ (C, kernel) and src/kernel/ (C++, userspace).
 */
#ifndef LIVESPLICE_UAPI_H
#define LIVESPLICE_UAPI_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <linux/types.h>
#include <sys/ioctl.h>
#endif

#define LS_K_DEVICE "/dev/livesplice"
#define LS_K_ID_LEN 32          /* NUL-terminated */
#define LS_K_MAX_FUNCS 4096
#define LS_K_MAX_PATCH 16       /* bytes at one site */
#define LS_K_MESSAGE_LEN 224
#define LS_K_MODULE_LEN 56      /* MODULE_NAME_LEN on 64-bit */

/* One function to redirect. */
struct ls_k_func {
	__u64 old_addr;         /* entry of the running function (its kallsyms address) */
	__u64 new_addr;         /* entry of its replacement (already loaded, e.g. in a module) */
	__u32 offset;           /* where the jump goes, from old_addr: past the fentry site */
	__u32 len;              /* bytes the jump replaces: 5 (jmp rel32) */
	__u8 expect[LS_K_MAX_PATCH]; /* the bytes at old_addr+offset now (first len used) */
};

/* What an apply or undo reports, also when it fails. */
struct ls_k_result {
	/*
	 * The last attempt's pause, bracketed: pause_ns is stop_machine called ->
	 * returned (an upper bound: it includes waking the stopper threads),
	 * work_ns the check + write with every CPU held (a lower bound).
	 */
	__u64 pause_ns;
	__u64 work_ns;
	__u64 blocked_addr;     /* a frame address inside a checked function, or 0 */
	__s32 blocked_pid;      /* its task, or 0 */
	__u32 attempts;         /* stop_machine calls made */
	char blocked_comm[16];
	char message[LS_K_MESSAGE_LEN]; /* why it failed, NUL-terminated */
};

struct ls_k_apply {
	char id[LS_K_ID_LEN];   /* in: unique among applied sets */
	__u64 funcs;            /* in: user pointer to struct ls_k_func[nfuncs] */
	__u32 nfuncs;           /* in */
	__u32 retries;          /* in: further attempts after a blocked one */
	__u32 retry_delay_ms;   /* in: sleep between attempts */
	__u32 flags;            /* in: 0 */
	__u64 code;             /* in: an address in the module loaded for this set's
	                         * new code (its text is checked on undo), or 0 */
	struct ls_k_result result; /* out */
};

struct ls_k_undo {
	char id[LS_K_ID_LEN];   /* in */
	__u32 retries;          /* in */
	__u32 retry_delay_ms;   /* in */
	struct ls_k_result result; /* out */
};

/* One applied function, as LS_K_LIST returns it (newest set first). */
struct ls_k_listed {
	char id[LS_K_ID_LEN];
	__u64 old_addr;
	__u64 new_addr;
	__u32 offset;
	__u32 len;
	__u8 original[LS_K_MAX_PATCH];
	__u64 pause_ns;         /* the pause of the apply that wrote it */
	__u64 code;             /* the text of the set's own module, or 0 */
	__u64 code_size;
	char module[LS_K_MODULE_LEN]; /* that module's name, or "" */
};

struct ls_k_list {
	__u64 entries;          /* in: user pointer to struct ls_k_listed[capacity] */
	__u32 capacity;         /* in */
	__u32 count;            /* out: how many exist (may exceed capacity) */
};

#define LS_K_IOC_MAGIC 0xb5
#define LS_K_APPLY _IOWR(LS_K_IOC_MAGIC, 1, struct ls_k_apply)
#define LS_K_UNDO  _IOWR(LS_K_IOC_MAGIC, 2, struct ls_k_undo)
#define LS_K_LIST  _IOWR(LS_K_IOC_MAGIC, 3, struct ls_k_list)

/*
 * Pending updates (kernel/core/pending.c). An update for a module that is not
 * loaded is recorded (LS_K_PEND) and a waiting process blocks in LS_K_WAIT.
 * When the module loads, the core's module notifier (its code relocated, not
 * yet run) wakes the waiter and holds the load until the waiter has applied
 * the update with LS_K_APPLY and LS_K_APPLY_COMING, or said why not
 * (LS_K_FAIL), or gone away: then the module's load fails, its reason in the
 * kernel log, and so does every later load until the update is cancelled.
 * LS_K_CANCEL forgets a pending update while its module is not loading;
 * LS_K_PENDING_LIST lists them.
 */
#define LS_K_APPLY_COMING 1     /* ls_k_apply.flags: the set of a pending update
                                 * whose module is loading now */

#define LS_K_PENDING_WAITING 0  /* its module is not loaded */
#define LS_K_PENDING_COMING 1   /* its module is loading; the waiter is woken */
#define LS_K_PENDING_APPLYING 2 /* the waiter's LS_K_APPLY is under way */
#define LS_K_PENDING_FAILED 3   /* not applied when its module loaded: every load of
                                 * the module fails until it is cancelled */

struct ls_k_pending {
	char id[LS_K_ID_LEN];         /* in */
	char module[LS_K_MODULE_LEN]; /* in (PEND), out (list): the module it waits for */
	__s32 waiter_pid;             /* out (list): the waiting process, 0 if none */
	__u32 state;                  /* out (list): LS_K_PENDING_* */
	char message[LS_K_MESSAGE_LEN]; /* in (FAIL): why it was not applied;
	                                 * out: why a request was refused; (list)
	                                 * why a FAILED one failed */
};

struct ls_k_pending_list {
	__u64 entries;          /* in: user pointer to struct ls_k_pending[capacity] */
	__u32 capacity;         /* in */
	__u32 count;            /* out: how many exist (may exceed capacity) */
};

#define LS_K_PEND   _IOWR(LS_K_IOC_MAGIC, 4, struct ls_k_pending)
#define LS_K_WAIT   _IOWR(LS_K_IOC_MAGIC, 5, struct ls_k_pending)
#define LS_K_FAIL   _IOWR(LS_K_IOC_MAGIC, 6, struct ls_k_pending)
#define LS_K_CANCEL _IOWR(LS_K_IOC_MAGIC, 7, struct ls_k_pending)
#define LS_K_PENDING_LIST _IOWR(LS_K_IOC_MAGIC, 8, struct ls_k_pending_list)

#endif
