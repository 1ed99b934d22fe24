// SPDX-License-Identifier: GPL-2.0
/*
 * livesplice.ko: the device, the ledger of applied sets, and every check
 * that needs no stop.
 *
 * What is hard:
 * - Trusting the addresses we are given. Every function address must be the
 *   start of a kallsyms symbol (checked with sprint_symbol, exported), whose
 *   extent we take from kallsyms too; the bytes at each site must be the ones
 *   the tool read and matched; the same helpers it passes as parameters are
 *   checked by name before the device exists.
 * - Lifetimes. While a set is applied, the module holding the replacement
 *   code and the module holding the replaced function (ext4, say) are pinned,
 *   and so is this core, whose memory is the ledger: none of them can be
 *   unloaded under a jump.
 * - The module the tool loaded for a set's new code (ls_k_apply.code) is
 *   pinned with the set; after undo the tool unloads it, so undo checks every
 *   stack against all of its text, not only the replacements (a task may sleep
 *   in a new helper function the replacement called).
 * - Stacking. A site already written by an applied set is refused; a newer
 *   update of the same function redirects the previous replacement instead,
 *   and an older set cannot be undone while a newer one jumps out of its code.
 * - A set applied to a module while it loads (pending.c) pins it like any
 *   other; should the module still fail to load after that (its init fails),
 *   the kernel frees it whatever its references, so the set is forgotten
 *   when the module goes (ls_forget_sets_in), its text going with it.
 */
#include <linux/fs.h>
#include <linux/kallsyms.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/unaligned.h>

#include "core.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("livesplice: redirect kernel functions at one instant after a stack check");

static unsigned long text_poke_addr, text_mutex_addr, stop_machine_cpuslocked_addr,
	module_address_addr, idle_task_addr, find_module_addr;
module_param_named(text_poke, text_poke_addr, ulong, 0400);
MODULE_PARM_DESC(text_poke, "address of text_poke (from /proc/kallsyms)");
module_param_named(text_mutex, text_mutex_addr, ulong, 0400);
MODULE_PARM_DESC(text_mutex, "address of text_mutex");
module_param_named(stop_machine_cpuslocked, stop_machine_cpuslocked_addr, ulong, 0400);
MODULE_PARM_DESC(stop_machine_cpuslocked, "address of stop_machine_cpuslocked");
module_param_named(__module_address, module_address_addr, ulong, 0400);
MODULE_PARM_DESC(__module_address, "address of __module_address");
module_param_named(idle_task, idle_task_addr, ulong, 0400);
MODULE_PARM_DESC(idle_task, "address of idle_task");
module_param_named(find_module, find_module_addr, ulong, 0400);
MODULE_PARM_DESC(find_module, "address of find_module");
static char *stack_check = "unwind";
module_param(stack_check, charp, 0400);
MODULE_PARM_DESC(stack_check, "unwind (default: ORC, scanning a stack it cannot finish) or scan (every word of every stack)");

/* The one instance of the core's state. */
static struct ls_core {
	struct ls_kernel k;
	struct mutex lock;          /* one transaction at a time; guards sets */
	struct list_head sets;      /* applied, newest first */
} core = {
	.lock = __MUTEX_INITIALIZER(core.lock),
	.sets = LIST_HEAD_INIT(core.sets),
};

/*
 * The symbol starting exactly at addr: its name (without module) and its
 * kallsyms size (up to the next symbol). -ENOENT if addr is not a start.
 */
static int ls_symbol_at(unsigned long addr, char *name, size_t name_len,
			unsigned long *size)
{
	char buf[KSYM_SYMBOL_LEN];
	char *plus, *slash, *mod;
	unsigned long off;

	sprint_symbol(buf, addr);
	mod = strstr(buf, " [");
	if (mod)
		*mod = 0;
	plus = strrchr(buf, '+');
	slash = plus ? strchr(plus, '/') : NULL;
	if (!plus || !slash)
		return -ENOENT;
	*plus = 0;
	*slash = 0;
	if (kstrtoul(plus + 1, 0, &off) || kstrtoul(slash + 1, 0, size) || off)
		return -ENOENT;
	strscpy(name, buf, name_len);
	return 0;
}

