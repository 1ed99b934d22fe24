/* Every caller passes the same constant `shift`: GCC specialises the functions
   into scale_up.constprop.0 and scale_down.constprop.0 at -O2 and above. */
__attribute__((noinline)) static long scale_up(long v, int shift, long bias) {
  for (int i = 0; i < 4; i++)
    v = (v << shift) + bias;
  return v;
}

__attribute__((noinline)) static long scale_down(long v, int shift, long bias) {
  for (int i = 0; i < 4; i++)
    v = (v >> shift) - bias;
  return v;
}

long up_a(long v) { return scale_up(v, 3, 1); }
long up_b(long v) { return scale_up(v + 5, 3, 2); }
long down_a(long v) { return scale_down(v, 2, 1); }
long down_b(long v) { return scale_down(v - 5, 2, 2); }
