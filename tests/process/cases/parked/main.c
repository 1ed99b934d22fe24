/* A server's shape: the main thread (the lowest TID) serves, waking every millisecond
 * to call sentinel() and printing its value every 10 ms; a second thread is parked in
 * pause() for good, as a signal or housekeeping thread is. The thread livesplice
 * borrows for its system calls should be the parked one. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

static void *parked(void *arg)
{
	(void)arg;
	printf("parked thread %ld\n", (long)syscall(SYS_gettid));
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pthread_create(&t, NULL, parked, NULL) != 0) {
		perror("pthread_create");
		return 1;
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
