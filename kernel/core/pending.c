// SPDX-License-Identifier: GPL-2.0
/*
 * livesplice.ko: updates of modules that are not loaded yet ("pending"), applied
 * when the module loads, before any of its code runs.
 *
 * The core cannot apply an update by itself: run-pre matching, building and
 * loading the new code's module are the tool's work. So a pending update is a
 * record here plus a process of the tool (the waiter) blocked in LS_K_WAIT.
 * The module notifier, on MODULE_STATE_COMING of the module (its code
 * relocated and in kallsyms, alternatives, ftrace and jump labels done, its
 * init not yet run, nothing of it registered anywhere), wakes the waiter and
 * holds the load until the waiter has applied the update (LS_K_APPLY with
 * LS_K_APPLY_COMING) or failed; on failure the notifier fails the load, so
 * the module never runs unpatched without a line in the kernel log saying so.
 *
 * What is hard:
 * - Deadlocks. COMING notifiers run in the loading task with module_mutex
 *   released but the notifier chain's rwsem held for reading. The waiter
 *   loads a module of its own (init_module: module_mutex, then the same chain
 *   for reading again, where this notifier finds nothing to do), and splices
 *   (cpus_read_lock, text_mutex, stop_machine: none held by the loading task
 *   here, as this notifier runs last, after jump labels and static calls are
 *   done with them). The one wait that could not end is a writer queued on
 *   the chain (register_module_notifier) between the two readers: the load
 *   then fails after coming_timeout instead of hanging.
 * - Never holding the core's lock (or pending_lock) while waiting: the waiter's
 *   LS_K_APPLY needs the first, its LS_K_FAIL the second.
 * - Who finishes a record. Once the waiter's LS_K_APPLY has begun (APPLYING)
 *   the notifier waits for it without a timeout (the splice is bounded by its
 *   retries): giving up then could leave a set written into a module the
 *   kernel frees. Before that, a timeout, a killed modprobe, LS_K_FAIL, or the
 *   waiter's file closing fails the record; LS_K_APPLY_COMING for a record that
 *   is not COMING is refused, so a late waiter never patches a failed load.
 * - A failed record stays, and fails every later load of its module, until it
 *   is cancelled: a module the administrator wants updated from its first
 *   instruction does not start without the update because a load was retried.
 * - One pending update per module: a second one for the same module would
 *   leave the first applied inside a module whose load the second fails.
 */
#include <linux/completion.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "core.h"

static unsigned int coming_timeout = 30;
module_param(coming_timeout, uint, 0600);
MODULE_PARM_DESC(coming_timeout,
		 "seconds a loading module waits for its pending update to be applied (default 30) before its load fails");

#define LS_PENDING_DONE 4       /* applied */

struct ls_pending {
	struct list_head node;
	char id[LS_K_ID_LEN];
	char module[LS_K_MODULE_LEN];
	char message[LS_K_MESSAGE_LEN];   /* why it failed */
	unsigned int state;
	struct file *waiter;              /* the waiter's open device, or NULL */
	pid_t waiter_pid;
	struct completion done;           /* COMING or APPLYING -> DONE or FAILED */
};

static const struct ls_kernel *kern;
static DEFINE_SPINLOCK(pending_lock);   /* guards pending and each record's state */
static LIST_HEAD(pending);
static DECLARE_WAIT_QUEUE_HEAD(pending_wq);   /* waiters: a record left WAITING */

#define FAIL(msg, err, ...) ({ snprintf((msg), LS_K_MESSAGE_LEN, __VA_ARGS__); (err); })

static struct ls_pending *ls_pending_by_id(const char *id)
{
	struct ls_pending *p;

	list_for_each_entry(p, &pending, node)
		if (!strcmp(p->id, id))
			return p;
	return NULL;
}

static struct ls_pending *ls_pending_by_module(const char *module)
{
	struct ls_pending *p;

	list_for_each_entry(p, &pending, node)
		if (!strcmp(p->module, module))
			return p;
	return NULL;
}

