/* Arithmetic for calc. */
#include "calc.h"

/* Both ops.c and fmt.c have a static clamp(): local names repeat across files. */
static long clamp(long v)
{
	if (v > calc_limit)
		return calc_limit;
	if (v < -calc_limit)
		return -calc_limit;
	return v;
}

long calc_add(long a, long b)
{
	return clamp(a + b);
}

/* Multiplication saturates at the limit. */
long calc_mul(long a, long b)
{
	long r;

	if (__builtin_mul_overflow(a, b, &r))
		return calc_limit;
	return clamp(r);
}
