/* A sentinel loop under a seccomp filter, installed once the program runs:
 *   prog kill-memfd        memfd_create kills the process (SECCOMP_RET_KILL_PROCESS)
 *   prog errno-memfd       memfd_create fails with EPERM
 *   prog mdwe              systemd's MemoryDenyWriteExecute= rules, and the kernel's
 *                          PR_SET_MDWE where the kernel has it
 *   prog allow-list FILE   the MemoryDenyWriteExecute= rules, then a second filter: only
 *                          the system calls named in FILE (one per line), anything else
 *                          kills the process, as systemd's SystemCallFilter= does (last,
 *                          as systemd does: it forbids seccomp() itself)
 *   prog no-exec           as openssh's sandboxed child: memfd_create kills, and so does
 *                          mmap or mprotect asking for PROT_EXEC
 *   prog kill-clone        clone kills the process (a program that never makes threads
 *                          once it runs)
 * Then: calls sentinel() for 2 ms, prints its value, sleeps 8 ms, forever. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

static void check(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", what, strerror(-rc));
		exit(1);
	}
}

static void load(scmp_filter_ctx ctx)
{
	check(seccomp_load(ctx), "seccomp_load");
	seccomp_release(ctx);
}

/* systemd's seccomp_memory_deny_write_execute(): EPERM for a mapping both writable and
 * executable, and for making anything executable afterwards. */
static void mdwe_filter(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int wx = PROT_WRITE | PROT_EXEC;

	check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx)), "mmap");
	check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1,
			       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)), "mprotect");
	check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pkey_mprotect), 1,
			       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)), "pkey_mprotect");
	check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(shmat), 1,
			       SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)), "shmat");
	load(ctx);
}

static void allow_list(const char *file)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	char name[128];
	int allowed = 0;
	FILE *f = fopen(file, "r");

	if (!f) {
		perror(file);
		exit(1);
	}
	while (fscanf(f, "%127s", name) == 1) {
		int nr = seccomp_syscall_resolve_name(name);
		if (nr == __NR_SCMP_ERROR)
			continue; /* a call of another architecture */
		check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0), name);
		allowed++;
	}
	fclose(f);
	load(ctx);
	printf("allow-list: %d system calls\n", allowed);
}

static long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	unsigned long calls = 0;
	scmp_filter_ctx ctx;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "kill-memfd") == 0 || strcmp(mode, "errno-memfd") == 0) {
		ctx = seccomp_init(SCMP_ACT_ALLOW);
		check(seccomp_rule_add(ctx, mode[0] == 'k' ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(EPERM),
				       SCMP_SYS(memfd_create), 0), "memfd_create");
		load(ctx);
	} else if (strcmp(mode, "kill-clone") == 0) {
		ctx = seccomp_init(SCMP_ACT_ALLOW);
		check(seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 0), "clone");
		load(ctx);
	} else if (strcmp(mode, "mdwe") == 0) {
		int kernel = prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0;
		mdwe_filter();
		printf("kernel mdwe: %s\n", kernel ? "on" : "not available");
	} else if (strcmp(mode, "allow-list") == 0 && argc > 2) {
		mdwe_filter();
		allow_list(argv[2]);
	} else if (strcmp(mode, "no-exec") == 0) {
		ctx = seccomp_init(SCMP_ACT_ALLOW);
		check(seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(memfd_create), 0), "memfd_create");
		check(seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(mmap), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)), "mmap");
		check(seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(mprotect), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)), "mprotect");
		load(ctx);
	} else {
		fprintf(stderr, "usage: prog kill-memfd|errno-memfd|mdwe|allow-list FILE|no-exec|kill-clone\n");
		return 2;
	}
	printf("filtered: %s\n", mode);
	for (;;) {
		long until = now_us() + 2000;
		int value = 0;
		while (now_us() < until) {
			value = sentinel();
			calls++;
		}
		printf("sentinel %d calls %lu\n", value, calls);
		usleep(8000);
	}
}
