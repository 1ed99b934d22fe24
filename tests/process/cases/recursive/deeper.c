/* The function the update replaces: 500 us of spinning, then a call of itself, 2000
 * levels deep (1 s), then straight back up. Its thread is never outside it but for the
 * microseconds between two top-level calls. */
long spin_us(long us);

__attribute__((noinline)) long deeper(int n)
{
	long v = spin_us(500);

	if (n > 0)
		v += deeper(n - 1);
	__asm__ volatile("" ::: "memory");   /* no tail call: each level keeps its frame */
	return v + 1;
}
