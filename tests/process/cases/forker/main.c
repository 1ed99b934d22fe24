/* Four threads, each forking a child every 200 us; the child calls sentinel(), the
 * replaced function, and exits with what it returned (10 for 1001, 20 for 2002). An
 * update written while a thread forks leaves the child a copy of the code taken at some
 * moment of the writing: it must still run either whole function, never an int3 or half
 * a jump. A child that ends any other way is printed at once ("bad child"). Every 100 ms
 * the main thread prints sentinel() and the counts. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

static _Atomic long forks;

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		pid_t c = fork();
		if (c == 0) {
			int v = sentinel();
			_exit(v == 1001 ? 10 : v == 2002 ? 20 : 1);
		}
		int st = 0;
		if (c > 0 && waitpid(c, &st, 0) == c && !(WIFEXITED(st) && (WEXITSTATUS(st) == 10 || WEXITSTATUS(st) == 20)))
			printf("bad child: status %#x\n", st);
		atomic_fetch_add(&forks, 1);
		struct timespec t = { 0, 200 * 1000 };
		nanosleep(&t, NULL);
	}
	return NULL;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (int i = 0; i < 4; ++i) pthread_create(&t, NULL, worker, NULL);
	for (;;) {
		struct timespec t = { 0, 100 * 1000 * 1000 };
		nanosleep(&t, NULL);
		printf("sentinel %d forks %ld\n", sentinel(), atomic_load(&forks));
	}
}
