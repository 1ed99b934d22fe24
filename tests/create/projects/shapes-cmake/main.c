#include <stdio.h>
#include <stdlib.h>

#include "shapes.h"

int main(int argc, char **argv)
{
	long w = argc > 1 ? atol(argv[1]) : 3;
	long h = argc > 2 ? atol(argv[2]) : 4;

	printf("%s: area %ld, perimeter %ld\n", greet("shapes"), area_rect(w, h), perimeter_rect(w, h));
	return 0;
}
