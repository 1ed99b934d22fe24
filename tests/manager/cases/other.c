/* A second program using libgreet (tests/process/cases/shlib): prints its greeting every
 * 10 ms, marked "other". One update of the library fits it and shlib's prog. */
#include <stdio.h>
#include <unistd.h>

#include "greet.h"

int main(void)
{
	char buf[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		greet(buf, sizeof buf);
		printf("other: %s\n", buf);
		usleep(10000);
	}
}
