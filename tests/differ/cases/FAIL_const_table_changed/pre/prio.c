const int prio_weight[8] = {88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705};

int weight_of(unsigned prio) {
  return prio_weight[prio & 7];
}

int weight_sum(void) {
  int s = 0;
  for (int i = 0; i < 8; i++)
    s += weight_of(i);
  return s;
}
