#ifndef SHAPES_H
#define SHAPES_H

long area_rect(long w, long h);
long perimeter_rect(long w, long h);
const char *greet(const char *who);

#endif
