// helper: writes "value=N" to helper-PID.out in its working directory every 20 ms (by
// rename, so a reader never sees half a file). helper-value.patch changes N from 1 to 2.
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) int helper_value(void) {
  return 1;
}

int main(void) {
  char path[64], tmp[80];
  snprintf(path, sizeof path, "helper-%d.out", (int)getpid());
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  for (;;) {
    FILE *f = fopen(tmp, "w");
    if (f) {
      fprintf(f, "value=%d\n", helper_value());
      fclose(f);
      rename(tmp, path);
    }
    usleep(20000);
  }
}
