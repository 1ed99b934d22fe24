/* 16 threads: each calls sentinel() between bits of arithmetic for 1 ms, prints the
 * value with its number, sleeps 4 ms, forever. On 2 CPUs most of them are runnable
 * but not running at any moment, the hard case for stopping them all. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "sentinel.h"

#define THREADS 16

static long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

static void *worker(void *arg)
{
	int id = (int)(long)arg;
	unsigned long mix = (unsigned long)id;

	for (;;) {
		long until = now_us() + 1000;
		int value = 0;
		while (now_us() < until) {
			value = sentinel();
			for (int i = 0; i < 100; i++)
				mix = mix * 6364136223846793005UL + 1442695040888963407UL;
		}
		printf("thread %02d sentinel %d mix %lx\n", id, value, mix & 0xff);
		usleep(4000);
	}
	return NULL;
}

int main(void)
{
	pthread_t threads[THREADS];

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long i = 0; i < THREADS; i++)
		if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	return 0;
}
