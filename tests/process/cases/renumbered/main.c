/* One thread: calls sentinel() and first() for 2 ms, prints sentinel's value, sleeps 8 ms. */
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
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		long until = now_us() + 2000;
		int value = 0;
		while (now_us() < until)
			value = sentinel() + first() * 0;
		printf("sentinel %d\n", value);
		usleep(8000);
	}
}
