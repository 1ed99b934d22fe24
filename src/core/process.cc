#include "core/process.h"
// placeholder: written by the create work
