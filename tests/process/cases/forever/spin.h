void *spin_forever(void *arg);
