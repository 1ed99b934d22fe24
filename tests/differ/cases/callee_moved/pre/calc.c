__attribute__((noinline)) static int scale(int v) {
  return v * 3 + 1;
}

__attribute__((noinline)) int offset(int v) {
  return v - 7;
}

int compute(int v) {
  return scale(v) + offset(v);
}

int compute2(int v) {
  return scale(v + 1) - offset(v);
}
