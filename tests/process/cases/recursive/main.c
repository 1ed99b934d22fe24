/* The worker calls deeper(2000) for ever and prints each result. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

long deeper(int n);

long spin_us(long us)
{
	struct timespec t;
	long until, now;

	clock_gettime(CLOCK_MONOTONIC, &t);
	until = t.tv_sec * 1000000L + t.tv_nsec / 1000 + us;
	do {
		clock_gettime(CLOCK_MONOTONIC, &t);
		now = t.tv_sec * 1000000L + t.tv_nsec / 1000;
	} while (now < until);
	return 0;
}

static void *worker(void *arg)
{
	(void)arg;
	printf("worker thread %ld\n", (long)syscall(SYS_gettid));
	for (;;)
		printf("deeper %ld\n", deeper(2000));
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
	pthread_join(t, NULL);
	return 0;
}
