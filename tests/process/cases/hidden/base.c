/* A global of hidden visibility; the fixed sentinel() calls it. */
#include "sentinel.h"

__attribute__((visibility("hidden"))) int base(void)
{
	return 1001;
}
