#include <stdio.h>
#include <stdlib.h>

#include "calc.h"

struct calc_result calc_eval(char op, long a, long b)
{
	struct calc_result r = {0, 0};

	switch (op) {
	case '+':
		r.value = calc_add(a, b);
		break;
	case '*':
		r.value = calc_mul(a, b);
		break;
	default:
		r.overflow = 1;
	}
	return r;
}

int main(int argc, char **argv)
{
	char buf[64];
	long a = argc > 1 ? atol(argv[1]) : 6;
	long b = argc > 2 ? atol(argv[2]) : 7;
	struct calc_result r = calc_eval('*', a, b);

	calc_format(buf, sizeof buf, r.value);
	printf("%s %s\n", buf, calc_unit_name(1));
	return r.overflow;
}
