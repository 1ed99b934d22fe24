/* A struct member is renamed (same type, same offset) while one function changes: the
   layout of data of this type is unchanged. */
struct opts {
  int verbose;
  int flags;
  long limit;
};

struct opts g_opts = {0, 3, 100};

int opts_flag(int bit) {
  return (g_opts.flags >> bit) & 1;
}

long opts_limit(void) {
  return g_opts.limit;
}
