/* Calls sentinel() on a string built at run time (so that no call is folded away) and
 * prints what it returns, every 10 ms. */
#include <stdio.h>
#include <unistd.h>

#include "sentinel.h"

int main(int argc, char **argv)
{
	char text[16];

	(void)argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(text, sizeof text, "ab%c", argc > 0 ? ';' : ',');
	for (;;) {
		printf("sentinel %d\n", sentinel(text));
		usleep(10000);
	}
}
