/* The main thread, forever: an exception thrown in lookup() caught here, one thrown in
 * thrower() unwound through relay() and caught here, and the depth backtrace() sees
 * from inside depth(); one line, every 10 ms. A worker thread waits in wait_turn() until
 * "cancel" on stdin cancels it: the cancellation unwinds it from wait_turn, running the
 * destructor of its guard ("worker released"). Once those are replaced, each must still
 * work: the new code's unwind tables must be registered in the process. */
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
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

struct Guard {
	~Guard() { std::printf("worker released\n"); }
};

static void* worker(void*)
{
	Guard guard;
	for (;;)
		wait_turn();
	return nullptr;
}

static void* canceller(void* thread)
{
	char line[64];
	while (fgets(line, sizeof line, stdin))
		if (std::strncmp(line, "cancel", 6) == 0) {
			pthread_cancel(*static_cast<pthread_t*>(thread));
			pthread_join(*static_cast<pthread_t*>(thread), nullptr);
			std::printf("worker joined\n");
		}
	return nullptr;
}

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	static pthread_t work, cancel;
	pthread_create(&work, nullptr, worker, nullptr);
	pthread_create(&cancel, nullptr, canceller, &work);
	for (unsigned long n = 0;; n++) {
		turn(n);
		usleep(10000);
	}
}
