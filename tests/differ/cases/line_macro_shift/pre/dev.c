#include <stdio.h>

#define LOG(msg, v) fprintf(stderr, "dev.c:%d: %s %d\n", __LINE__, (msg), (v))

int g_state;

int dev_open(int id) {
  if (id < 0) {
    LOG("bad id", id);
    return -1;
  }
  g_state = id;
  return 0;
}

int dev_read(int *out) {
  if (!g_state)
    return -1;
  *out = g_state * 2;
  return 0;
}

int dev_ioctl(int cmd) {
  if (cmd > 16) {
    LOG("bad ioctl", cmd);
    return -1;
  }
  return cmd + g_state;
}

void dev_close(void) {
  g_state = 0;
}
