int inner(int round);
void outer(int round);
