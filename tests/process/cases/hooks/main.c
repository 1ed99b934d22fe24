/* One thread: calls sentinel() for 2 ms, prints its value, sleeps 8 ms, forever.
 * So the thread is caught sometimes running, sometimes asleep. */
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

int main(void)
{
	unsigned long calls = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
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
