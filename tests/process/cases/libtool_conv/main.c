/* Calls into the nested convenience libraries for 2 ms, prints the value, sleeps 8 ms,
 * forever. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

long comm_sentinel(void);

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
		long value = 0;
		while (now_us() < until) {
			value = comm_sentinel();
			calls++;
		}
		printf("sentinel %ld calls %lu\n", value, calls);
		usleep(8000);
	}
}
