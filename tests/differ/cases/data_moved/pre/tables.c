int g_first = 1;
int g_second = 2;
static int s_hidden = 3;
char g_buf[32];
const int g_const = 4;

int sum(void) {
  return g_first + g_second + s_hidden + g_buf[0] + g_const;
}

void bump(void) {
  s_hidden++;
  g_buf[1]++;
}
