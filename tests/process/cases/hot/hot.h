#ifndef HOT_H
#define HOT_H

/* The bytes at the entry of the running hot() (set by main). */
extern const volatile unsigned char *hot_entry;
long now_us(void);
/* Aborts if the entry of hot() changed while the caller was inside it. */
void same_entry(const unsigned char seen[16]);
int hot(void);

#endif
