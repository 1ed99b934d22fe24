__attribute__((noinline)) int clamp_byte(int v) {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

int pixel(int r, int g, int b) {
  return clamp_byte(r) << 16 | clamp_byte(g) << 8 | clamp_byte(b);
}

int gray(int v) {
  return clamp_byte(v) * 0x010101;
}
