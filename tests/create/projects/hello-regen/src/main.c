#include <stdio.h>
#include <stdlib.h>

#include "greet.h"

int main(int argc, char **argv)
{
	int hour = argc > 1 ? atoi(argv[1]) : 9;
	printf("%s\n", greeting(hour));
	puts(_("bye"));
	return 0;
}
