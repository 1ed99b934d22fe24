/* mix() is small and static: at -O2 and above it is inlined into checksum(). */
static unsigned mix(unsigned h, unsigned char c) {
  return (h << 5) + h + c;
}

unsigned checksum(const unsigned char *p, unsigned n) {
  unsigned h = 5381;
  for (unsigned i = 0; i < n; i++)
    h = mix(h, p[i]);
  return h;
}

unsigned length_code(unsigned n) {
  return n < 128 ? n : 128 + (n >> 7);
}
