int busy_until(const char *flag);
