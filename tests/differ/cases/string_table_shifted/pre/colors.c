/* Strings referenced from data (not from one function) share .rodata.str1.1. */
static const char *const colors[] = {"red", "green", "blue"};
const char *g_shapes[] = {"circle", "square"};

const char *color_name(unsigned i) {
  return i < 3 ? colors[i] : "none";
}

const char *shape_name(unsigned i) {
  return g_shapes[i & 1];
}
