/* Square::area is the virtual method the update replaces; its vtable, emitted here, keeps
 * pointing at the old entry, which the jump covers. */
#include "shape.h"

Shape::~Shape() = default;

Square::Square(int s) : side(s) {}

int Square::area() const
{
	return side * side;
}

Shape* make_square(int side)
{
	return new Square(side);
}
