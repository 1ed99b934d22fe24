/* The functions the update replaces. waiter() spins until the lock is free; the
 * holder thread never frees it, and calls holder() while holding it. With both
 * entries trapped, the holder waits at holder()'s entry and the waiter never leaves:
 * an update must be refused, naming both, not wait for ever. */
#include "lock.h"

int waiter(void)
{
	while (__atomic_load_n(&taken, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	return 1;
}

int holder(int n)
{
	volatile int x = n;

	return x + 1;
}
