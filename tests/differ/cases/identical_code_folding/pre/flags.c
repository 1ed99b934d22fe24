/* Two static functions with identical bodies: at -O2 GCC's identical code folding keeps
   one and makes the other's callers use it. The patch makes them differ. */
struct obj {
  unsigned flags;
  int refs;
};

__attribute__((noinline)) static int is_ready(const struct obj *o) {
  return (o->flags & 3) == 3 && o->refs > 0;
}

__attribute__((noinline)) static int is_usable(const struct obj *o) {
  return (o->flags & 3) == 3 && o->refs > 0;
}

int start(struct obj *o) {
  return is_ready(o) ? ++o->refs : -1;
}

int use(struct obj *o) {
  return is_usable(o) ? o->refs : -1;
}
