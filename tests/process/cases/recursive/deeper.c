/* The function the update replaces: 1 ms of spinning around a call of itself, three
 * levels deep. Its thread is never outside it but between two top-level calls. */

long spin_us(long us);

__attribute__((noinline)) long deeper(int n)
{
	long v = spin_us(500);

	if (n > 0)
		v += deeper(n - 1);
	return v + spin_us(500) + 1;
}
