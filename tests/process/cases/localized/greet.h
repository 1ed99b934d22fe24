/* What libgreet.so exports. */
int greet(char *buf, unsigned long size);
int decoy(void);