/* Record an update for a module that is not loaded. */
static long ls_pend(struct ls_k_pending *req)
{
	struct ls_pending *p, *other;
	long err = 0;

	if (!req->id[0] || !req->module[0])
		return FAIL(req->message, -EINVAL, "an id and a module are needed");
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	strscpy(p->id, req->id, sizeof(p->id));
	strscpy(p->module, req->module, sizeof(p->module));
	init_completion(&p->done);

	ls_lock();
	spin_lock(&pending_lock);
	if (ls_applied(p->id)) {
		err = FAIL(req->message, -EEXIST, "%s: already applied", p->id);
	} else if (ls_pending_by_id(p->id)) {
		err = FAIL(req->message, -EEXIST, "%s: already pending", p->id);
	} else if ((other = ls_pending_by_module(p->module))) {
		err = FAIL(req->message, -EBUSY,
			   "%s: %s already waits for module %s (one pending update per module: apply this one once it is loaded)",
			   p->id, other->id, p->module);
	} else if (kern->find_module(p->module)) {
		/*
		 * Loaded, or past the point where its COMING notifier could see
		 * this record (find_module skips only unformed modules; the
		 * spinlock keeps preemption off, as find_module needs).
		 */
		err = FAIL(req->message, -EALREADY, "module %s is loaded now: apply the update again",
			   p->module);
	} else {
		list_add_tail(&p->node, &pending);
		__module_get(THIS_MODULE);  /* the record lives here */
	}
	spin_unlock(&pending_lock);
	ls_unlock();
	if (err) {
		kfree(p);
		return err;
	}
	pr_info("livesplice: %s pending until module %s loads\n", req->id, req->module);
	return 0;
}

static bool ls_pending_left_waiting(const char *id)
{
	struct ls_pending *p;
	bool left;

	spin_lock(&pending_lock);
	p = ls_pending_by_id(id);
	left = !p || p->state != LS_K_PENDING_WAITING;
	spin_unlock(&pending_lock);
	return left;
}

/* The waiter: block until the module loads (0) or the update is cancelled. */
static long ls_wait(struct file *file, struct ls_k_pending *req)
{
	struct ls_pending *p;
	long err = 0;

	spin_lock(&pending_lock);
	p = ls_pending_by_id(req->id);
	if (!p)
		err = FAIL(req->message, -ENOENT, "%s: not pending", req->id);
	else if (p->waiter && p->waiter != file)
		err = FAIL(req->message, -EBUSY, "%s: process %d waits for it already", req->id,
			   p->waiter_pid);
	if (!err) {
		p->waiter = file;
		p->waiter_pid = task_tgid_nr(current);
	}
	spin_unlock(&pending_lock);
	if (err)
		return err;

	err = wait_event_killable(pending_wq, ls_pending_left_waiting(req->id));
	if (err)
		return err;  /* killed: closing the file tells the record */
	spin_lock(&pending_lock);
	p = ls_pending_by_id(req->id);
	if (!p || p->waiter != file)
		err = FAIL(req->message, -ECANCELED, "%s: cancelled", req->id);
	spin_unlock(&pending_lock);
	return err;
}

/* The waiter could not apply the update: the module's load fails with req->message. */
static long ls_fail(struct ls_k_pending *req)
{
	struct ls_pending *p;
	long err = 0;

	spin_lock(&pending_lock);
	p = ls_pending_by_id(req->id);
	if (!p || p->state != LS_K_PENDING_COMING) {
		err = FAIL(req->message, -ENOENT, "%s: its module is not loading", req->id);
	} else {
		p->state = LS_K_PENDING_FAILED;
		strscpy(p->message, req->message, sizeof(p->message));
		complete(&p->done);
	}
	spin_unlock(&pending_lock);
	return err;
}

