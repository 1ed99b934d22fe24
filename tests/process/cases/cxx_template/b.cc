#include "box.h"

int from_b(int x)
{
	Box<int> b{x};
	return b.get() + 1;
}