static int ls_check_param(const char *param, const char *symbol, unsigned long addr)
{
	char name[KSYM_NAME_LEN];
	unsigned long size;

	if (!addr) {
		pr_err("livesplice: parameter %s missing: give the address of %s from /proc/kallsyms\n",
		       param, symbol);
		return -EINVAL;
	}
	if (ls_symbol_at(addr, name, sizeof(name), &size) || strcmp(name, symbol)) {
		pr_err("livesplice: parameter %s=%#lx is not the address of %s (%pS)\n",
		       param, addr, symbol, (void *)addr);
		return -EINVAL;
	}
	return 0;
}

/*
 * Pin the module holding addr, if any (NULL: not a module address). Done
 * before anything else looks at addr, so the module cannot go away between
 * the checks and the write.
 */
static int ls_pin(unsigned long addr, struct module **out)
{
	struct module *mod;
	int err = 0;

	preempt_disable();
	mod = core.k.module_address(addr);
	if (mod && !try_module_get(mod))
		err = -ENOENT;  /* being unloaded */
	preempt_enable();
	*out = err ? NULL : mod;
	return err;
}

/* [addr, addr+len) lies in the pinned module's core text (not data, not init). */
static bool ls_in_module_text(const struct module *mod, unsigned long addr, unsigned long len)
{
	unsigned long base = (unsigned long)mod->core_layout.base;

	return addr >= base && addr + len <= base + mod->core_layout.text_size;
}

static void ls_free_set(struct ls_set *set)
{
	unsigned int i;

	module_put(set->code);  /* NULL-safe */
	for (i = 0; i < set->nsites; i++) {
		module_put(set->sites[i].old_mod);  /* NULL-safe */
		module_put(set->sites[i].new_mod);
	}
	kvfree(set);
}

void ls_lock(void)
{
	mutex_lock(&core.lock);
}

void ls_unlock(void)
{
	mutex_unlock(&core.lock);
}

static struct ls_set *ls_find(const char *id);

bool ls_applied(const char *id)
{
	return ls_find(id) != NULL;
}

void ls_forget_sets_in(struct module *mod)
{
	struct ls_set *set, *tmp;
	unsigned int i;

	mutex_lock(&core.lock);
	list_for_each_entry_safe(set, tmp, &core.sets, node)
		for (i = 0; i < set->nsites; i++)
			if (set->sites[i].old_mod == mod) {
				pr_warn("livesplice: module %s failed to load after update %s was applied to it: the update is forgotten%s%s\n",
					mod->name, set->id, set->code ? "; unload its module " : "",
					set->code ? set->code->name : "");
				list_del(&set->node);
				ls_free_set(set);
				module_put(THIS_MODULE);
				break;
			}
	mutex_unlock(&core.lock);
}

static struct ls_set *ls_find(const char *id)
{
	struct ls_set *set;

	list_for_each_entry(set, &core.sets, node)
		if (!strcmp(set->id, id))
			return set;
	return NULL;
}

#define FAIL(res, err, ...) \
	({ snprintf((res)->message, sizeof((res)->message), __VA_ARGS__); (err); })

/* Fill one site from the request; every check that needs no stop. */
static int ls_prepare_site(struct ls_site *site, const struct ls_k_func *f,
			   struct ls_k_result *res)
{
	char name[KSYM_NAME_LEN];
	u8 now[LS_K_MAX_PATCH];
	unsigned long from;
	long rel;
	struct ls_set *other;
	unsigned int i;

