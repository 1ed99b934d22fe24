/* One thread: prints what both callers of Box<int>::get return, every 10 ms. */
#include <unistd.h>

#include <cstdio>

#include "box.h"

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	for (;;) {
		std::printf("a %d b %d\n", from_a(10), from_b(10));
		usleep(10000);
	}
}
