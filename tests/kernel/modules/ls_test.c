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
 */
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/seq_file.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("livesplice test functions");

static int hold = 1;
module_param(hold, int, 0644);

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

static int ls_test_thread(void *unused)
{
	ls_test_hold();
	while (!kthread_should_stop())
		msleep(20);
	return 0;
}

static struct task_struct *thread;

static int __init ls_test_init(void)
{
	thread = kthread_run(ls_test_thread, NULL, "ls_test_hold");
	return PTR_ERR_OR_ZERO(thread);
}

static void __exit ls_test_exit(void)
{
	kthread_stop(thread);
}

module_init(ls_test_init);
module_exit(ls_test_exit);
