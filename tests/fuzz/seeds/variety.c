/* Seed for the fuzzer: a little of everything the ELF reader meets. */
extern int ext_var;
extern int ext_fn(int);
int counter = 3;
static int hidden;
const char *greeting = "hello";
__thread int tls_var = 1;
extern __thread int tls_ext;

static __attribute__((noinline)) int helper(int x) { return x * counter + ext_var; }
__attribute__((weak)) int weak_fn(int x) { return x - 1; }

int dispatch(int x)
{
	switch (x) {
	case 0: return ext_fn(1);
	case 1: return ext_fn(12);
	case 2: return ext_fn(23);
	case 3: return ext_fn(34);
	case 4: return ext_fn(45);
	default: return helper(x) + tls_var + tls_ext + hidden++ + greeting[x & 3];
	}
}