	if (f->len != 5)
		return FAIL(res, -EINVAL, "%#llx: site length %u, only 5 (jmp rel32) is supported",
			    f->old_addr, f->len);
	site->old_addr = f->old_addr;
	site->new_addr = f->new_addr;
	site->offset = f->offset;
	site->len = f->len;
	if (ls_pin(site->old_addr, &site->old_mod) || ls_pin(site->new_addr, &site->new_mod))
		return FAIL(res, -ENOENT, "%#lx -> %#lx: a module is being unloaded",
			    site->old_addr, site->new_addr);
	if (ls_symbol_at(site->old_addr, name, sizeof(name), &site->old_size)) {
		return FAIL(res, -EINVAL, "%#lx (%pS) is not the start of a kernel symbol",
			    site->old_addr, (void *)site->old_addr);
	}
	if ((unsigned long)site->offset + site->len > site->old_size)
		return FAIL(res, -EINVAL, "%s: site +%#x..+%#x runs past its end (size %#lx)",
			    name, site->offset, site->offset + site->len, site->old_size);
	if (ls_symbol_at(site->new_addr, name, sizeof(name), &site->new_size))
		return FAIL(res, -EINVAL, "replacement %#lx (%pS) is not the start of a kernel symbol",
			    site->new_addr, (void *)site->new_addr);

	from = site->old_addr + site->offset;
	if (copy_from_kernel_nofault(now, (void *)from, site->len))
		return FAIL(res, -EFAULT, "%pS: cannot read the site", (void *)from);
	if (memcmp(now, f->expect, site->len))
		return FAIL(res, -ESTALE, "%pS: running bytes %*phN, expected %*phN",
			    (void *)from, site->len, now, site->len, f->expect);
	memcpy(site->original, now, site->len);

	rel = (long)site->new_addr - (long)(from + 5);
	if (rel != (s32)rel)
		return FAIL(res, -ERANGE, "%pS: replacement %#lx is out of jmp rel32 reach",
			    (void *)from, site->new_addr);
	site->jump[0] = 0xe9;  /* jmp rel32 */
	put_unaligned_le32((u32)(s32)rel, &site->jump[1]);

	list_for_each_entry(other, &core.sets, node)
		for (i = 0; i < other->nsites; i++) {
			const struct ls_site *o = &other->sites[i];
			unsigned long ofrom = o->old_addr + o->offset;

			if (from < ofrom + o->len && ofrom < from + site->len)
				return FAIL(res, -EBUSY,
					    "%pS: already redirected by %s (stack on its replacement instead)",
					    (void *)from, other->id);
		}

	if ((site->old_mod && !ls_in_module_text(site->old_mod, site->old_addr, site->old_size)) ||
	    (site->new_mod && !ls_in_module_text(site->new_mod, site->new_addr, site->new_size)))
		return FAIL(res, -EINVAL, "%pS -> %pS: not in a module's core text",
			    (void *)from, (void *)site->new_addr);
	return 0;
}

