/* Writes the answer to one request line (without its newline) into out. */
void answer(const char *request, char *out, unsigned long size);
