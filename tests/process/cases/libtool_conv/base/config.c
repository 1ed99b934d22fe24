/* The function the update replaces. It reads a global that PIC code reaches through
 * the GOT and non-PIC code directly, so the two copies libtool compiles differ. */
struct config {
	long pad[88];
	long sentinel;
};

struct config Config = { .sentinel = 1001 };

long config_sentinel(void)
{
	return Config.sentinel;
}
