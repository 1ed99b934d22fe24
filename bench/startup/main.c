/* bench/watch.sh's program: main() reads CLOCK_MONOTONIC first, then calls value() (the
 * function the update replaces) and prints both; with "stay" it then sleeps, so that
 * watch finds the program's file by what runs it. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "value.h"

int main(int argc, char **argv)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	printf("%lld %d\n", t.tv_sec * 1000000000LL + t.tv_nsec, value());
	fflush(stdout);
	if (argc > 1 && strcmp(argv[1], "stay") == 0)
		for (;;)
			pause();
	return 0;
}
