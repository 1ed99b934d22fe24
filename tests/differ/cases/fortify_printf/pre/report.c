/* With _FORTIFY_SOURCE=2 (at -O1 and above) printf/snprintf become __printf_chk and
   __snprintf_chk calls; at -O0 they stay printf/snprintf. */
#include <stdio.h>

void print_stats(int sent, int lost) {
  printf("sent %d lost %d\n", sent, lost);
}

int format_rate(char *out, unsigned cap, int sent, int lost) {
  return snprintf(out, cap, "%d%%", sent ? lost * 100 / sent : 0);
}
