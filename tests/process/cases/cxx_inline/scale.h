// scale() is inline: every caller has its own copy of the body and no out-of-line copy
// is emitted, so changing it changes report(), its caller, which the update replaces.
inline int scale(int x)
{
	return x * 2;
}

int report(int n);
