#pragma once
#define _(s) (s)
const char *greeting(int hour);
