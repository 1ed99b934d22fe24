/* kvd: reads commands on stdin, one per line, and answers each on stdout. */
#include <stdio.h>

#include "proto.h"

int main(void)
{
	char line[256];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof line, stdin))
		if (proto_handle(line, stdout) < 0)
			break;
	return 0;
}
