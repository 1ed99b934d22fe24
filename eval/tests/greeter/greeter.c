// greeter: answers each line of its standard input with "GREETING NAME". A name with a
// ';' in it must be refused (what greet-refuse-semicolon.patch fixes).
#include <stdio.h>
#include <string.h>

#include "config.h"

// noipa: the call stays a call, so the fix replaces this function, not main's loop.
__attribute__((noipa)) int name_ok(const char *name) {
  return name[0] != '\0';
}

int main(void) {
  char line[256];
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready\n");
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    if (name_ok(line))
      printf("%s %s\n", GREETING, line);
    else
      printf("refused %s\n", line);
  }
  return 0;
}
