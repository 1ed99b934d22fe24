/* One thread: prints report(7) every 10 ms. */
#include <unistd.h>

#include <cstdio>

#include "scale.h"

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	for (;;) {
		std::printf("value %d\n", report(7));
		usleep(10000);
	}
}
