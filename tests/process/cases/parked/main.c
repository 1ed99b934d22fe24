/* A server's shape: the main thread (the lowest TID) serves, waking every millisecond
 * to call sentinel() and printing its value every 10 ms; a second thread is parked in
 * pause() for good, as a signal or housekeeping thread is. The thread livesplice
 * borrows for its system calls should be the parked one.
 * SIGUSR1 is handled (a line says so). `prog nproc`: once both threads run, the process can make no more (it becomes user
 * nobody, with RLIMIT_NPROC 1, which root's processes would ignore). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

static void on_usr1(int sig)
{
	(void)sig;
	(void)!write(1, "signal in the parked thread\n", 28);
}

static void *parked(void *arg)
{
	(void)arg;
	printf("parked thread %ld\n", (long)syscall(SYS_gettid));
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGUSR1, on_usr1);
	if (pthread_create(&t, NULL, parked, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	if (argc > 1 && strcmp(argv[1], "nproc") == 0) {
		struct rlimit one = { 1, 1 };
		if (setrlimit(RLIMIT_NPROC, &one) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
			perror("nproc");
			return 1;
		}
		printf("at the thread limit\n");
	}
	printf("serving thread %ld\n", (long)syscall(SYS_gettid));
	for (unsigned long i = 0;; i++) {
		struct timespec ms = { 0, 1000 * 1000 };
		int value = sentinel();
		if (i % 10 == 0)
			printf("sentinel %d\n", value);
		nanosleep(&ms, NULL);
	}
}
