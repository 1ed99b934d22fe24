#include <stdio.h>

static const char *const unit_names[] = {"B", "KiB", "MiB", "GiB"};
static char g_last[32];

static unsigned pick_unit(unsigned long long *v) {
  unsigned u = 0;
  while (*v >= 1024 && u < 3) {
    *v /= 1024;
    u++;
  }
  return u;
}

const char *format_size(unsigned long long v) {
  unsigned u = pick_unit(&v);
  snprintf(g_last, sizeof g_last, "%llu %s", v, unit_names[u]);
  return g_last;
}

static const double rate_scale[] = {1.0, 1e3, 1e6, 1e9};
static double g_rate_sum;

double format_rate(double v, unsigned u) {
  g_rate_sum += v;
  return v / rate_scale[u & 3];
}

const char *last_formatted(void) {
  return g_last;
}
