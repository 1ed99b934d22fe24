int sentinel(const char *text);
