/* Every thread serving: prog THREADS FILE starts THREADS threads (the main one among
 * them) that all do the same. FILE (made by the test, 4 KiB) is shared with
 * the test, as 64-bit words: while word 0 is non-zero every thread spins, calling
 * sentinel(), and records each time it was held between two of its turns around the
 * loop. Thread i owns the block of words at 64 * (i + 1): word 0 says it spins (zero
 * while it naps), word 1 counts its records, then up to 31 records of two words, when
 * the hold ended and how long it was (CLOCK_MONOTONIC, ns). The test zeroes the counts
 * to start a window and reads the records to end it.
 *
 * Held: the gap between two turns less the CPU time the thread used in it
 * (CLOCK_THREAD_CPUTIME_ID), counted only when the thread gave up its CPU in it (its
 * voluntary context switches, RUSAGE_THREAD, moved): a ptrace stop is one; a spinning
 * thread otherwise never sleeps, a preemption by the machine's other work is not one,
 * and on a virtual machine the host may take the CPU away from the guest's running
 * thread, for milliseconds at a time, with no trace in the guest at all. A hold
 * includes the wait for a CPU after the thread was let go (on a loaded machine, as long
 * as the scheduler makes it: noise the test takes medians against).
 *
 * While word 0 is zero the threads nap 1 ms at a time, and thread 0 prints
 * "sentinel N" every 10 naps, after raising SIGTRAP, which the program handles (as a
 * debugger-aware program or a JIT may): a handler lost kills it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

#define MAX_THREADS 7

static volatile uint64_t *shared;
static volatile sig_atomic_t traps;

static void on_trap(int sig)
{
	(void)sig;
	traps++;
}

struct instant {
	uint64_t wall, cpu, switches;
};

static uint64_t ns(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static struct instant now(void)
{
	struct instant i = { ns(CLOCK_MONOTONIC), ns(CLOCK_THREAD_CPUTIME_ID), 0 };
	struct rusage usage;

	getrusage(RUSAGE_THREAD, &usage);
	i.switches = (uint64_t)usage.ru_nvcsw;
	return i;
}

static void *serve(void *arg)
{
	long index = (long)arg;
	volatile uint64_t *mine = &shared[64 * (index + 1)];
	unsigned long naps = 0;

	printf("thread %ld tid %ld\n", index, (long)syscall(SYS_gettid));
	for (;;) {
		if (!shared[0]) {
			mine[0] = 0;
			struct timespec ms = { 0, 1000 * 1000 };
			int value = sentinel();
			if (index == 0 && naps++ % 10 == 0) {
				raise(SIGTRAP);
				printf("sentinel %d traps %d\n", value, (int)traps);
			}
			nanosleep(&ms, NULL);
			continue;
		}
		struct instant prev = now();
		int switched = 0;
		mine[0] = 1;
		while (shared[0]) {
			struct instant t = now();
			int64_t held = (int64_t)(t.wall - prev.wall) - (int64_t)(t.cpu - prev.cpu);
			uint64_t n = mine[1];
			/* The switch may be counted a turn before the clock shows the gap (a stop
			 * right after a clock read), so either turn counts; a hold is longer than
			 * the 2 us a turn may take anyway. */
			int switches = t.switches != prev.switches;
			if ((switches || switched) && held > 2000 && n < 31) {
				mine[2 + 2 * n] = t.wall;
				mine[3 + 2 * n] = (uint64_t)held;
				mine[1] = n + 1;
			}
			switched = switches;
			prev = t;
			(void)sentinel();
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 2 ? atol(argv[1]) : 0;
	int fd = argc > 2 ? open(argv[2], O_RDWR) : -1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGTRAP, on_trap);
	if (threads < 1 || threads > MAX_THREADS || fd < 0) {
		fprintf(stderr, "usage: prog THREADS FILE (1 to %d threads)\n", MAX_THREADS);
		return 2;
	}
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shared == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	close(fd);
	for (long i = 1; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	serve((void *)0);
	return 0;
}