static long ls_apply(struct file *file, struct ls_k_apply __user *uarg)
{
	struct ls_k_apply a;
	struct ls_k_func *funcs = NULL;
	struct ls_set *set = NULL, *other;
	unsigned int i, j;
	bool coming = false;
	long err;

	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	memset(&a.result, 0, sizeof(a.result));
	if (!a.id[0] || strnlen(a.id, sizeof(a.id)) == sizeof(a.id)) {
		err = FAIL(&a.result, -EINVAL, "bad id");
		goto out;
	}
	if (!a.nfuncs || a.nfuncs > LS_K_MAX_FUNCS || (a.flags & ~LS_K_APPLY_COMING)) {
		err = FAIL(&a.result, -EINVAL, "%s: %u functions, flags %#x", a.id, a.nfuncs, a.flags);
		goto out;
	}
	funcs = kvmalloc_array(a.nfuncs, sizeof(*funcs), GFP_KERNEL);
	set = kvzalloc(struct_size(set, sites, a.nfuncs), GFP_KERNEL);
	if (!funcs || !set) {
		err = -ENOMEM;
		goto out;
	}
	if (copy_from_user(funcs, u64_to_user_ptr(a.funcs), sizeof(*funcs) * a.nfuncs)) {
		err = -EFAULT;
		goto out;
	}
	strscpy(set->id, a.id, sizeof(set->id));

	mutex_lock(&core.lock);
	if (ls_find(set->id)) {
		err = FAIL(&a.result, -EEXIST, "%s: already applied", set->id);
		goto unlock;
	}
	/* A pending update is applied only by its waiter, while its module loads. */
	err = ls_pending_begin(set->id, a.flags & LS_K_APPLY_COMING, &a.result);
	if (err)
		goto unlock;
	coming = a.flags & LS_K_APPLY_COMING;
	if (a.code) {
		/* The module holding the set's new code: pinned now, unpinned by undo. */
		if (ls_pin(a.code, &set->code) || !set->code) {
			err = FAIL(&a.result, -EINVAL, "%s: %#llx is not in a live module",
				   set->id, a.code);
			goto unlock;
		}
		list_for_each_entry(other, &core.sets, node)
			if (other->code == set->code) {
				err = FAIL(&a.result, -EBUSY, "%s: module %s already holds %s's code",
					   set->id, set->code->name, other->id);
				goto unlock;
			}
	}
	for (i = 0; i < a.nfuncs; i++) {
		err = ls_prepare_site(&set->sites[i], &funcs[i], &a.result);
		set->nsites = i + 1;  /* what ls_free_set unpins */
		if (err)
			goto unlock;
		for (j = 0; j < i; j++)
			if (set->sites[j].old_addr + set->sites[j].offset ==
			    set->sites[i].old_addr + set->sites[i].offset) {
				err = FAIL(&a.result, -EINVAL, "%pS: listed twice",
					   (void *)set->sites[i].old_addr);
				goto unlock;
			}
	}
	err = ls_splice(&core.k, set, false, a.retries, a.retry_delay_ms, &a.result);
	if (!err) {
		set->pause_ns = a.result.pause_ns;
		list_add(&set->node, &core.sets);
		__module_get(THIS_MODULE);  /* the ledger lives here */
		pr_info("livesplice: applied %s: %u functions, pause %llu ns (%u attempts)\n",
			set->id, set->nsites, a.result.pause_ns, a.result.attempts);
		set = NULL;
	} else {
		pr_info("livesplice: %s not applied: %s\n", a.id, a.result.message);
	}
unlock:
	if (coming)
		ls_pending_end(a.id, err, a.result.message);
	mutex_unlock(&core.lock);
out:
	if (set)
		ls_free_set(set);
	kvfree(funcs);
	if (copy_to_user(&uarg->result, &a.result, sizeof(a.result)))
		return -EFAULT;
	return err;
}

static long ls_undo(struct ls_k_undo __user *uarg)
{
	struct ls_k_undo u;
	struct ls_set *set, *newer;
	unsigned int i, j;
	long err = 0;

	if (copy_from_user(&u, uarg, sizeof(u)))
		return -EFAULT;
	memset(&u.result, 0, sizeof(u.result));
	u.id[sizeof(u.id) - 1] = 0;

	mutex_lock(&core.lock);
	set = ls_find(u.id);
	if (!set) {
		err = FAIL(&u.result, -ENOENT, "%s: not applied", u.id);
		goto unlock;
	}
	/* Sets before this one in the list are newer. */
	list_for_each_entry(newer, &core.sets, node) {
		if (newer == set)
			break;
		for (i = 0; i < newer->nsites; i++)
			for (j = 0; j < set->nsites; j++) {
				unsigned long a = newer->sites[i].old_addr;

				if (a >= set->sites[j].new_addr &&
				    a < set->sites[j].new_addr + set->sites[j].new_size) {
					err = FAIL(&u.result, -EBUSY,
						   "%s: %s stacks on it; undo %s first",
						   u.id, newer->id, newer->id);
					goto unlock;
				}
			}
	}
	err = ls_splice(&core.k, set, true, u.retries, u.retry_delay_ms, &u.result);
	if (!err) {
		list_del(&set->node);
		pr_info("livesplice: undid %s: pause %llu ns (%u attempts)\n",
			set->id, u.result.pause_ns, u.result.attempts);
		ls_free_set(set);
		module_put(THIS_MODULE);
	} else {
		pr_info("livesplice: %s not undone: %s\n", u.id, u.result.message);
	}
unlock:
	mutex_unlock(&core.lock);
	if (copy_to_user(&uarg->result, &u.result, sizeof(u.result)))
		return -EFAULT;
	return err;
}

