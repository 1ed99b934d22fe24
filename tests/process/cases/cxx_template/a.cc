#include "box.h"

int from_a(int x)
{
	Box<int> b{x};
	return b.get();
}
