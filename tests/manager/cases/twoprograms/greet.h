extern int greet_count;
int greet(char *buf, unsigned long size);
