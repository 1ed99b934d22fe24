/* Reads requests from stdin with read(2), one per line, and answers each on stdout.
 * Strict on purpose: a read interrupted by the update (EINTR) or losing data ends the
 * program with a message, so a broken syscall restart cannot pass unnoticed. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "answer.h"

int main(void)
{
	char buf[4096], reply[4200];
	size_t have = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	for (;;) {
		ssize_t n = read(0, buf + have, sizeof buf - 1 - have);
		if (n < 0) {
			printf("read failed: %s\n", strerror(errno));
			return 1;
		}
		if (n == 0) {
			printf("end of input\n");
			return 0;
		}
		have += (size_t)n;
		buf[have] = '\0';
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			answer(line, reply, sizeof reply);
			printf("%s\n", reply);
			line = nl + 1;
		}
		have = strlen(line);
		memmove(buf, line, have);
	}
}
