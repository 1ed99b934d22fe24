#include <stdio.h>

void report(FILE *f, int code) {
  fprintf(f, "code %d\n", code);
}

void banner(FILE *f) {
  fputs("livesplice test\n", f);
}
