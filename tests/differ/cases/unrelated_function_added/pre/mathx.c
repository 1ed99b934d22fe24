int gcd(int a, int b) {
  while (b) {
    int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

int lcm(int a, int b) {
  return a / gcd(a, b) * b;
}
