/* The function the update replaces: it counts in a global the new code must share. */
#include <stdio.h>

#include "report.h"

int reports;

void report(long seq)
{
	reports++;
	printf("report v1 count %d seq %ld\n", reports, seq);
}
