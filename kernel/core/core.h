/* SPDX-License-Identifier: GPL-2.0 */
/*
 * livesplice.ko, the kernel core: redirects sets of functions at one instant.
 *
 * A *set* (one update) is a list of sites: at old+offset, `len` bytes become
 * `jmp rel32` to new. Applying or undoing a set happens inside stop_machine on
 * every CPU at once: one CPU checks every task's kernel stack and, if no frame
 * lies in a checked function, writes every site; the others wait and then
 * serialise their instruction stream (sync_core), so no CPU runs stale code.
 * A blocked attempt writes nothing; the caller sleeps and tries again, a
 * bounded number of times, then gives up cleanly.
 *
 * main.c owns the device, the ledger of applied sets and the checks that need
 * no stop (symbols, bytes, overlap); splice.c owns what runs stopped.
 */
#ifndef LIVESPLICE_CORE_H
#define LIVESPLICE_CORE_H

#include <linux/fs.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include "livesplice.h"

/* Non-exported kernel functions, given as module parameters (main.c). */
struct ls_kernel {
	void *(*text_poke)(void *addr, const void *opcode, size_t len);
	struct mutex *text_mutex;
	int (*stop_machine_cpuslocked)(int (*fn)(void *), void *data,
				       const struct cpumask *cpus);
	struct module *(*module_address)(unsigned long addr);
	struct task_struct *(*idle_task)(int cpu);
	struct module *(*find_module)(const char *name);  /* with preemption off */
	bool scan_only;  /* stack_check=scan: every stack scanned word by word */
};

/* One redirected function. */
struct ls_site {
	unsigned long old_addr, old_size;  /* the running function, by kallsyms */
	unsigned long new_addr, new_size;  /* its replacement */
	unsigned int offset, len;
	u8 original[LS_K_MAX_PATCH];       /* what was there (== the request's expect) */
	u8 jump[LS_K_MAX_PATCH];           /* what we write */
	struct module *old_mod, *new_mod;  /* pinned while applied (NULL: vmlinux) */
};

struct ls_set {
	struct list_head node;
	char id[LS_K_ID_LEN];
	u64 pause_ns;
	struct module *code;               /* the module loaded for its new code (pinned;
					    * unloaded by the tool after undo), or NULL */
	unsigned int nsites;
	struct ls_site sites[];
};

/*
 * Apply (undo == false) or undo one set, with retries. Called with the core's
 * lock held, never from atomic context. On success the sites are written (or
 * restored); on failure nothing changed and res->message says why.
 */
int ls_splice(const struct ls_kernel *k, struct ls_set *set, bool undo,
	      unsigned int retries, unsigned int delay_ms, struct ls_k_result *res);

/* main.c, for pending.c: the core's lock and ledger. */
void ls_lock(void);
void ls_unlock(void);
bool ls_applied(const char *id);                /* with the lock held */
void ls_forget_sets_in(struct module *mod);     /* takes the lock */

/*
 * pending.c: updates waiting for their module to load (kernel/uapi), and the
 * module notifier that applies them when it does.
 */
int ls_pending_init(const struct ls_kernel *k);
void ls_pending_exit(void);
long ls_pending_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
void ls_pending_release(struct file *file);
/* Around LS_K_APPLY, with the core's lock held: coming is LS_K_APPLY_COMING. */
int ls_pending_begin(const char *id, bool coming, struct ls_k_result *res);
void ls_pending_end(const char *id, int err, const char *message);

#endif
