/* Globals of default visibility that the version script keeps out of the library's
 * dynamic symbols: locals of libgreet.so once linked. */
int base(void);
extern int (*scale)(int);
