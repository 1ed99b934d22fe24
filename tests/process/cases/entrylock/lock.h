#ifndef LOCK_H
#define LOCK_H

extern volatile int taken;
int waiter(void);
int holder(int n);

#endif