static long ls_list(struct ls_k_list __user *uarg)
{
	struct ls_k_list l;
	struct ls_k_listed e;
	struct ls_set *set;
	unsigned int i, n = 0;
	long err = 0;

	if (copy_from_user(&l, uarg, sizeof(l)))
		return -EFAULT;
	mutex_lock(&core.lock);
	list_for_each_entry(set, &core.sets, node)
		for (i = 0; i < set->nsites; i++, n++) {
			const struct ls_site *s = &set->sites[i];

			if (n >= l.capacity)
				continue;
			memset(&e, 0, sizeof(e));
			strscpy(e.id, set->id, sizeof(e.id));
			e.old_addr = s->old_addr;
			e.new_addr = s->new_addr;
			e.offset = s->offset;
			e.len = s->len;
			memcpy(e.original, s->original, s->len);
			e.pause_ns = set->pause_ns;
			if (set->code) {
				e.code = (unsigned long)set->code->core_layout.base;
				e.code_size = set->code->core_layout.text_size;
				strscpy(e.module, set->code->name, sizeof(e.module));
			}
			if (copy_to_user(u64_to_user_ptr(l.entries) + n * sizeof(e), &e, sizeof(e)))
				err = -EFAULT;
		}
	mutex_unlock(&core.lock);
	l.count = n;
	if (!err && copy_to_user(uarg, &l, sizeof(l)))
		err = -EFAULT;
	return err;
}

static long ls_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	if (!capable(CAP_SYS_MODULE))
		return -EPERM;
	switch (cmd) {
	case LS_K_APPLY:
		return ls_apply(file, (void __user *)arg);
	case LS_K_UNDO:
		return ls_undo((void __user *)arg);
	case LS_K_LIST:
		return ls_list((void __user *)arg);
	}
	return ls_pending_ioctl(file, cmd, arg);
}

static int ls_release(struct inode *inode, struct file *file)
{
	ls_pending_release(file);
	return 0;
}

static const struct file_operations ls_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = ls_ioctl,
	.release = ls_release,
};

static struct miscdevice ls_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "livesplice",
	.fops = &ls_fops,
	.mode = 0600,
};

static int __init ls_init(void)
{
	int err = 0;

	err = err ?: ls_check_param("text_poke", "text_poke", text_poke_addr);
	err = err ?: ls_check_param("text_mutex", "text_mutex", text_mutex_addr);
	err = err ?: ls_check_param("stop_machine_cpuslocked", "stop_machine_cpuslocked",
				    stop_machine_cpuslocked_addr);
	err = err ?: ls_check_param("__module_address", "__module_address", module_address_addr);
	err = err ?: ls_check_param("idle_task", "idle_task", idle_task_addr);
	err = err ?: ls_check_param("find_module", "find_module", find_module_addr);
	if (err)
		return err;
	if (strcmp(stack_check, "unwind") && strcmp(stack_check, "scan")) {
		pr_err("livesplice: stack_check=%s: expected unwind or scan\n", stack_check);
		return -EINVAL;
	}
	core.k.scan_only = !strcmp(stack_check, "scan");
	core.k.text_poke = (void *)text_poke_addr;
	core.k.text_mutex = (struct mutex *)text_mutex_addr;
	core.k.stop_machine_cpuslocked = (void *)stop_machine_cpuslocked_addr;
	core.k.module_address = (void *)module_address_addr;
	core.k.idle_task = (void *)idle_task_addr;
	core.k.find_module = (void *)find_module_addr;
	err = ls_pending_init(&core.k);
	if (err)
		return err;
	err = misc_register(&ls_dev);
	if (err)
		ls_pending_exit();
	return err;
}

static void __exit ls_exit(void)
{
	/* No set is applied and no update is pending: each one holds a reference. */
	misc_deregister(&ls_dev);
	ls_pending_exit();
}

module_init(ls_init);
module_exit(ls_exit);
