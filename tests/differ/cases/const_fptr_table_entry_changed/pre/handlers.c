/* Handlers reached only through tables of function pointers (const and writable). */
struct handler {
  const char *name;
  int (*fn)(int);
};

static int h_open(int v) { return v + 1; }
static int h_read(int v) { return v * 2; }
static int h_write(int v) { return v - 3; }
static int h_close(int v) { return v ^ 0x55; }

static const struct handler handlers[] = {
  {"open", h_open},
  {"read", h_read},
  {"write", h_write},
  {"close", h_close},
};

int (*g_hooks[2])(int) = {h_read, h_close};

int run_handler(unsigned i, int v) {
  if (i >= sizeof handlers / sizeof handlers[0])
    return -1;
  return handlers[i].fn(v);
}

const char *handler_name(unsigned i) {
  return i < 4 ? handlers[i].name : "?";
}

int run_hook(unsigned i, int v) {
  return g_hooks[i & 1](v);
}
