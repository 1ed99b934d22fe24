/* One thread: prints next_ticket() every 10 ms. */
#include <unistd.h>

#include <cstdio>

#include "ticket.h"

int first_ticket()
{
	return 0;
}

int main()
{
	setvbuf(stdout, nullptr, _IOLBF, 0);
	for (;;) {
		std::printf("ticket %d\n", next_ticket());
		usleep(10000);
	}
}
