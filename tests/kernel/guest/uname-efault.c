// uname(2) with a pointer into nothing: the kernel must return EFAULT. Built static by
// run-match-test for the guest (kernel.apply, uname-put-user.patch): the update's new
// newuname writes the first byte with an inline __put_user, whose fault is fixed up
// only through the exception table of the update's module.
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  long rc = syscall(SYS_uname, (void*)16);   // below TASK_SIZE, never mapped
  int err = errno;
  printf("uname(16): rc=%ld errno=%d\n", rc, err);
  return rc == -1 && err == EFAULT ? 0 : 1;
}
