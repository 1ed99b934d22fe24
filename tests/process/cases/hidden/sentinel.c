/* The function the update replaces; only its new code calls base(). */
#include "sentinel.h"

int sentinel(void)
{
	return 1001;
}
