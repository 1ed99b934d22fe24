int respond(char *out, int size, const char *request);
