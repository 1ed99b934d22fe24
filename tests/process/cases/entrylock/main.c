/* Prints the holder's progress every 1000 calls of holder(). */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lock.h"

volatile int taken = 1;   /* by the holder thread, for ever */

static void *waiting(void *arg)
{
	(void)arg;
	printf("waiter thread %ld\n", (long)syscall(SYS_gettid));
	for (;;)
		waiter();
	return NULL;
}

int main(void)
{
	pthread_t t;
	int n = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("holder thread %ld\n", (long)syscall(SYS_gettid));
	if (pthread_create(&t, NULL, waiting, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	for (long calls = 1;; calls++) {
		struct timespec d = {0, 100000};
		n = holder(n);
		nanosleep(&d, NULL);
		if (calls % 1000 == 0)
			printf("holder %d\n", n);
	}
}
