/* first() keeps a static of its own; sentinel() returns one. */
int first(void);
int sentinel(void);
