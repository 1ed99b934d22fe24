/* Box<int>::get is instantiated in a.o and in b.o, each a weak definition in a COMDAT
 * group; the linker keeps one, which both callers run. The update brings a new copy from
 * each object, and must replace the one the process runs (once). noipa keeps it the
 * weak definition callers call (GCC would otherwise call a local, 4-byte .isra clone). */
template <typename T> struct Box {
	T v;
	T get() const;
};

template <typename T> __attribute__((noipa)) T Box<T>::get() const
{
	return v * 2;
}

int from_a(int x);
int from_b(int x);
