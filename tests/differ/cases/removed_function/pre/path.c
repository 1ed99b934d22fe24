#include <string.h>

__attribute__((noinline)) static int has_dotdot(const char *p) {
  return strstr(p, "..") != 0;
}

int path_ok(const char *p) {
  if (p[0] == '/')
    return 0;
  return !has_dotdot(p);
}

int path_len(const char *p) {
  return (int)strlen(p);
}
