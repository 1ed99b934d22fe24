/* A small string and number utility library: 42 functions. */
#include <stddef.h>
#include <string.h>

static int g_calls;
int g_last_error;
const char *g_names[] = {"zero", "one", "two", "three"};

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static int to_lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static int to_upper(int c) { return c >= 'a' && c <= 'z' ? c - 32 : c; }

size_t su_len(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
int su_count_calls(void) { return ++g_calls; }
int su_last_error(void) { return g_last_error; }
void su_clear_error(void) { g_last_error = 0; }
const char *su_name(unsigned i) { return i < 4 ? g_names[i] : "many"; }

char *su_skip_space(char *s) { while (*s && is_space(*s)) s++; return s; }
char *su_skip_word(char *s) { while (*s && !is_space(*s)) s++; return s; }
void su_lower(char *s) { for (; *s; s++) *s = to_lower(*s); }
void su_upper(char *s) { for (; *s; s++) *s = to_upper(*s); }
int su_count_digits(const char *s) { int n = 0; for (; *s; s++) n += is_digit(*s); return n; }
int su_count_alpha(const char *s) { int n = 0; for (; *s; s++) n += is_alpha(*s); return n; }

int su_atoi(const char *s) {
  int sign = 1, v = 0;
  if (*s == '-') { sign = -1; s++; }
  while (is_digit(*s)) v = v * 10 + (*s++ - '0');
  return sign * v;
}

int su_parse_hex(const char *s, unsigned *out) {
  unsigned v = 0;
  int n = 0;
  for (; *s; s++, n++) {
    int c = to_lower(*s);
    if (is_digit(c)) v = v * 16 + (c - '0');
    else if (c >= 'a' && c <= 'f') v = v * 16 + (c - 'a' + 10);
    else { g_last_error = 1; return -1; }
  }
  *out = v;
  return n;
}

int su_starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
int su_ends_with(const char *s, const char *p) {
  size_t a = strlen(s), b = strlen(p);
  return a >= b && memcmp(s + a - b, p, b) == 0;
}
int su_equal_nocase(const char *a, const char *b) {
  while (*a && to_lower(*a) == to_lower(*b)) { a++; b++; }
  return to_lower(*a) == to_lower(*b);
}
char *su_chr(char *s, int c) { for (; *s; s++) if (*s == c) return s; return NULL; }
char *su_rchr(char *s, int c) { char *r = NULL; for (; *s; s++) if (*s == c) r = s; return r; }
size_t su_span(const char *s, const char *set) { return strspn(s, set); }
size_t su_cspan(const char *s, const char *set) { return strcspn(s, set); }

void su_reverse(char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n / 2; i++) { char t = s[i]; s[i] = s[n - 1 - i]; s[n - 1 - i] = t; }
}

void su_trim_right(char *s) {
  size_t n = strlen(s);
  while (n > 0 && is_space(s[n - 1])) s[--n] = 0;
}

size_t su_copy(char *dst, const char *src, size_t cap) {
  size_t i = 0;
  if (cap == 0) return 0;
  for (; i + 1 < cap && src[i]; i++) dst[i] = src[i];
  dst[i] = 0;
  return i;
}

size_t su_append(char *dst, const char *src, size_t cap) {
  size_t n = strlen(dst);
  return n + su_copy(dst + n, src, cap > n ? cap - n : 0);
}

int su_utoa(unsigned v, char *buf, size_t cap) {
  char tmp[16];
  int n = 0;
  do { tmp[n++] = '0' + v % 10; v /= 10; } while (v && n < 16);
  if ((size_t)n >= cap) return -1;
  for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  buf[n] = 0;
  return n;
}

unsigned su_hash(const char *s) { unsigned h = 5381; while (*s) h = h * 33 + (unsigned char)*s++; return h; }
unsigned su_hash_nocase(const char *s) { unsigned h = 5381; while (*s) h = h * 33 + to_lower(*s++); return h; }
int su_max(int a, int b) { return a > b ? a : b; }
int su_min(int a, int b) { return a < b ? a : b; }
int su_clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
int su_abs(int v) { return v < 0 ? -v : v; }
int su_sign(int v) { return (v > 0) - (v < 0); }
unsigned su_popcount(unsigned v) { unsigned n = 0; while (v) { n += v & 1; v >>= 1; } return n; }
unsigned su_round_up(unsigned v, unsigned a) { return (v + a - 1) / a * a; }
int su_is_pow2(unsigned v) { return v && !(v & (v - 1)); }

int su_count_words(const char *s) {
  int n = 0, in = 0;
  for (; *s; s++) {
    if (is_space(*s)) in = 0;
    else if (!in) { in = 1; n++; }
  }
  return n;
}

int su_count_char(const char *s, int c) { int n = 0; for (; *s; s++) n += *s == c; return n; }
void su_replace(char *s, int from, int to) { for (; *s; s++) if (*s == from) *s = to; }
int su_is_blank(const char *s) { for (; *s; s++) if (!is_space(*s)) return 0; return 1; }
int su_is_number(const char *s) {
  if (*s == '-') s++;
  if (!*s) return 0;
  for (; *s; s++) if (!is_digit(*s)) return 0;
  return 1;
}
const char *su_bool(int v) { return v ? "true" : "false"; }
