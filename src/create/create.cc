// placeholder until the create pipeline lands: written by the create work
#include "create/create.h"

namespace ls::create {
Exit run_create(Context&, const CreateOptions&) { fail("create: not implemented yet"); }
}  // namespace ls::create