/* Forget a pending update whose module is not loading; its waiter exits. */
static long ls_cancel(struct ls_k_pending *req)
{
	struct ls_pending *p;
	long err = 0;

	spin_lock(&pending_lock);
	p = ls_pending_by_id(req->id);
	if (!p)
		err = FAIL(req->message, -ENOENT, "%s: not pending", req->id);
	else if (p->state != LS_K_PENDING_WAITING && p->state != LS_K_PENDING_FAILED)
		err = FAIL(req->message, -EBUSY, "%s: module %s is loading, the update is being applied",
			   req->id, p->module);
	else
		list_del(&p->node);
	spin_unlock(&pending_lock);
	if (err)
		return err;
	wake_up_all(&pending_wq);
	pr_info("livesplice: %s cancelled (was pending until module %s loads)\n", p->id, p->module);
	kfree(p);
	module_put(THIS_MODULE);
	return 0;
}

static long ls_pending_list(struct ls_k_pending_list __user *uarg)
{
	struct ls_k_pending_list l;
	struct ls_k_pending *buf;
	struct ls_pending *p;
	unsigned int n = 0, cap;
	long err = 0;

	if (copy_from_user(&l, uarg, sizeof(l)))
		return -EFAULT;
	cap = min_t(unsigned int, l.capacity, 256);
	buf = kcalloc(cap ?: 1, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	spin_lock(&pending_lock);
	list_for_each_entry(p, &pending, node) {
		if (n < cap) {
			strscpy(buf[n].id, p->id, sizeof(buf[n].id));
			strscpy(buf[n].module, p->module, sizeof(buf[n].module));
			buf[n].waiter_pid = p->waiter ? p->waiter_pid : 0;
			buf[n].state = p->state;
			if (p->state == LS_K_PENDING_FAILED)
				strscpy(buf[n].message, p->message, sizeof(buf[n].message));
		}
		n++;
	}
	spin_unlock(&pending_lock);
	if (copy_to_user(u64_to_user_ptr(l.entries), buf, sizeof(*buf) * min(n, cap)))
		err = -EFAULT;
	kfree(buf);
	l.count = n;
	if (!err && copy_to_user(uarg, &l, sizeof(l)))
		err = -EFAULT;
	return err;
}

long ls_pending_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ls_k_pending req;
	long err;

	if (cmd == LS_K_PENDING_LIST)
		return ls_pending_list((void __user *)arg);
	if (cmd != LS_K_PEND && cmd != LS_K_WAIT && cmd != LS_K_FAIL && cmd != LS_K_CANCEL)
		return -ENOTTY;
	if (copy_from_user(&req, (void __user *)arg, sizeof(req)))
		return -EFAULT;
	req.id[sizeof(req.id) - 1] = 0;
	req.module[sizeof(req.module) - 1] = 0;
	req.message[sizeof(req.message) - 1] = 0;
	if (cmd == LS_K_PEND)
		err = ls_pend(&req);
	else if (cmd == LS_K_WAIT)
		err = ls_wait(file, &req);
	else if (cmd == LS_K_FAIL)
		err = ls_fail(&req);
	else
		err = ls_cancel(&req);
	if (err && cmd != LS_K_FAIL &&
	    copy_to_user(((struct ls_k_pending __user *)arg)->message, req.message, sizeof(req.message)))
		return -EFAULT;
	return err;
}

void ls_pending_release(struct file *file)
{
	struct ls_pending *p;

	spin_lock(&pending_lock);
	list_for_each_entry(p, &pending, node) {
		if (p->waiter != file)
			continue;
		p->waiter = NULL;
		p->waiter_pid = 0;
		if (p->state == LS_K_PENDING_COMING) {
			p->state = LS_K_PENDING_FAILED;
			strscpy(p->message, "its waiting process exited before applying it", sizeof(p->message));
			complete(&p->done);
		}
	}
	spin_unlock(&pending_lock);
}

int ls_pending_begin(const char *id, bool coming, struct ls_k_result *res)
{
	struct ls_pending *p;
	int err = 0;

	spin_lock(&pending_lock);
	p = ls_pending_by_id(id);
	if (!coming && p)
		err = FAIL(res->message, -EBUSY, "%s: pending until module %s loads", id, p->module);
	else if (coming && (!p || p->state != LS_K_PENDING_COMING))
		err = FAIL(res->message, -ENOENT, "%s: not pending for a module being loaded now", id);
	else if (coming)
		p->state = LS_K_PENDING_APPLYING;
	spin_unlock(&pending_lock);
	return err;
}

