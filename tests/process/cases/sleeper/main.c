/* Sleeps 500 ms with nanosleep(2), then prints sentinel(), how long the sleep took and
 * when it began and ended (CLOCK_MONOTONIC, us, so the test can line them up with its
 * own clock). A sleep the update interrupts must end on time: not early, not restarted
 * from the beginning, not failed with EINTR (which ends the program). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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
	printf("sleeping 500000 us per line\n");
	for (;;) {
		struct timespec req = { .tv_sec = 0, .tv_nsec = 500 * 1000 * 1000 };
		long start = now_us();
		if (nanosleep(&req, NULL) != 0) {
			printf("nanosleep failed: %s\n", strerror(errno));
			return 1;
		}
		long end = now_us();
		printf("sentinel %d slept %ld us from %ld to %ld\n", sentinel(), end - start, start, end);
	}
}
