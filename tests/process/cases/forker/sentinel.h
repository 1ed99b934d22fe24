int sentinel(void);