void ls_pending_end(const char *id, int err, const char *message)
{
	struct ls_pending *p;

	spin_lock(&pending_lock);
	p = ls_pending_by_id(id);
	if (p && p->state == LS_K_PENDING_APPLYING) {
		p->state = err ? LS_K_PENDING_FAILED : LS_PENDING_DONE;
		if (err)
			strscpy(p->message, message, sizeof(p->message));
		complete(&p->done);
	}
	spin_unlock(&pending_lock);
}

/* MODULE_STATE_COMING of mod: its pending update, if any, is applied now or the load fails. */
static int ls_coming(struct module *mod)
{
	struct ls_pending *p;
	long left = 1;
	bool applying;
	int err = 0;

	spin_lock(&pending_lock);
	p = ls_pending_by_module(mod->name);
	if (!p) {
		spin_unlock(&pending_lock);
		return 0;
	}
	if (p->state == LS_K_PENDING_FAILED) {
		/* Failed at an earlier load: the module stays out until it is cancelled. */
	} else if (!p->waiter) {
		p->state = LS_K_PENDING_FAILED;
		strscpy(p->message, "no process waits to apply it (its waiter exited)", sizeof(p->message));
	} else {
		p->state = LS_K_PENDING_COMING;
	}
	spin_unlock(&pending_lock);

	if (p->state == LS_K_PENDING_COMING) {
		pr_info("livesplice: module %s is loading: applying pending update %s before its init runs\n",
			mod->name, p->id);
		wake_up_all(&pending_wq);
		left = wait_for_completion_killable_timeout(&p->done, coming_timeout * HZ);
		spin_lock(&pending_lock);
		if (p->state == LS_K_PENDING_COMING) {
			p->state = LS_K_PENDING_FAILED;
			if (left == 0)
				snprintf(p->message, sizeof(p->message), "not applied within %u s (coming_timeout)",
					 coming_timeout);
			else
				strscpy(p->message, "the loading process was killed", sizeof(p->message));
		}
		applying = p->state == LS_K_PENDING_APPLYING;
		spin_unlock(&pending_lock);
		if (applying)
			wait_for_completion(&p->done);  /* the splice ends by itself: retries are bounded */
	}

	/*
	 * A failed record stays: another attempt to load the module (busybox's
	 * modprobe retries at once with init_module) fails too, until the update
	 * is cancelled (undo), so the module never runs without it unnoticed.
	 */
	if (p->state == LS_K_PENDING_FAILED) {
		pr_err("livesplice: module %s not loaded: pending update %s was not applied: %s (livesplice undo --kernel %s cancels it)\n",
		       mod->name, p->id, p->message, p->id);
		return -ECANCELED;
	}
	spin_lock(&pending_lock);
	list_del(&p->node);
	spin_unlock(&pending_lock);
	pr_info("livesplice: pending update %s applied to module %s before its init\n", p->id, mod->name);
	kfree(p);
	module_put(THIS_MODULE);
	return err;
}

static int ls_module_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct module *mod = data;

	if (action == MODULE_STATE_COMING)
		return notifier_from_errno(ls_coming(mod));
	if (action == MODULE_STATE_GOING)
		ls_forget_sets_in(mod);
	return NOTIFY_DONE;
}

static struct notifier_block ls_module_nb = {
	.notifier_call = ls_module_notify,
	/*
	 * Last of the COMING notifiers: jump labels, static calls and the rest
	 * have rewritten the module's code by then (what run-pre matching sees
	 * is what will run), and none of them holds a lock the waiter needs.
	 */
	.priority = INT_MIN,
};

int ls_pending_init(const struct ls_kernel *k)
{
	kern = k;
	return register_module_notifier(&ls_module_nb);
}

void ls_pending_exit(void)
{
	unregister_module_notifier(&ls_module_nb);
}
