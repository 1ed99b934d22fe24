#ifndef CALC_H
#define CALC_H

#include <stddef.h>

struct calc_result {
	long value;
	int overflow;
};

extern int calc_limit;

long calc_add(long a, long b);
long calc_mul(long a, long b);
struct calc_result calc_eval(char op, long a, long b);
int calc_format(char *buf, size_t len, long v);
const char *calc_unit_name(int unit);

#endif
