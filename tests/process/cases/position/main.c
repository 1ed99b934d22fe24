/* Prints a report every 10 ms; the count must carry on across the update. */
#include <unistd.h>
#include <stdio.h>

#include "report.h"

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long seq = 1;; seq++) {
		report(seq);
		usleep(10000);
	}
}
