/* Idles in read(2) on stdin, like a daemon waiting for its next client, and answers
 * each line with answer(). After the first answer, serve()'s frame (live for ever)
 * holds dead words equal to a return address into answer(): the words a conservative
 * stack scan cannot tell from a real frame. No real frame is in answer() while it
 * idles, so an update of answer() is safe at any time. */
#include <stdio.h>
#include <unistd.h>

#include "answer.h"

__attribute__((noinline)) static void serve(void)
{
	volatile uintptr_t stale[4] = { 0 };
	char line[256];

	for (;;) {
		ssize_t n = read(0, line, sizeof line - 1);
		if (n <= 0)
			return;
		line[n] = 0;
		printf("answer %d\n", answer(line));
		for (int i = 0; i < 4; i++)
			stale[i] = last_caller;
		printf("stale words hold %#lx\n", (unsigned long)stale[0]);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	serve();
	return 0;
}
