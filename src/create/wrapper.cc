// placeholder: written by the create work
int main() { return 0; }
