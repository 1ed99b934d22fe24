/* hot THREADS: each worker calls hot() (1 ms and a 100 us sleep) between 50 us of other
 * work, so that it is inside hot() ~95% of the time, and prints what it returned every
 * 100 calls. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hot.h"

const volatile unsigned char *hot_entry;

long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

/* The site is the first byte (after endbr64, when there is one) and what follows: an
 * int3 on its first byte is how the entry is trapped, not a change. */
void same_entry(const unsigned char seen[16])
{
	int site = memcmp(seen, "\xf3\x0f\x1e\xfa", 4) == 0 ? 4 : 0;
	for (int i = 0; i < 16; i++) {
		unsigned char now = hot_entry[i];
		if (now != seen[i] && !(i == site && (now == 0xcc || seen[i] == 0xcc))) {
			printf("VIOLATION: byte %d of hot's entry changed from %02x to %02x while a thread was inside\n", i,
			       seen[i], now);
			abort();
		}
	}
}

static void *worker(void *arg)
{
	int id = (int)(long)arg;
	unsigned long mix = (unsigned long)id;

	for (long calls = 1;; calls++) {
		int value = hot();
		long until = now_us() + 50;
		while (now_us() < until)
			mix = mix * 6364136223846793005UL + 1442695040888963407UL;
		if (calls % 100 == 0)
			printf("thread %02d hot %d mix %lx\n", id, value, mix & 0xff);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	hot_entry = (const volatile unsigned char *)hot;
	for (long i = 0; i < threads; i++)
		if (pthread_create(&t, NULL, worker, (void *)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	printf("started %d workers\n", threads);
	for (;;)
		pause();
}
