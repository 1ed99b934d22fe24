/* GCC's IPA-SRA passes only the fields these static functions read:
   width_of.isra.0 and height_of.isra.0 at -O2 and above. */
struct conf {
  int width;
  int height;
  int depth;
  char name[64];
};

__attribute__((noinline)) static int width_of(const struct conf *c) {
  return c->width * 2;
}

__attribute__((noinline)) static int height_of(const struct conf *c) {
  return c->height * 3;
}

int area(const struct conf *c) {
  return width_of(c) * height_of(c);
}

int perimeter(const struct conf *c) {
  return 2 * (width_of(c) + height_of(c));
}
