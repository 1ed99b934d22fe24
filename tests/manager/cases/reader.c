/* Opens the file argv[1] and reads it, argv[2] times, checking after each open whether
 * anything traces it (/proc/self/status TracerPid): a process that only reads a watched
 * file must never be held. Prints "reader: traced by N" for each time it was, then
 * "reader: done N opens". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tracer(void)
{
	char line[256];
	int pid = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "TracerPid:", 10) == 0)
			pid = atoi(line + 10);
	if (f)
		fclose(f);
	return pid;
}

int main(int argc, char **argv)
{
	char buf[4096];
	int n;

	if (argc != 3)
		return 2;
	n = atoi(argv[2]);
	for (int i = 0; i < n; i++) {
		int fd = open(argv[1], O_RDONLY);
		int t = tracer();

		if (fd < 0)
			return 1;
		if (t)
			printf("reader: traced by %d\n", t);
		while (read(fd, buf, sizeof buf) > 0)
			;
		close(fd);
	}
	printf("reader: done %d opens\n", n);
	return 0;
}
