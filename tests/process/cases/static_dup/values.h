int a_value(int seq);
int b_value(int seq);
