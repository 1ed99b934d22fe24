#include <stdio.h>

void usage(FILE *f) {
  fputs("usage: tool [-v] FILE\n", f);
  fputs("see the manual for more\n", f);
}

void error_usage(FILE *f) {
  fputs("error: bad arguments\n", f);
  fputs("usage: tool [-v] FILE\n", f);
}

void help(FILE *f) {
  fputs("see the manual for more\n", f);
}
