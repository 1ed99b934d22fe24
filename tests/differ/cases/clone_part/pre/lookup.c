/* Partial inlining: the fast path (the early return) of lookup and lookup_rev is
   inlined into their callers, the rest becomes lookup.part.0 / lookup_rev.part.0 at -O2
   (-O3 inlines them whole). */
struct entry {
  int key;
  int value;
  struct entry *next;
};

struct entry *g_table[64];
int g_misses;
extern void note_miss(int key, int n);

static int lookup(int key) {
  if (__builtin_expect(key < 0, 1))
    return -1;
  int n = 0;
  for (struct entry *e = g_table[key & 63]; e; e = e->next) {
    if (e->key == key)
      return e->value;
    n++;
    note_miss(key, n);
    note_miss(key + 1, n * 2);
    note_miss(key + 2, n * 3);
  }
  g_misses += n;
  return -2;
}

static int lookup_rev(int key) {
  if (__builtin_expect(key < 0, 1))
    return -1;
  int n = 0;
  for (struct entry *e = g_table[63 - (key & 63)]; e; e = e->next) {
    if (e->key == key)
      return e->value * 2;
    n += 2;
    note_miss(key, n);
    note_miss(key - 1, n * 2);
    note_miss(key - 2, n * 3);
  }
  g_misses += n;
  return -3;
}

int get(int key) { return lookup(key); }
int get_or(int key, int dflt) { int v = lookup(key); return v < 0 ? dflt : v; }
int get_next(int key) { return lookup(key + 1) + 1; }
int rget(int key) { return lookup_rev(key); }
int rget_or(int key, int dflt) { int v = lookup_rev(key); return v < 0 ? dflt : v; }
int rget_next(int key) { return lookup_rev(key + 1) + 1; }
