int first_ticket();
int next_ticket();
