extern int reports;
void report(long seq);
