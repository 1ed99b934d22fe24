#include "differ/differ.h"
