#include <stddef.h>

int g_dropped;

int frame_ok(const unsigned char *buf, size_t len) {
  if (len < 14)
    return 0;
  return buf[12] == 0x08;
}

int count_ok(const unsigned char *buf, size_t len, int n) {
  int ok = 0;
  for (int i = 0; i < n; i++)
    ok += frame_ok(buf, len);
  g_dropped += n - ok;
  return ok;
}
