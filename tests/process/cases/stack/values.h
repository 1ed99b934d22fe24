int alpha(void);
int beta(void);
