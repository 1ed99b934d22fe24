#include "shapes.h"

long area_rect(long w, long h)
{
	if (w < 0 || h < 0)
		return 0;
	return w * h;
}

long perimeter_rect(long w, long h)
{
	return 2 * (w + h);
}
