/* The function the update replaces: spins 1 ms, sleeps 100 us, and checks all along
 * that the bytes at its own entry are those it entered with (an int3 on the first byte
 * aside), in both versions: a jump written (or, on undo, taken away) while a thread is
 * inside the code being replaced, running or asleep, aborts the program. */
#include <time.h>

#include "hot.h"

int hot(void)
{
	struct timespec nap = {0, 100000};
	unsigned char seen[16];
	long until = now_us() + 1000;

	for (int i = 0; i < 16; i++)
		seen[i] = hot_entry[i];
	while (now_us() < until)
		same_entry(seen);
	nanosleep(&nap, 0);
	same_entry(seen);
	return 1001;
}
