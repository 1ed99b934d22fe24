#include "elf/object.h"
