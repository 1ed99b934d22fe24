#pragma once

extern int total;
extern __thread int calls;

int compute(int x);
int get_calls(void);
int get_calls_ie(void);
int get_depth(void);
int bump(void);
int twice(int x);
