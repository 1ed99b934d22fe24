struct Shape {
	virtual ~Shape();
	virtual int area() const = 0;
};

struct Square : Shape {
	explicit Square(int side);
	int area() const override;
	int side;
};

// Makes a Square where main.cc cannot see its type, so the call stays virtual.
Shape* make_square(int side);
