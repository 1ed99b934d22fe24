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

/*
 * Twenty small functions and their replacements, for sets of many functions:
 * ls_test_fN returns N, ls_test_gN returns N + 100. Reading the parameter
 * `sum` calls all twenty: 190 as loaded, 2190 with every one replaced.
 */
#define LS_TEST_PAIR(n) \
	noinline int ls_test_f##n(void) { return n; } \
	noinline int ls_test_g##n(void) { return n + 100; }
LS_TEST_PAIR(0) LS_TEST_PAIR(1) LS_TEST_PAIR(2) LS_TEST_PAIR(3) LS_TEST_PAIR(4)
LS_TEST_PAIR(5) LS_TEST_PAIR(6) LS_TEST_PAIR(7) LS_TEST_PAIR(8) LS_TEST_PAIR(9)
LS_TEST_PAIR(10) LS_TEST_PAIR(11) LS_TEST_PAIR(12) LS_TEST_PAIR(13) LS_TEST_PAIR(14)
LS_TEST_PAIR(15) LS_TEST_PAIR(16) LS_TEST_PAIR(17) LS_TEST_PAIR(18) LS_TEST_PAIR(19)

static int (*const ls_test_fs[])(void) = {
	ls_test_f0, ls_test_f1, ls_test_f2, ls_test_f3, ls_test_f4,
	ls_test_f5, ls_test_f6, ls_test_f7, ls_test_f8, ls_test_f9,
	ls_test_f10, ls_test_f11, ls_test_f12, ls_test_f13, ls_test_f14,
	ls_test_f15, ls_test_f16, ls_test_f17, ls_test_f18, ls_test_f19,
};

static int ls_test_sum_get(char *buf, const struct kernel_param *kp)
{
	int i, sum = 0;

	for (i = 0; i < ARRAY_SIZE(ls_test_fs); i++)
		sum += ls_test_fs[i]();
	return sysfs_emit(buf, "%d\n", sum);
}

static const struct kernel_param_ops ls_test_sum_ops = { .get = ls_test_sum_get };
module_param_cb(sum, &ls_test_sum_ops, NULL, 0444);

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
