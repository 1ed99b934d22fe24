/* Prints libgreet's greeting every 10 ms. */
#include <stdio.h>
#include <unistd.h>

#include "greet.h"

int main(void)
{
	char buf[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		greet(buf, sizeof buf);
		printf("%s\n", buf);
		usleep(10000);
	}
}
