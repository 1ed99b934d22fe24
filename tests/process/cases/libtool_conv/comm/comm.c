long config_sentinel(void);

long comm_sentinel(void)
{
	return config_sentinel();
}
