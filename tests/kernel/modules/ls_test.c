// SPDX-License-Identifier: GPL-2.0
/*
 * ls_test.ko: replacement functions for the kernel tests, and a task that
 * stays inside a function on purpose, so that the safety check has something
 * to refuse.
 *
 * - ls_test_cmdline_proc_show: a stand-in for fs/proc/cmdline.c's
 *   cmdline_proc_show, with the same signature; /proc/cmdline shows a marker
 *   while it is spliced in; ls_test_cmdline_proc_show2 replaces that one in turn
 *   (stacking).
 * - ls_test_hold: the "ls_test_hold" kthread sleeps inside it while the
 *   parameter `hold` is 1 (writable in /sys/module/ls_test/parameters/hold);
 *   ls_test_hold_new is its replacement.
 * - ls_test_spin: with spin=1 at load, the "ls_test_spin" kthread busy-loops in
 *   it until spin is set to 0, so it leaves the CPU only when preempted: its
 *   stack then holds an interrupt frame whose saved IP is inside the function.
 */
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/seq_file.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("livesplice test functions");

static int hold = 1;
module_param(hold, int, 0644);
/* Load with spin=1 only when the kernel preempts (preempt=full): it never sleeps. */
static int spin;
module_param(spin, int, 0644);

noinline int ls_test_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "livesplice: cmdline replaced\n");
	return 0;
}

/* Stacked on ls_test_cmdline_proc_show by a second update. */
noinline int ls_test_cmdline_proc_show2(struct seq_file *m, void *v)
{
	seq_puts(m, "livesplice: cmdline replaced twice\n");
	return 0;
}

noinline void ls_test_hold(void)
{
	while (READ_ONCE(hold) && !kthread_should_stop())
		msleep(20);
}

noinline void ls_test_hold_new(void)
{
	pr_info("ls_test: ls_test_hold_new ran\n");
}

/* Never sleeps: a task in here is only ever switched out by preemption (pt_regs frame). */
noinline void ls_test_spin(void)
{
	while (READ_ONCE(spin) && !kthread_should_stop())
		cpu_relax();
}

noinline void ls_test_spin_new(void)
{
}

static int ls_test_spin_thread(void *unused)
{
	ls_test_spin();
	while (!kthread_should_stop())
		msleep(20);
	return 0;
}

static int ls_test_thread(void *unused)
{
	ls_test_hold();
	while (!kthread_should_stop())
		msleep(20);
	return 0;
}

static struct task_struct *thread, *spinner;

static int __init ls_test_init(void)
{
	thread = kthread_run(ls_test_thread, NULL, "ls_test_hold");
	if (IS_ERR(thread))
		return PTR_ERR(thread);
	if (spin) {
		spinner = kthread_run(ls_test_spin_thread, NULL, "ls_test_spin");
		if (IS_ERR(spinner)) {
			kthread_stop(thread);
			return PTR_ERR(spinner);
		}
	}
	return 0;
}

static void __exit ls_test_exit(void)
{
	kthread_stop(thread);
	if (spinner)
		kthread_stop(spinner);
}

module_init(ls_test_init);
module_exit(ls_test_exit);
