/* Floating-point constants live in literal pools (.rodata.cst8 / .rodata.cst16 at -O2). */
double circle_area(double r) {
  return 3.14159265358979 * r * r;
}

double to_radians(double deg) {
  return deg * 0.0174532925199433;
}

double grow(double v) {
  return v * 2.71828182845905 + 0.5;
}
