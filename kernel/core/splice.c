// SPDX-License-Identifier: GPL-2.0
/*
 * The stopped part: check every task's kernel stack, then write or restore
 * every site of a set, inside one stop_machine.
 *
 * What is hard:
 * - Which stacks. During stop_machine every CPU runs its stopper thread, so
 *   every other task is switched out and its whole kernel state is on its own
 *   stack (interrupted kernel code leaves a pt_regs frame there). The stopper
 *   threads run only stopper code; we skip them (on_cpu) and ourselves. Idle
 *   threads are on no task list: each CPU's is checked through idle_task(),
 *   so a function of the idle loop (schedule_idle, do_idle) is never replaced.
 * - How to walk them. The ORC unwinder is exported (__unwind_start,
 *   unwind_next_frame); it reports every return address and, at a pt_regs
 *   frame from kernel mode, the interrupted instruction. When it cannot finish
 *   a stack (unwind_error, or a frame in code it does not know as text),
 *   we fall back to a conservative scan of every word
 *   from the saved stack pointer to the top of the stack: any word inside a
 *   checked function blocks. A false block costs a retry, never safety.
 *   (stack_check=scan makes every stack take that path: Ksplice's own check.)
 * - Writing text with interrupts off on every CPU. text_poke_bp needs IPIs,
 *   which cannot be sent here; plain text_poke maps the page through the
 *   poking mm with interrupts disabled and is safe because no other CPU runs
 *   kernel text while we write. Afterwards each CPU executes sync_core()
 *   before it leaves the stop, as cross-modifying code requires.
 * - Lock order: cpus_read_lock, then text_mutex (as jump labels and static
 *   calls take them), then stop_machine_cpuslocked.
 */
#include <linux/atomic.h>
#include <linux/cpu.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <asm/sync_core.h>
#include <asm/unwind.h>

#include "core.h"

#define LS_MAX_FRAMES 256

struct ls_stop {
	const struct ls_kernel *k;
	struct ls_set *set;
	bool undo;
	atomic_t entered;
	int done;           /* master finished; read with acquire */
	int ret;            /* 0, -EAGAIN (blocked), or a write error */
	u64 work_ns;
	unsigned long blocked_addr;
	pid_t blocked_pid;              /* copied while stopped: the task may exit after */
	char blocked_comm[TASK_COMM_LEN];
	bool blocked_by_scan;
};

/*
 * Whether a frame address lies in a checked function: on apply the running
 * functions (their whole extent: a task anywhere in one would come back to
 * code we are about to change); on undo the replacements, and all of the text
 * of the module the set brought, which is unloaded afterwards.
 */
static bool ls_checked(const struct ls_stop *s, unsigned long a)
{
	const struct module *code = s->set->code;
	unsigned int i;

	/* The set's module is unloaded after undo: no task may be anywhere in its text. */
	if (s->undo && code && a >= (unsigned long)code->core_layout.base &&
	    a < (unsigned long)code->core_layout.base + code->core_layout.text_size)
		return true;
	for (i = 0; i < s->set->nsites; i++) {
		const struct ls_site *site = &s->set->sites[i];
		unsigned long start = s->undo ? site->new_addr : site->old_addr;
		unsigned long size = s->undo ? site->new_size : site->old_size;

		if (a >= start && a < start + size)
			return true;
	}
	return false;
}

/* Every word between the saved stack pointer and the top of the stack. */
static unsigned long ls_scan_stack(const struct ls_stop *s, struct task_struct *t)
{
	unsigned long *base = task_stack_page(t);
	unsigned long *top = base + THREAD_SIZE / sizeof(unsigned long);
	unsigned long *p = (unsigned long *)t->thread.sp;

	if (p < base || p >= top)
		p = base;
	for (; p < top; p++)
		if (ls_checked(s, *p))
			return *p;
	return 0;
}

/* The first frame of t inside a checked function, or 0. */
static unsigned long ls_check_task(struct ls_stop *s, struct task_struct *t)
{
	struct unwind_state state;
	unsigned int frames = 0;
	bool stuck = false;

	if (s->k->scan_only) {
		unsigned long addr = ls_scan_stack(s, t);

		s->blocked_by_scan = addr != 0;
		return addr;
	}
	for (unwind_start(&state, t, NULL, NULL); !unwind_done(&state);
	     unwind_next_frame(&state)) {
		struct pt_regs *regs = unwind_get_entry_regs(&state, NULL);
		unsigned long addr;

		if (regs && user_mode(regs))
			return 0;  /* reached the entry from user space: done */
		addr = unwind_get_return_address(&state);
		if (!addr) {
			/*
			 * An address the unwinder does not take for kernel
			 * text (neither vmlinux nor a module): it may be what
			 * we check, and the rest of the stack is unknown.
			 */
			if (ls_checked(s, state.ip))
				return state.ip;
			stuck = true;
			break;
		}
		if (ls_checked(s, addr))
			return addr;
		if (++frames >= LS_MAX_FRAMES)
			break;
	}
	if (stuck || unwind_error(&state) || frames >= LS_MAX_FRAMES) {
		unsigned long addr = ls_scan_stack(s, t);

		if (addr)
			s->blocked_by_scan = true;
		return addr;
	}
	return 0;
}

