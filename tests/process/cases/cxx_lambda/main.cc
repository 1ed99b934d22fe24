/* One thread: prints sum_scaled(2) every 10 ms. */
#include <unistd.h>

#include <cstdio>

#include "sum.h"

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	for (;;) {
		std::printf("sum %d\n", sum_scaled(2));
		usleep(10000);
	}
}
