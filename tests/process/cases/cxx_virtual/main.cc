/* One thread: calls area() through a Shape pointer, every 10 ms, and prints it. */
#include <unistd.h>

#include <cstdio>

#include "shape.h"

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	Shape* volatile shape = make_square(7);
	for (;;) {
		std::printf("area %d\n", shape->area());
		usleep(10000);
	}
}
