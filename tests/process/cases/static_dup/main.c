/* Prints a.c's and b.c's values every 10 ms. */
#include <stdio.h>
#include <unistd.h>

#include "values.h"

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int seq = 0;; seq++) {
		printf("a %d b %d\n", a_value(seq), b_value(seq));
		usleep(10000);
	}
}
