/* One thread, forever: an exception thrown in lookup() caught here, one thrown in
 * thrower() unwound through relay() and caught here, and the depth backtrace() sees
 * from inside depth(); one line, every 10 ms. Once those three are replaced, each must
 * still work: the new code's unwind tables must be registered in the process. */
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "lookup.h"

static void __attribute__((noinline)) turn(unsigned long n)
{
	std::string thrown = "none", relayed = "none";
	try {
		lookup("three");
	} catch (const std::out_of_range& e) {
		thrown = e.what();
	}
	try {
		relay(static_cast<int>(n % 7));
	} catch (const std::runtime_error& e) {
		relayed = e.what();
	}
	std::printf("caught [%s] relayed [%s] depth %d\n", thrown.c_str(), relayed.c_str(), depth());
}

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	for (unsigned long n = 0;; n++) {
		turn(n);
		usleep(10000);
	}
}
