/* sum_scaled's lambda is held in a std::function, so its code is a function of its own
 * (the closure type's invoker, a local symbol named after sum_scaled) beside the code of
 * sum_scaled itself; the update changes the lambda's body. */
#include "sum.h"

#include <functional>

int sum_scaled(int k)
{
	std::function<int(int)> scaled = [k](int x) { return x * k; };
	int sum = 0;
	for (int i = 1; i <= 3; ++i) sum += scaled(i);
	return sum;
}
