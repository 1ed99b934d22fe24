#include <assert.h>

int checked_div(int a, int b) {
  assert(b != 0);
  return a / b;
}

int average(const int *v, int n) {
  long s = 0;
  for (int i = 0; i < n; i++)
    s += v[i];
  return n ? (int)(s / n) : 0;
}

int ratio_percent(int part, int whole) {
  assert(whole > 0);
  return part * 100 / whole;
}
