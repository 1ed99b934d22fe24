/* Prints alpha() and beta() every 10 ms. */
#include <stdio.h>
#include <unistd.h>

#include "values.h"

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int seq = 0;; seq++) {
		printf("alpha %d beta %d\n", alpha(), beta());
		usleep(10000);
	}
}