static int ls_check_one(struct ls_stop *s, struct task_struct *t)
{
	unsigned long addr;

	if (t == current || READ_ONCE(t->on_cpu))
		return 0;  /* stopper threads: they run only stopper code */
	if (!task_stack_page(t) || !refcount_read(&t->stack_refcount))
		return 0;  /* exited: runs nothing any more */
	addr = ls_check_task(s, t);
	if (!addr)
		return 0;
	s->blocked_addr = addr;
	s->blocked_pid = task_pid_nr(t);
	memcpy(s->blocked_comm, t->comm, sizeof(s->blocked_comm));
	return -EAGAIN;
}

static int ls_check_all(struct ls_stop *s)
{
	struct task_struct *g, *t;
	unsigned int cpu;
	int ret = 0;

	/* The idle threads are on no task list; each sits in its idle loop. */
	for_each_online_cpu(cpu) {
		ret = ls_check_one(s, s->k->idle_task(cpu));
		if (ret)
			return ret;
	}

	/* Nothing can fork or exit while every CPU is stopped; RCU only for form. */
	rcu_read_lock();
	for_each_process_thread(g, t) {
		ret = ls_check_one(s, t);
		if (ret)
			goto out;
	}
out:
	rcu_read_unlock();
	return ret;
}

static int ls_write_all(struct ls_stop *s)
{
	unsigned int i;

	for (i = 0; i < s->set->nsites; i++) {
		struct ls_site *site = &s->set->sites[i];
		void *at = (void *)(site->old_addr + site->offset);
		const u8 *now = s->undo ? site->jump : site->original;

		/* Re-checked stopped: nothing may have changed since main.c looked. */
		if (memcmp(at, now, site->len))
			return -ESTALE;
	}
	for (i = 0; i < s->set->nsites; i++) {
		struct ls_site *site = &s->set->sites[i];
		void *at = (void *)(site->old_addr + site->offset);

		s->k->text_poke(at, s->undo ? site->original : site->jump, site->len);
	}
	return 0;
}

/* Runs on every online CPU at once, interrupts off. */
static int ls_stop_fn(void *arg)
{
	struct ls_stop *s = arg;

	if (atomic_inc_return(&s->entered) == 1) {
		u64 t0 = ktime_get_mono_fast_ns();

		s->ret = ls_check_all(s);
		if (!s->ret)
			s->ret = ls_write_all(s);
		s->work_ns = ktime_get_mono_fast_ns() - t0;
		smp_store_release(&s->done, 1);
	} else {
		while (!smp_load_acquire(&s->done))
			cpu_relax();
	}
	sync_core();
	return 0;
}

int ls_splice(const struct ls_kernel *k, struct ls_set *set, bool undo,
	      unsigned int retries, unsigned int delay_ms, struct ls_k_result *res)
{
	unsigned int attempt;
	struct ls_stop s;

	for (attempt = 0; attempt <= retries; attempt++) {
		u64 t0, t1;
		int err;

		memset(&s, 0, sizeof(s));
		s.k = k;
		s.set = set;
		s.undo = undo;
		atomic_set(&s.entered, 0);

		if (attempt)
			msleep(delay_ms);
		cpus_read_lock();
		mutex_lock(k->text_mutex);
		t0 = ktime_get_mono_fast_ns();
		err = k->stop_machine_cpuslocked(ls_stop_fn, &s, cpu_online_mask);
		t1 = ktime_get_mono_fast_ns();
		mutex_unlock(k->text_mutex);
		cpus_read_unlock();

		res->attempts = attempt + 1;
		res->pause_ns = t1 - t0;
		res->work_ns = s.work_ns;
		if (err) {
			snprintf(res->message, sizeof(res->message),
				 "stop_machine failed: %d", err);
			return err;
		}
		if (s.ret == -ESTALE) {
			snprintf(res->message, sizeof(res->message),
				 "the bytes at a site changed before the stop; nothing written");
			return -ESTALE;
		}
		if (s.ret != -EAGAIN)
			return s.ret;

		res->blocked_addr = s.blocked_addr;
		res->blocked_pid = s.blocked_pid;
		strscpy(res->blocked_comm, s.blocked_comm, sizeof(res->blocked_comm));
	}
	snprintf(res->message, sizeof(res->message),
		 "task %d (%s) was in %pS (%s) on each of %u attempts; nothing written",
		 res->blocked_pid, res->blocked_comm, (void *)res->blocked_addr,
		 s.blocked_by_scan ? "found by scanning its stack" : "unwound",
		 retries + 1);
	return -EBUSY;
}
