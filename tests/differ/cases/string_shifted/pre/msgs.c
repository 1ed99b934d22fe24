#include <stdio.h>

void hello(void) {
  puts("hello, world");
  puts("shared line");
}

void goodbye(void) {
  puts("shared line");
  puts("goodbye, world");
}

void farewell(int n) {
  printf("farewell number %d\n", n);
}
