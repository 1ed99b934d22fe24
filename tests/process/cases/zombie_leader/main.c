/* The main thread starts a worker and calls pthread_exit: the process lives on in the
 * worker while its leader is a zombie (state Z in /proc/PID/stat, empty /proc/PID/maps,
 * no /proc/PID/mem). The worker calls sentinel() for 2 ms, prints its value, sleeps
 * 8 ms, forever. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

static long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

static void *worker(void *arg)
{
	unsigned long calls = 0;

	(void)arg;
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
	return NULL;
}

int main(void)
{
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pthread_create(&t, NULL, worker, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	printf("leader exits\n");
	pthread_exit(NULL);
}
