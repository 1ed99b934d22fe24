/* until FLAG: prints what busy_until() returns, every 50 ms, once FLAG exists. */
#include <stdio.h>
#include <unistd.h>

#include "busy.h"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: prog FLAG\n");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("waiting for %s\n", argv[1]);
	for (;;) {
		printf("sentinel %d\n", busy_until(argv[1]));
		usleep(50000);
	}
}
