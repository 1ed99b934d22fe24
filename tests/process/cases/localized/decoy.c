/* A static function named base, as another file of a library may have. */
#include "greet.h"

__attribute__((noinline)) static int base(void)
{
	__asm__ volatile("");
	return 7;
}

int decoy(void)
{
	return base() + 1;
}
