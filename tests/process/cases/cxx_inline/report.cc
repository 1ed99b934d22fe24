/* report() inlines scale() from scale.h (a loop, so that report is long enough for a
 * jump at its entry). */
#include "scale.h"

int report(int n)
{
	int sum = 0;
	for (int i = 0; i < n; ++i) sum += scale(i);
	return sum;
}
